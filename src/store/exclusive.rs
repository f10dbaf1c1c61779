//! Exclusive jobs: work that runs once per project at a time (a calibration,
//! a training, a Label Studio sync per Label Studio project). The database
//! decides, so it holds across replicas: a partial unique index on
//! `jobs (project_id, kind) WHERE finished_at IS NULL` (migration 0009)
//! lets one open job of a kind exist, and whoever finds one open joins it.
//! The process running a job holds a lease on it (`runner`,
//! `runner_until`); a job whose lease ran out is taken over.

use sqlx::Row;

use super::{now_ms, Job, Result, Store};

/// An open exclusive job whose runner's lease ran out (or, at an SQLite
/// start-up, any open one: one process owns the file).
#[derive(Debug, Clone)]
pub struct Orphan {
    pub job_id: i64,
    pub project_id: i64,
    pub kind: String,
}

/// How a job of a kind was found: opened now (the caller runs it), or
/// already open (the caller joins it).
#[derive(Debug, Clone)]
pub enum Opened {
    New(Job),
    Joined(Job),
}

impl Opened {
    pub fn job(&self) -> &Job {
        match self {
            Opened::New(j) | Opened::Joined(j) => j,
        }
    }
}

impl Store {
    /// Open a job of `kind` for the project, run by `runner` until
    /// `lease_ms` from now, unless one is open already: then that one. Never
    /// fails on the uniqueness it relies on (no error is logged for the race).
    pub async fn open_exclusive(
        &self,
        project_id: i64,
        kind: &str,
        state: &str,
        runner: &str,
        lease_ms: i64,
    ) -> Result<Opened> {
        // The open job can finish between our insert and our read: try again.
        for _ in 0..20 {
            let now = now_ms();
            let id: Option<i64> = with_pool!(self, |p| {
                sqlx::query_scalar(
                    "INSERT INTO jobs (project_id, state, total, created_at, updated_at, started_at, kind, runner, runner_until) \
                     VALUES ($1, $2, 1, $3, $3, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(project_id)
                .bind(state)
                .bind(now)
                .bind(kind)
                .bind(runner)
                .bind(now + lease_ms)
                .fetch_optional(p)
                .await
            })?;
            if let Some(opened) = self.new_or_joined(id, project_id, kind).await? {
                return Ok(opened);
            }
        }
        Err(super::StoreError::Conflict(format!(
            "could not open or find the {kind} job of project {project_id}"
        )))
    }

    /// The job an insert made (`inserted`), else the open one it lost to;
    /// `None` when that one ended meanwhile (the caller tries again).
    async fn new_or_joined(
        &self,
        inserted: Option<i64>,
        project_id: i64,
        kind: &str,
    ) -> Result<Option<Opened>> {
        if let Some(id) = inserted {
            return Ok(Some(Opened::New(self.get_job(id).await?)));
        }
        match self.open_job_of(project_id, kind).await? {
            Some(id) => Ok(Some(Opened::Joined(self.get_job(id).await?))),
            None => Ok(None),
        }
    }

    /// The open job of `kind` for the project, if any.
    pub async fn open_job_of(&self, project_id: i64, kind: &str) -> Result<Option<i64>> {
        with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT id FROM jobs WHERE project_id = $1 AND kind = $2 AND finished_at IS NULL",
            )
            .bind(project_id)
            .bind(kind)
            .fetch_optional(p)
            .await
        })
    }

    /// Extend `runner`'s lease on an open job; false if it is no longer
    /// `runner`'s (taken over, or finished).
    pub async fn renew_job(&self, job_id: i64, runner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE jobs SET runner_until = $1 WHERE id = $2 AND runner = $3 AND finished_at IS NULL",
            )
            .bind(now + lease_ms)
            .bind(job_id)
            .bind(runner)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Open exclusive jobs to take over: those whose lease ran out, or, with
    /// `all` (an SQLite start-up: the previous run is gone), every open one
    /// but those `runner` (this process) opened since it started.
    pub async fn orphaned_jobs(&self, runner: &str, all: bool) -> Result<Vec<Orphan>> {
        let now = now_ms();
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, project_id, kind FROM jobs WHERE kind IS NOT NULL AND finished_at IS NULL \
                 AND (NOT $1 OR runner IS NULL OR runner <> $3) \
                 AND ($1 OR runner_until IS NULL OR runner_until < $2) ORDER BY id",
            )
            .bind(all)
            .bind(now)
            .bind(runner)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(Orphan {
                    job_id: r.try_get(0)?,
                    project_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Make `runner` the runner of an open job, if its lease ran out (or
    /// with `force`). True if `runner` has it now: exactly one taker wins.
    pub async fn take_over_job(
        &self,
        job_id: i64,
        runner: &str,
        lease_ms: i64,
        force: bool,
    ) -> Result<bool> {
        let now = now_ms();
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE jobs SET runner = $1, runner_until = $2, updated_at = $3 WHERE id = $4 \
                 AND finished_at IS NULL AND ($5 OR runner_until IS NULL OR runner_until < $3)",
            )
            .bind(runner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(job_id)
            .bind(force)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// End an exclusive one-unit job (`done`, or `failed` with `errors = 1`),
    /// keeping `result` for whoever joined it. Only its runner ends it.
    pub async fn finish_exclusive(
        &self,
        job_id: i64,
        runner: &str,
        ok: bool,
        result: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE jobs SET state = $1, done = $2, errors = $3, result = $4, updated_at = $5, finished_at = $5 \
                 WHERE id = $6 AND runner = $7 AND finished_at IS NULL",
            )
            .bind(if ok { "done" } else { "failed" })
            .bind(i64::from(ok))
            .bind(i64::from(!ok))
            .bind(result)
            .bind(now)
            .bind(job_id)
            .bind(runner)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// A job's end and result: `None` while it is open.
    pub async fn job_outcome(&self, job_id: i64) -> Result<Option<(String, Option<String>)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT state, result FROM jobs WHERE id = $1 AND finished_at IS NOT NULL",
            )
            .bind(job_id)
            .fetch_optional(p)
            .await
        })
    }

    // ---- Label Studio syncs ----------------------------------------------

    /// Open a sync of `ls_project` (job kind `kind`, state `syncing`, with
    /// its durable state in `ls_syncs`, in one transaction), unless one of
    /// that Label Studio project is open: then that one.
    #[allow(clippy::too_many_arguments)]
    pub async fn ls_open_sync(
        &self,
        project_id: i64,
        url: &str,
        token: &str,
        ls_project: i64,
        kind: &str,
        runner: &str,
        lease_ms: i64,
    ) -> Result<Opened> {
        for _ in 0..20 {
            let now = now_ms();
            let id: Option<i64> = with_pool!(self, |p| {
                let mut tx = p.begin().await?;
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO jobs (project_id, state, total, created_at, updated_at, started_at, kind, runner, runner_until) \
                     VALUES ($1, 'syncing', 0, $2, $2, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(project_id)
                .bind(now)
                .bind(kind)
                .bind(runner)
                .bind(now + lease_ms)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(job_id) = id {
                    sqlx::query(
                        "INSERT INTO ls_syncs (job_id, project_id, url, token, ls_project, phase, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'ingest', $6)",
                    )
                    .bind(job_id)
                    .bind(project_id)
                    .bind(url)
                    .bind(token)
                    .bind(ls_project)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(id)
            })?;
            if let Some(opened) = self.new_or_joined(id, project_id, kind).await? {
                return Ok(opened);
            }
        }
        Err(super::StoreError::Conflict(format!(
            "could not open or find the sync of Label Studio project {ls_project}"
        )))
    }

    /// Chunks that syncs of this Label Studio project posted and did not
    /// record (sync job, JSON), this one's or an earlier one's that failed
    /// or died with one in flight.
    pub async fn ls_in_flight(
        &self,
        project_id: i64,
        ls_project: i64,
    ) -> Result<Vec<(i64, String)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (i64, String)>(
                "SELECT job_id, in_flight FROM ls_syncs WHERE project_id = $1 AND ls_project = $2 \
                 AND in_flight IS NOT NULL ORDER BY job_id",
            )
            .bind(project_id)
            .bind(ls_project)
            .fetch_all(p)
            .await
        })
    }

    /// Remember the chunk a sync is about to post (before posting it).
    pub async fn ls_set_in_flight(&self, job_id: i64, chunk: Option<&str>) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query("UPDATE ls_syncs SET in_flight = $1, updated_at = $2 WHERE job_id = $3")
                .bind(chunk)
                .bind(now_ms())
                .bind(job_id)
                .execute(p)
                .await
                .map(|_| ())
        })
    }

    /// Record tasks as holding a prediction of `model_version` written by
    /// this sync, count them on its job, and clear its chunk in flight, in
    /// one transaction.
    pub async fn ls_record_written(
        &self,
        job_id: i64,
        project_id: i64,
        model_version: &str,
        task_ids: &[i64],
    ) -> Result<()> {
        let now = now_ms();
        let statements: Vec<_> = task_ids
            .chunks(200)
            .map(|chunk| {
                let mut sql = self.params(
                    "INSERT INTO ls_written (project_id, ls_task_id, model_version, created_at) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(").list(4).push(")");
                }
                sql.push(" ON CONFLICT DO NOTHING");
                (sql, chunk)
            })
            .collect();
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE ls_syncs SET in_flight = NULL, updated_at = $1 WHERE job_id = $2")
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            for (sql, chunk) in &statements {
                let mut q = sqlx::query(&sql.sql);
                for t in *chunk {
                    q = q.bind(project_id).bind(*t).bind(model_version).bind(now);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE jobs SET done = done + $1, updated_at = $2 WHERE id = $3")
                .bind(task_ids.len() as i64)
                .bind(now)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
    }
}
