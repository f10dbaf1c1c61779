-- Issue 25: screening results, per project. A screen replaces the previous
-- one: `screen_runs` keeps what the last run used (one row per project) and
-- `screen_issues` what it found, one row per (item, issue type).
--   rule: `conformal` (outliers tested against a reference, rate <= alpha),
--         `within_pool` (Datalab's rule, no reference yet, no rate promised)
--   reference: what the conformal test and leaks were measured against
--   summary: JSON of the screen's counts, thresholds and seconds per stage
CREATE TABLE screen_runs (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id),
    job_id BIGINT REFERENCES jobs(id),
    model TEXT NOT NULL,
    rule TEXT,
    reference TEXT,
    alpha REAL NOT NULL,
    items BIGINT NOT NULL,
    held BIGINT NOT NULL,
    summary TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

--   kind: exact_duplicate | near_duplicate | outlier | leak | quality:<q> | pii:<p>
--   grp: the duplicate group (every member carries it)
--   of_item: the group's representative (an item of this project)
--   of_reference: the reference project's item a leak copies
--   hold: 1 when the issue keeps the item from being auto-accepted
--         (outlier, quality:dark, quality:blurry, quality:odd_size)
CREATE TABLE screen_issues (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    item_id BIGINT NOT NULL REFERENCES items(id),
    kind TEXT NOT NULL,
    score REAL NOT NULL,
    grp BIGINT,
    of_item BIGINT REFERENCES items(id),
    of_reference BIGINT REFERENCES items(id),
    hold BIGINT NOT NULL DEFAULT 0,
    UNIQUE (item_id, kind)
);
CREATE INDEX screen_issues_page ON screen_issues(project_id, kind, id);
CREATE INDEX screen_issues_held ON screen_issues(item_id) WHERE hold = 1;
