//! Persistent state: projects, items, predictions, annotations, jobs and
//! API tokens, in SQLite (the embedded default) or PostgreSQL (scale-out).
//!
//! Both backends run the same SQL, written once: `with_pool!` expands a body
//! for each pool type, so a query cannot drift between them. Where the
//! dialects differ (claiming work with `FOR UPDATE SKIP LOCKED`), the
//! difference is one string. Times are Unix milliseconds in both.

mod types;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

pub use types::*;

/// What went wrong, in terms a caller can act on. The texts name no SQL,
/// table or column: the details of an unexpected database error are logged
/// where it is classified, not carried to whoever shows the error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Cannot reach or open the database now; nothing was written. Retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Anything else: a bug or a broken database, not the caller's fault.
    #[error("database error: {0}")]
    Db(String),
    /// No space left for the database (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`); nothing was written. Retry once space is freed: the
    /// store recovers by itself.
    #[error("the database is full: {0}")]
    Full(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                tracing::debug!(error = %e, "unique violation");
                StoreError::Conflict("a record with the same key already exists".into())
            }
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite's primary result code is the low byte of the extended one.
                let sqlite = code.parse::<i32>().ok().map(|c| c & 0xff);
                // SQLITE_FULL (13), whatever the extended code; PostgreSQL
                // disk_full (53100).
                if sqlite == Some(13) || code == "53100" {
                    tracing::warn!(error = %e, "the database is full");
                    // A write that returned early through `?` inside
                    // `with_pool!` never reaches `Store::error`, which knows
                    // the database: remember it for any (a process serves
                    // one database), so readiness says so from every write.
                    remember_full(ANY_DATABASE);
                    return StoreError::Full(format!("no space left to write (code {code})"));
                }
                // PostgreSQL shutting down or refusing connections: class 57P / 08.
                // SQLite whose file cannot be opened or read (deleted, moved,
                // unmounted, disk failing): SQLITE_IOERR (10) or SQLITE_CANTOPEN (14),
                // whatever the extended code.
                if code.starts_with("57P")
                    || code.starts_with("08")
                    || matches!(sqlite, Some(10 | 14))
                {
                    StoreError::Unavailable(db.message().to_string())
                } else {
                    // SQLite's and PostgreSQL's messages may quote the statement.
                    tracing::error!(error = %e, "database error");
                    StoreError::Db(format!("the database answered code {code}"))
                }
            }
            other => {
                tracing::error!(error = %other, "database error");
                StoreError::Db(sqlx_kind(other).into())
            }
        }
    }
}

/// A short name for a sqlx error that is not the database's answer (those
/// texts can name columns and types, which callers have no use for).
fn sqlx_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::RowNotFound => "an expected row is missing",
        sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::Decode(_) => "a stored value could not be read",
        sqlx::Error::Encode(_) => "a value could not be written",
        sqlx::Error::WorkerCrashed => "the database worker stopped",
        sqlx::Error::Protocol(_) => "the database connection broke the protocol",
        sqlx::Error::Configuration(_) => "the database is misconfigured",
        _ => "the database call failed",
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run `$body` (a `Result<_, sqlx::Error>`) with `$pool` bound to whichever
/// pool this store has; its error becomes a [`StoreError`] through
/// [`Store::error`], so that every failed call counts towards readiness.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {{
        let store: &Store = $store;
        let result = match store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        };
        result.map_err(|e| store.error(e))
    }};
}

/// How long after a write failed for lack of space `ping` still reports the
/// store full. A write that fails is the only reliable sign: with WAL, a
/// probe write that is rolled back never reaches the disk, so it succeeds on
/// a full disk; a committed probe can fit in WAL space already allocated.
const FULL_MEMORY_MS: i64 = 5_000;

/// When each database last answered "full", by [`Store::identity`]. Kept per
/// database, not per pool: the disk is full for every pool on that file.
/// Writes to project rows by this process (a head, a calibration, settings),
/// so that a kept copy of a row can tell it is stale without a store read.
static PROJECT_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many writes to project rows this process has made so far.
pub fn project_writes() -> u64 {
    PROJECT_WRITES.load(std::sync::atomic::Ordering::Acquire)
}

