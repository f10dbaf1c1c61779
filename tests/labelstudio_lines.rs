//! Label Studio on an OCR project (issue #23), against a real `labelloop
//! serve` with the real PP-OCRv6 model (models/ocr) and real rendered pages
//! (data/ocr-pages, synthetic pages made by scripts/setup.sh), on SQLite
//! and PostgreSQL:
//! - `/setup` takes a `<TextArea perRegion="true">` with a `<Rectangle>` or
//!   `<Polygon>` on an `<Image>`, and refuses one whose `TextArea` is not
//!   per-region (422 saying so) or that has no shape or no `TextArea`;
//! - `/predict` answers, per stored line, a shape result and a `textarea`
//!   result (and a `labels` one) sharing the region id `m<id>`, in percent
//!   of the page with `original_width/height` and the line's `score`;
//!   asked again, the same results (nothing computed or stored twice);
//! - an annotation (kept lines, a corrected text, a dropped line, a drawn
//!   one) is recorded once as the page's reviewed lines; the same webhook
//!   again, or the same set under a new `updated_at`, changes nothing; a
//!   transcription over 10,000 characters is refused by name; deleting the
//!   annotation withdraws it.

mod common;

use std::time::{Duration, Instant};

use common::server::{Server, TestDb};
use labelloop::store::Store;
use serde_json::{json, Value};

/// Label Studio's OCR template: `<Labels>`, `<Rectangle>`, `<Polygon>`
/// and a per-region `<TextArea>` on one `<Image>`; `polygon` drops the
/// rectangle, so the lines are polygons.
fn config(polygon: bool) -> String {
    let rect = if polygon {
        ""
    } else {
        r#"<Rectangle name="bbox" toName="image" strokeWidth="3"/>"#
    };
    format!(
        r#"<View><Image name="image" value="$ocr"/>
        <Labels name="label" toName="image"><Label value="Text" background="green"/><Label value="Handwriting"/></Labels>
        {rect}<Polygon name="poly" toName="image" strokeWidth="3"/>
        <TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true"
                  maxSubmissions="1" rows="5" placeholder="Recognized Text" displayMode="region-list"/></View>"#
    )
}

const PAGES: [&str; 2] = ["images/page_0001.png", "images/page_0003.png"];

struct Env {
    server: Server,
    db: TestDb,
    project: i64,
    _models: tempfile::TempDir,
}

fn env(db: TestDb) -> Env {
    common::require(&common::model_dir("ocr").join("rec.onnx"));
    let pages = common::root().join("data/ocr-pages");
    common::require(&pages.join(PAGES[0]));
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("ocr"), models.path().join("ocr")).unwrap();
    let server = Server::start(
        &db.url,
        &[
            "--no-auth",
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            pages.canonicalize().unwrap().to_str().unwrap(),
        ],
    );
    Env {
        server,
        db,
        project: 0,
        _models: models,
    }
}

