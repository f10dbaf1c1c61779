-- Exactly-once work (issue 28, M5-M8). A calibration, a training and a
-- Label Studio sync run one at a time: such a job has a `kind`
-- (`calibrate`, `train`, `ls-sync:<Label Studio project>`), and while it is
-- open (`finished_at IS NULL`) no other job of the project has that kind, so
-- a second request finds the open job instead of starting another, on every
-- replica. `runner` is the process running it and `runner_until` its lease,
-- extended while it runs: a job whose runner died is taken over (resumed or
-- failed) by the next process that looks. `result` is what a finished
-- training answered, for the requests that joined it.
ALTER TABLE jobs ADD COLUMN kind TEXT;
ALTER TABLE jobs ADD COLUMN runner TEXT;
ALTER TABLE jobs ADD COLUMN runner_until BIGINT;
ALTER TABLE jobs ADD COLUMN result TEXT;

-- Predictions of a sync posted to Label Studio and not yet recorded as
-- written (JSON array of task ids): checked against Label Studio on resume.
ALTER TABLE ls_syncs ADD COLUMN in_flight TEXT;

-- Calibration jobs left open by a stopped server were never finished:
-- failed now (later ones are resumed at start-up).
UPDATE jobs SET state = 'failed', errors = 1, finished_at = updated_at
WHERE state = 'calibrating' AND finished_at IS NULL;

-- Open syncs of the same Label Studio project: the newest one goes on.
UPDATE ls_syncs SET phase = 'failed',
    error = 'superseded by a newer sync of the same Label Studio project'
WHERE phase NOT IN ('done', 'failed') AND job_id < (
    SELECT MAX(s.job_id) FROM ls_syncs s
    WHERE s.project_id = ls_syncs.project_id AND s.ls_project = ls_syncs.ls_project
      AND s.phase NOT IN ('done', 'failed'));
UPDATE jobs SET state = 'failed', finished_at = updated_at
WHERE finished_at IS NULL AND id IN (SELECT job_id FROM ls_syncs WHERE phase = 'failed');
UPDATE jobs SET kind = 'ls-sync:' || (SELECT s.ls_project FROM ls_syncs s WHERE s.job_id = jobs.id)
WHERE finished_at IS NULL AND id IN (SELECT job_id FROM ls_syncs);

CREATE UNIQUE INDEX jobs_one_open ON jobs (project_id, kind) WHERE finished_at IS NULL;
