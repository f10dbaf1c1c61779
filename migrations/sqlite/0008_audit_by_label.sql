-- Issue #29: the per-class audit minimum counts, per batch, the audit items
-- of the labels the batch predicted, each up to the minimum. This partial
-- index (audit items only, 5% of a project by default) lets each count stop
-- there instead of walking every audit item of the project.
CREATE INDEX items_audit_label ON items(project_id, pred_label) WHERE audit = 1;
