-- labelloop schema, SQLite flavour. Times are Unix milliseconds.
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    labels TEXT NOT NULL,                       -- JSON array, in the model's order
    precision_target REAL NOT NULL,
    threshold REAL NOT NULL,                    -- fixed until calibration lands
    created_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    state TEXT NOT NULL,                        -- running | done
    total BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX jobs_active ON jobs(state, id);

CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,                         -- text | image | path
    text TEXT,
    image BLOB,
    path TEXT,
    status TEXT NOT NULL,                       -- pending | auto_accepted | needs_review | labeled | failed
    job_id BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    error TEXT,
    pred_label TEXT,
    pred_score REAL,
    pred_scores TEXT,                           -- JSON object label -> probability
    pred_uncertainty TEXT,                      -- JSON {least_confidence, margin, entropy}
    model_version TEXT,
    final_label TEXT,
    final_source TEXT,                          -- human | machine
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, client_id)
);
CREATE INDEX items_by_project ON items(project_id, id);
CREATE INDEX items_by_status ON items(project_id, status, id);
CREATE INDEX items_by_job ON items(job_id, status, id);

-- One row per model run on an item: the audit trail, and how tests prove
-- that no item was labeled twice.
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY,
    item_id BIGINT NOT NULL REFERENCES items(id),
    model_version TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    worker TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX predictions_by_item ON predictions(item_id);

CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    item_id BIGINT NOT NULL REFERENCES items(id),
    label TEXT NOT NULL,
    annotator TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX annotations_by_item ON annotations(item_id);

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,                         -- admin | annotator | predictor
    hash TEXT NOT NULL UNIQUE,                  -- sha256 hex of the secret
    created_at BIGINT NOT NULL
);
