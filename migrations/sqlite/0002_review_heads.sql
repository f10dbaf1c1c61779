-- Active learning: stored embeddings and uncertainty (indexed for ranking),
-- review leases, tiers, and trained heads.
ALTER TABLE items ADD COLUMN embedding BLOB;                 -- little-endian f32
ALTER TABLE items ADD COLUMN unc_least_confidence REAL;
ALTER TABLE items ADD COLUMN unc_margin REAL;
ALTER TABLE items ADD COLUMN unc_entropy REAL;
ALTER TABLE items ADD COLUMN review_owner TEXT;
ALTER TABLE items ADD COLUMN review_until BIGINT;
CREATE INDEX items_rank_margin ON items(project_id, status, unc_margin DESC);
CREATE INDEX items_rank_lc ON items(project_id, status, unc_least_confidence DESC);
CREATE INDEX items_rank_entropy ON items(project_id, status, unc_entropy DESC);

ALTER TABLE projects ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';   -- JSON: tiers, train_every, ...
ALTER TABLE projects ADD COLUMN head_version BIGINT;                    -- current head, if any

CREATE TABLE heads (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,                          -- JSON calibrate::Head
    trained_on BIGINT NOT NULL,                  -- labeled items used
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, version)
);

CREATE TABLE annotators (
    name TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE jobs ADD COLUMN started_at BIGINT;                -- first claim: rates exclude queueing
