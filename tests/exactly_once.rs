//! Exactly-once calibration, training and Label Studio sync (issue 28,
//! M5–M8), through the real server on SQLite and PostgreSQL:
//! - M5: 100 concurrent `POST /calibrate` join one job; no job fails, one
//!   version per job, no two fits at once, every item under the version in force;
//! - M6: the process dies (abort, as `kill -9`) in the middle of a
//!   calibration's re-routing: the previous version stays in force with no
//!   item under the new one; the next start resumes the job to the end;
//! - M7: a sync killed (`kill -9`) between posting a chunk to Label Studio and
//!   recording it, then restarted, leaves every task exactly one prediction,
//!   whether the chunk reached Label Studio or not; three syncs of one Label
//!   Studio project started together are one;
//! - M8: 100 concurrent `START_TRAINING` webhooks and 10 `POST /train` train
//!   one head and queue one re-predict job; the webhooks answer at once.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::server::{fashion_items, Server, TestDb};
use serde_json::{json, Value};

const TOKEN: &str = "LEGACY_TOKEN";

/// One number from the test's database, read directly (not through the server).
async fn scalar(db: &TestDb, sql: &str) -> i64 {
    if db.kind == "postgres" {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let v: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    }
}

async fn project(s: &Server, settings: Value) -> i64 {
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "once", "model": "fashion-mnist-cnn", "precision_target": 0.9,
                    "threshold": 0.5, "settings": settings}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_i64().unwrap()
}

