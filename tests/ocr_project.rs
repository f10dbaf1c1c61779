//! OCR text lines through the loop (issue 23), on the real server, the real
//! PP-OCRv6 model (models/ocr) and the real rendered pages of
//! data/ocr-pages (synthetic pages with exact line truth, made by
//! scripts/setup.sh), on SQLite and PostgreSQL:
//! - a project on `ocr` (task `lines`) ingests pages by path and base64;
//!   its job writes each page's lines once as machine regions of kind
//!   `box` with `text` and `score`, routed by the fixed threshold; audit
//!   pages wait for a person with every line left for review;
//! - a reviewer's lines are recorded (kept, text corrected, moved, deleted,
//!   added with text); bad ones are refused naming `regions[i]`, nothing
//!   written; the same set twice changes nothing;
//! - the audit pages, fully transcribed from the truth, calibrate the line
//!   threshold (`kind: lines`): a line is right when its box matches and
//!   its text is the person's; the figures agree with the test's own count
//!   and the lines missed by detection are reported; the other pages are
//!   re-routed by it;
//! - JSONL, hOCR and Label Studio exports carry the lines and their text.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::server::{b64, create_token, send, Server, TestDb};
use labelloop::store::Store;
use serde_json::{json, Value};

/// The fixed threshold before calibration.
const THRESHOLD: f64 = 0.95;

#[derive(serde::Deserialize, Clone)]
struct TruthPage {
    id: String,
    width: i64,
    height: i64,
    lines: Vec<TruthLine>,
}

