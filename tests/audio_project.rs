//! Speech segments through the loop (issue 24), on the real server, the
//! real Silero VAD model and real Asterisk prompts arranged into calls
//! (tests/common/audio.rs), on SQLite and PostgreSQL: a project on `vad`
//! ingests recordings by path under the data root, its job writes each
//! recording's segments once as machine regions of kind `span`, routed by
//! the project's threshold; a reviewer's corrected segments are recorded
//! (and bad ones refused, naming `regions[i]`); the JSONL and RTTM exports
//! carry the final segments; the content route serves byte ranges; bad
//! files fail alone.

mod common;

use std::path::Path;
use std::time::Duration;

use common::audio::{asterisk, call, matched, wav_bytes, RATE};
use common::server::{create_token, send, Server, TestDb};
use labelloop::store::Store;
use serde_json::{json, Value};

/// The calls: (id, prompts, seed, noise as a share of the speech RMS).
const CALLS: [(&str, &[&str], u64, f64); 3] = [
    ("call-a", &["hello", "vm-password"], 5, 0.0),
    ("call-b", &["goodbye", "activated", "auth-thankyou"], 7, 0.0),
    ("call-c", &["agent-loginok", "queue-thankyou"], 11, 0.05),
];

async fn put(s: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(
        s.client
            .put(format!("{}{}", s.url, path))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

/// A server with only the `vad` model, the data root `root`.
fn start(db: &TestDb, root: &Path, models: &Path) -> Server {
    Server::start(
        &db.url,
        &[
            "--models",
            models.to_str().unwrap(),
            "--data-root",
            root.to_str().unwrap(),
        ],
    )
}

/// Every item of a project, by client id.
async fn items(s: &Server, project: i64) -> Vec<Value> {
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

fn by_client<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["client_id"] == id)
        .unwrap_or_else(|| panic!("no item {id}"))
}

fn segment(r: &Value) -> (f64, f64) {
    let s = r["segment"].as_array().unwrap_or_else(|| panic!("{r}"));
    (s[0].as_f64().unwrap(), s[1].as_f64().unwrap())
}

/// A project on `vad` with `threshold`, its calls ingested and labeled.
async fn project_with_calls(s: &Server, name: &str, threshold: f64, bad: bool) -> i64 {
    let (code, p) = s
        .post(
            "/v1/projects",
            // No audit draw: this test is about the fixed threshold's routing
            // (audit recordings always wait; tests/audio_calibration.rs).
            &json!({"name": name, "model": "vad", "threshold": threshold,
                    "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "segments", "{p}");
    assert_eq!(p["labels"], json!(["Speech"]), "{p}");
    let project = p["id"].as_i64().unwrap();
    let mut body: Vec<Value> = CALLS
        .iter()
        .map(|(id, ..)| json!({"id": id, "path": format!("calls/{id}.wav")}))
        .collect();
    if bad {
        body.push(json!({"id": "notes", "path": "bad/notes.wav"}));
        body.push(json!({"id": "truncated", "path": "bad/truncated.wav"}));
    }
    let (code, v) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(body))
        .await;
    assert_eq!(code, 202, "{v}");
    let job = s
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(300))
        .await;
    assert_eq!(job["total"], body.len(), "{job}");
    let errors = if bad { 2 } else { 0 };
    assert_eq!(job["errors"], errors, "{job}");
    assert_eq!(job["done"], body.len() - errors, "{job}");
    project
}

async fn speech_through_the_loop(db: TestDb) {
    let Some(dir) = asterisk() else { return };
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("vad"), models.path().join("vad")).unwrap();
    std::fs::create_dir_all(root.path().join("calls")).unwrap();
    std::fs::create_dir_all(root.path().join("bad")).unwrap();
    let mut truths = Vec::new();
    for (id, picks, seed, noise) in CALLS {
        let (x, truth) = call(&dir, picks, seed, noise);
        let bytes = wav_bytes(RATE, 1, &x);
        std::fs::write(root.path().join(format!("calls/{id}.wav")), &bytes).unwrap();
        truths.push((id, truth, x.len() as f64 / f64::from(RATE), bytes));
    }
    std::fs::write(
        root.path().join("bad/notes.wav"),
        b"plain words, not a sound",
    )
    .unwrap();
    let good = &truths[0].3;
    std::fs::write(
        root.path().join("bad/truncated.wav"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.wav"), good).unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let s = start(&db, &root_path, models.path()).with_token(&admin);

    // Threshold 0.5: a project, its job, its segments.
    let lenient = project_with_calls(&s, "calls", 0.5, true).await;
    let listed = items(&s, lenient).await;
    assert_eq!(listed.len(), 5);
    for bad in ["notes", "truncated"] {
        let it = by_client(&listed, bad);
        assert_eq!(it["status"], "failed", "{it}");
        assert!(
            it["error"].as_str().unwrap().contains("decod"),
            "a clear per-item error: {it}"
        );
    }
    let mut settled = 0;
    for (id, truth, duration, _) in &truths {
        let it = by_client(&listed, id);
        let (code, full) = s.get(&format!("/v1/items/{}", it["id"])).await;
        assert_eq!(code, 200, "{full}");
        assert!(
            (full["duration"].as_f64().unwrap() - duration).abs() < 1e-2,
            "{full}"
        );
        assert!(full["undecided"].as_f64().unwrap() >= 0.0, "{full}");
        let regions = full["regions"].as_array().unwrap();
        assert!(regions.iter().all(|r| r["kind"] == "span"
            && r["source"] == "machine"
            && r["box"].is_null()
            && r["label"] == "Speech"));
        let segs: Vec<(f64, f64)> = regions.iter().map(segment).collect();
        let n = truth.len();
        assert_eq!(
            matched(truth, &segs),
            (n, n, n),
            "{id}: {segs:?} vs {truth:?}"
        );
        // The routing rule: a segment is accepted iff its score reaches the
        // threshold; a recording is settled only when every one is.
        for r in regions {
            let score = r["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{r}");
            let want = if score >= 0.5 { "accepted" } else { "review" };
            assert_eq!(r["status"], want, "{r}");
            assert!(r["uncertainty"].is_number(), "{r}");
        }
        if full["status"] == "auto_accepted" {
            settled += 1;
            assert!(regions.iter().all(|r| r["status"] == "accepted"));
        } else {
            assert_eq!(full["status"], "needs_review", "{full}");
        }
    }
    eprintln!("threshold 0.5: {settled} of 3 calls auto-accepted");
    assert!(settled >= 1, "clean calls are settled at threshold 0.5");

    // Exactly once: one machine row per segment, no human rows.
    let store = Store::connect(&db.url).await.unwrap();
    let counts = store.region_counts(lenient).await.unwrap();
    assert_eq!(counts.len(), 3, "{counts:?}");
    for ((item, source, n), (_, truth, ..)) in counts.iter().zip(&truths) {
        assert_eq!(source, "machine");
        assert_eq!(*n as usize, truth.len(), "item {item}");
    }
    store.close().await;

    // Threshold 0.99: no mean probability reaches it; every call waits for a
    // person, its segments drawn, ranked by its uncertainty.
    let strict = project_with_calls(&s, "strict", 0.99, false).await;
    let strict_items = items(&s, strict).await;
    for it in &strict_items {
        assert_eq!(it["status"], "needs_review", "{it}");
    }
    let (code, queue) = s
        .get(&format!("/v1/projects/{strict}/review?limit=10"))
        .await;
    assert_eq!(code, 200, "{queue}");
    let queued = queue["items"].as_array().unwrap();
    assert_eq!(queued.len(), 3, "{queue}");
    assert!(queued.iter().all(|i| i["regions"].is_array()), "{queue}");

    // A reviewer corrects call-b: keeps the first segment, moves the second,
    // deletes the third, adds one.
    let item = by_client(&strict_items, "call-b")["id"].as_i64().unwrap();
    let path = format!("/v1/projects/{strict}/items/{item}/regions");
    let (code, before) = s.get(&path).await;
    assert_eq!(code, 200, "{before}");
    let duration = before["duration"].as_f64().unwrap();
    let machine: Vec<&Value> = before["regions"].as_array().unwrap().iter().collect();
    assert_eq!(machine.len(), 3, "{before}");
    let (s1, e1) = segment(machine[1]);
    let set = json!({"regions": [
        {"id": machine[0]["id"], "label": "Speech", "segment": machine[0]["segment"]},
        {"id": machine[1]["id"], "label": "Speech", "segment": [s1 + 0.1, e1 - 0.05]},
        {"label": "Speech", "segment": [0.0, 0.25]},
    ]});
    // Bad sets first: nothing is written, the segment is named.
    for (bad, says) in [
        (
            json!({"regions": [{"label": "Speech", "segment": [2.0, 1.0]}]}),
            "regions[0].segment",
        ),
        (
            json!({"regions": [{"label": "Speech", "segment": [0.0, 1.0]},
                               {"label": "Speech", "segment": [1.0, duration + 5.0]}]}),
            "regions[1].segment",
        ),
        (
            json!({"regions": [{"label": "Speech", "box": [0, 0, 1, 1]}]}),
            "regions[0].box",
        ),
        (
            json!({"regions": [{"label": "Music", "segment": [0.0, 1.0]}]}),
            "regions[0].label",
        ),
    ] {
        let (code, v) = put(&s, &alice, &path, &bad).await;
        assert_eq!(code, 422, "{bad}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    let (code, after) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled", "{after}");
    let statuses: Vec<(String, String)> = after["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("machine", "accepted"),
        ("machine", "corrected"),
        ("machine", "deleted"),
        ("human", "corrected"),
        ("human", "added"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, want, "{after}");
    // The same set again changes nothing.
    let (code, again) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again, after);

    // RTTM: the labeled call's final segments, in time order; the calls
    // awaiting review are left out.
    let (code, rttm) = s
        .get_text(&format!("/v1/projects/{strict}/export?format=rttm"))
        .await;
    assert_eq!(code, 200, "{rttm}");
    let (s0, e0) = segment(machine[0]);
    let mut want = vec![(0.0, 0.25), (s0, e0), (s1 + 0.1, e1 - 0.05)];
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lines: Vec<&str> = rttm.lines().collect();
    assert_eq!(lines.len(), 3, "{rttm}");
    for (line, (a, b)) in lines.iter().zip(&want) {
        assert_eq!(
            *line,
            format!(
                "SPEAKER call-b 1 {a:.3} {:.3} <NA> <NA> speech <NA> <NA>",
                b - a
            )
        );
    }
    // The lenient project's RTTM holds its auto-accepted calls' segments.
    let (code, rttm) = s
        .get_text(&format!("/v1/projects/{lenient}/export?format=rttm"))
        .await;
    assert_eq!(code, 200, "{rttm}");
    let accepted: usize = truths
        .iter()
        .filter(|(id, ..)| by_client(&listed, id)["status"] == "auto_accepted")
        .map(|(_, t, ..)| t.len())
        .sum();
    assert_eq!(rttm.lines().count(), accepted, "{rttm}");
    // JSONL carries the segments; RTTM on a project without segments, and
    // Label Studio on one with, are refused.
    let (code, jsonl) = s
        .get_text(&format!("/v1/projects/{strict}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200, "{jsonl}");
    let line: Value = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["id"] == item)
        .unwrap();
    assert_eq!(line["regions"].as_array().unwrap().len(), 5, "{line}");
    assert!(line["duration"].is_number(), "{line}");
    // Label Studio tasks: `labels` on audio in seconds; the machine's three
    // segments as the prediction, the reviewer's final three as the
    // annotation (the kept one under its machine id).
    let (code, tasks) = s
        .get(&format!("/v1/projects/{strict}/export?format=labelstudio"))
        .await;
    assert_eq!(code, 200, "{tasks}");
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == item)
        .unwrap_or_else(|| panic!("{tasks}"));
    let predicted = task["predictions"][0]["result"].as_array().unwrap();
    assert_eq!(predicted.len(), 3, "{task}");
    for (r, m) in predicted.iter().zip(&machine) {
        assert_eq!(r["type"], "labels", "{r}");
        assert_eq!(r["to_name"], "audio", "{r}");
        assert_eq!(r["value"]["labels"], json!(["Speech"]), "{r}");
        assert_eq!(
            json!([r["value"]["start"], r["value"]["end"]]),
            m["segment"],
            "{r}"
        );
    }
    let annotated: Vec<(f64, f64)> = task["annotations"][0]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"]["start"].as_f64().unwrap(),
                r["value"]["end"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut annotated_sorted = annotated.clone();
    annotated_sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(annotated_sorted, want, "{task}");
    assert_eq!(task["meta"]["duration"], before["duration"], "{task}");

    // Content: the WAV whole, and in parts for a player that seeks.
    let wav = &truths[1].3;
    let content = format!("/v1/items/{item}/content");
    let r = s
        .client
        .get(format!("{}{content}", s.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &wav[..]);
    let ranged = |h: String| {
        s.client
            .get(format!("{}{content}", s.url))
            .bearer_auth(&admin)
            .header("range", h)
            .send()
    };
    // Only the part is read from the file; its type is still told from the
    // file's first bytes.
    let r = ranged("bytes=1000-1999".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", wav.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &wav[1000..2000]);
    let r = ranged("bytes=-44".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &wav[wav.len() - 44..]);
    let r = ranged(format!("bytes={}-", wav.len())).await.unwrap();
    assert_eq!(r.status().as_u16(), 416);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "range_not_satisfiable", "{v}");

    // Ingest refuses what is not a recording under the data root, naming
    // the item; nothing of that request is stored.
    let outside_path = outside.path().join("secret.wav");
    for (bad, code_want, says) in [
        (
            json!([{"id": "ok", "path": "calls/call-a.wav"},
                   {"id": "away", "path": outside_path.to_str().unwrap()}]),
            403,
            "item [1]",
        ),
        (
            json!([{"id": "words", "text": "hello there"}]),
            422,
            "takes recordings",
        ),
    ] {
        let (code, v) = s.post(&format!("/v1/projects/{lenient}/items"), &bad).await;
        assert_eq!(code, code_want, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    assert_eq!(items(&s, lenient).await.len(), 5);

    // Recordings also arrive as bytes: base64 in the item's `image` field,
    // and as a multipart upload (the file name is the id); both are
    // segmented like the files under the root.
    let wav_b = &truths[1].3;
    let (code, v) = s
        .post(
            &format!("/v1/projects/{lenient}/items"),
            &json!([{"id": "b64-call", "image": common::server::b64(wav_b)}]),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    s.wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    let boundary = "speechboundary3";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload-call.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(wav_b);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (code, v) = s
        .post_raw(
            &format!("/v1/projects/{lenient}/items"),
            body,
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    s.wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    let all = items(&s, lenient).await;
    for id in ["b64-call", "upload-call.wav"] {
        let it = by_client(&all, id);
        let (_, full) = s.get(&format!("/v1/items/{}", it["id"])).await;
        let segs: Vec<(f64, f64)> = full["regions"]
            .as_array()
            .unwrap_or_else(|| panic!("{full}"))
            .iter()
            .map(segment)
            .collect();
        let truth = &truths[1].1;
        assert_eq!(
            matched(truth, &segs),
            (truth.len(), truth.len(), truth.len()),
            "{id}: {full}"
        );
    }

    // The served document lists the new format and the ranged answer.
    let (code, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(code, 200);
    let doc = doc.to_string();
    assert!(doc.contains("rttm") && doc.contains("range_not_satisfiable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_through_the_loop_sqlite() {
    speech_through_the_loop(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_through_the_loop_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    speech_through_the_loop(db).await;
}