async fn ingest(s: &Server, project: i64, n: usize) {
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!(fashion_items(n)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
}

/// Answer every waiting audit item with its true label.
async fn answer_audits(s: &Server, project: i64) {
    let truth: HashMap<String, String> = common::fashion_mnist_test()
        .into_iter()
        .map(|(id, _, l)| (id, l))
        .collect();
    loop {
        let (code, page) = s
            .get(&format!(
                "/v1/projects/{project}/review?strategy=audit&limit=200&annotator=auditor"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        let page = page["items"].as_array().unwrap().clone();
        if page.is_empty() {
            return;
        }
        for item in page {
            let label = &truth[item["client_id"].as_str().unwrap()];
            let (code, body) = s
                .post(
                    &format!("/v1/items/{}/annotations", item["id"]),
                    &json!({"label": label, "annotator": "auditor"}),
                )
                .await;
            assert_eq!(code, 201, "{body}");
        }
    }
}

/// Poll a job until it ends; its final view.
async fn job_end(s: &Server, job: i64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, j) = s.get(&format!("/v1/jobs/{job}")).await;
        assert_eq!(code, 200, "{j}");
        if j["finished_at"].is_i64() {
            return j;
        }
        assert!(Instant::now() < deadline, "job {job} did not end: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A project of `n` pre-labeled Fashion-MNIST images with its audit labels given.
async fn audited_project(s: &Server, n: usize) -> i64 {
    let p = project(
        s,
        json!({"audit_rate": 0.3, "delta": 0.1, "calibrate_every": 0}),
    )
    .await;
    ingest(s, p, n).await;
    answer_audits(s, p).await;
    p
}

// ---- M5 ------------------------------------------------------------------

/// With `replicas` servers on one database, the requests spread over them.
async fn concurrent_calibrations_are_one(db: TestDb, replicas: usize) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let others: Vec<Server> = (1..replicas)
        .map(|_| Server::start(&db.url, &["--no-auth"]))
        .collect();
    let servers: Vec<&Server> = std::iter::once(&s).chain(&others).collect();
    let p = audited_project(&s, 600).await;
    let path = format!("/v1/projects/{p}/calibrate");
    let empty = json!({});
    let answers = futures_util::future::join_all(
        (0..100).map(|i| servers[i % servers.len()].post(&path, &empty)),
    )
    .await;
    let mut ids = HashSet::new();
    for (code, job) in &answers {
        assert_eq!(*code, 202, "{job}");
        ids.insert(job["id"].as_i64().unwrap());
    }
    for &id in &ids {
        let j = job_end(&s, id, Duration::from_secs(120)).await;
        assert_eq!(j["state"], "done", "a calibration job failed: {j}");
    }
    // 100 requests at once join the open job (a request after it ended opens
    // the next one): far fewer jobs than requests. (Their timestamps cannot
    // show that no two were open together: a request reads the clock before
    // it waits for a connection. The unique index is what forbids it; with
    // two fits at once the old code failed jobs and stored extra versions.)
    eprintln!(
        "{}: {} calibration job(s) for 100 requests on {} replica(s)",
        db.kind,
        ids.len(),
        servers.len()
    );
    assert!(
        ids.len() <= 5,
        "{} calibration jobs for 100 requests",
        ids.len()
    );
    let (_, c) = s.get(&format!("/v1/projects/{p}/calibration")).await;
    let versions = c["history"].as_array().unwrap().len();
    assert_eq!(versions, ids.len(), "one version per job: {c}");
    let current = c["version"].as_i64().unwrap();
    // Every machine-decided item is under the version in force.
    let stale = scalar(
        &db,
        &format!(
            "SELECT COUNT(*) FROM items WHERE project_id = {p} \
             AND status IN ('auto_accepted', 'needs_review') \
             AND (calibration_version IS NULL OR calibration_version <> {current})"
        ),
    )
    .await;
    assert_eq!(stale, 0, "items under another version than {current}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calibrations_are_one_sqlite() {
    concurrent_calibrations_are_one(TestDb::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calibrations_are_one_postgres() {
    if let Some(db) = TestDb::postgres().await {
        // Two replicas: the database decides, not a process.
        concurrent_calibrations_are_one(db, 2).await;
    }
}

// ---- M6 ------------------------------------------------------------------

/// The crash is real: `LABELLOOP_FAILPOINT=calibration-reroute` makes the
/// server abort (no unwinding, no commit) right after the first chunk of
/// re-routed items is written inside the calibration's transaction, with
/// more chunks to go. What it proves: a version takes force only with its
/// re-routing complete, and the job left open is resumed at the next start.
async fn calibration_crash_midway(db: TestDb) {
    let mut s = Server::start(&db.url, &["--no-auth"]);
    let p = audited_project(&s, 1500).await;
    let (code, job) = s
        .post(&format!("/v1/projects/{p}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    let first = job_end(&s, job["id"].as_i64().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(first["state"], "done", "{first}");
    s.terminate();
    let machine = scalar(
        &db,
        &format!(
            "SELECT COUNT(*) FROM items WHERE project_id = {p} \
             AND status IN ('auto_accepted', 'needs_review') AND pred_label IS NOT NULL"
        ),
    )
    .await;
    assert!(machine > 500, "{machine} machine items: one chunk only");

    // Version 2 dies midway.
    let mut s = Server::start_env(
        &db.url,
        &["--no-auth"],
        &[("LABELLOOP_FAILPOINT", "calibration-reroute")],
    );
    let (code, job) = s
        .post(&format!("/v1/projects/{p}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    let job = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the failpoint was never reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status}");
    let q = |sql: String| {
        let db = &db;
        async move { scalar(db, &sql).await }
    };
    assert_eq!(
        q(format!(
            "SELECT calibration_version FROM projects WHERE id = {p}"
        ))
        .await,
        1,
        "the interrupted version took force"
    );
    assert_eq!(
        q(format!(
            "SELECT COUNT(*) FROM calibrations WHERE project_id = {p}"
        ))
        .await,
        1
    );
    assert_eq!(
        q(format!(
            "SELECT COUNT(*) FROM items WHERE project_id = {p} AND calibration_version = 2"
        ))
        .await,
        0,
        "items re-routed under a version not in force"
    );
    assert_eq!(
        q(format!(
            "SELECT COUNT(*) FROM jobs WHERE id = {job} AND finished_at IS NULL"
        ))
        .await,
        1,
        "the interrupted job is open"
    );

    // The next start resumes it: version 2 in force, every machine item under it.
    let s = Server::start(&db.url, &["--no-auth"]);
    // PostgreSQL waits for the dead runner's lease (30 s) before taking over.
    let j = job_end(&s, job, Duration::from_secs(120)).await;
    assert_eq!(j["state"], "done", "{j}");
    let (_, c) = s.get(&format!("/v1/projects/{p}/calibration")).await;
    assert_eq!(c["version"], 2, "{c}");
    assert_eq!(
        q(format!(
            "SELECT COUNT(*) FROM items WHERE project_id = {p} \
             AND status IN ('auto_accepted', 'needs_review') AND pred_label IS NOT NULL \
             AND calibration_version = 2"
        ))
        .await,
        machine
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_crash_midway_sqlite() {
    calibration_crash_midway(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_crash_midway_postgres() {
    if let Some(db) = TestDb::postgres().await {
        calibration_crash_midway(db).await;
    }
}

// ---- M7 ------------------------------------------------------------------

/// Label Studio's API as a sync uses it: one project of `n` tasks, the
/// predictions import, and the predictions list a resumed sync checks.
#[derive(Clone, Default)]
struct LsApi {
    n: i64,
    first: i64,
    /// The import call (1-based) that never answers, as if the server died
    /// while it waited; `store_first`: whether Label Studio stored that
    /// chunk before (the post reached it) or not.
    hang_on: Option<usize>,
    store_first: bool,
    /// From this import call on, answer 500 until `healed` (storing that
    /// first chunk: the post reached Label Studio, the answer did not).
    fail_from: Option<usize>,
    healed: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<Mutex<usize>>,
    /// Every prediction Label Studio holds.
    stored: Arc<Mutex<Vec<Value>>>,
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Token {TOKEN}"))
}

fn label_config() -> Value {
    let path = common::root().join("tests/fixtures/labelstudio/setup_fashion.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["schema"].clone()
}

async fn ls_project(h: HeaderMap) -> axum::response::Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"id": 7, "label_config": label_config()})).into_response()
}

async fn ls_tasks(
    State(api): State<LsApi>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    h: HeaderMap,
) -> axum::response::Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page: i64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: i64 = q
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    let from = (page - 1) * size;
    if from >= api.n {
        return StatusCode::NOT_FOUND.into_response();
    }
    let tasks: Vec<Value> = (from..(from + size).min(api.n))
        .map(|i| json!({"id": api.first + i, "data": {"image": format!("/data/local-files/?d=fashion-mnist/test/{i:05}.png")}}))
        .collect();
    Json(json!({"tasks": tasks, "total": api.n})).into_response()
}

async fn ls_import(
    State(api): State<LsApi>,
    h: HeaderMap,
    Json(body): Json<Vec<Value>>,
) -> axum::response::Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let call = {
        let mut c = api.calls.lock().unwrap();
        *c += 1;
        *c
    };
    let n = body.len();
    if api.fail_from.is_some_and(|f| call >= f)
        && !api.healed.load(std::sync::atomic::Ordering::SeqCst)
    {
        if api.fail_from == Some(call) {
            api.stored.lock().unwrap().extend(body);
        }
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if api.hang_on == Some(call) {
        if api.store_first {
            api.stored.lock().unwrap().extend(body.clone());
        }
        // Never answer: the test kills the server meanwhile.
        std::future::pending::<()>().await;
    }
    api.stored.lock().unwrap().extend(body);
    (StatusCode::CREATED, Json(json!({"created": n}))).into_response()
}

async fn ls_predictions(
    State(api): State<LsApi>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    h: HeaderMap,
) -> axum::response::Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let task: Option<i64> = q.get("task").and_then(|t| t.parse().ok());
    let list: Vec<Value> = api
        .stored
        .lock()
        .unwrap()
        .iter()
        .filter(|p| task.is_none_or(|t| p["task"].as_i64() == Some(t)))
        .cloned()
        .collect();
    Json(list).into_response()
}

async fn serve_ls(api: LsApi) -> (String, u16) {
    let app = Router::new()
        .route("/api/projects/{id}/", get(ls_project))
        .route("/api/tasks/", get(ls_tasks))
        .route("/api/projects/{id}/import/predictions", post(ls_import))
        .route("/api/predictions/", get(ls_predictions))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), port)
}

fn sync_args(data: &str, port: u16) -> Vec<String> {
    [
        "--no-auth",
        "--data-root",
        data,
        "--ls-hosts",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every task of `api` holds exactly one prediction.
fn exactly_one_each(api: &LsApi) {
    let stored = api.stored.lock().unwrap();
    let mut per_task: HashMap<i64, usize> = HashMap::new();
    for p in stored.iter() {
        *per_task.entry(p["task"].as_i64().unwrap()).or_default() += 1;
    }
    let twice = per_task.values().filter(|&&c| c > 1).count();
    assert_eq!(twice, 0, "{twice} tasks hold more than one prediction");
    assert_eq!(per_task.len() as i64, api.n, "tasks without a prediction");
}

/// A sync killed in its write phase between a post and its record, then
/// restarted: `store_first` says whether that post reached Label Studio.
async fn sync_killed_between_post_and_record(store_first: bool) {
    let api = LsApi {
        n: 1200,
        first: 1000,
        hang_on: Some(2),
        store_first,
        ..Default::default()
    };
    let (url, port) = serve_ls(api.clone()).await;
    let db = TestDb::sqlite();
    let data = common::root().join("data");
    let args = sync_args(data.to_str().unwrap(), port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Server::start(&db.url, &args);
    let p = project(&s, json!({})).await;
    let body = json!({"url": url, "token": TOKEN, "ls_project": 7});
    let (code, job) = s
        .post(&format!("/v1/projects/{p}/labelstudio/sync"), &body)
        .await;
    assert_eq!(code, 202, "{job}");
    let job = job["id"].as_i64().unwrap();
    // Wait until the second chunk is posted (and hangs), then kill -9.
    let deadline = Instant::now() + Duration::from_secs(180);
    while *api.calls.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline, "the sync never posted twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.kill9();
    let before = api.stored.lock().unwrap().len();
    assert_eq!(before, if store_first { 1000 } else { 500 });

    // Restarted: the sync resumes by itself, checks the chunk in flight
    // against Label Studio, and writes the rest once.
    let s = Server::start(&db.url, &args);
    let j = job_end(&s, job, Duration::from_secs(180)).await;
    assert_eq!(j["state"], "done", "{j}");
    exactly_one_each(&api);
    assert_eq!(j["done"], 1200, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_killed_after_label_studio_stored_the_chunk() {
    sync_killed_between_post_and_record(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_killed_before_label_studio_stored_the_chunk() {
    sync_killed_between_post_and_record(false).await;
}

/// A sync that fails with a chunk in flight (Label Studio stored it, but
/// every answer was a 500 until the sync gave up) leaves that chunk to the
/// next sync of the project, which checks it before writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_syncs_chunk_in_flight_is_checked_by_the_next_sync() {
    let api = LsApi {
        n: 1200,
        first: 1000,
        fail_from: Some(2),
        ..Default::default()
    };
    let (url, port) = serve_ls(api.clone()).await;
    let db = TestDb::sqlite();
    let data = common::root().join("data");
    let mut args = sync_args(data.to_str().unwrap(), port);
    args.extend(["--ls-retry-secs".to_string(), "1".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&db.url, &args);
    let p = project(&s, json!({})).await;
    let body = json!({"url": url, "token": TOKEN, "ls_project": 7});
    let path = format!("/v1/projects/{p}/labelstudio/sync");
    let (code, job) = s.post(&path, &body).await;
    assert_eq!(code, 202, "{job}");
    let j = job_end(&s, job["id"].as_i64().unwrap(), Duration::from_secs(180)).await;
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(api.stored.lock().unwrap().len(), 1000);

    api.healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, again) = s.post(&path, &body).await;
    assert_eq!(code, 202, "{again}");
    let j = job_end(&s, again["id"].as_i64().unwrap(), Duration::from_secs(180)).await;
    assert_eq!(j["state"], "done", "{j}");
    exactly_one_each(&api);
}

/// Three syncs of one Label Studio project started together are one job.
async fn syncs_started_together_are_one(db: TestDb) {
    let api = LsApi {
        n: 700,
        first: 1000,
        ..Default::default()
    };
    let (url, port) = serve_ls(api.clone()).await;
    let data = common::root().join("data");
    let args = sync_args(data.to_str().unwrap(), port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start(&db.url, &args);
    let p = project(&s, json!({})).await;
    let body = json!({"url": url, "token": TOKEN, "ls_project": 7});
    let path = format!("/v1/projects/{p}/labelstudio/sync");
    let answers = futures_util::future::join_all((0..3).map(|_| s.post(&path, &body))).await;
    let ids: HashSet<i64> = answers
        .iter()
        .map(|(code, j)| {
            assert_eq!(*code, 202, "{j}");
            j["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "three syncs: {answers:?}");
    let job = *ids.iter().next().unwrap();
    let j = job_end(&s, job, Duration::from_secs(180)).await;
    assert_eq!(j["state"], "done", "{j}");
    exactly_one_each(&api);
    // Once it is done a new sync may start; it writes nothing again.
    let (code, again) = s.post(&path, &body).await;
    assert_eq!(code, 202, "{again}");
    assert_ne!(again["id"].as_i64(), Some(job));
    let j = job_end(&s, again["id"].as_i64().unwrap(), Duration::from_secs(180)).await;
    assert_eq!(j["state"], "done", "{j}");
    exactly_one_each(&api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_started_together_are_one_sqlite() {
    syncs_started_together_are_one(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_started_together_are_one_postgres() {
    if let Some(db) = TestDb::postgres().await {
        syncs_started_together_are_one(db).await;
    }
}

// ---- M8 ------------------------------------------------------------------

/// Label the first `n` items of project `p` with their true labels, as "a".
async fn label_truly(s: &Server, p: i64, n: usize) {
    let truth = common::fashion_mnist_test();
    let (_, page) = s.get(&format!("/v1/projects/{p}/items?limit=1000")).await;
    for item in page["items"].as_array().unwrap().iter().take(n) {
        let id = item["client_id"].as_str().unwrap();
        let label = &truth.iter().find(|(c, _, _)| c == id).unwrap().2;
        let (code, body) = s
            .post(
                &format!("/v1/items/{}/annotations", item["id"]),
                &json!({"label": label, "annotator": "a"}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
}

/// With `replicas` servers on one database, the requests spread over them.
async fn training_floods_train_one_head(db: TestDb, replicas: usize) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let others: Vec<Server> = (1..replicas)
        .map(|_| Server::start(&db.url, &["--no-auth"]))
        .collect();
    let servers: Vec<&Server> = std::iter::once(&s).chain(&others).collect();
    let p = project(&s, json!({})).await;
    ingest(&s, p, 400).await;
    label_truly(&s, p, 120).await;
    let hook = format!("/labelstudio/{p}/webhook");
    let start_training = json!({"action": "START_TRAINING", "project": {"id": 7}});
    let train = format!("/v1/projects/{p}/train");
    let (servers, hook, start_training) = (&servers, &hook, &start_training);
    let webhooks = futures_util::future::join_all((0..100).map(|i| async move {
        let t = Instant::now();
        let (code, body) = servers[i % servers.len()].post(hook, start_training).await;
        (code, body, t.elapsed())
    }));
    let empty = json!({});
    let trains = futures_util::future::join_all(
        (0..10).map(|i| servers[(i + 1) % servers.len()].post(&train, &empty)),
    );
    let (webhooks, trains) = tokio::join!(webhooks, trains);
    for (code, body, took) in &webhooks {
        assert_eq!(*code, 200, "{body}");
        assert!(
            *took < Duration::from_millis(1000),
            "a webhook took {took:?} (Label Studio waits 1 s)"
        );
    }
    let versions: HashSet<i64> = trains
        .iter()
        .map(|(code, t)| {
            assert_eq!(*code, 201, "{t}");
            t["version"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(versions.len(), 1, "{trains:?}");
    // The webhooks' trainings run in the background: let them all end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(
        &db,
        &format!("SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind = 'train' AND finished_at IS NULL"),
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "a training never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heads = scalar(
        &db,
        &format!("SELECT COUNT(*) FROM heads WHERE project_id = {p}"),
    )
    .await;
    let trainings = scalar(
        &db,
        &format!("SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind = 'train'"),
    )
    .await;
    let failed = scalar(
        &db,
        &format!("SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind = 'train' AND state <> 'done'"),
    )
    .await;
    eprintln!(
        "{}: {heads} head(s), {trainings} training job(s) for 110 requests",
        db.kind
    );
    assert_eq!(failed, 0, "a training failed");
    assert_eq!(heads, trainings, "one head per training");
    // 110 requests within a training's run join it.
    assert!(heads <= 2, "{heads} heads for one flood of requests");
    let repredicts = scalar(
        &db,
        &format!(
            "SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind IS NULL AND state IN ('running', 'done') \
             AND id > (SELECT MIN(id) FROM jobs WHERE project_id = {p} AND kind = 'train')"
        ),
    )
    .await;
    assert_eq!(repredicts, heads, "one re-predict job per head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_floods_train_one_head_sqlite() {
    training_floods_train_one_head(TestDb::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_floods_train_one_head_postgres() {
    if let Some(db) = TestDb::postgres().await {
        // Two replicas: one joins the other's training through the database.
        training_floods_train_one_head(db, 2).await;
    }
}

/// A training interrupted by the process dying (abort right after its job
/// opened, before any head is saved) does not hold the project's training
/// slot: the next start fails that job, and a new request trains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_training_is_failed_at_start_up() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let p = project(&s, json!({})).await;
    ingest(&s, p, 100).await;
    label_truly(&s, p, 30).await;
    drop(s);
    let mut s = Server::start_env(
        &db.url,
        &["--no-auth"],
        &[("LABELLOOP_FAILPOINT", "training-opened")],
    );
    let train = format!("/v1/projects/{p}/train");
    let r = s
        .client
        .post(format!("{}{train}", s.url))
        .json(&json!({}))
        .send()
        .await;
    assert!(r.is_err(), "the server answered: {r:?}");
    assert!(!s.child.wait().unwrap().success());
    let open = format!(
        "SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind = 'train' AND finished_at IS NULL"
    );
    assert_eq!(
        scalar(&db, &open).await,
        1,
        "the interrupted training's job"
    );
    let heads = format!("SELECT COUNT(*) FROM heads WHERE project_id = {p}");
    assert_eq!(scalar(&db, &heads).await, 0);

    let s = Server::start(&db.url, &["--no-auth"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&db, &open).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the interrupted training stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = format!(
        "SELECT COUNT(*) FROM jobs WHERE project_id = {p} AND kind = 'train' AND state = 'failed'"
    );
    assert_eq!(scalar(&db, &failed).await, 1);
    let (code, t) = s.post(&train, &json!({})).await;
    assert_eq!(code, 201, "{t}");
    assert_eq!(t["version"], 1, "{t}");
    assert_eq!(scalar(&db, &heads).await, 1);
}
