-- Issue 25: the screen's holds enforced where every path meets them. Any
-- statement that moves an item to `auto_accepted` or `needs_review` (a
-- worker recording a batch, a calibration's re-routing, a box calibration,
-- a lease given back) passes through this trigger, in the same statement:
--  1. an item that waits for a copy of a person's label (`propagated_from`
--     set while a worker held it, see `Store::propagate_label`) takes that
--     label, provenance `propagated`, if that person's label still stands;
--     a mark whose person's label is gone is cleared;
--  2. an item the last screen holds (an outlier, a dark, blurry or
--     odd-sized image: `screen_issues.hold = 1`) is never `auto_accepted`:
--     it goes to `needs_review` without the machine's final label.
-- The condition costs a row that needs nothing one probe of the partial
-- index screen_issues_held. SQLite runs one writer at a time, so a screen's issues are either
-- committed before such a statement or written after it (and the screen
-- then moves what was auto-accepted).
CREATE TRIGGER items_screen_hold AFTER UPDATE OF status ON items
WHEN NEW.status IN ('auto_accepted', 'needs_review')
 AND (NEW.propagated_from IS NOT NULL
      OR (NEW.status = 'auto_accepted'
          AND EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = NEW.id AND s.hold = 1)))
BEGIN
    UPDATE items SET status = 'labeled', final_source = 'propagated',
        final_label = (SELECT h.final_label FROM items h WHERE h.id = items.propagated_from),
        review_owner = NULL, review_until = NULL
    WHERE id = NEW.id AND propagated_from IS NOT NULL AND audit = 0 AND lease_owner IS NULL
      AND (final_source IS NULL OR final_source = 'machine')
      AND status IN ('auto_accepted', 'needs_review')
      AND EXISTS (SELECT 1 FROM items h WHERE h.id = items.propagated_from
                  AND h.status = 'labeled' AND h.final_source = 'human' AND h.final_label IS NOT NULL);
    UPDATE items SET propagated_from = NULL
    WHERE id = NEW.id AND propagated_from IS NOT NULL
      AND (final_source IS NULL OR final_source = 'machine');
    UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL
    WHERE id = NEW.id AND status = 'auto_accepted'
      AND EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = items.id AND s.hold = 1);
END;

-- Issue 25: the items the project's screens have covered since its last
-- full screen. An incremental screen compares the items not in it (a new
-- ingest batch) with those in it, and adds them.
CREATE TABLE screen_items (
    item_id BIGINT PRIMARY KEY REFERENCES items(id),
    project_id BIGINT NOT NULL REFERENCES projects(id)
);
CREATE INDEX screen_items_project ON screen_items(project_id);