/// Called after every attempt to write a project row, committed or not: a
/// needless bump only costs a kept row one extra read.
fn project_written() {
    PROJECT_WRITES.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

static FULL_AT: std::sync::Mutex<Vec<(String, i64)>> = std::sync::Mutex::new(Vec::new());

/// The `FULL_AT` key of a full database whose identity was not at hand.
const ANY_DATABASE: &str = "*";

fn remember_full(id: &str) {
    if let Ok(mut m) = FULL_AT.lock() {
        match m.iter_mut().find(|(k, _)| k == id) {
            Some(entry) => entry.1 = now_ms(),
            None => m.push((id.to_string(), now_ms())),
        }
    }
}

/// Placeholders for generated statements with many parameters, bound in the
/// order they are written. SQLite gets bare `?`: it resolves each `$N` name
/// by a linear search, so binding a batch write of 3,840 `$N` parameters was
/// quadratic (43% of a job's CPU in a profile). PostgreSQL gets `$N`.
pub(crate) struct Params {
    pub sql: String,
    sqlite: bool,
    n: usize,
}

impl Params {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// One placeholder.
    pub fn param(&mut self) -> &mut Self {
        use std::fmt::Write as _;
        self.n += 1;
        if self.sqlite {
            self.sql.push('?');
        } else {
            let _ = write!(self.sql, "${}", self.n);
        }
        self
    }

    /// `k` placeholders separated by commas.
    pub fn list(&mut self, k: usize) -> &mut Self {
        for i in 0..k {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.param();
        }
        self
    }
}

/// Decide whether an SQLite connection may go back to the pool: only if no
/// transaction is left open on it.
///
/// SQLite itself rolls back the whole transaction when a statement fails with
/// `SQLITE_FULL` or `SQLITE_IOERR` (without a statement journal). The
/// `ROLLBACK` that sqlx then sends for the dropped transaction fails ("no
/// transaction is active"), and sqlx keeps counting the transaction as open:
/// its next `begin` on that connection is a `SAVEPOINT`, whose rollback
/// (`ROLLBACK TO`) does not end the transaction SQLite opened for it. That
/// connection then held the write lock for good (every other connection:
/// "database is locked" until restart), and the autocommit writes run on it
/// answered Ok without ever committing. Closing such a connection instead
/// ends whatever SQLite still has open; the pool opens a fresh one.
async fn release_clean(
    conn: &mut sqlx::SqliteConnection,
) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    if conn.is_in_transaction() {
        // A dropped transaction's rollback is queued on the connection's
        // worker; one round trip lets it run before we look again.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!("closing an SQLite connection left inside a failed transaction");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Values bound per item by the record statement ([`Store::record_statement`]).
const RECORD_COLS: usize = 21;

/// Items per statement when a batch is written: SQLite takes at most 32,766
/// parameters in one statement, and the record statement binds
/// [`RECORD_COLS`] per item. A larger batch (`--claim-batch`) is written as
/// several statements in the same transaction: a batch of 2,048 once
/// failed every time and was retried forever.
const RECORD_ROWS: usize = 1_000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) const PROJECT_COLUMNS: &str =
    "id, name, model, labels, precision_target, threshold, created_at, settings, head_version, committee, calibration_version, task";

pub(crate) const ITEM_COLUMNS: &str =
    "id, project_id, client_id, kind, status, error, pred_label, pred_score, pred_scores, \
     unc_least_confidence, unc_margin, unc_entropy, unc_vote_entropy, unc_mean_kl, \
     model_version, final_label, final_source, created_at, audit, raw_score, raw_scores, calibration_version, resolution, width, height, duration, undecided, undecided_run, split, propagated_from";

/// Settings beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// SQLite only: cap the file at this many pages (`PRAGMA max_page_count`,
    /// set on every connection of the pool). A write that needs more fails
    /// exactly as on a full disk, which is how the tests fill the disk
    /// deterministically; it also works as a size quota.
    pub sqlite_max_page_count: Option<u64>,
}

