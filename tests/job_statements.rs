//! The pre-labeling job path, guarded by what it asks of the database rather
//! than by a clock (issue #29): a batch of N items must issue the same SQL
//! statements whatever N is, and none of them may scan the items table.
//!
//! Statements are counted from sqlx's own statement log (the `sqlx::query`
//! tracing target, one event per statement executed), through a global
//! subscriber: SQLite statements run on sqlx's worker threads, so a
//! thread-local one would miss them. The tests of this binary take turns
//! (one lock), so each counts only its own statements.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::server::TestDb;
use labelloop::model::batcher::BatcherConfig;
use labelloop::service::hub::ModelHub;
use labelloop::service::metrics::Metrics;
use labelloop::service::worker::{self, WorkerContext};
use labelloop::store::{Content, NewItem, NewProject, ProjectSettings, Store};
use tracing_subscriber::layer::SubscriberExt;

/// Every statement sqlx ran since the last [`take`], as its SQL text.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Statements;

#[derive(Default)]
struct Sql(String, String);

impl tracing::field::Visit for Sql {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.0 = value.to_string(),
            "db.statement" => self.1 = value.trim().to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Strings reach here only if a tracing version records them as Debug.
        let text = || {
            format!("{value:?}")
                .trim_matches('"')
                .replace("\\n", " ")
                .replace("\\\"", "\"")
                .trim()
                .to_string()
        };
        match field.name() {
            "summary" if self.0.is_empty() => self.0 = text(),
            "db.statement" if self.1.is_empty() => self.1 = text(),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            let mut sql = Sql::default();
            event.record(&mut sql);
            // Short statements carry their text in the summary alone.
            let text = if sql.1.is_empty() { sql.0 } else { sql.1 };
            LOG.lock().unwrap_or_else(|e| e.into_inner()).push(text);
        }
    }
}

/// Install the counting subscriber once; returns the lock the tests take turns with.
fn counting() -> &'static tokio::sync::Mutex<()> {
    static TURN: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    TURN.get_or_init(|| {
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry().with(Statements.with_filter(filter));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        tokio::sync::Mutex::new(())
    })
}

use tracing_subscriber::Layer as _;

/// The statements logged since the last call, without connection set-up
/// (`PRAGMA`s, when the pool opens a connection) and transaction control
/// (PostgreSQL logs `COMMIT`, SQLite does not): what the batch asked for.
fn take() -> Vec<String> {
    let all = std::mem::take(&mut *LOG.lock().unwrap_or_else(|e| e.into_inner()));
    all.into_iter()
        .filter(|sql| {
            let first = sql.split_whitespace().next().unwrap_or("");
            ![
                "PRAGMA",
                "BEGIN",
                "COMMIT",
                "ROLLBACK",
                "SAVEPOINT",
                "RELEASE",
            ]
            .iter()
            .any(|k| first.eq_ignore_ascii_case(k))
        })
        .collect()
}

fn worker_context(store: Store, claim_batch: i64) -> WorkerContext {
    let mut hub = ModelHub::default();
    hub.insert(
        common::shared("fashion-mnist-cnn"),
        BatcherConfig {
            max_batch: 64,
            max_wait: Duration::from_millis(1),
            queue_capacity: 4096,
            concurrency: 1,
        },
    );
    WorkerContext {
        store,
        hub: Arc::new(hub),
        metrics: Arc::new(Metrics::default()),
        wake: Default::default(),
        worker_id: "count-worker".into(),
        claim_batch,
        lease: Duration::from_secs(600),
        poll: Duration::from_millis(20),
        data_root: Some(
            common::root()
                .join("data/fashion-mnist")
                .canonicalize()
                .unwrap(),
        ),
        classifiers: Default::default(),
    }
}

/// `n` items, one in eight of them not an image (so the batch records
/// failures as well as predictions), half the rest by path.
fn items(n: usize) -> Vec<NewItem> {
    let root = common::root()
        .join("data/fashion-mnist")
        .canonicalize()
        .unwrap();
    common::fashion_mnist_test()[..n]
        .iter()
        .enumerate()
        .map(|(i, (id, path, _))| NewItem {
            client_id: id.clone(),
            content: if i % 8 == 7 {
                Content::Image(b"not a png".to_vec())
            } else if i % 2 == 0 {
                Content::Path(
                    root.join(
                        path.strip_prefix(common::root().join("data/fashion-mnist"))
                            .unwrap(),
                    )
                    .to_string_lossy()
                    .into_owned(),
                )
            } else {
                Content::Image(std::fs::read(path).unwrap())
            },
        })
        .collect()
}

