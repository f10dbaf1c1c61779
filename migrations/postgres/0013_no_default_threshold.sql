-- Issue 26 (M1): nothing is auto-accepted before a calibration has earned
-- it. A project's fixed `threshold` is now optional: NULL (the default for
-- new projects) accepts nothing until the first calibration; a number is an
-- explicit fixed threshold, served as `guarantee: no_guarantee`. Existing
-- classification projects keep theirs (their routing does not change, it is
-- now shown as unguaranteed); detection projects never used it.
ALTER TABLE projects ALTER COLUMN threshold DROP NOT NULL;
UPDATE projects SET threshold = NULL WHERE task = 'detect';
