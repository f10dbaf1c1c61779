//! Label Studio on a speech project (issue #24), against a real `labelloop
//! serve` with the real Silero VAD model on real Asterisk prompts arranged
//! into calls (tests/common/audio.rs): `<Labels>` on `<Audio>` configs
//! checked at `/setup`; `/predict` answering one `labels` result per
//! stored machine segment, `start`/`end` in seconds and the region id,
//! for a recording under the data root and one uploaded to Label Studio
//! (fetched with its token from a stand-in for Label Studio's host); and a
//! segment annotation from the webhook recorded as the recording's reviewed
//! set, once, with malformed segments refused by name.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use common::audio::{asterisk, call, matched, wav_bytes, RATE};
use common::server::{Server, TestDb};
use serde_json::{json, Value};

const TOKEN: &str = "LEGACY_TOKEN";

fn config(label: &str) -> String {
    format!(
        "<View><Audio name=\"audio\" value=\"$audio\"/>\
         <Labels name=\"vad\" toName=\"audio\"><Label value=\"{label}\"/><Label value=\"Music\"/></Labels>\
         <TextArea name=\"words\" toName=\"audio\" perRegion=\"true\"/></View>"
    )
}

/// Uploads the stand-in serves, by name, and the Authorization headers it saw.
#[derive(Clone, Default)]
struct Uploads {
    files: Arc<HashMap<String, Vec<u8>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn upload(
    State(u): State<Uploads>,
    Path((_p, name)): Path<(String, String)>,
    h: HeaderMap,
) -> axum::response::Response {
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    u.seen.lock().unwrap().push(auth.clone());
    if auth != format!("Token {TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match u.files.get(&name) {
        Some(b) => ([("content-type", "audio/wav")], b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A stand-in for Label Studio's host serving `/data/upload/…` behind its token.
async fn fake_label_studio(u: Uploads) -> String {
    let app = Router::new()
        .route("/data/upload/{p}/{name}", get(upload))
        .with_state(u);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{}", addr.port())
}

/// A call: its WAV bytes and its true segments in seconds.
type Call = (Vec<u8>, Vec<(f64, f64)>);

struct Env {
    server: Server,
    _db: TestDb,
    _root: tempfile::TempDir,
    _models: tempfile::TempDir,
    project: i64,
    /// The stand-in's URL, the connection's hostname.
    ls: String,
    uploads: Uploads,
    calls: Vec<Call>,
}

/// A speech project on `vad` whose Label Studio connection is the
/// stand-in; call-a lies under the data root, call-b is uploaded to
/// Label Studio.
async fn env(db: TestDb) -> Option<Env> {
    let dir = asterisk()?;
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("vad"), models.path().join("vad")).unwrap();
    std::fs::create_dir_all(root.path().join("calls")).unwrap();
    let mut calls = Vec::new();
    for (picks, seed) in [
        (&["hello", "vm-password"][..], 5),
        (&["goodbye", "activated", "auth-thankyou"][..], 7),
    ] {
        let (x, truth) = call(&dir, picks, seed, 0.0);
        calls.push((wav_bytes(RATE, 1, &x), truth));
    }
    std::fs::write(root.path().join("calls/call-a.wav"), &calls[0].0).unwrap();
    let uploads = Uploads {
        files: Arc::new(HashMap::from([(
            "3f2a91-call-b.wav".to_string(),
            calls[1].0.clone(),
        )])),
        seen: Arc::default(),
    };
    let ls = fake_label_studio(uploads.clone()).await;
    let root_path = root.path().canonicalize().unwrap();
    let host = ls.trim_start_matches("http://").to_string();
    let server = Server::start(
        &db.url,
        &[
            "--no-auth",
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            root_path.to_str().unwrap(),
            "--ls-hosts",
            &host,
        ],
    );
    let (code, p) = server
        .post(
            "/v1/projects",
            &json!({"name": "calls", "model": "vad", "threshold": 0.5}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["labels"], json!(["Speech"]), "{p}");
    let project = p["id"].as_i64().unwrap();
    let (code, body) = server
        .post(
            &format!("/labelstudio/{project}/setup"),
            &json!({"project": "1.1", "schema": config("Speech"), "hostname": &ls,
                    "access_token": TOKEN, "model_version": ""}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["model_version"].as_str().unwrap().starts_with("vad@"),
        "{body}"
    );
    Some(Env {
        server,
        _db: db,
        _root: root,
        _models: models,
        project,
        ls,
        uploads,
        calls,
    })
}

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

fn span(r: &Value) -> (f64, f64) {
    (
        r["value"]["start"].as_f64().unwrap(),
        r["value"]["end"].as_f64().unwrap(),
    )
}

fn region_span(r: &Value) -> (f64, f64) {
    let s = r["segment"].as_array().unwrap_or_else(|| panic!("{r}"));
    (s[0].as_f64().unwrap(), s[1].as_f64().unwrap())
}

#[tokio::test]
async fn setup_refuses_audio_configs_that_miss_the_projects_label() {
    let Some(e) = env(TestDb::sqlite()).await else {
        return;
    };
    let setup = |schema: String| {
        json!({"project": "1.1", "schema": schema, "hostname": &e.ls,
               "access_token": TOKEN, "model_version": ""})
    };
    for (schema, says) in [
        (config("Noise"), "has no label for [\"Speech\"]"),
        (
            "<View><Audio name=\"audio\" value=\"$audio\"/><Choices name=\"c\" toName=\"audio\"><Choice value=\"Speech\"/></Choices></View>".to_string(),
            "no <Labels>",
        ),
        (
            "<View><Text name=\"t\" value=\"$text\"/><Labels name=\"l\" toName=\"t\"><Label value=\"Speech\"/></Labels></View>".to_string(),
            "cut from an <Audio>",
        ),
    ] {
        let (code, body) = e
            .server
            .post(&format!("/labelstudio/{}/setup", e.project), &setup(schema))
            .await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(body["error"]["code"], "labels_mismatch", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{says}: {msg}");
    }
    // Case differs and <AudioPlus>: accepted.
    let plus = config("speech").replace("<Audio ", "<AudioPlus ");
    let (code, body) = e
        .server
        .post(&format!("/labelstudio/{}/setup", e.project), &setup(plus))
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn predict_answers_stored_segments_and_webhooks_record_the_reviewed_set_once_sqlite() {
    if let Some(e) = env(TestDb::sqlite()).await {
        predict_answers_stored_segments_and_webhooks_record_the_reviewed_set_once(e).await;
    }
}

#[tokio::test]
async fn predict_answers_stored_segments_and_webhooks_record_the_reviewed_set_once_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    if let Some(e) = env(db).await {
        predict_answers_stored_segments_and_webhooks_record_the_reviewed_set_once(e).await;
    }
}

async fn predict_answers_stored_segments_and_webhooks_record_the_reviewed_set_once(e: Env) {
    let p = e.project;
    let tasks = json!([
        {"id": 1, "data": {"audio": "calls/call-a.wav"}},
        {"id": 2, "data": {"audio": "/data/upload/1/3f2a91-call-b.wav"}},
        {"id": 3, "data": {"audio": "/data/upload/1/missing.wav"}},
    ]);
    let predict = json!({"tasks": tasks, "label_config": config("Speech")});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{out}");
    let version = out["model_version"].as_str().unwrap();
    assert!(version.starts_with("vad@"), "{out}");
    // The upload was fetched from Label Studio with its token.
    assert!(
        e.uploads
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == &format!("Token {TOKEN}")),
        "token sent"
    );
    // The missing upload fails alone, with an empty result.
    assert_eq!(results[2]["result"], json!([]), "{}", results[2]);

    // The engine's own segments for each call, in seconds.
    let model = common::shared("vad");
    let mut item_of = HashMap::new();
    let (_, items) = e.server.get(&format!("/v1/projects/{p}/items")).await;
    for it in items["items"].as_array().unwrap() {
        item_of.insert(
            it["client_id"].as_str().unwrap().to_string(),
            it["id"].as_i64().unwrap(),
        );
    }
    assert_eq!(
        item_of.len(),
        2,
        "the two readable tasks became items: {items}"
    );
    for (k, ((bytes, truth), pred)) in e.calls.iter().zip(results).enumerate() {
        let engine = model
            .predict(&[labelloop::model::Input::Audio(bytes.clone())])
            .remove(0)
            .unwrap()
            .segments
            .unwrap();
        let got = pred["result"].as_array().unwrap();
        assert_eq!(got.len(), engine.segments.len(), "{pred}");
        assert_eq!(pred["model_version"], version);
        let item = item_of[&format!("ls-task-{}", k + 1)];
        let (_, stored) = e
            .server
            .get(&format!("/v1/projects/{p}/items/{item}/regions"))
            .await;
        let machine: Vec<&Value> = stored["regions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["source"] == "machine")
            .collect();
        assert_eq!(machine.len(), got.len(), "{stored}");
        for ((r, g), m) in got.iter().zip(&engine.segments).zip(&machine) {
            assert_eq!(r["type"], "labels", "{r}");
            assert_eq!(r["from_name"], "vad");
            assert_eq!(r["to_name"], "audio");
            assert_eq!(r["origin"], "prediction");
            assert_eq!(r["id"], format!("m{}", m["id"]), "the region's id: {r}");
            assert_eq!(r["value"]["channel"], 0);
            assert_eq!(r["value"]["labels"], json!(["Speech"]));
            let (s, t) = span(r);
            assert!(
                (s - g.start).abs() < 1e-9 && (t - g.end).abs() < 1e-9,
                "{r} vs {g:?}"
            );
            assert_eq!((s, t), region_span(m), "the stored segment");
            assert!((r["original_length"].as_f64().unwrap() - engine.duration).abs() < 1e-9);
            assert!((r["score"].as_f64().unwrap() - f64::from(g.score)).abs() < 1e-6);
        }
        let weakest = engine
            .segments
            .iter()
            .map(|g| f64::from(g.score))
            .fold(f64::INFINITY, f64::min);
        assert!(
            (pred["score"].as_f64().unwrap() - weakest).abs() < 1e-6,
            "{pred}"
        );
        let spans: Vec<(f64, f64)> = got.iter().map(span).collect();
        let n = truth.len();
        assert_eq!(matched(truth, &spans), (n, n, n), "{spans:?} vs {truth:?}");
    }

    // Predicting again answers the same ids and writes no second machine set.
    let (code, again) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200);
    assert_eq!(again["results"], out["results"]);
    let item = item_of["ls-task-2"];
    let regions_path = format!("/v1/projects/{p}/items/{item}/regions");
    let (_, fresh) = e.server.get(&regions_path).await;
    assert_eq!(fresh["regions"].as_array().unwrap().len(), 3, "{fresh}");

    // The annotator keeps the first segment, moves the second's end, drops
    // the third, draws one in a gap, and types a transcript (ignored).
    let predicted = results[1]["result"].as_array().unwrap().clone();
    let mut kept = predicted[0].clone();
    kept.as_object_mut().unwrap().remove("score");
    let mut moved = predicted[1].clone();
    let (ms, me) = span(&moved);
    moved["value"]["end"] = json!(me + 0.25);
    let (_, first_end) = span(&predicted[0]);
    let (second_start, _) = span(&predicted[1]);
    let gap = (
        first_end + 0.1,
        first_end + 0.1 + (second_start - first_end - 0.2).min(0.3),
    );
    let added = json!({"id": "wave1", "from_name": "vad", "to_name": "audio", "type": "labels",
                       "original_length": predicted[0]["original_length"],
                       "value": {"start": gap.0, "end": gap.1, "channel": 0, "labels": ["Speech"]}});
    let words = json!({"id": kept["id"], "from_name": "words", "to_name": "audio", "type": "textarea",
                       "value": {"start": span(&kept).0, "end": span(&kept).1, "text": ["goodbye"]}});
    let event = |id: i64, result: Vec<Value>, at: &str, action: &str| {
        json!({
            "action": action,
            "task": {"id": 2, "data": {"audio": "/data/upload/1/3f2a91-call-b.wav"}},
            "annotation": {"id": id, "task": 2, "result": result,
                           "completed_by": {"id": 1, "email": "ann@example.com"}, "updated_at": at},
            "project": {"id": 1, "label_config": config("Speech")},
        })
    };
    let body = event(
        701,
        vec![kept.clone(), moved.clone(), added.clone(), words],
        "2026-12-07T10:00:00Z",
        "ANNOTATION_CREATED",
    );
    let hook_path = format!("/labelstudio/{p}/webhook");
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!(code, 200, "{ans}");
    assert_eq!(ans["status"], "ok", "{ans}");
    let (_, after) = e.server.get(&regions_path).await;
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let id_of = |r: &Value| r["id"].as_str().unwrap()[1..].parse::<i64>().unwrap();
    let by_id = |id: i64| regions.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id(id_of(&predicted[0]))["status"], "accepted");
    assert_eq!(by_id(id_of(&predicted[1]))["status"], "corrected");
    assert_eq!(by_id(id_of(&predicted[2]))["status"], "deleted");
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 2, "a moved segment and a drawn one: {after}");
    assert!(human
        .iter()
        .all(|r| r["annotator"] == "ls:ann@example.com" && r["kind"] == "span"));
    let corrected = human.iter().find(|r| r["status"] == "corrected").unwrap();
    assert_eq!(corrected["replaces"], id_of(&predicted[1]));
    assert_eq!(region_span(corrected), (ms, me + 0.25));
    let drawn = human.iter().find(|r| r["status"] == "added").unwrap();
    assert_eq!(region_span(drawn), gap);

    // Delivered again: nothing is written twice.
    let (code, _) = hook(&e.server, &hook_path, &body).await;
    assert_eq!(code, 200);
    let (_, twice) = e.server.get(&regions_path).await;
    assert_eq!(twice["regions"], after["regions"]);

    // Malformed segments are refused by name, and nothing is written.
    let duration = after["duration"].as_f64().unwrap();
    for (k, (start, end, label, code_want, says)) in [
        (
            3.0,
            2.0,
            "Speech",
            "invalid_field",
            "annotation.result[1].value",
        ),
        (
            1.0,
            duration + 5.0,
            "Speech",
            "invalid_field",
            "outside the recording",
        ),
        (
            1.0,
            2.0,
            "Noise",
            "unknown_label",
            "annotation.result[1].value.labels",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut bad = added.clone();
        bad["value"]["start"] = json!(start);
        bad["value"]["end"] = json!(end);
        bad["value"]["labels"] = json!([label]);
        let body = event(
            710 + k as i64,
            vec![kept.clone(), bad],
            "t",
            "ANNOTATION_CREATED",
        );
        let (code, ans) = hook(&e.server, &hook_path, &body).await;
        assert_eq!(code, 422, "{ans}");
        assert_eq!(ans["error"]["code"], code_want, "{ans}");
        let msg = ans["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{says}: {msg}");
    }
    let (_, still) = e.server.get(&regions_path).await;
    assert_eq!(still["regions"], after["regions"]);

    // An update replaces the set: only the first segment, as predicted.
    let body = event(
        701,
        vec![kept],
        "2026-12-07T10:05:00Z",
        "ANNOTATION_UPDATED",
    );
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!(code, 200, "{ans}");
    let (_, updated) = e.server.get(&regions_path).await;
    let regions = updated["regions"].as_array().unwrap();
    assert!(
        regions.iter().all(|r| r["source"] == "machine"),
        "{updated}"
    );
    let statuses: Vec<&str> = regions
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "deleted", "deleted"], "{updated}");

    // Deleting segment annotations withdraws what they recorded, once:
    // Carol's later set stays when Ann's goes; with none left, the
    // recording's review is undone, its machine segments routed again.
    let mut carol = predicted[1].clone();
    carol["value"]["start"] = json!(ms - 0.1);
    let mut body = event(702, vec![carol], "t2", "ANNOTATION_CREATED");
    body["annotation"]["completed_by"] = json!({"id": 3, "email": "carol@example.com"});
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!((code, ans["status"].as_str()), (200, Some("ok")), "{ans}");
    let (_, by_carol) = e.server.get(&regions_path).await;
    let delete = |ids: &[i64]| {
        json!({"action": "ANNOTATIONS_DELETED", "project": {"id": 1},
               "annotations": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()})
    };
    let (code, ans) = hook(&e.server, &hook_path, &delete(&[701])).await;
    assert_eq!((code, ans["recorded"].as_i64()), (200, Some(1)), "{ans}");
    let (_, now) = e.server.get(&regions_path).await;
    assert_eq!(now["regions"], by_carol["regions"], "Carol's set stays");
    let (code, ans) = hook(&e.server, &hook_path, &delete(&[702])).await;
    assert_eq!((code, ans["recorded"].as_i64()), (200, Some(1)), "{ans}");
    let (_, reopened) = e.server.get(&regions_path).await;
    let regions = reopened["regions"].as_array().unwrap();
    assert!(
        regions
            .iter()
            .all(|r| r["source"] == "machine" && r["annotator"].is_null()),
        "{reopened}"
    );
    let routed = |v: &Value| -> Vec<Value> {
        v["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["id"], r["status"]]))
            .collect()
    };
    assert_eq!(
        routed(&reopened),
        routed(&fresh),
        "machine segments as the pre-label routed them"
    );
    let (_, full) = e.server.get(&format!("/v1/items/{item}")).await;
    let want = if fresh["status"] == "needs_review" || full["undecided"].as_f64().unwrap() >= 0.5 {
        "needs_review"
    } else {
        "auto_accepted"
    };
    assert_eq!(reopened["status"], want, "{reopened}");
    // Delivered again: nothing changes.
    let (code, _) = hook(&e.server, &hook_path, &delete(&[702])).await;
    assert_eq!(code, 200);
    let (_, again) = e.server.get(&regions_path).await;
    assert_eq!(again["regions"], reopened["regions"]);

    // An annotation of a task never predicted: the recording is ingested,
    // pre-labeled, and the set recorded on it (every machine segment left
    // out is deleted).
    let body = json!({
        "action": "ANNOTATION_CREATED",
        "task": {"id": 9, "data": {"audio": "calls/call-a.wav"}},
        "annotation": {"id": 901, "task": 9, "completed_by": {"id": 2, "email": "bob@example.com"},
                       "updated_at": "t9",
                       "result": [{"id": "q", "from_name": "vad", "to_name": "audio", "type": "labels",
                                   "value": {"start": 0.1, "end": 0.3, "channel": 0, "labels": ["Speech"]}}]},
        "project": {"id": 1, "label_config": config("Speech")},
    });
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!(code, 200, "{ans}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let unseen = loop {
        let (_, items) = e.server.get(&format!("/v1/projects/{p}/items")).await;
        let item = items["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["client_id"] == "ls-task-9")
            .and_then(|i| i["id"].as_i64());
        if let Some(item) = item {
            let (_, r) = e
                .server
                .get(&format!("/v1/projects/{p}/items/{item}/regions"))
                .await;
            if r["status"] == "labeled" {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "task 9 never recorded: {items}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let regions = unseen["regions"].as_array().unwrap();
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 1, "{unseen}");
    assert_eq!(human[0]["status"], "added");
    assert_eq!(human[0]["annotator"], "ls:bob@example.com");
    assert_eq!(region_span(human[0]), (0.1, 0.3));
    let machine: Vec<&Value> = regions
        .iter()
        .filter(|r| r["source"] == "machine")
        .collect();
    assert_eq!(machine.len(), e.calls[0].1.len(), "{unseen}");
    assert!(machine.iter().all(|r| r["status"] == "deleted"), "{unseen}");
}