/// The statements one worker step issues for a whole batch of `n` items, on
/// a project that draws an audit sample with a per-class minimum (the
/// per-batch audit counts run too).
async fn statements_for_batch(db: &TestDb, n: usize) -> Vec<String> {
    let store = Store::connect(&db.url).await.unwrap();
    let model = common::shared("fashion-mnist-cnn");
    let project = store
        .create_project(&NewProject {
            name: format!("count-{n}"),
            model: "fashion-mnist-cnn".into(),
            labels: model.labels().to_vec(),
            precision_target: 0.95,
            threshold: Some(0.9),
            settings: ProjectSettings {
                audit_min: Some(3),
                ..Default::default()
            },
            committee: Vec::new(),
        })
        .await
        .unwrap()
        .id;
    let job = store.ingest(project, &items(n)).await.unwrap().job_id;
    let ctx = worker_context(store.clone(), n as i64);
    take();
    let handled = worker::step(&ctx).await.unwrap();
    let statements = take();
    assert_eq!(handled, n, "one step takes the whole batch");
    let job = store.get_job(job).await.unwrap();
    assert_eq!(job.done + job.errors, n as i64, "{job:?}");
    assert_eq!(job.errors, (n / 8) as i64, "{job:?}");
    assert_eq!(job.state, "done", "{job:?}");
    store.close().await;
    statements
}