async fn with_project(mut e: Env) -> Env {
    let (code, p) = e
        .server
        .post(
            "/v1/projects",
            &json!({"name": "pages", "model": "ocr", "threshold": 0.95,
                    "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "lines", "{p}");
    e.project = p["id"].as_i64().unwrap();
    e
}

async fn hook(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out) = server.post(path, body).await;
        if code != 200 || out["status"] != "queued" {
            return (code, out);
        }
        assert!(Instant::now() < deadline, "webhook never applied: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn setup_refuses_a_textarea_that_is_not_per_region() {
    let e = with_project(env(TestDb::sqlite())).await;
    let p = e.project;
    let setup = |schema: String| {
        json!({"project": "1.1", "schema": schema, "hostname": "http://localhost:8080",
               "access_token": "t", "model_version": ""})
    };
    let path = format!("/labelstudio/{p}/setup");
    for (bad, says) in [
        (
            config(false).replace(" perRegion=\"true\"", ""),
            "<TextArea name=\"transcription\" toName=\"image\"> is not per-region",
        ),
        (
            config(false)
                .replace(r#"<Rectangle name="bbox" toName="image" strokeWidth="3"/>"#, "")
                .replace(r#"<Polygon name="poly" toName="image" strokeWidth="3"/>"#, ""),
            "no <Rectangle> or <Polygon>",
        ),
        (
            r#"<View><Image name="image" value="$ocr"/><Choices name="c" toName="image"><Choice value="Text"/></Choices></View>"#.to_string(),
            "no <TextArea> tag",
        ),
        (
            r#"<View><Image name="i" value="$ocr"/><RectangleLabels name="r" toName="i"><Label value="Title"/></RectangleLabels><TextArea name="t" toName="i" perRegion="true"/></View>"#.to_string(),
            "<RectangleLabels name=\"r\"> has no label for [\"Text\"]",
        ),
    ] {
        let (code, body) = e.server.post(&path, &setup(bad)).await;
        assert_eq!(code, 422, "{says}: {body}");
        assert_eq!(body["error"]["code"], "labels_mismatch", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{says}: {msg}");
    }
    // /predict with such a config is refused the same way, before any work.
    let (code, body) = e
        .server
        .post(
            &format!("/labelstudio/{p}/predict"),
            &json!({"tasks": [{"id": 1, "data": {"ocr": PAGES[0]}}],
                    "label_config": config(false).replace(" perRegion=\"true\"", "")}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is not per-region"));
    // Rectangles or polygons alone: accepted.
    for polygon in [false, true] {
        let (code, body) = e.server.post(&path, &setup(config(polygon))).await;
        assert_eq!(code, 200, "{body}");
        assert!(body["model_version"].as_str().unwrap().starts_with("ocr"));
    }
}

#[tokio::test]
async fn predict_answers_stored_lines_and_webhooks_record_corrections_once_sqlite() {
    let e = with_project(env(TestDb::sqlite())).await;
    lines_through_label_studio(e, false).await;
}

#[tokio::test]
async fn predict_answers_stored_lines_and_webhooks_record_corrections_once_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let e = with_project(env(db)).await;
    lines_through_label_studio(e, true).await;
}

/// The results of a prediction grouped by region id, in order.
fn by_region(results: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for r in results {
        let id = r["id"].as_str().unwrap().to_string();
        match out.iter_mut().find(|(k, _)| *k == id) {
            Some((_, v)) => v.push(r.clone()),
            None => out.push((id, vec![r.clone()])),
        }
    }
    out
}

/// A polygon's or rectangle's box in pixels, from percent.
fn pixels(r: &Value) -> [f64; 4] {
    let (w, h) = (
        r["original_width"].as_f64().unwrap(),
        r["original_height"].as_f64().unwrap(),
    );
    let v = &r["value"];
    if let Some(points) = v["points"].as_array() {
        let xs: Vec<f64> = points.iter().map(|p| p[0].as_f64().unwrap()).collect();
        let ys: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let min = |a: &[f64]| a.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |a: &[f64]| a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        return [
            min(&xs) * w / 100.0,
            min(&ys) * h / 100.0,
            max(&xs) * w / 100.0,
            max(&ys) * h / 100.0,
        ];
    }
    let f = |k: &str| v[k].as_f64().unwrap();
    [
        f("x") * w / 100.0,
        f("y") * h / 100.0,
        (f("x") + f("width")) * w / 100.0,
        (f("y") + f("height")) * h / 100.0,
    ]
}

fn corners(v: &Value) -> [f64; 4] {
    [0, 1, 2, 3].map(|i| v[i].as_f64().unwrap())
}

async fn lines_through_label_studio(e: Env, polygon: bool) {
    let p = e.project;
    let shape = if polygon { "polygon" } else { "rectangle" };
    let tasks: Vec<Value> = PAGES
        .iter()
        .enumerate()
        .map(|(k, page)| json!({"id": k + 1, "data": {"ocr": page}}))
        .collect();
    // The pages are pre-labeled first, under the ids Label Studio's tasks
    // map to (as a sync does): reading a page takes seconds, more in a
    // debug build beside other tests, and `/predict` waits 75 s at most
    // (a page not read by then gets an empty result, tested for speech).
    let items: Vec<Value> = PAGES
        .iter()
        .enumerate()
        .map(|(k, page)| json!({"id": format!("ls-task-{}", k + 1), "path": page}))
        .collect();
    let (code, v) = e
        .server
        .post(&format!("/v1/projects/{p}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{v}");
    let job = e
        .server
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(900))
        .await;
    assert_eq!(job["errors"], 0, "{job}");
    let predict = json!({"tasks": tasks, "label_config": config(polygon)});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), PAGES.len(), "{out}");
    let version = out["model_version"].as_str().unwrap();

    let (_, items) = e.server.get(&format!("/v1/projects/{p}/items")).await;
    let item_of = |task: usize| {
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["client_id"] == format!("ls-task-{task}"))
            .unwrap_or_else(|| panic!("task {task} is an item: {items}"))["id"]
            .as_i64()
            .unwrap()
    };
    let mut lines_seen = 0;
    for (k, pred) in results.iter().enumerate() {
        assert_eq!(pred["model_version"], version);
        let item = item_of(k + 1);
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
        let groups = by_region(pred["result"].as_array().unwrap());
        assert!(machine.len() >= 5, "a page has its lines: {stored}");
        assert_eq!(groups.len(), machine.len(), "one region per stored line");
        let (w, h) = (
            stored["width"].as_f64().unwrap(),
            stored["height"].as_f64().unwrap(),
        );
        for ((id, rs), m) in groups.iter().zip(&machine) {
            assert_eq!(*id, format!("m{}", m["id"]), "the stored line's id");
            let kinds: Vec<&str> = rs.iter().map(|r| r["type"].as_str().unwrap()).collect();
            assert_eq!(kinds, [shape, "textarea", "labels"], "{rs:?}");
            let names: Vec<&str> = rs
                .iter()
                .map(|r| r["from_name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    if polygon { "poly" } else { "bbox" },
                    "transcription",
                    "label"
                ]
            );
            let stored_box = corners(&m["box"]);
            for r in rs {
                assert_eq!(r["to_name"], "image");
                assert_eq!(r["original_width"].as_f64(), Some(w));
                assert_eq!(r["original_height"].as_f64(), Some(h));
                assert_eq!(r["score"], m["score"], "the line's score: {r}");
                let b = pixels(r);
                for (x, y) in b.iter().zip(stored_box) {
                    assert!((x - y).abs() < 1e-9 * w.max(h), "{r} vs {stored_box:?}");
                }
            }
            assert_eq!(rs[1]["value"]["text"], json!([m["text"]]));
            assert_eq!(rs[2]["value"]["labels"], json!(["Text"]));
        }
        let weakest = machine
            .iter()
            .map(|m| m["score"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(pred["score"].as_f64(), Some(weakest), "{pred}");
        lines_seen += machine.len();
    }
    eprintln!(
        "{lines_seen} lines on {} pages predicted as {shape}s",
        PAGES.len()
    );

    // Asked again: the same results, from the store.
    let (code, again) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200);
    assert_eq!(again["results"], out["results"]);
    let store = Store::connect(&e.db.url).await.unwrap();
    let counts = store.region_counts(p).await.unwrap();
    assert_eq!(
        counts.iter().map(|c| c.2 as usize).sum::<usize>(),
        lines_seen,
        "one machine row per line: {counts:?}"
    );

    // The annotator keeps every line but corrects the text of the second,
    // drops the third and draws a new one at the page's foot.
    let item = item_of(1);
    let regions_path = format!("/v1/projects/{p}/items/{item}/regions");
    let groups = by_region(results[0]["result"].as_array().unwrap());
    let corrected_text = "Corrected line — café ✓";
    let mut result: Vec<Value> = Vec::new();
    for (k, (_, rs)) in groups.iter().enumerate() {
        if k == 2 {
            continue;
        }
        for r in rs {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("score");
            r["origin"] = json!("prediction-changed");
            if k == 1 && r["type"] == "textarea" {
                r["value"]["text"] = json!([corrected_text]);
            }
            result.push(r);
        }
    }
    let drawn_geometry = if polygon {
        json!({"points": [[5.0, 95.0], [40.0, 95.0], [40.0, 98.0], [5.0, 98.0]], "closed": true})
    } else {
        json!({"x": 5.0, "y": 95.0, "width": 35.0, "height": 3.0, "rotation": 0})
    };
    let size = &groups[0].1[0];
    let drawn = |from: &str, kind: &str, extra: (&str, Value)| {
        let mut value = drawn_geometry.clone();
        value[extra.0] = extra.1;
        json!({"id": "Xy12", "from_name": from, "to_name": "image", "type": kind,
               "original_width": size["original_width"], "original_height": size["original_height"],
               "image_rotation": 0, "value": value})
    };
    let shape_name = if polygon { "poly" } else { "bbox" };
    let mut shape_result = drawn(shape_name, shape, ("closed", json!(true)));
    if !polygon {
        shape_result["value"]
            .as_object_mut()
            .unwrap()
            .remove("closed");
    }
    result.push(shape_result);
    result.push(drawn(
        "transcription",
        "textarea",
        ("text", json!(["A drawn line"])),
    ));
    result.push(drawn("label", "labels", ("labels", json!(["Text"]))));
    let event = |id: i64, result: &[Value], at: &str, action: &str| {
        json!({
            "action": action,
            "task": {"id": 1, "data": {"ocr": PAGES[0]}},
            "annotation": {"id": id, "task": 1, "result": result, "was_cancelled": false,
                           "completed_by": {"id": 1, "email": "reader@example.com"}, "updated_at": at},
            "project": {"id": 1, "label_config": config(polygon)},
        })
    };
    let hook_path = format!("/labelstudio/{p}/webhook");
    let body = event(801, &result, "2026-12-07T10:00:00Z", "ANNOTATION_CREATED");
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!(code, 200, "{ans}");
    assert_eq!(
        (ans["status"].as_str(), ans["recorded"].as_i64()),
        (Some("ok"), Some(1)),
        "{ans}"
    );
    let (_, after) = e.server.get(&regions_path).await;
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let mid = |k: usize| groups[k].0[1..].parse::<i64>().unwrap();
    let by_id = |id: i64| regions.iter().find(|r| r["id"] == id).unwrap();
    for k in 0..groups.len() {
        let want = match k {
            1 => "corrected",
            2 => "deleted",
            _ => "accepted",
        };
        assert_eq!(by_id(mid(k))["status"], want, "line {k}: {after}");
    }
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 2, "a corrected text and a drawn line: {after}");
    assert!(human
        .iter()
        .all(|r| r["annotator"] == "ls:reader@example.com" && r["kind"] == "box"));
    let corrected = human.iter().find(|r| r["status"] == "corrected").unwrap();
    assert_eq!(corrected["replaces"], mid(1));
    assert_eq!(corrected["text"], corrected_text);
    assert_eq!(
        corrected["box"],
        by_id(mid(1))["box"],
        "the box is kept as stored"
    );
    let added = human.iter().find(|r| r["status"] == "added").unwrap();
    assert_eq!(added["text"], "A drawn line");
    let (w, h) = (
        after["width"].as_f64().unwrap(),
        after["height"].as_f64().unwrap(),
    );
    let want = [0.05 * w, 0.95 * h, 0.40 * w, 0.98 * h];
    for (x, y) in corners(&added["box"]).iter().zip(want) {
        assert!((x - y).abs() < 1e-6, "{added} vs {want:?}");
    }
    let rows = |c: &[(i64, String, i64)]| c.iter().map(|c| c.2).sum::<i64>();
    let once = store.region_counts(p).await.unwrap();
    assert_eq!(rows(&once) as usize, lines_seen + 2, "{once:?}");

    // The same webhook again, and the same set as an update: nothing written.
    let (code, ans) = hook(&e.server, &hook_path, &body).await;
    assert_eq!((code, ans["status"].as_str()), (200, Some("ok")), "{ans}");
    let update = event(801, &result, "2026-12-07T10:00:05Z", "ANNOTATION_UPDATED");
    let (code, ans) = hook(&e.server, &hook_path, &update).await;
    assert_eq!((code, ans["status"].as_str()), (200, Some("ok")), "{ans}");
    let (_, replayed) = e.server.get(&regions_path).await;
    assert_eq!(replayed["regions"], after["regions"]);
    assert_eq!(store.region_counts(p).await.unwrap(), once);

    // A transcription over 10,000 characters is refused by name, at once.
    let mut long = result.clone();
    let at = long.iter().position(|r| r["type"] == "textarea").unwrap();
    long[at]["value"]["text"] = json!(["x".repeat(10_001)]);
    let (code, ans) = e
        .server
        .post(
            &hook_path,
            &event(802, &long, "2026-12-07T10:01:00Z", "ANNOTATION_CREATED"),
        )
        .await;
    assert_eq!(code, 422, "{ans}");
    let msg = ans["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("annotation.result[{at}].value.text")),
        "{msg}"
    );
    assert!(msg.contains("10001 characters"), "{msg}");
    let (_, still) = e.server.get(&regions_path).await;
    assert_eq!(still["regions"], after["regions"]);

    // Deleting the annotation withdraws its lines: the machine lines are
    // routed again, no person's line is left.
    let gone = json!({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 801}],
                      "project": {"id": 1}});
    let (code, ans) = hook(&e.server, &hook_path, &gone).await;
    assert_eq!(code, 200, "{ans}");
    assert_eq!(ans["recorded"], 1, "{ans}");
    let (_, withdrawn) = e.server.get(&regions_path).await;
    assert_ne!(withdrawn["status"], "labeled", "{withdrawn}");
    let left = withdrawn["regions"].as_array().unwrap();
    assert!(
        left.iter()
            .all(|r| r["source"] == "machine" && r["annotator"].is_null()),
        "{withdrawn}"
    );
    assert_eq!(left.len(), groups.len());
    store.close().await;
}
