-- Issue 24: speech segments in the region store. A segment is a region of
-- kind `span` with [start, end] in seconds in x0/x1 (y0/y1 null): no new
-- table or region column. The recording's length (seconds, as decoded) is
-- what a reviewer's segments are checked against, as width/height are for
-- boxes; `undecided` is its seconds of frames the model left between 0.3
-- and 0.7 speech probability (one of its two uncertainties for review
-- lists). Both are written by the job that pre-labeled the recording.
ALTER TABLE items ADD COLUMN duration REAL;
ALTER TABLE items ADD COLUMN undecided REAL;
