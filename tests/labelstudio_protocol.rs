//! The Label Studio ML-backend protocol, replayed from bodies a real Label
//! Studio 1.23.2 sent (`tests/fixtures/labelstudio/`, recorded by
//! `scripts/labelstudio/e2e.py --record`), against a real `labelloop serve`
//! with the real Fashion-MNIST CNN. A small stand-in for Label Studio's
//! own host serves `/data/upload/…` behind its token and answers the user
//! and token-refresh APIs, as Label Studio does.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::server::{Server, TestDb};
use serde_json::{json, Value};

const TOKEN: &str = "LEGACY_TOKEN";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln";
const ACCESS: &str = "ACCESS_FROM_REFRESH";

fn fixture(name: &str) -> Value {
    let path = common::root().join(format!("tests/fixtures/labelstudio/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Requests the stand-in saw: (path, authorization).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn authorized(h: &HeaderMap) -> bool {
    let a = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    a == format!("Token {TOKEN}") || a == format!("Bearer {ACCESS}")
}

fn note(seen: &Seen, path: &str, h: &HeaderMap) {
    let a = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    seen.lock().unwrap().push((path.to_string(), a));
}

async fn upload(
    State(seen): State<Seen>,
    Path((_p, name)): Path<(String, String)>,
    h: HeaderMap,
) -> axum::response::Response {
    note(&seen, &name, &h);
    if !authorized(&h) || name == "denied.png" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Label Studio names uploads "<hash>-<original name>".
    let Some(n) = name
        .rsplit_once("fmnist-test-")
        .and_then(|(_, n)| n.strip_suffix(".png"))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = common::root().join(format!("data/fashion-mnist/test/{n}.png"));
    match std::fs::read(path) {
        Ok(b) => ([("content-type", "image/png")], b).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn user(State(seen): State<Seen>, h: HeaderMap) -> axum::response::Response {
    note(&seen, "/api/users", &h);
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"id": 1, "email": "admin@example.com"})).into_response()
}

async fn refresh(Json(body): Json<Value>) -> axum::response::Response {
    if body["refresh"] == JWT {
        Json(json!({"access": ACCESS})).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// A stand-in for Label Studio's host on a free port.
async fn fake_label_studio() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/data/upload/{p}/{name}", get(upload))
        .route("/api/users/{id}/", get(user))
        .route("/api/token/refresh", post(refresh))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{}", addr.port()), seen)
}

fn truth() -> Vec<String> {
    common::fashion_mnist_test()
        .into_iter()
        .map(|(_, _, l)| l)
        .collect()
}

fn fashion_labels() -> Vec<String> {
    let mut l: Vec<String> = Vec::new();
    for x in truth() {
        if !l.contains(&x) {
            l.push(x);
        }
    }
    l
}

struct Env {
    server: Server,
    _db: TestDb,
    ls: String,
    seen: Seen,
    project: i64,
}

/// A new Fashion-MNIST project on `server`.
async fn fashion_project(server: &Server) -> i64 {
    let (code, p) = server
        .post(
            "/v1/projects",
            &json!({"name": "ls", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_i64().unwrap()
}

/// A server with a Fashion-MNIST project, set up from the recorded `/setup` body.
async fn env(token: &str, extra: &[&str]) -> Env {
    let (ls, seen) = fake_label_studio().await;
    let db = TestDb::sqlite();
    let data = common::root().join("data");
    // Allow-lists carry the port: the stand-in's, and any the test adds.
    let host = ls.trim_start_matches("http://").to_string();
    let mut args = vec![
        "--no-auth",
        "--data-root",
        data.to_str().unwrap(),
        "--ls-hosts",
        &host,
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&db.url, &args);
    let project = fashion_project(&server).await;
    let mut setup = fixture("setup_fashion");
    setup["hostname"] = json!(ls);
    setup["access_token"] = json!(token);
    let (code, body) = server
        .post(&format!("/labelstudio/{project}/setup"), &setup)
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["model_version"]
            .as_str()
            .unwrap()
            .starts_with("fashion-mnist-cnn@"),
        "{body}"
    );
    Env {
        server,
        _db: db,
        ls,
        seen,
        project,
    }
}

/// Post a webhook and wait until it is applied: a webhook answers `queued`
/// when applying it takes longer than its answer may wait, and posting the
/// same event again is a no-op that answers once it is applied.
async fn hook(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = server.post(path, body).await;
        if code != 200 || out["status"] != "queued" {
            return (code, out);
        }
        assert!(Instant::now() < deadline, "webhook never applied: {body}");
    }
}

fn choice(result: &Value) -> Option<&str> {
    result["result"][0]["value"]["choices"][0].as_str()
}

#[tokio::test]
async fn health_setup_predict_from_recorded_bodies() {
    let e = env(TOKEN, &[]).await;
    let p = e.project;
    for path in ["", "/", "/health"] {
        let (code, h) = e.server.get(&format!("/labelstudio/{p}{path}")).await;
        assert_eq!(code, 200, "{path}: {h}");
        assert_eq!(h["status"], "UP");
        assert_eq!(h["model_class"], "labelloop");
    }
    let (code, v) = e.server.get(&format!("/labelstudio/{p}/versions")).await;
    assert_eq!(code, 200);
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
    let (code, j) = e.server.get(&format!("/labelstudio/{p}/job_status")).await;
    assert_eq!(code, 200, "{j}");

    let body = fixture("predict_fashion");
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &body)
        .await;
    assert_eq!(code, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let truth = truth();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(choice(r), Some(truth[i].as_str()), "task {i}: {r}");
        let score = r["score"].as_f64().unwrap();
        assert!(score.is_finite() && score > 0.0 && score <= 1.0, "{r}");
        assert_eq!(r["result"][0]["from_name"], "label");
        assert_eq!(r["result"][0]["to_name"], "image");
        assert_eq!(r["result"][0]["type"], "choices");
        assert_eq!(r["model_version"], out["model_version"]);
    }
    // The images came from Label Studio's host with the legacy token.
    let seen = e.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(_, a)| a == &format!("Token {TOKEN}")));
    // The tasks are remembered as items keyed by task id, in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = items(&e.server, p).await;
        if [403, 404, 405].iter().all(|t| item(&all, *t).is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "tasks not remembered: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn personal_access_tokens_are_exchanged_for_bearer() {
    let e = env(JWT, &[]).await;
    let body = fixture("predict_fashion");
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{}/predict", e.project), &body)
        .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(choice(&out["results"][0]), Some("Ankle boot"), "{out}");
    let seen = e.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, a)| a == &format!("Bearer {ACCESS}")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn bad_tasks_get_empty_results_and_the_rest_still_predict() {
    // A second host that is not allowed: it must never be asked.
    let (other, other_seen) = fake_label_studio().await;
    let e = env(TOKEN, &["--ls-image-hosts", "127.0.0.1:1"]).await;
    let png = std::fs::read(common::root().join("data/fashion-mnist/test/00003.png")).unwrap();
    let b64 = base64_encode(&png);
    let image = |s: String| json!({"id": 1, "data": {"image": s}});
    let tasks = vec![
        image("/data/upload/5/aa-fmnist-test-00000.png".into()),
        json!({"id": 2, "data": {"picture": "x"}}),
        image("/data/upload/5/denied.png".into()),
        image("http://127.0.0.1:1/nothing-listens.png".into()),
        image(format!("{other}/data/upload/5/aa-fmnist-test-00001.png")),
        image(format!("data:image/png;base64,{b64}")),
        image("fashion-mnist/test/00004.png".into()),
        image("/data/local-files/?d=fashion-mnist/test/00005.png".into()),
        image("../../etc/passwd".into()),
    ];
    let body = json!({"tasks": tasks, "label_config": fixture("setup_fashion")["schema"]});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{}/predict", e.project), &body)
        .await;
    assert_eq!(code, 200, "{out}");
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), tasks.len());
    let truth = truth();
    assert_eq!(choice(&r[0]), Some(truth[0].as_str()));
    for (i, why) in [
        (1, "no data key"),
        (2, "401"),
        (3, "no answer"),
        (4, "host not allowed"),
        (8, "outside the data root"),
    ] {
        assert_eq!(r[i]["result"], json!([]), "{why}: {}", r[i]);
        assert!(r[i]["model_version"].is_string());
    }
    assert_eq!(choice(&r[5]), Some(truth[3].as_str()), "data: URI");
    assert_eq!(
        choice(&r[6]),
        Some(truth[4].as_str()),
        "path under the root"
    );
    assert_eq!(choice(&r[7]), Some(truth[5].as_str()), "/data/local-files/");
    assert!(
        other_seen.lock().unwrap().is_empty(),
        "a host that is not allowed was fetched"
    );
    let _ = e.ls;
}

