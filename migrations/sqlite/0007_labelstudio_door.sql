-- Closing the Label Studio door (issue #28).

-- Annotation ids are never reused: a client that retries an undo must get
-- 404, not delete someone else's newer annotation. SQLite reuses the
-- largest rowid after a delete unless the table is AUTOINCREMENT, which
-- needs a rebuild.
CREATE TABLE annotations_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id BIGINT NOT NULL REFERENCES items(id),
    label TEXT NOT NULL,
    annotator TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO annotations_new (id, item_id, label, annotator, created_at)
    SELECT id, item_id, label, annotator, created_at FROM annotations;
DROP TABLE annotations;
ALTER TABLE annotations_new RENAME TO annotations;
CREATE INDEX annotations_by_item ON annotations(item_id);

-- The per-project credentials Label Studio sends as HTTP Basic auth.
-- Only the SHA-256 of the password is kept; it is shown once.
CREATE TABLE ls_credentials (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id),
    username TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Webhooks, written in the request and applied by a worker, so a sender
-- that gives up loses nothing. `dedup` is the event's identity (action,
-- annotation id, its updated_at): a replay of the same event is one row.
CREATE TABLE ls_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    dedup TEXT NOT NULL,
    body TEXT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    done_at BIGINT,                              -- kept a day, so late replays stay no-ops
    answer TEXT,                                 -- what applying it gave (JSON), for replays
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, dedup)
);
CREATE INDEX ls_outbox_open ON ls_outbox(done_at, claimed_until, id);
