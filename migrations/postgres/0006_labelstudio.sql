-- Label Studio (issue #11): per-project connection state, the annotations
-- Label Studio sent, bulk syncs and the predictions they wrote back.
-- Items from Label Studio are ordinary items whose client id is `ls-task-<task id>`.

-- What POST /setup gave: where Label Studio is and the token to fetch its
-- data with (never logged, listed or exported).
CREATE TABLE ls_connections (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id),
    hostname TEXT NOT NULL,
    access_token TEXT NOT NULL,
    ls_project TEXT,
    label_config TEXT,
    updated_at BIGINT NOT NULL
);

-- Each Label Studio annotation recorded, so updates and deletions find it.
CREATE TABLE ls_annotations (
    project_id BIGINT NOT NULL REFERENCES projects(id),
    ls_annotation_id BIGINT NOT NULL,
    ls_task_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL REFERENCES items(id),
    annotation_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, ls_annotation_id)
);

-- A bulk sync job (its progress lives in `jobs`, state `syncing`).
CREATE TABLE ls_syncs (
    job_id BIGINT PRIMARY KEY REFERENCES jobs(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    url TEXT NOT NULL,
    token TEXT NOT NULL,
    ls_project BIGINT NOT NULL,
    phase TEXT NOT NULL,                         -- ingest | label | write | done | failed
    next_page BIGINT NOT NULL DEFAULT 1,
    tasks BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);

-- Predictions written to Label Studio, so nothing is written twice.
CREATE TABLE ls_written (
    project_id BIGINT NOT NULL REFERENCES projects(id),
    ls_task_id BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, ls_task_id, model_version)
);