/// Local paths are checked by their spelling at once and by the open that
/// reads them: a link inside the root still works, anything else fails
/// alone, and only tasks that were read become items.
#[tokio::test]
async fn local_files_open_once_follow_inner_links_and_only_read_tasks_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cases = common::fashion_mnist_test();
    let (_, first, label) = &cases[0];
    std::fs::copy(first, root.join("a.png")).unwrap();
    std::fs::copy(first, outside.path().join("secret.png")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::os::unix::fs::symlink("../a.png", root.join("sub/link.png")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.png"), root.join("out.png")).unwrap();
    let db = TestDb::sqlite();
    let server = Server::start(
        &db.url,
        &["--no-auth", "--data-root", root.to_str().unwrap()],
    );
    let project = fashion_project(&server).await;
    let paths = [
        "a.png",
        "sub/link.png",
        "out.png",
        "dir",
        "missing.png",
        "./sub//link.png",
    ];
    let body = json!({
        "tasks": paths.iter().enumerate()
            .map(|(i, p)| json!({"id": i + 1, "data": {"image": p}}))
            .collect::<Vec<_>>(),
        "label_config": fixture("setup_fashion")["schema"],
    });
    let predict = |body: Value| {
        let server = &server;
        async move {
            let (code, out) = server
                .post(&format!("/labelstudio/{project}/predict"), &body)
                .await;
            assert_eq!(code, 200, "{out}");
            out["results"].as_array().unwrap().clone()
        }
    };
    let r = predict(body.clone()).await;
    assert_eq!(r.len(), paths.len());
    for i in [0, 1, 5] {
        assert_eq!(
            choice(&r[i]),
            Some(label.as_str()),
            "{}: {}",
            paths[i],
            r[i]
        );
    }
    for i in [2, 3, 4] {
        assert_eq!(r[i]["result"], json!([]), "{}: {}", paths[i], r[i]);
    }
    // The three read tasks become items, in the background; the others do not.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = items(&server, project).await;
    while listed.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = items(&server, project).await;
    }
    for task in [1, 2, 6] {
        assert!(item(&listed, task).is_some(), "task {task}: {listed:?}");
    }
    for task in [3, 4, 5] {
        assert!(item(&listed, task).is_none(), "task {task}: {listed:?}");
    }
    // A missing file was not taken as known: once it is there, its task is
    // predicted and remembered.
    std::fs::copy(first, root.join("missing.png")).unwrap();
    let r = predict(body).await;
    assert_eq!(choice(&r[4]), Some(label.as_str()), "{}", r[4]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while item(&items(&server, project).await, 5).is_none() {
        assert!(Instant::now() < deadline, "task 5 was never remembered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn configs_and_unknown_projects() {
    let e = env(TOKEN, &[]).await;
    let p = e.project;
    // Several <Choices>: the one that covers the labels answers.
    let labels = fashion_labels();
    let choices: String = labels
        .iter()
        .map(|l| format!("<Choice value=\"{}\"/>", l.to_lowercase()))
        .collect();
    let config = format!(
        "<View><Image name=\"img\" value=\"$picture\"/>\
         <Choices name=\"quality\" toName=\"img\"><Choice value=\"sharp\"/><Choice value=\"blurred\"/></Choices>\
         <Choices name=\"garment\" toName=\"img\" choice=\"multiple\">{choices}</Choices></View>"
    );
    let body = json!({"tasks": [{"id": 9, "data": {"picture": "fashion-mnist/test/00000.png"}}], "label_config": config});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &body)
        .await;
    assert_eq!(code, 200, "{out}");
    let r = &out["results"][0];
    assert_eq!(r["result"][0]["from_name"], "garment");
    assert_eq!(r["result"][0]["to_name"], "img");
    assert_eq!(choice(r), Some("ankle boot"), "matched case-insensitively");

    // No <Choices> matches: 422 naming the tag and the labels it lacks.
    let bad =
        "<View><Image name=\"img\" value=\"$image\"/><Choices name=\"quality\" toName=\"img\">\
               <Choice value=\"sharp\"/><Choice value=\"Bag\"/></Choices></View>";
    let mut setup = fixture("setup_fashion");
    setup["schema"] = json!(bad);
    setup["hostname"] = json!(e.ls);
    let (code, err) = e
        .server
        .post(&format!("/labelstudio/{p}/setup"), &setup)
        .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["code"], "labels_mismatch");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("quality") && msg.contains("Trouser"), "{msg}");
    let unmatched = msg.split("has no choice for").nth(1).unwrap_or("");
    assert!(
        unmatched.contains("Trouser") && !unmatched.contains("\"Bag\""),
        "{msg}"
    );
    let (code, _) = e
        .server
        .post(
            &format!("/labelstudio/{p}/validate"),
            &json!({"config": bad}),
        )
        .await;
    assert_eq!(code, 422);

    // A hostname off the allow-list is refused: its data would be fetched with a token.
    let mut setup = fixture("setup_fashion");
    setup["hostname"] = json!("http://169.254.169.254:80");
    let (code, err) = e
        .server
        .post(&format!("/labelstudio/{p}/setup"), &setup)
        .await;
    assert_eq!(code, 403, "{err}");

    // Unknown project: 404 on every route.
    let q = p + 1000;
    for (code, body) in [
        e.server.get(&format!("/labelstudio/{q}/health")).await,
        e.server
            .post(
                &format!("/labelstudio/{q}/setup"),
                &fixture("setup_fashion"),
            )
            .await,
        e.server
            .post(
                &format!("/labelstudio/{q}/predict"),
                &fixture("predict_fashion"),
            )
            .await,
        e.server
            .post(
                &format!("/labelstudio/{q}/webhook"),
                &fixture("webhook_START_TRAINING"),
            )
            .await,
    ] {
        assert_eq!(code, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

async fn items(server: &Server, p: i64) -> Vec<Value> {
    let (code, body) = server
        .get(&format!("/v1/projects/{p}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn item(items: &[Value], task: i64) -> Option<&Value> {
    items
        .iter()
        .find(|i| i["client_id"] == format!("ls-task-{task}"))
}

#[tokio::test]
async fn webhooks_record_update_delete_and_train() {
    let e = env(TOKEN, &[]).await;
    let p = e.project;
    let hook_path = format!("/labelstudio/{p}/webhook");

    // Bad shapes: 400 bad_webhook, nothing stored.
    for body in [
        json!({"foo": 1}),
        json!({"action": "ANNOTATION_CREATED"}),
        json!({"action": "ANNOTATION_CREATED", "annotation": {"id": 5}, "task": {"id": 7}}),
        json!({"action": "ANNOTATIONS_DELETED"}),
    ] {
        let (code, err) = hook(&e.server, &hook_path, &body).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "bad_webhook");
    }
    assert!(items(&e.server, p).await.is_empty(), "nothing stored");
    let (code, out) = hook(
        &e.server,
        &hook_path,
        &json!({"action": "PROJECT_UPDATED", "project": {}}),
    )
    .await;
    assert_eq!((code, out["status"].as_str()), (200, Some("Unknown event")));

    // ANNOTATION_CREATED for a task labelloop never saw: ingested, then recorded.
    let created = fixture("webhook_ANNOTATION_CREATED");
    let (code, out) = hook(&e.server, &hook_path, &created).await;
    assert_eq!(code, 200, "{out}");
    let all = items(&e.server, p).await;
    let it = item(&all, 403).expect("task 403 ingested");
    assert_eq!(it["final_label"], "Ankle boot");
    assert_eq!(it["annotations"][0]["annotator"], "ls:admin@example.com");
    assert_eq!(it["annotations"][0]["label"], "Ankle boot");

    // ANNOTATION_UPDATED replaces it.
    let (code, out) = hook(
        &e.server,
        &hook_path,
        &fixture("webhook_ANNOTATION_UPDATED"),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    let all = items(&e.server, p).await;
    let it = item(&all, 403).unwrap();
    assert_eq!(it["final_label"], "T-shirt/top");
    assert_eq!(it["annotations"].as_array().unwrap().len(), 1, "{it}");

    // A second annotation (id 2 on task 404), then ANNOTATIONS_DELETED removes it.
    let mut second = created.clone();
    second["annotation"]["id"] = json!(2);
    second["annotation"]["task"] = json!(404);
    second["annotation"]["result"][0]["value"]["choices"] = json!(["Pullover"]);
    second["task"]["id"] = json!(404);
    second["task"]["data"]["image"] = json!("/data/upload/5/bb-fmnist-test-00001.png");
    let (code, out) = hook(&e.server, &hook_path, &second).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        item(&items(&e.server, p).await, 404).unwrap()["final_label"],
        "Pullover"
    );
    let deleted = fixture("webhook_ANNOTATIONS_DELETED");
    assert_eq!(deleted["annotations"][0]["id"], 2);
    let (code, out) = hook(&e.server, &hook_path, &deleted).await;
    assert_eq!((code, out["recorded"].as_i64()), (200, Some(1)), "{out}");
    let all = items(&e.server, p).await;
    let it = item(&all, 404).unwrap();
    assert!(it["annotations"].as_array().unwrap().is_empty(), "{it}");
    assert!(it["final_label"].is_null(), "{it}");
    // The singular form works too.
    let (code, out) = hook(
        &e.server,
        &hook_path,
        &json!({"action": "ANNOTATION_DELETED", "annotation": {"id": 1}}),
    )
    .await;
    assert_eq!((code, out["recorded"].as_i64()), (200, Some(1)), "{out}");
    assert!(item(&items(&e.server, p).await, 403).unwrap()["final_label"].is_null());

    // Labels of two classes on pre-labeled items, then START_TRAINING: a new version.
    for (k, (task, n, label)) in [
        (501, "00000", "Ankle boot"),
        (502, "00001", "Pullover"),
        (503, "00002", "Trouser"),
        (504, "00003", "Trouser"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = created.clone();
        a["annotation"]["id"] = json!(100 + k);
        a["annotation"]["result"][0]["value"]["choices"] = json!([label]);
        a["task"]["id"] = json!(task);
        a["task"]["data"]["image"] = json!(format!("/data/upload/5/cc-fmnist-test-{n}.png"));
        let (code, out) = hook(&e.server, &hook_path, &a).await;
        assert_eq!(code, 200, "{out}");
    }
    // Wait for the workers to give the ingested items their embeddings.
    let deadline = Instant::now() + Duration::from_secs(60);
    while items(&e.server, p)
        .await
        .iter()
        .any(|i| i["prediction"].is_null())
    {
        assert!(Instant::now() < deadline, "items were not pre-labeled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, before) = e.server.get(&format!("/labelstudio/{p}/versions")).await;
    // A prediction now keeps the project's labeler between requests...
    let predict = format!("/labelstudio/{p}/predict");
    let (code, first) = e.server.post(&predict, &fixture("predict_fashion")).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["model_version"], before["current"], "{first}");
    let (code, out) = e
        .server
        .post(&hook_path, &fixture("webhook_START_TRAINING"))
        .await;
    assert_eq!(code, 200, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let current = loop {
        let (_, v) = e.server.get(&format!("/labelstudio/{p}/versions")).await;
        if v["current"] != before["current"] {
            assert!(v["current"].as_str().unwrap().contains("+head-1"), "{v}");
            break v["current"].clone();
        }
        assert!(Instant::now() < deadline, "no new version: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // ...and the very next one is answered by the new head, never the kept
    // one. (A recalibration after training may move the version once more
    // meanwhile: then it is the one in force after the request.)
    let (code, next) = e.server.post(&predict, &fixture("predict_fashion")).await;
    assert_eq!(code, 200, "{next}");
    let (_, after) = e.server.get(&format!("/labelstudio/{p}/versions")).await;
    let answered = &next["model_version"];
    assert!(
        *answered == current || *answered == after["current"],
        "{next} vs {current} / {after}"
    );
    assert!(answered.as_str().unwrap().contains("+head-1"), "{next}");
    assert!(next["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["model_version"] == *answered));
}

#[tokio::test]
async fn basic_auth_protects_the_protocol_routes() {
    let db = TestDb::sqlite();
    let server = Server::start(
        &db.url,
        &[
            "--no-auth",
            "--ls-basic-auth-user",
            "ls",
            "--ls-basic-auth-password",
            "secret",
        ],
    );
    let project = fashion_project(&server).await;
    let url = format!("{}/labelstudio/{project}/health", server.url);
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .client
        .get(&url)
        .basic_auth("ls", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .client
        .get(&url)
        .basic_auth("ls", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// "Retrieve predictions" sends every task in one request: more than a
/// model's queue holds must still get one prediction each.
#[tokio::test]
async fn a_request_larger_than_the_queue_still_predicts_every_task() {
    let e = env(TOKEN, &["--queue-capacity", "256"]).await;
    let tasks: Vec<Value> = (0..1500)
        .map(|i| json!({"id": 10_000 + i, "data": {"image": format!("fashion-mnist/test/{:05}.png", i % 100)}}))
        .collect();
    let body = json!({"tasks": tasks, "label_config": fixture("setup_fashion")["schema"]});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{}/predict", e.project), &body)
        .await;
    assert_eq!(code, 200, "{out}");
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), 1500);
    // The same image gets the same answer wherever it sits in the request,
    // and the first hundred are mostly right (the CNN's accuracy is ~0.93).
    let truth = truth();
    for (i, x) in r.iter().enumerate() {
        assert!(choice(x).is_some(), "task {i} has no prediction: {x}");
        assert_eq!(choice(x), choice(&r[i % 100]), "task {i}");
    }
    let right = (0..100)
        .filter(|&i| choice(&r[i]) == Some(truth[i].as_str()))
        .count();
    assert!(right >= 85, "{right}/100 right");
}

/// A stand-in for Label Studio's API as a sync uses it: one project of
/// `n` tasks (paged as Label Studio pages them) and the predictions import.
#[derive(Clone, Default)]
struct LsApi {
    n: i64,
    /// Answer the import with 503, as a Label Studio going away would.
    down: bool,
    /// Task ids start here (they are unique within one Label Studio).
    first: i64,
    imported: Arc<Mutex<Vec<Value>>>,
}

async fn ls_project(State(api): State<LsApi>, h: HeaderMap) -> axum::response::Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let _ = api.n;
    Json(json!({"id": 7, "label_config": fixture("setup_fashion")["schema"]})).into_response()
}

async fn ls_tasks(
    State(api): State<LsApi>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
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
        .map(|i| json!({"id": api.first + i, "data": {"image": format!("/data/local-files/?d=fashion-mnist/test/{:05}.png", i)}}))
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
    if api.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let n = body.len();
    api.imported.lock().unwrap().extend(body);
    (StatusCode::CREATED, Json(json!({"created": n}))).into_response()
}

async fn sync_done(server: &Server, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, j) = server.get(&format!("/v1/jobs/{job}")).await;
        if j["state"] == "done" || j["state"] == "failed" {
            return j;
        }
        assert!(Instant::now() < deadline, "sync did not end: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sync_writes_every_task_once_retries_then_fails_and_refuses_bad_hosts() {
    let api = LsApi {
        n: 1200,
        first: 1000,
        ..Default::default()
    };
    let url = serve_api(api.clone()).await;
    // Label Studio answering 503 mid-job: retried with backoff, then the job fails.
    let down = LsApi {
        n: 300,
        down: true,
        first: 5000,
        ..Default::default()
    };
    let down_url = serve_api(down.clone()).await;
    // 127.0.0.1:1 is listed and unreachable.
    let hosts = format!(
        "{},{},127.0.0.1:1",
        url.trim_start_matches("http://"),
        down_url.trim_start_matches("http://")
    );
    let e = env(TOKEN, &["--ls-retry-secs", "2", "--ls-hosts", &hosts]).await;
    sync_checks(&e, &api, &url).await;

    let path = format!("/v1/projects/{}/labelstudio/sync", e.project);
    let started = Instant::now();
    let (code, job) = e
        .server
        .post(
            &path,
            &json!({"url": down_url, "token": TOKEN, "ls_project": 7}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let j = sync_done(&e.server, job["id"].as_i64().unwrap()).await;
    assert_eq!(j["state"], "failed", "{j}");
    // The job says why, in the user's words, and never shows the token.
    let why = j["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("Label Studio did not answer") && why.contains("503"),
        "{j}"
    );
    assert!(!j.to_string().contains(TOKEN), "{j}");
    assert!(started.elapsed() >= Duration::from_secs(2), "no retries");
    assert!(down.imported.lock().unwrap().is_empty());
}

async fn serve_api(api: LsApi) -> String {
    let app = Router::new()
        .route("/api/projects/{id}/", get(ls_project))
        .route("/api/tasks/", get(ls_tasks))
        .route("/api/projects/{id}/import/predictions", post(ls_import))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn sync_checks(e: &Env, api: &LsApi, url: &str) {
    let path = format!("/v1/projects/{}/labelstudio/sync", e.project);
    let body = json!({"url": url, "token": TOKEN, "ls_project": 7});
    let (code, job) = e.server.post(&path, &body).await;
    assert_eq!(code, 202, "{job}");
    let j = sync_done(&e.server, job["id"].as_i64().unwrap()).await;
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(
        (j["total"].as_i64(), j["done"].as_i64()),
        (Some(1200), Some(1200))
    );
    {
        let imported = api.imported.lock().unwrap();
        assert_eq!(imported.len(), 1200);
        let tasks: std::collections::HashSet<i64> = imported
            .iter()
            .map(|p| p["task"].as_i64().unwrap())
            .collect();
        assert_eq!(tasks.len(), 1200, "a task was written twice");
        let truth = truth();
        let right = imported
            .iter()
            .filter(|p| {
                let i = (p["task"].as_i64().unwrap() - 1000) as usize;
                choice(p) == Some(truth[i].as_str())
            })
            .count();
        assert!(right as f64 / 1200.0 > 0.85, "{right}/1200 right");
        assert!(imported
            .iter()
            .all(|p| p["model_version"].is_string() && p["score"].is_f64()));
    }
    // The token never shows in the job.
    assert!(!j.to_string().contains(TOKEN));
    // A re-run writes nothing again.
    let (_, job) = e.server.post(&path, &body).await;
    let j = sync_done(&e.server, job["id"].as_i64().unwrap()).await;
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(api.imported.lock().unwrap().len(), 1200);

    // Off the allow-list: refused, a listed host on another port too;
    // unreachable: 503 at once.
    for off in ["http://10.1.2.3:8080", "http://127.0.0.1:2"] {
        let (code, err) = e
            .server
            .post(&path, &json!({"url": off, "token": TOKEN, "ls_project": 7}))
            .await;
        assert_eq!(code, 403, "{off}: {err}");
    }
    let (code, err) = e
        .server
        .post(
            &path,
            &json!({"url": "http://127.0.0.1:1", "token": TOKEN, "ls_project": 7}),
        )
        .await;
    assert_eq!(code, 503, "{err}");
}
