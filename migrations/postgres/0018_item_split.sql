-- Issue 25: the split an item was ingested into (`train`, `val`, `test` or
-- any short name, at most 32 characters of [A-Za-z0-9_.-]); NULL when the
-- client gave none. A screen reports items that copy an item of another
-- split as `leak` issues.
ALTER TABLE items ADD COLUMN split TEXT;

-- Issue 25: a label propagated from a person's label on another member of
-- the item's duplicate group (`final_source = 'propagated'`): that item.
ALTER TABLE items ADD COLUMN propagated_from BIGINT REFERENCES items(id);
CREATE INDEX items_propagated ON items(propagated_from) WHERE propagated_from IS NOT NULL;
-- Propagation reads a duplicate group's members on each person's label.
CREATE INDEX screen_issues_group ON screen_issues(project_id, grp) WHERE grp IS NOT NULL;
