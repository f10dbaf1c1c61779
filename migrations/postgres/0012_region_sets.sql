-- Issue 22: each annotator's latest full set of boxes per image, written in
-- the transaction of the review that sent it. `regions` holds the image's
-- settled boxes (the latest review); this keeps every reviewer's own set so
-- that agreement between annotators on boxes can be measured.
-- boxes: JSON [[label, x0, y0, x1, y1], ...] in pixels of the original image.
CREATE TABLE region_sets (
    item_id BIGINT NOT NULL REFERENCES items(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    annotator TEXT NOT NULL,
    boxes TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX region_sets_by_project ON region_sets(project_id, item_id);
