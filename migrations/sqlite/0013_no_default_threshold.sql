-- Issue 26 (M1): nothing is auto-accepted before a calibration has earned
-- it. A project's fixed `threshold` is now optional: NULL (the default for
-- new projects) accepts nothing until the first calibration; a number is an
-- explicit fixed threshold, served as `guarantee: no_guarantee`. Existing
-- classification projects keep theirs (their routing does not change, it is
-- now shown as unguaranteed); detection projects never used it.
--
-- SQLite cannot drop a NOT NULL constraint, and a table rebuild would have to
-- switch foreign keys off, which sqlx's transaction per migration forbids:
-- the column is replaced instead (add, copy, drop, rename; SQLite ≥ 3.35).
ALTER TABLE projects ADD COLUMN fixed_threshold REAL;
UPDATE projects SET fixed_threshold = threshold WHERE task <> 'detect';
ALTER TABLE projects DROP COLUMN threshold;
ALTER TABLE projects RENAME COLUMN fixed_threshold TO threshold;