#[derive(serde::Deserialize, Clone)]
struct TruthLine {
    text: String,
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

fn pages_dir() -> std::path::PathBuf {
    common::root().join("data/ocr-pages")
}

fn truth() -> Vec<TruthPage> {
    let path = pages_dir().join("lines.json");
    let text = std::fs::read_to_string(common::require(&path)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["pages"].clone()).unwrap()
}

async fn put(s: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(
        s.client
            .put(format!("{}{}", s.url, path))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

fn corners(v: &Value) -> [f64; 4] {
    let a = v.as_array().unwrap_or_else(|| panic!("{v}"));
    [0, 1, 2, 3].map(|i| a[i].as_f64().unwrap())
}

fn centre(b: &[f64; 4]) -> [f64; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

fn inside(p: [f64; 2], b: &[f64; 4]) -> bool {
    b[0] <= p[0] && p[0] <= b[2] && b[1] <= p[1] && p[1] <= b[3]
}

/// For each machine line (`[box, text, score]`), the true line it reads
/// (centres in each other's boxes, one to one), as tests/ocr.rs matches.
fn matches(lines: &[Value], truth: &TruthPage) -> Vec<Option<usize>> {
    let mut used = vec![false; truth.lines.len()];
    lines
        .iter()
        .map(|l| {
            let b = corners(&l["box"]);
            let hit = truth.lines.iter().enumerate().position(|(i, t)| {
                !used[i] && inside(centre(&b), &t.bbox) && inside(centre(&t.bbox), &b)
            });
            if let Some(i) = hit {
                used[i] = true;
            }
            hit
        })
        .collect()
}

/// A person's full transcription of a page from the truth: a machine line
/// that reads a true line is kept (its text right) or its text corrected,
/// in its box; a machine line that reads none is deleted; a true line no
/// machine line reads is added in its true box. Returns the set and the
/// counts (kept, corrected, added).
fn transcribe(machine: &[Value], truth: &TruthPage) -> (Value, usize, usize, usize) {
    let m = matches(machine, truth);
    let mut set = Vec::new();
    let (mut kept, mut corrected) = (0, 0);
    for (l, t) in machine.iter().zip(&m) {
        let Some(t) = t else { continue };
        let text = &truth.lines[*t].text;
        if l["text"] == text.as_str() {
            kept += 1;
        } else {
            corrected += 1;
        }
        set.push(json!({"id": l["id"], "label": "Text", "box": l["box"], "text": text}));
    }
    let read: Vec<usize> = m.iter().flatten().copied().collect();
    let mut added = 0;
    for (i, t) in truth.lines.iter().enumerate() {
        if !read.contains(&i) {
            added += 1;
            set.push(json!({"label": "Text", "box": t.bbox, "text": t.text}));
        }
    }
    (json!({ "regions": set }), kept, corrected, added)
}

async fn items(s: &Server, project: i64) -> Vec<Value> {
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn full(s: &Server, id: &Value) -> Value {
    let (code, v) = s.get(&format!("/v1/items/{id}")).await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn ocr_through_the_loop(db: TestDb) {
    common::require(&common::model_dir("ocr").join("rec.onnx"));
    let pages = truth();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("ocr"), models.path().join("ocr")).unwrap();
    let root = pages_dir().canonicalize().unwrap();
    let s = Server::start(
        &db.url,
        &[
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            root.to_str().unwrap(),
        ],
    )
    .with_token(&admin);

    // One label for the lines; two are refused, naming the field.
    let (code, v) = s
        .post(
            "/v1/projects",
            &json!({"name": "two", "model": "ocr", "labels": ["a", "b"]}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("labels"));
    let (code, v) = s
        .post(
            "/v1/projects",
            &json!({"name": "fuzzy", "model": "ocr", "settings": {"text_match": "fuzzy"}}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("settings.text_match"));

    // Half the pages drawn for audit; precision target 0.8 at δ 0.2, which
    // about ten error-free audit pages can show (calibrate::boxes).
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "pages", "model": "ocr", "threshold": THRESHOLD,
                    "precision_target": 0.8,
                    "settings": {"audit_rate": 0.5, "calibrate_every": 0, "delta": 0.2}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "lines", "{p}");
    assert_eq!(p["labels"], json!(["Text"]), "{p}");
    let project = p["id"].as_i64().unwrap();
    // Every page by path, and the first once more as base64.
    let mut body: Vec<Value> = pages
        .iter()
        .map(|t| json!({"id": t.id, "path": t.id}))
        .collect();
    let first = std::fs::read(root.join(&pages[0].id)).unwrap();
    body.push(json!({"id": "inline", "image": b64(&first)}));
    let (code, v) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(body))
        .await;
    assert_eq!(code, 202, "{v}");
    let started = std::time::Instant::now();
    let job = s
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(1200))
        .await;
    eprintln!(
        "{} pages read in {:.1} s",
        body.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(job["errors"], 0, "{job}");
    assert_eq!(job["done"], body.len(), "{job}");

    // Each page: its size, its lines with text and score, routed by the
    // fixed threshold (audit pages: all left for review).
    let listed = items(&s, project).await;
    assert_eq!(listed.len(), body.len());
    let mut by_client: HashMap<String, Value> = HashMap::new();
    let (mut lines, mut read_right, mut true_lines) = (0usize, 0usize, 0usize);
    for it in &listed {
        let f = full(&s, &it["id"]).await;
        let client = f["client_id"].as_str().unwrap().to_string();
        let t = if client == "inline" {
            &pages[0]
        } else {
            pages.iter().find(|p| p.id == client).unwrap()
        };
        assert_eq!(
            (f["width"].as_i64(), f["height"].as_i64()),
            (Some(t.width), Some(t.height))
        );
        let regions = f["regions"].as_array().unwrap().clone();
        assert!(!regions.is_empty(), "{client}");
        let audit = f["audit"] == true;
        for r in &regions {
            assert_eq!(r["kind"], "box", "{r}");
            assert_eq!(r["source"], "machine", "{r}");
            assert_eq!(r["label"], "Text", "{r}");
            assert!(r["text"].is_string(), "{r}");
            let score = r["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{r}");
            let want = if !audit && score >= THRESHOLD {
                "accepted"
            } else {
                "review"
            };
            assert_eq!(r["status"], want, "{r}");
        }
        let all = regions.iter().all(|r| r["status"] == "accepted");
        let want = if all { "auto_accepted" } else { "needs_review" };
        assert_eq!(f["status"], want, "{client}");
        if client != "inline" {
            let m = matches(&regions, t);
            lines += regions.len();
            true_lines += t.lines.len();
            read_right += regions
                .iter()
                .zip(&m)
                .filter(|(r, m)| m.is_some_and(|i| r["text"] == t.lines[i].text.as_str()))
                .count();
        }
        by_client.insert(client, f);
    }
    eprintln!(
        "synthetic pages: {lines} lines found of {true_lines}, {read_right} read exactly ({:.1}%)",
        100.0 * read_right as f64 / true_lines as f64
    );
    assert!(read_right as f64 >= 0.9 * true_lines as f64);
    // The base64 page reads as its file does.
    let texts = |f: &Value| -> Vec<Value> {
        f["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["text"], r["box"]]))
            .collect()
    };
    assert_eq!(texts(&by_client["inline"]), texts(&by_client[&pages[0].id]));

    // Exactly once: one machine row per line.
    let store = Store::connect(&db.url).await.unwrap();
    let counts = store.region_counts(project).await.unwrap();
    assert_eq!(counts.len(), listed.len(), "{counts:?}");
    for (item, source, n) in &counts {
        assert_eq!(source, "machine");
        let f = by_client
            .values()
            .find(|f| f["id"] == *item)
            .unwrap_or_else(|| panic!("item {item}"));
        assert_eq!(*n as usize, f["regions"].as_array().unwrap().len());
    }
    store.close().await;

    // A reviewer corrects a page that is not in the audit sample: keeps
    // line 0, corrects the text of line 1, moves line 2, deletes line 3,
    // adds a line with its text.
    let target = by_client
        .values()
        .filter(|f| f["audit"] == false && f["client_id"] != "inline")
        .min_by_key(|f| f["id"].as_i64())
        .expect("a page outside the audit sample")
        .clone();
    let item = target["id"].as_i64().unwrap();
    let path = format!("/v1/projects/{project}/items/{item}/regions");
    let (code, before) = s.get(&path).await;
    assert_eq!(code, 200, "{before}");
    let machine: Vec<Value> = before["regions"].as_array().unwrap().clone();
    assert!(machine.len() >= 4);
    let w = before["width"].as_f64().unwrap();
    let mut moved = corners(&machine[2]["box"]);
    moved[0] += 3.0;
    let set = json!({"regions": [
        {"id": machine[0]["id"], "label": "Text", "box": machine[0]["box"], "text": machine[0]["text"]},
        {"id": machine[1]["id"], "label": "Text", "box": machine[1]["box"], "text": "Corrected — café"},
        {"id": machine[2]["id"], "label": "Text", "box": moved, "text": machine[2]["text"]},
        {"label": "Text", "box": [10.0, 10.0, 200.5, 30.25], "text": "An added <line> & more"},
    ]});
    let long = "x".repeat(10_001);
    for (bad, says) in [
        (
            json!({"regions": [{"label": "Text", "box": [0, 0, 5, 5], "text": long}]}),
            "regions[0].text",
        ),
        (
            json!({"regions": [{"label": "Text", "box": [0, 0, 5, 5], "text": 7}]}),
            "regions[0].text",
        ),
        (
            json!({"regions": [{"label": "Text", "box": [0, 0, 5, 5]}]}),
            "regions[0].text",
        ),
        (
            json!({"regions": [{"label": "Text", "box": [0, 0, 5, 5], "text": "a"},
                               {"label": "Text", "box": [0, 0, w + 1.0, 5], "text": "b"}]}),
            "regions[1].box",
        ),
        (
            json!({"regions": [{"label": "Figure", "box": [0, 0, 5, 5], "text": "a"}]}),
            "regions[0].label",
        ),
    ] {
        let (code, v) = put(&s, &alice, &path, &bad).await;
        assert_eq!(code, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{says}: {v}"
        );
    }
    let (_, unchanged) = s.get(&path).await;
    assert_eq!(unchanged, before, "a refused set writes nothing");
    let (code, after) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let status_of = |id: &Value| {
        regions
            .iter()
            .find(|r| r["id"] == *id)
            .map(|r| r["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status_of(&machine[0]["id"]), "accepted");
    assert_eq!(status_of(&machine[1]["id"]), "corrected");
    assert_eq!(status_of(&machine[2]["id"]), "corrected");
    assert_eq!(status_of(&machine[3]["id"]), "deleted");
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 3, "{after}");
    assert_eq!(human[0]["text"], "Corrected — café");
    assert_eq!(human[0]["replaces"], machine[1]["id"]);
    assert_eq!(human[1]["text"], machine[2]["text"]);
    assert_eq!(corners(&human[1]["box"]), moved);
    assert_eq!(human[2]["status"], "added");
    assert_eq!(human[2]["text"], "An added <line> & more");
    let (code, again) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again, after, "the same set twice changes nothing");

    // Calibration: every audit page fully transcribed from the truth.
    let audit: Vec<Value> = by_client
        .values()
        .filter(|f| f["audit"] == true)
        .cloned()
        .collect();
    assert!(audit.len() >= 6, "{} audit pages", audit.len());
    let (mut audit_lines, mut kept_total, mut truths, mut missed) = (Vec::new(), 0, 0, 0);
    for f in &audit {
        let client = f["client_id"].as_str().unwrap();
        let t = if client == "inline" {
            &pages[0]
        } else {
            pages.iter().find(|p| p.id == client).unwrap()
        };
        let machine = f["regions"].as_array().unwrap();
        let (set, kept, corrected, added) = transcribe(machine, t);
        let m = matches(machine, t);
        for (l, hit) in machine.iter().zip(&m) {
            let right = hit.is_some_and(|i| l["text"] == t.lines[i].text.as_str());
            audit_lines.push((l["score"].as_f64().unwrap(), right));
        }
        kept_total += kept;
        truths += kept + corrected + added;
        missed += added;
        let path = format!("/v1/projects/{project}/items/{}/regions", f["id"]);
        let (code, v) = put(&s, &alice, &path, &set).await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    let job = s
        .wait_job(v["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    let (code, body) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert_eq!(code, 200, "{body}");
    let cal = &body;
    eprintln!("calibration: {cal}");
    assert_eq!(body["kind"], "lines", "{cal}");
    assert_eq!(body["text_match"], "exact", "{cal}");
    assert_eq!(body["audit_images"], audit.len(), "{cal}");
    // The lines missed by detection, beside the threshold.
    assert_eq!(body["miss"]["truths"], truths, "{cal}");
    assert_eq!(body["miss"]["missed"], missed, "{cal}");
    let class = &body["classes"][0];
    let t = class["threshold"]
        .as_f64()
        .unwrap_or_else(|| panic!("a threshold passes on these pages: {cal}"));
    // The audit figures at the threshold, counted here from the truth.
    let accepted = audit_lines.iter().filter(|(s, _)| *s >= t).count();
    let correct = audit_lines.iter().filter(|(s, r)| *s >= t && *r).count();
    assert_eq!(body["accepted"], accepted, "{cal}");
    assert_eq!(body["correct"], correct, "{cal}");
    assert!(kept_total >= correct);
    eprintln!(
        "line threshold {t:.4}: audit {correct}/{accepted} correct; {missed} of {truths} true lines missed by detection"
    );

    // Every other page is re-routed by it; what is accepted is right.
    let (mut acc, mut acc_right, mut all_lines) = (0usize, 0usize, 0usize);
    for it in items(&s, project).await {
        let f = full(&s, &it["id"]).await;
        if f["audit"] == true || f["id"] == item {
            continue;
        }
        let client = f["client_id"].as_str().unwrap();
        let tp = if client == "inline" {
            &pages[0]
        } else {
            pages.iter().find(|p| p.id == client).unwrap()
        };
        let regions = f["regions"].as_array().unwrap();
        let m = matches(regions, tp);
        for (r, hit) in regions.iter().zip(&m) {
            let score = r["score"].as_f64().unwrap();
            let want = if score >= t { "accepted" } else { "review" };
            assert_eq!(r["status"], want, "{r}");
            all_lines += 1;
            if score >= t {
                acc += 1;
                acc_right +=
                    usize::from(hit.is_some_and(|i| r["text"] == tp.lines[i].text.as_str()));
            }
        }
        let all = regions.iter().all(|r| r["status"] == "accepted");
        assert_eq!(
            f["status"],
            if all { "auto_accepted" } else { "needs_review" },
            "{client}"
        );
    }
    eprintln!(
        "re-routed pages: {acc} of {all_lines} lines auto-accepted, {acc_right} right ({:.3})",
        acc_right as f64 / acc.max(1) as f64
    );
    assert!(acc == 0 || acc_right as f64 >= 0.8 * acc as f64);

    // Exports. JSONL: the reviewed page's regions with their text.
    let (code, jsonl) = s
        .get_text(&format!("/v1/projects/{project}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200, "{jsonl}");
    let line: Value = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["id"] == item)
        .unwrap();
    assert_eq!(line["regions"], after["regions"], "{line}");

    // hOCR: one document, one ocr_page per settled page, each final line an
    // ocr_line with its bbox and confidence, in reading order.
    let r = s
        .client
        .get(format!(
            "{}/v1/projects/{project}/export?format=hocr",
            s.url
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let hocr = r.text().await.unwrap();
    let settled = items(&s, project)
        .await
        .iter()
        .filter(|i| i["status"] == "labeled" || i["status"] == "auto_accepted")
        .count();
    assert_eq!(hocr.matches("class=\"ocr_page\"").count(), settled);
    let start = hocr
        .find(&format!("id=\"page_{item}\""))
        .expect("the reviewed page");
    let page = &hocr[start..start + hocr[start..].find("</div>").unwrap()];
    let spans: Vec<&str> = page.split("<span class=\"ocr_line\"").skip(1).collect();
    // Final: kept 0, corrected 1 and 2 in their places, the rest kept or
    // accepted by the machine, the added one last.
    let want_first = [
        machine[0]["text"].as_str().unwrap().to_string(),
        "Corrected — café".to_string(),
    ];
    for (span, want) in spans.iter().zip(&want_first) {
        assert!(
            span.contains(&format!(">{}</span>", escape(want))),
            "{span}"
        );
    }
    assert!(spans
        .last()
        .unwrap()
        .contains(">An added &lt;line&gt; &amp; more</span>"));
    assert!(spans[0].contains("x_wconf "), "{}", spans[0]);
    let b = corners(&machine[0]["box"]);
    assert!(
        spans[0].contains(&format!(
            "title=\"bbox {} {} {} {}; x_wconf ",
            b[0].floor() as i64,
            b[1].floor() as i64,
            b[2].ceil() as i64,
            b[3].ceil() as i64
        )),
        "{}",
        spans[0]
    );
    assert!(spans[1].contains("x_wconf 100\""), "{}", spans[1]);
    assert!(page.contains(&format!(
        "bbox 0 0 {} {}",
        before["width"], before["height"]
    )));

    // Label Studio: per line a rectangle and a textarea sharing one id.
    let (code, tasks) = s
        .get(&format!("/v1/projects/{project}/export?format=labelstudio"))
        .await;
    assert_eq!(code, 200, "{tasks}");
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == item)
        .unwrap();
    let predicted = task["predictions"][0]["result"].as_array().unwrap();
    assert_eq!(predicted.len(), 2 * machine.len(), "{task}");
    for (pair, m) in predicted.chunks(2).zip(&machine) {
        let (rect, text) = (&pair[0], &pair[1]);
        assert_eq!(rect["type"], "rectanglelabels", "{rect}");
        assert_eq!(text["type"], "textarea", "{text}");
        assert_eq!(text["from_name"], "transcription");
        assert_eq!(rect["id"], text["id"]);
        assert_eq!(rect["id"], format!("m{}", m["id"]));
        assert_eq!(text["value"]["text"], json!([m["text"]]));
        assert_eq!(rect["original_width"], before["width"]);
        assert_eq!(text["original_height"], before["height"]);
        assert_eq!(text["score"], m["score"]);
        for k in ["x", "y", "width", "height"] {
            assert_eq!(rect["value"][k], text["value"][k]);
        }
        let b = corners(&m["box"]);
        let x = rect["value"]["x"].as_f64().unwrap();
        assert!((x - 100.0 * b[0] / w).abs() < 1e-9, "{rect}");
    }
    let annotated = task["annotations"][0]["result"].as_array().unwrap();
    assert!(annotated
        .iter()
        .any(|r| r["type"] == "textarea" && r["value"]["text"] == json!(["Corrected — café"])));

    // The review list ranks pages by their uncertainty: by least
    // confidence, the page whose weakest line is weakest first.
    let (code, queue) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=least-confidence&limit=100"
        ))
        .await;
    assert_eq!(code, 200, "{queue}");
    let queued = queue["items"].as_array().unwrap();
    let waiting = items(&s, project)
        .await
        .iter()
        .filter(|i| i["status"] == "needs_review")
        .count();
    assert_eq!(queued.len(), waiting, "{queue}");
    let lowest: Vec<f64> = queued
        .iter()
        .map(|q| {
            q["regions"]
                .as_array()
                .unwrap_or_else(|| panic!("{q}"))
                .iter()
                .filter(|r| r["source"] == "machine")
                .map(|r| r["score"].as_f64().unwrap())
                .fold(1.0, f64::min)
        })
        .collect();
    assert!(
        lowest.windows(2).all(|w| w[0] <= w[1] + 1e-6),
        "weakest line first: {lowest:?}"
    );
}

/// hOCR's escaping of a line's text, written out here.
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            ';' => "&#59;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_through_the_loop_sqlite() {
    ocr_through_the_loop(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_through_the_loop_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    ocr_through_the_loop(db).await;
}
