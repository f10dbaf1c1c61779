-- Issue 22: the region store. A project's task follows from its model
-- (`classify`, `detect`; later `ocr`, `segments`); existing projects classify.
ALTER TABLE projects ADD COLUMN task TEXT NOT NULL DEFAULT 'classify';

-- The image size a detection model saw (EXIF orientation applied): what a
-- reviewer's boxes are checked against. `regions_rev` counts review writes
-- to the item's regions, so that a reviewer's set is written only over the
-- state it was computed from (optimistic concurrency, both dialects).
ALTER TABLE items ADD COLUMN width BIGINT;
ALTER TABLE items ADD COLUMN height BIGINT;
ALTER TABLE items ADD COLUMN regions_rev BIGINT NOT NULL DEFAULT 0;

-- One row per region: a machine's proposal or a person's box. The geometry
-- of a box is its four corners in pixels of the original image (REAL, never
-- rounded); kinds to come (`quad` for OCR lines, `span` for speech) keep
-- their bounding box or [start, end] in x0/x1 and the rest in `geometry`
-- (JSON), so the table does not change shape for them.
--
-- status, machine regions: accepted (auto when annotator IS NULL, else
-- confirmed by that annotator) | review | corrected | deleted;
-- human regions: added | corrected (then `replaces` names the machine
-- region it corrects).
CREATE TABLE regions (
    id INTEGER PRIMARY KEY,
    item_id BIGINT NOT NULL REFERENCES items(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    source TEXT NOT NULL,                       -- machine | human
    kind TEXT NOT NULL,                         -- box (later quad, span)
    x0 REAL,
    y0 REAL,
    x1 REAL,
    y1 REAL,
    geometry TEXT,                              -- JSON, for kinds beyond a box
    label TEXT NOT NULL,
    text TEXT,                                  -- OCR
    score REAL,
    uncertainty REAL,
    status TEXT NOT NULL,
    replaces BIGINT REFERENCES regions(id),
    model_version TEXT,
    calibration_version BIGINT,
    job_id BIGINT,                              -- the job that wrote a machine region
    annotator TEXT,                             -- who accepted, corrected, added or deleted it
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX regions_by_item ON regions(item_id, id);
CREATE INDEX regions_by_status ON regions(project_id, status, id);
-- The self-reference's child side: without it every insert of a region
-- scanned the table for rows replacing it (SQLite's foreign-key check).
CREATE INDEX regions_by_replaces ON regions(replaces);
