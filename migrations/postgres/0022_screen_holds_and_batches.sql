-- Issue 25: the screen's holds enforced where every path meets them. Any
-- statement that moves an item to `auto_accepted` or `needs_review` (a
-- worker recording a batch, a calibration's re-routing, a box calibration,
-- a lease given back) passes through this trigger, row by row:
--  1. an item that waits for a copy of a person's label (`propagated_from`
--     set while a worker held it, see `Store::propagate_label`) takes that
--     label, provenance `propagated`, if that person's label still stands;
--     a mark whose person's label is gone is cleared;
--  2. an item the last screen holds (an outlier, a dark, blurry or
--     odd-sized image: `screen_issues.hold = 1`) is never `auto_accepted`:
--     it goes to `needs_review` without the machine's final label.
-- A screen takes the exclusive transaction lock (25, project) before it
-- writes its issues, and this trigger the shared one before it reads them:
-- a statement in flight when the screen starts finishes (and commits)
-- first, and the screen then moves what it auto-accepted; one that starts
-- later waits for the screen's commit and reads its issues (a volatile
-- function's queries take a new snapshot each).
CREATE FUNCTION items_screen_hold() RETURNS trigger AS $$
DECLARE
    copied TEXT;
BEGIN
    IF NEW.propagated_from IS NOT NULL
       AND (NEW.final_source IS NULL OR NEW.final_source = 'machine') THEN
        IF NEW.audit = 0 AND NEW.lease_owner IS NULL THEN
            SELECT h.final_label INTO copied FROM items h
            WHERE h.id = NEW.propagated_from AND h.status = 'labeled' AND h.final_source = 'human';
        END IF;
        IF copied IS NOT NULL THEN
            NEW.status := 'labeled';
            NEW.final_label := copied;
            NEW.final_source := 'propagated';
            NEW.review_owner := NULL;
            NEW.review_until := NULL;
            RETURN NEW;
        END IF;
        NEW.propagated_from := NULL;
    END IF;
    IF NEW.status = 'auto_accepted' THEN
        PERFORM pg_advisory_xact_lock_shared(25, (NEW.project_id % 2147483647)::int4);
        IF EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = NEW.id AND s.hold = 1) THEN
            NEW.status := 'needs_review';
            NEW.final_label := NULL;
            NEW.final_source := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER items_screen_hold BEFORE UPDATE OF status ON items
FOR EACH ROW WHEN (NEW.status IN ('auto_accepted', 'needs_review'))
EXECUTE FUNCTION items_screen_hold();

-- Issue 25: the items the project's screens have covered since its last
-- full screen. An incremental screen compares the items not in it (a new
-- ingest batch) with those in it, and adds them.
CREATE TABLE screen_items (
    item_id BIGINT PRIMARY KEY REFERENCES items(id),
    project_id BIGINT NOT NULL REFERENCES projects(id)
);
CREATE INDEX screen_items_project ON screen_items(project_id);
