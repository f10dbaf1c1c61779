-- Issue 24: recording calibration. A recording goes to review when the
-- model stayed undecided (speech probability in [0.3, 0.7]) for an
-- unbroken stretch; `undecided_run` is that longest stretch in seconds, so
-- that a calibration re-routing the project's recordings applies the same
-- rule as the job that pre-labeled them.
ALTER TABLE items ADD COLUMN undecided_run REAL;