impl Store {
    /// Connect and run migrations. `url` is `postgres://…`, `sqlite://PATH`, or a plain file path.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// [`Store::connect`] with [`ConnectOptions`].
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Store> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Db(format!("bad --db URL: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await?;
            Store::Postgres(pool)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            if let Some(parent) = Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Db(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
            let mut opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // Batch writes of a job touch many pages: a larger page cache
                // saves most of the pread calls, and temporary b-trees
                // (ORDER BY, subjournals) stay in memory. No memory map: in
                // WAL mode every connection unmaps its map when another one
                // changed the file, then faults the pages back in (6% of a
                // job's server CPU in `perf`, issue #29), and mapped pages
                // count towards the process's resident set. Checkpoints every
                // 10,000 WAL pages instead of 1,000: a job rewrites the same
                // index pages batch after batch, and a longer interval copies
                // each page once instead of ten times (the checkpoint was 10%
                // of the server's CPU, on the one writer's path). The WAL
                // file is cut back to 64 MiB after a checkpoint.
                .pragma("cache_size", "-32768")
                .pragma("mmap_size", "0")
                .pragma("wal_autocheckpoint", "10000")
                .pragma("journal_size_limit", "67108864")
                .pragma("temp_store", "memory");
            if let Some(pages) = options.sqlite_max_page_count {
                opts = opts.pragma("max_page_count", pages.to_string());
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .after_release(|conn, _| Box::pin(release_clean(conn)))
                .connect_with(opts)
                .await?;
            Store::Sqlite(pool)
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let res = match self {
            Store::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            Store::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        };
        res.map_err(|e| StoreError::Db(format!("migration failed: {e}")))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Store::Sqlite(_))
    }

    /// A statement builder for long, generated statements (see [`Params`]).
    pub(crate) fn params(&self, sql: &str) -> Params {
        Params {
            sql: sql.to_string(),
            sqlite: self.is_sqlite(),
            n: 0,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }

    /// Ready to take writes, for `/readyz`: a cheap round trip, and no write
    /// failed for lack of space in the last few seconds (a full store still
    /// answers reads, so `SELECT 1` alone would call it ready).
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        let id = self.identity();
        let last_full = FULL_AT.lock().map_or(None, |m| {
            m.iter()
                .filter(|(k, _)| *k == id || k == ANY_DATABASE)
                .map(|(_, t)| *t)
                .max()
        });
        match last_full {
            Some(t) if now_ms() - t < FULL_MEMORY_MS => Err(StoreError::Full(format!(
                "a write failed for lack of space {} ms ago",
                now_ms() - t
            ))),
            _ => Ok(()),
        }
    }

    /// Which database this is: the SQLite file, or PostgreSQL's host, port and database.
    fn identity(&self) -> String {
        match self {
            Store::Sqlite(p) => format!("sqlite:{}", p.connect_options().get_filename().display()),
            Store::Postgres(p) => {
                let o = p.connect_options();
                format!(
                    "postgres:{}:{}/{}",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or_default()
                )
            }
        }
    }

    /// Classify a failed call; remember when the database was last full.
    fn error(&self, e: sqlx::Error) -> StoreError {
        let err = StoreError::from(e);
        if matches!(err, StoreError::Full(_)) {
            remember_full(&self.identity());
        }
        err
    }

    // ---- projects -------------------------------------------------------

    /// Create a classification project.
    pub async fn create_project(&self, new: &NewProject) -> Result<Project> {
        self.create_project_as(new, "classify").await
    }

    /// Create a project whose model does `task` (`classify`, `detect`).
    pub async fn create_project_as(&self, new: &NewProject, task: &str) -> Result<Project> {
        use sqlx::types::Json;
        let now = now_ms();
        let row = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO projects (name, model, labels, precision_target, threshold, created_at, settings, committee, task) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(&new.name)
            .bind(&new.model)
            .bind(Json(&new.labels))
            .bind(new.precision_target)
            .bind(new.threshold)
            .bind(now)
            .bind(Json(&new.settings))
            .bind(Json(&new.committee))
            .bind(task)
            .fetch_one(p)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
        })
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a project named {:?} already exists", new.name)),
            other => other,
        })?;
        Ok(Project {
            id: row,
            name: new.name.clone(),
            model: new.model.clone(),
            labels: new.labels.clone(),
            precision_target: new.precision_target,
            threshold: new.threshold,
            created_at: now,
            settings: new.settings.clone(),
            head_version: None,
            committee: new.committee.clone(),
            calibration_version: None,
            task: task.to_string(),
            guarantee: Default::default(),
        }
        .derive())
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id");
        let projects: Vec<Project> = with_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await)?;
        Ok(projects.into_iter().map(Project::derive).collect())
    }

    pub async fn get_project(&self, id: i64) -> Result<Project> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        let project: Option<Project> = with_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        project
            .map(Project::derive)
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))
    }

    // ---- items and jobs -------------------------------------------------

    /// Insert new items (ids already present in the project are skipped) and
    /// create a pre-labeling job for the new ones, atomically.
    pub async fn ingest(&self, project_id: i64, items: &[NewItem]) -> Result<IngestResult> {
        self.ingest_in_splits(project_id, items, &[]).await
    }

    /// [`Store::ingest`], with the split of each item (`splits[i]` for
    /// `items[i]`; missing entries and `None` store no split).
    pub async fn ingest_in_splits(
        &self,
        project_id: i64,
        items: &[NewItem],
        splits: &[Option<String>],
    ) -> Result<IngestResult> {
        let now = now_ms();
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let job_id: i64 = sqlx::query(
                "INSERT INTO jobs (project_id, state, total, created_at, updated_at) VALUES ($1, 'running', 0, $2, $3) RETURNING id",
            )
            .bind(project_id)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let mut inserted = 0i64;
            for (c, chunk) in items.chunks(500).enumerate() {
                let mut sql = self.params(
                    "INSERT INTO items (project_id, client_id, kind, text, image, path, status, job_id, created_at, split) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(")
                        .list(6)
                        .push(", 'pending', ")
                        .list(3)
                        .push(")");
                }
                sql.push(" ON CONFLICT (project_id, client_id) DO NOTHING");
                let mut q = sqlx::query(&sql.sql);
                for (j, item) in chunk.iter().enumerate() {
                    let split = splits.get(c * 500 + j).and_then(Option::as_deref);
                    let (kind, text, image, path) = item.content.columns();
                    q = q
                        .bind(project_id)
                        .bind(&item.client_id)
                        .bind(kind)
                        .bind(text)
                        .bind(image)
                        .bind(path)
                        .bind(job_id)
                        .bind(now)
                        .bind(split);
                }
                inserted += q.execute(&mut *tx).await?.rows_affected() as i64;
            }
            let state = if inserted == 0 { "done" } else { "running" };
            sqlx::query("UPDATE jobs SET total = $1, state = $2, finished_at = $3 WHERE id = $4")
                .bind(inserted)
                .bind(state)
                .bind(if inserted == 0 { Some(now) } else { None })
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(IngestResult {
                job_id,
                inserted: inserted as u64,
                duplicates: items.len() as u64 - inserted as u64,
            })
        })
    }

    pub async fn get_job(&self, id: i64) -> Result<Job> {
        const SQL: &str =
            "SELECT id, project_id, state, total, done, errors, created_at, updated_at, finished_at, started_at, \
             (SELECT error FROM ls_syncs WHERE ls_syncs.job_id = jobs.id) AS error FROM jobs WHERE id = $1";
        let job: Option<Job> = with_pool!(self, |p| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        job.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
    }

    /// Lease up to `limit` pending items of the oldest running job to `worker`.
    /// Items whose lease expired (their worker died) are taken back.
    /// On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets many servers claim at once
    /// without waiting on each other or taking the same rows.
    pub async fn claim(&self, worker: &str, limit: i64, lease: Duration) -> Result<Option<Claim>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        let sql = format!(
            "UPDATE items SET lease_owner = $1, lease_until = $2 WHERE id IN (\
               SELECT id FROM items WHERE job_id = $3 AND status = 'pending' \
               AND (lease_until IS NULL OR lease_until < $4) ORDER BY id LIMIT $5{lock}) \
             RETURNING id, project_id, kind, text, image, path, \
             CASE WHEN {} OR {} THEN 1 ELSE 0 END AS off_audit",
            screening::dup_member("items"),
            screening::leaked("items"),
        );
        with_pool!(self, |p| async {
            let jobs: Vec<(i64, i64, Option<i64>)> = sqlx::query(
                "SELECT id, project_id, started_at FROM jobs WHERE state = 'running' ORDER BY id",
            )
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?;
            for (job_id, project_id, started_at) in jobs {
                let rows = sqlx::query(&sql)
                    .bind(worker)
                    .bind(until)
                    .bind(job_id)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(p)
                    .await?;
                if rows.is_empty() {
                    // Nothing to lease. If nothing of the job is pending at
                    // all, the job is over even though its counts fall
                    // short: its remaining items left `pending` by another
                    // path (annotated, say) before a worker reached them,
                    // and no `complete` will ever count them. A read first
                    // (an index probe), so that a job whose items are all
                    // leased costs no write lock; the write checks again.
                    let pending: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM items WHERE job_id = $1 AND status = 'pending' LIMIT 1",
                    )
                    .bind(job_id)
                    .fetch_optional(p)
                    .await?;
                    if pending.is_none() {
                        sqlx::query(
                            "UPDATE jobs SET state = 'done', finished_at = $1, updated_at = $1 \
                             WHERE id = $2 AND state = 'running' AND NOT EXISTS \
                             (SELECT 1 FROM items WHERE job_id = $2 AND status = 'pending')",
                        )
                        .bind(now)
                        .bind(job_id)
                        .execute(p)
                        .await?;
                    }
                    continue;
                }
                // Once per job, not once per batch: the job's row says
                // whether a worker started it already.
                if started_at.is_none() {
                    sqlx::query(
                        "UPDATE jobs SET started_at = COALESCE(started_at, $1) WHERE id = $2",
                    )
                    .bind(now)
                    .bind(job_id)
                    .execute(p)
                    .await?;
                }
                let mut items = Vec::with_capacity(rows.len());
                for r in &rows {
                    items.push(ClaimedItem {
                        id: r.try_get("id")?,
                        off_audit: r.try_get::<i32, _>("off_audit")? != 0,
                        content: Content::from_columns(
                            r.try_get("kind")?,
                            r.try_get("text")?,
                            r.try_get("image")?,
                            r.try_get("path")?,
                        ),
                    });
                }
                items.sort_by_key(|i| i.id);
                return Ok::<_, sqlx::Error>(Some(Claim {
                    job_id,
                    project_id,
                    items,
                }));
            }
            Ok(None)
        }
        .await)
    }

    /// The record statement for `rows` items: one `UPDATE … FROM (VALUES …)`
    /// binding [`RECORD_COLS`] values per item, then the worker and the job.
    fn record_statement(&self, rows: usize) -> String {
        // An item once drawn into the audit sample stays in it (a re-run
        // after a head retrain must not undo the draw), and waits for a human.
        let mut update = self.params(
            "UPDATE items SET status = CASE WHEN items.audit = 1 THEN 'needs_review' ELSE v.column2 END, \
             pred_label = v.column3, pred_score = v.column4, \
             pred_scores = v.column5, model_version = v.column6, \
             final_label = CASE WHEN items.audit = 1 THEN NULL ELSE v.column7 END, \
             final_source = CASE WHEN items.audit = 1 THEN NULL ELSE v.column8 END, unc_least_confidence = v.column9, \
             unc_margin = v.column10, unc_entropy = v.column11, embedding = COALESCE(v.column12, items.embedding), \
             unc_vote_entropy = v.column13, unc_mean_kl = v.column14, \
             raw_score = v.column15, raw_scores = v.column16, \
             audit = CASE WHEN items.audit = 1 THEN 1 ELSE v.column17 END, \
             audit_p = COALESCE(items.audit_p, v.column18), calibration_version = v.column19, \
             width = COALESCE(v.column20, items.width), height = COALESCE(v.column21, items.height), \
             lease_owner = NULL, lease_until = NULL, error = NULL FROM (VALUES ",
        );
        for i in 0..rows {
            if i > 0 {
                update.push(", ");
            }
            update.push("(").list(RECORD_COLS).push(")");
        }
        // The worker and the job are bound last: placeholders are bound in
        // written order. The job matters as much as the lease: a batch that
        // outlived its lease may find its items re-queued by a later job
        // (a re-predict after training) and leased again under this
        // process's worker id; it must not write them, nor count them for
        // its own job, which left the later job waiting forever.
        //
        // `+items.job_id` keeps SQLite from using the job's index to drive
        // the update: with `items.job_id = ?` it walked every pending item
        // of the job (up to the job's size) and, for each, scanned the
        // VALUES list, per batch (issue #29). The unary plus changes no
        // value in either dialect; the primary key is the only way in.
        update
            .push(") AS v WHERE items.id = v.column1 AND items.lease_owner = ")
            .param()
            .push(" AND +items.job_id = ")
            .param()
            .push(" AND items.status = 'pending' RETURNING items.id");
        update.sql
    }

    /// Record the outcome of a claimed batch in one transaction. Each item is
    /// written only if `worker` still holds its lease and it is still pending,
    /// so an item whose lease expired and moved to another worker is never
    /// labeled twice. Each [`RECORD_ROWS`] items are one `UPDATE … FROM
    /// (VALUES …)` and one multi-row insert, not a round trip per item.
    /// Returns how many items this call recorded.
    pub async fn complete(
        &self,
        worker: &str,
        job_id: i64,
        outcomes: &[(i64, Outcome)],
    ) -> Result<u64> {
        let now = now_ms();
        let predicted: Vec<(i64, &StoredPrediction)> = outcomes
            .iter()
            .filter_map(|(id, o)| match o {
                Outcome::Predicted(p) => Some((*id, p)),
                Outcome::Failed(_) => None,
            })
            .collect();
        let failed: Vec<(i64, &str)> = outcomes
            .iter()
            .filter_map(|(id, o)| match o {
                Outcome::Failed(m) => Some((*id, m.as_str())),
                Outcome::Predicted(_) => None,
            })
            .collect();
        let embeddings: Vec<Option<Vec<u8>>> = predicted
            .iter()
            .map(|(_, p)| p.embedding.as_deref().map(embedding_bytes))
            .collect();
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut done = 0i64;
            if !predicted.is_empty() {
                let mut recorded: Vec<i64> = Vec::with_capacity(predicted.len());
                for (chunk, embs) in predicted
                    .chunks(RECORD_ROWS)
                    .zip(embeddings.chunks(RECORD_ROWS))
                {
                    let sql = self.record_statement(chunk.len());
                    let mut q = sqlx::query(&sql);
                    for ((id, pred), emb) in chunk.iter().zip(embs) {
                        let status = if pred.auto_accept && !pred.audit {
                            "auto_accepted"
                        } else {
                            "needs_review"
                        };
                        let (final_label, final_source) =
                            match (&pred.label, pred.auto_accept && !pred.audit) {
                                (Some(label), true) => (Some(label.as_str()), Some("machine")),
                                _ => (None, None),
                            };
                        q = q
                            .bind(*id)
                            .bind(status)
                            .bind(pred.label.as_deref())
                            .bind(pred.score)
                            .bind(pred.scores_json.as_deref())
                            .bind(&pred.model_version)
                            .bind(final_label)
                            .bind(final_source)
                            .bind(pred.uncertainty.map(|u| f64::from(u.least_confidence)))
                            .bind(pred.uncertainty.map(|u| f64::from(u.margin)))
                            .bind(pred.uncertainty.map(|u| f64::from(u.entropy)))
                            .bind(emb.as_deref())
                            .bind(pred.disagreement.map(|d| f64::from(d.vote_entropy)))
                            .bind(pred.disagreement.map(|d| f64::from(d.mean_kl)))
                            .bind(pred.raw_score)
                            .bind(pred.raw_scores_json.as_deref())
                            .bind(i64::from(pred.audit))
                            .bind(pred.audit.then_some(pred.audit_p).flatten())
                            .bind(pred.calibration_version)
                            .bind(pred.regions.as_ref().map(|r| i64::from(r.width)))
                            .bind(pred.regions.as_ref().map(|r| i64::from(r.height)));
                    }
                    q = q.bind(worker).bind(job_id);
                    for r in q.fetch_all(&mut *tx).await? {
                        recorded.push(r.try_get::<i64, _>(0)?);
                    }
                }
                recorded.sort_unstable();
                let rows: Vec<&(i64, &StoredPrediction)> = predicted
                    .iter()
                    .filter(|(id, _)| recorded.binary_search(id).is_ok())
                    .collect();
                for chunk in rows.chunks(RECORD_ROWS) {
                    let mut insert = self.params(
                        "INSERT INTO predictions (item_id, model_version, label, score, worker, created_at) VALUES ",
                    );
                    for i in 0..chunk.len() {
                        if i > 0 {
                            insert.push(", ");
                        }
                        insert.push("(").list(6).push(")");
                    }
                    let mut q = sqlx::query(&insert.sql);
                    for (id, pred) in chunk {
                        q = q
                            .bind(*id)
                            .bind(&pred.model_version)
                            .bind(pred.label.as_deref().unwrap_or(""))
                            .bind(pred.score.unwrap_or(0.0))
                            .bind(worker)
                            .bind(now);
                    }
                    q.execute(&mut *tx).await?;
                }
                // A detection's boxes, for the recorded items only.
                let detected: Vec<(i64, &MachineRegions, &str, Option<i64>)> = rows
                    .iter()
                    .filter_map(|(id, pred)| {
                        pred.regions.as_deref().map(|r| {
                            (
                                *id,
                                r,
                                pred.model_version.as_str(),
                                pred.calibration_version,
                            )
                        })
                    })
                    .collect();
                // A recording's segments, for the recorded items only.
                let segmented: Vec<(i64, &MachineSegments, &str, Option<i64>)> = rows
                    .iter()
                    .filter_map(|(id, pred)| {
                        pred.segments.as_deref().map(|r| {
                            (
                                *id,
                                r,
                                pred.model_version.as_str(),
                                pred.calibration_version,
                            )
                        })
                    })
                    .collect();
                // A re-queued item's set of this model version is replaced.
                let replaced = detected
                    .iter()
                    .map(|(id, _, v, _)| (*id, *v))
                    .chain(segmented.iter().map(|(id, _, v, _)| (*id, *v)));
                for (sql, version, ids) in regions::machine_region_replaces(self, replaced) {
                    let mut q = sqlx::query(&sql).bind(version);
                    for id in ids {
                        q = q.bind(id);
                    }
                    q.execute(&mut *tx).await?;
                }
                let inserts = regions::machine_region_inserts(
                    self,
                    regions::machine_inserts(&detected, &segmented),
                );
                if !inserts.is_empty() {
                    let project_id: i64 =
                        sqlx::query_scalar("SELECT project_id FROM jobs WHERE id = $1")
                            .bind(job_id)
                            .fetch_one(&mut *tx)
                            .await?;
                    for (sql, regions) in &inserts {
                        let mut q = sqlx::query(sql);
                        for r in regions {
                            let [x0, y0, x1, y1] = r.geometry;
                            q = q
                                .bind(r.item_id)
                                .bind(project_id)
                                .bind(r.kind)
                                .bind(x0)
                                .bind(y0)
                                .bind(x1)
                                .bind(y1)
                                .bind(r.label)
                                .bind(r.score)
                                .bind(r.uncertainty)
                                .bind(if r.accepted { "accepted" } else { "review" })
                                .bind(r.model_version)
                                .bind(r.calibration_version)
                                .bind(job_id)
                                .bind(now)
                                .bind(now)
                                .bind(r.text)
                                .bind(r.char_scores.as_deref());
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                for chunk in segmented.chunks(RECORD_ROWS) {
                    let sql = regions::recording_update(self, chunk.len());
                    let mut q = sqlx::query(&sql);
                    for (id, r, _, _) in chunk {
                        q = q
                            .bind(*id)
                            .bind(r.duration)
                            .bind(r.undecided)
                            .bind(r.undecided_run);
                    }
                    q.execute(&mut *tx).await?;
                }
                done = rows.len() as i64;
            }
            let mut errors = 0i64;
            // Failures in one statement per RECORD_ROWS, as the predictions.
            for chunk in failed.chunks(RECORD_ROWS) {
                let mut sql = self.params(
                    "UPDATE items SET status = 'failed', error = v.column2, lease_owner = NULL, lease_until = NULL \
                     FROM (VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(").list(2).push(")");
                }
                sql.push(") AS v WHERE items.id = v.column1 AND items.lease_owner = ")
                    .param()
                    .push(" AND +items.job_id = ")
                    .param()
                    .push(" AND items.status = 'pending'");
                let mut q = sqlx::query(&sql.sql);
                for (item_id, message) in chunk {
                    q = q.bind(*item_id).bind(*message);
                }
                errors += q
                    .bind(worker)
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
            }
            sqlx::query(
                "UPDATE jobs SET done = done + $1, errors = errors + $2, updated_at = $3, \
                 state = CASE WHEN done + $1 + errors + $2 >= total THEN 'done' ELSE state END, \
                 finished_at = CASE WHEN done + $1 + errors + $2 >= total THEN $3 ELSE finished_at END \
                 WHERE id = $4",
            )
            .bind(done)
            .bind(errors)
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>((done + errors) as u64)
        })
    }

    /// Give back leases held by `worker` (or by anyone, with `None`): used on
    /// graceful shutdown, and on start-up for SQLite, where one process owns the file.
    pub async fn release_leases(&self, worker: Option<&str>) -> Result<u64> {
        let n = with_pool!(self, |p| {
            match worker {
                Some(w) => sqlx::query(
                    "UPDATE items SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND status = 'pending'",
                )
                .bind(w)
                .execute(p)
                .await,
                None => sqlx::query(
                    "UPDATE items SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL AND status = 'pending'",
                )
                .execute(p)
                .await,
            }
            .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    /// Keyset paging: items after `cursor` (an item id), oldest first.
    pub async fn list_items(
        &self,
        project_id: i64,
        status: Option<Status>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ItemRecord>> {
        let filter = if status.is_some() {
            " AND status = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE project_id = $1 AND id > $2{filter} ORDER BY id LIMIT {}",
            limit.clamp(1, 1000)
        );
        let mut items = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(project_id).bind(cursor.unwrap_or(0));
            if let Some(s) = status {
                q = q.bind(s.as_str());
            }
            let rows = q.fetch_all(p).await?;
            rows.iter()
                .map(ItemRecord::from_row)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        self.attach_annotations(&mut items).await?;
        Ok(items)
    }

    pub async fn get_item(&self, id: i64) -> Result<ItemRecord> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1");
        let item = with_pool!(self, |p| {
            match sqlx::query(&sql).bind(id).fetch_optional(p).await? {
                Some(r) => ItemRecord::from_row(&r).map(Some),
                None => Ok(None),
            }
        })?;
        let mut items: Vec<ItemRecord> = item.into_iter().collect();
        if items.is_empty() {
            return Err(StoreError::NotFound(format!("item {id}")));
        }
        self.attach_annotations(&mut items).await?;
        Ok(items.remove(0))
    }

    /// Attach annotations to `items` (sorted by id) with one `IN` query, so
    /// ids spread over the table never scan the annotations between them.
    pub(crate) async fn attach_annotations(&self, items: &mut [ItemRecord]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut sql = self.params(
            "SELECT id, item_id, label, annotator, created_at FROM annotations WHERE item_id IN (",
        );
        sql.list(items.len()).push(") ORDER BY id");
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        #[derive(sqlx::FromRow)]
        struct Row {
            item_id: i64,
            #[sqlx(flatten)]
            annotation: Annotation,
        }
        let rows: Vec<Row> = with_pool!(self, |p| {
            let mut q = sqlx::query_as(&sql.sql);
            for id in &ids {
                q = q.bind(*id);
            }
            q.fetch_all(p).await
        })?;
        for Row {
            item_id,
            annotation,
        } in rows
        {
            if let Ok(i) = items.binary_search_by_key(&item_id, |it| it.id) {
                items[i].annotations.push(annotation);
            }
        }
        Ok(())
    }

    /// Store a human label; it becomes the item's final label. Returns the
    /// annotation's id.
    pub async fn annotate(&self, item_id: i64, label: &str, annotator: &str) -> Result<i64> {
        self.record_annotation(item_id, label, annotator, true)
            .await
    }

    /// Insert the annotation and update the item in one transaction: final
    /// (`labeled`, provenance `human`) or awaiting a top-tier confirmation.
    /// Either way the item's review lease ends.
    pub(crate) async fn record_annotation(
        &self,
        item_id: i64,
        label: &str,
        annotator: &str,
        is_final: bool,
    ) -> Result<i64> {
        let now = now_ms();
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar("INSERT INTO annotations (item_id, label, annotator, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(item_id)
                .bind(label)
                .bind(annotator)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let update = if is_final {
                sqlx::query(
                    "UPDATE items SET status = 'labeled', final_label = $1, final_source = 'human', \
                     lease_owner = NULL, lease_until = NULL, review_owner = NULL, review_until = NULL WHERE id = $2",
                )
                .bind(label)
                .bind(item_id)
            } else {
                sqlx::query(
                    "UPDATE items SET status = 'needs_confirmation', review_owner = NULL, review_until = NULL WHERE id = $1",
                )
                .bind(item_id)
            };
            update.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(id)
        })
    }

    // ---- tokens ---------------------------------------------------------

    pub async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query("INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(role)
                .bind(hash)
                .bind(now_ms())
                .execute(p)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// The role of the token with this hash, if any.
    pub async fn token_role(&self, hash: &str) -> Result<Option<String>> {
        Ok(self.token_identity(hash).await?.map(|(_, role)| role))
    }

    /// The name and role of the token with this hash, if any. The name is
    /// who the caller is: annotations and leases are recorded under it.
    pub async fn token_identity(&self, hash: &str) -> Result<Option<(String, String)>> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT name, role FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(p)
                .await?
                .map(|r| {
                    Ok::<_, sqlx::Error>((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?))
                })
                .transpose()
        })?;
        Ok(row)
    }

    /// Counts for tests and metrics: how many prediction rows each item has.
    pub async fn prediction_counts(&self, project_id: i64) -> Result<Vec<(i64, i64)>> {
        const SQL: &str =
            "SELECT i.id, COUNT(pr.id) FROM items i LEFT JOIN predictions pr ON pr.item_id = i.id \
                           WHERE i.project_id = $1 GROUP BY i.id ORDER BY i.id";
        let rows = with_pool!(self, |p| {
            let rows = sqlx::query(SQL).bind(project_id).fetch_all(p).await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(rows)
    }
}

/// Embeddings are stored as little-endian f32 bytes.
pub fn embedding_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_embedding(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

mod review;
pub use review::{valid_probability, Candidate, DrawCandidate, Measure, ReviewDraw, ReviewFilter};

mod annotations;
pub use annotations::AnnotationRef;

mod calibration;
pub use calibration::{
    AnnotationRow, AuditCounts, CalibrationRow, LabeledRow, MachineRow, Reroute, StatusCounts,
};

mod exclusive;
pub use exclusive::{Opened, Orphan};

mod labelstudio;
pub use labelstudio::{ls_client_id, LsAnnotation, LsConnection, LsSync};

mod ls_door;
pub use ls_door::{OutboxEvent, OutboxPut};

mod regions;
pub use regions::{HumanRegion, RegionItem, RegionReview};

mod box_calibration;
pub use box_calibration::BoxCoverage;

mod screening;
pub use screening::{IssueRow, KindFilter, NewIssue, Propagated, ScreenRow, ScreenRun};

mod verdicts;
pub use verdicts::{ScreenIssue, VerdictRow, VERDICT_KINDS};

mod export;
pub use export::{Exclude, REJECTED};
