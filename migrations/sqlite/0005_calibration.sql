-- Calibration (issue #10): the audit sample, raw and calibrated scores, and
-- stored calibration versions.
--  * audit / audit_p: whether pre-labeling drew the item into the audit
--    sample, and with what probability (known and stored, so that a sample
--    drawn at unequal rates can be thinned back to a uniform one).
--  * raw_score / raw_scores: the model's (or head's) own probabilities;
--    pred_score / pred_scores hold the calibrated ones shown everywhere.
--  * calibration_version: the calibration that decided the machine label
--    (NULL: decided by the project's fixed, uncalibrated threshold).
ALTER TABLE items ADD COLUMN audit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN audit_p REAL;
ALTER TABLE items ADD COLUMN raw_score REAL;
ALTER TABLE items ADD COLUMN raw_scores TEXT;
ALTER TABLE items ADD COLUMN calibration_version BIGINT;
CREATE INDEX items_audit ON items(project_id, status, id) WHERE audit = 1;

ALTER TABLE projects ADD COLUMN calibration_version BIGINT;             -- current calibration, if any

CREATE TABLE calibrations (
    id INTEGER PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,                          -- JSON service::calibration::Stored
    audit_labels BIGINT NOT NULL,                -- audit labels the fit used
    drift_classes TEXT NOT NULL DEFAULT '[]',    -- JSON array of labels whose drift alarm fired
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, version)
);

-- How a conflict between annotators was resolved (majority | expert | single).
ALTER TABLE items ADD COLUMN resolution TEXT;