fn summary(statements: &[String]) -> String {
    statements
        .iter()
        .map(|s| {
            format!(
                "  {}",
                s.split_whitespace().take(8).collect::<Vec<_>>().join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn same_statements_for_8_and_64(db8: TestDb, db64: TestDb) {
    let _turn = counting().lock().await;
    let small = statements_for_batch(&db8, 8).await;
    let large = statements_for_batch(&db64, 64).await;
    assert_eq!(
        small.len(),
        large.len(),
        "a batch of 64 items issued {} statements, a batch of 8 issued {}: the job path does \
         per-item work in the database\n8:\n{}\n64:\n{}",
        large.len(),
        small.len(),
        summary(&small),
        summary(&large)
    );
    // Claim, project, audit counts, record (update, audit-trail insert, failures, job).
    assert!(
        large.len() <= 9,
        "{} statements for one batch:\n{}",
        large.len(),
        summary(&large)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_issues_the_same_statements_for_8_and_64_items_sqlite() {
    same_statements_for_8_and_64(TestDb::sqlite(), TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_issues_the_same_statements_for_8_and_64_items_postgres() {
    let (Some(a), Some(b)) = (TestDb::postgres().await, TestDb::postgres().await) else {
        return;
    };
    same_statements_for_8_and_64(a, b).await;
}

/// Every statement of a batch reaches its rows through an index: no table
/// is scanned, and a statement given the batch as a VALUES list walks that
/// list once, as its outer loop, finding each item by its primary key.
/// (The regression of issue #29: with a job guard on the record statement,
/// SQLite walked every pending item of the job through `items_by_job` and
/// scanned the batch's VALUES list for each: per batch, the job's size
/// times the batch's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_of_a_batch_scans_a_table_sqlite() {
    let turn = counting().lock().await;
    let db = TestDb::sqlite();
    let statements = statements_for_batch(&db, 64).await;
    drop(turn);
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut bad = Vec::new();
    for sql in &statements {
        let plan = explain(&pool, sql).await;
        let loops: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN ") || l.starts_with("SEARCH "))
            .collect();
        for (i, line) in loops.iter().enumerate() {
            let values = line.contains("VALUES") || line.starts_with("SCAN v");
            // "SCAN items", "SCAN items USING [COVERING] INDEX …": a walk of
            // a whole table or index. ("SCAN c0" walks a subquery's few rows.)
            let table_scan = line
                .strip_prefix("SCAN ")
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|name| tables.iter().any(|t| t == name));
            if table_scan || (values && i > 0) {
                bad.push(format!(
                    "{}\n    in: {}",
                    plan.join(" / "),
                    first_words(sql, 16)
                ));
                break;
            }
        }
    }
    pool.close().await;
    assert!(
        bad.is_empty(),
        "statements of a batch that scan:\n{}",
        bad.join("\n")
    );
}

fn first_words(sql: &str, n: usize) -> String {
    sql.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// SQLite's plan for `sql`, parameters bound to NULL (the plan does not
/// depend on their values: SQLite plans before it binds).
async fn explain(pool: &sqlx::SqlitePool, sql: &str) -> Vec<String> {
    use sqlx::Row as _;
    let params = count_params(sql);
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query(&explain);
    for _ in 0..params {
        q = q.bind(Option::<i64>::None);
    }
    match q.fetch_all(pool).await {
        Ok(rows) => rows
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap_or_default())
            .collect(),
        Err(e) => panic!("EXPLAIN QUERY PLAN failed ({e}) for: {sql}"),
    }
}

/// Placeholders in a statement: bare `?` (generated batch statements) or `$N`.
fn count_params(sql: &str) -> usize {
    let bare = sql.matches('?').count();
    let numbered = sql
        .split('$')
        .skip(1)
        .filter_map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    bare + numbered
}

/// The detection path (issue 22): a batch of page images records each
/// page's boxes as regions in its transaction, and still issues the same
/// statements whatever the batch's size.
async fn detection_statements_for_batch(db: &TestDb, n: usize) -> Vec<String> {
    let store = Store::connect(&db.url).await.unwrap();
    let model = common::shared("layout");
    let project = store
        .create_project_as(
            &NewProject {
                name: format!("pages-{n}"),
                model: "layout".into(),
                labels: model.labels().to_vec(),
                precision_target: 0.95,
                threshold: Some(0.9),
                settings: ProjectSettings::default(),
                committee: Vec::new(),
            },
            "detect",
        )
        .await
        .unwrap()
        .id;
    let dir = common::root().join("tests/fixtures/documents");
    let items: Vec<NewItem> = (0..n)
        .map(|i| NewItem {
            client_id: format!("page-{i}"),
            content: Content::Image(
                std::fs::read(dir.join(format!("page-{}.png", i % 3 + 1))).unwrap(),
            ),
        })
        .collect();
    let job = store.ingest(project, &items).await.unwrap().job_id;
    let mut ctx = worker_context(store.clone(), n as i64);
    let mut hub = ModelHub::default();
    hub.insert(
        model,
        BatcherConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(1),
            queue_capacity: 64,
            concurrency: 1,
        },
    );
    ctx.hub = Arc::new(hub);
    take();
    let handled = worker::step(&ctx).await.unwrap();
    let statements = take();
    assert_eq!(handled, n, "one step takes the whole batch");
    let job = store.get_job(job).await.unwrap();
    assert_eq!(
        (job.done, job.state.as_str()),
        (n as i64, "done"),
        "{job:?}"
    );
    let counts = store.region_counts(project).await.unwrap();
    assert_eq!(counts.len(), n, "every page has boxes: {counts:?}");
    store.close().await;
    statements
}

async fn detection_same_statements(db_small: TestDb, db_large: TestDb) {
    let _turn = counting().lock().await;
    let small = detection_statements_for_batch(&db_small, 2).await;
    let large = detection_statements_for_batch(&db_large, 5).await;
    assert_eq!(
        small.len(),
        large.len(),
        "detection: a batch of 5 pages issued {} statements, a batch of 2 issued {}\n2:\n{}\n5:\n{}",
        large.len(),
        small.len(),
        summary(&small),
        summary(&large)
    );
    // Claim, project, calibration, record (update, audit trail, job's project, regions, job).
    assert!(
        large.len() <= 10,
        "{} statements for one batch:\n{}",
        large.len(),
        summary(&large)
    );
    assert!(
        large.iter().any(|s| s.starts_with("INSERT INTO regions")),
        "{}",
        summary(&large)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_batch_issues_the_same_statements_for_2_and_5_pages_sqlite() {
    detection_same_statements(TestDb::sqlite(), TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_batch_issues_the_same_statements_for_2_and_5_pages_postgres() {
    let (Some(a), Some(b)) = (TestDb::postgres().await, TestDb::postgres().await) else {
        return;
    };
    detection_same_statements(a, b).await;
}

/// The statements of a detection batch reach their rows through an index
/// too (the regions insert, the job's project by primary key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_of_a_detection_batch_scans_a_table_sqlite() {
    let turn = counting().lock().await;
    let db = TestDb::sqlite();
    let statements = detection_statements_for_batch(&db, 3).await;
    drop(turn);
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut bad = Vec::new();
    for sql in &statements {
        let plan = explain(&pool, sql).await;
        let loops: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN ") || l.starts_with("SEARCH "))
            .collect();
        for (i, line) in loops.iter().enumerate() {
            let values = line.contains("VALUES") || line.starts_with("SCAN v");
            let table_scan = line
                .strip_prefix("SCAN ")
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|name| tables.iter().any(|t| t == name));
            if table_scan || (values && i > 0) {
                bad.push(format!(
                    "{}\n    in: {}",
                    plan.join(" / "),
                    first_words(sql, 16)
                ));
                break;
            }
        }
    }
    pool.close().await;
    assert!(
        bad.is_empty(),
        "statements of a detection batch that scan:\n{}",
        bad.join("\n")
    );
}
