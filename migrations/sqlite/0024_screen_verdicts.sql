-- Issue 25: a person's verdict on a screen issue. `confirm`: the issue is
-- right (a duplicate is one, a leak is a copy) or, for an outlier, the item
-- is in-domain after all (its hold is lifted; once labeled it joins the
-- outlier test's reference). `reject`: an outlier leaves the data (item
-- status `rejected`, out of exports), a duplicate or leak is not one (the
-- issue goes: the item leaves its group and is reviewed on its own).
-- One verdict per (item, issue type); a later full screen applies it again.
--   issue_id: the issue it was given on (no foreign key: a reject deletes
--             duplicate and leak issues, and a full screen renumbers them)
--   restore:  JSON of what the verdict changed, so that undoing it (DELETE)
--             puts it back
CREATE TABLE screen_verdicts (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    item_id BIGINT NOT NULL REFERENCES items(id),
    issue_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    annotator TEXT NOT NULL,
    restore TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (item_id, kind)
);
CREATE INDEX screen_verdicts_issue ON screen_verdicts(issue_id);
CREATE INDEX screen_verdicts_project ON screen_verdicts(project_id);
