//! Character-level agreement on an OCR project (issue #23, quality
//! inspection), on the real server with the real PP-OCRv6 model and a real
//! rendered page (data/ocr-pages, synthetic), on SQLite and PostgreSQL:
//! two annotators' tokens transcribe the same page; `GET …/agreement`
//! reports, per annotator pair, the lines matched by place and their
//! agreement (1 − normalised edit distance over Unicode scalar values after
//! NFC, checked here against the test's own edit distance); the line they
//! read differently is a conflict, and the page goes to the top tier: out
//! of the general annotators' review lists, first in the expert's, settled
//! by the expert's review.

mod common;

use std::time::Duration;

use common::server::{create_token, send, Server, TestDb};
use serde_json::{json, Value};

const PAGE: &str = "images/page_0004.png";

/// The test's own edit distance (full table), to check the server's.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let sub = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = sub.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    d[a.len()][b.len()]
}

fn agreement(a: &str, b: &str) -> f64 {
    let n = a.chars().count().max(b.chars().count());
    if n == 0 {
        1.0
    } else {
        1.0 - distance(a, b) as f64 / n as f64
    }
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

#[tokio::test]
async fn two_transcriptions_that_disagree_go_to_the_top_tier_sqlite() {
    conflicts_go_to_the_top_tier(TestDb::sqlite()).await;
}

#[tokio::test]
async fn two_transcriptions_that_disagree_go_to_the_top_tier_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    conflicts_go_to_the_top_tier(db).await;
}

async fn conflicts_go_to_the_top_tier(db: TestDb) {
    common::require(&common::model_dir("ocr").join("rec.onnx"));
    let pages = common::root().join("data/ocr-pages");
    common::require(&pages.join(PAGE));
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let bob = create_token(&db.url, "annotator", "bob");
    let eve = create_token(&db.url, "annotator", "eve");
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("ocr"), models.path().join("ocr")).unwrap();
    let s = Server::start(
        &db.url,
        &[
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            pages.canonicalize().unwrap().to_str().unwrap(),
        ],
    )
    .with_token(&admin);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "pages", "model": "ocr", "threshold": 0.95,
                    "settings": {"audit_rate": 0.0,
                                 "tiers": [{"name": "expert", "min_uncertainty": 0.5},
                                           {"name": "general", "min_uncertainty": 0.0}]}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    // A bad threshold is refused by name.
    let (code, v) = put(
        &s,
        &admin,
        &format!("/v1/projects/{project}/settings"),
        &json!({"line_agreement_min": 1.5}),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("settings.line_agreement_min"));
    let (code, v) = put(&s, &admin, "/v1/annotators/eve", &json!({"tier": "expert"})).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!([{"id": "p3", "path": PAGE}]),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let job = s
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(600))
        .await;
    assert_eq!(job["errors"], 0, "{job}");
    let (_, items) = s.get(&format!("/v1/projects/{project}/items")).await;
    let item = items["items"][0]["id"].as_i64().unwrap();
    let path = format!("/v1/projects/{project}/items/{item}/regions");
    let (_, machine) = s.get(&path).await;
    let lines: Vec<Value> = machine["regions"].as_array().unwrap().clone();
    assert!(lines.len() >= 3, "{machine}");
    let set = |texts: &[(usize, &str)]| {
        let regions: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let text = texts
                    .iter()
                    .find(|(i, _)| *i == k)
                    .map_or(l["text"].clone(), |(_, t)| json!(t));
                json!({"id": l["id"], "label": "Text", "box": l["box"], "text": text})
            })
            .collect();
        json!({ "regions": regions })
    };
    let text = |k: usize| lines[k]["text"].as_str().unwrap().to_string();

    // Alice transcribes the page as the machine read it, but for line 2,
    // typed with a precomposed é: one set, no conflict.
    let (code, v) = put(&s, &alice, &path, &set(&[(2, "Caf\u{e9} au lait")])).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "labeled");
    // Bob reads line 0 quite differently, line 1 with one letter more, and
    // types line 2's é as e + a combining accent (the same after NFC).
    let line0 = "Nothing like the machine's reading";
    let line1 = format!("{}s", text(1));
    let bobs = set(&[(0, line0), (1, &line1), (2, "Cafe\u{301} au lait")]);
    let (code, v) = put(&s, &bob, &path, &bobs).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "needs_confirmation", "a conflict: {v}");
    // The same set again leaves it there.
    let (_, v) = put(&s, &bob, &path, &bobs).await;
    assert_eq!(v["status"], "needs_confirmation");

    let (code, a) = s.get(&format!("/v1/projects/{project}/agreement")).await;
    assert_eq!(code, 200, "{a}");
    let l = &a["lines"];
    assert_eq!(l["shared_pages"], 1, "{a}");
    assert_eq!(l["iou_threshold"], 0.5);
    assert_eq!(l["min_agreement"], 0.9);
    assert_eq!(l["matched_lines"], lines.len(), "{l}");
    assert_eq!(l["unmatched_lines"], 0);
    let want0 = agreement(&text(0), line0);
    let want1 = agreement(&text(1), &line1);
    // Without NFC the two spellings of line 2 would differ by 2 in 13.
    assert!(agreement("Caf\u{e9} au lait", "Cafe\u{301} au lait") < 0.9);
    assert!(want0 < 0.9, "the test's line 0 is a conflict: {want0}");
    let conflicts = 1 + usize::from(want1 < 0.9);
    assert_eq!(l["conflicts"], conflicts, "{l}");
    assert_eq!(l["conflict_pages"], 1);
    let mean = (want0 + want1 + (lines.len() - 2) as f64) / lines.len() as f64;
    assert!(
        (l["agreement"].as_f64().unwrap() - mean).abs() < 1e-12,
        "{l} vs {mean}"
    );
    let pair = &l["pairs"][0];
    assert_eq!(
        (pair["a"].as_str(), pair["b"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(pair["pages"], 1);
    assert_eq!(pair["conflicts"], conflicts);
    let worst = &l["conflicting_lines"][0];
    assert_eq!(worst["item_id"], item);
    assert_eq!(worst["a"], "alice");
    assert_eq!(worst["text_a"], text(0));
    assert_eq!(worst["text_b"], line0);
    assert!((worst["agreement"].as_f64().unwrap() - want0).abs() < 1e-12);
    assert_eq!(worst["box_a"], lines[0]["box"]);

    // The general annotators' lists no longer offer the page; the
    // expert's offers it first.
    for (who, token) in [("alice", &alice), ("bob", &bob)] {
        let (code, r) = s
            .get_as(token, &format!("/v1/projects/{project}/review?limit=10"))
            .await;
        assert_eq!(code, 200, "{r}");
        assert!(
            r["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["id"] != item),
            "{who} is not offered the conflict: {r}"
        );
    }
    let (code, r) = s
        .get_as(&eve, &format!("/v1/projects/{project}/review?limit=10"))
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["tier"], "expert");
    assert_eq!(r["items"][0]["id"], item, "{r}");
    assert_eq!(r["items"][0]["status"], "needs_confirmation");
    // The expert's transcription settles it (even while it differs from one of them).
    let expert = format!("{} (sic)", text(0));
    let (code, v) = put(&s, &eve, &path, &set(&[(0, &expert)])).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "labeled", "{v}");
    let (_, a) = s.get(&format!("/v1/projects/{project}/agreement")).await;
    assert_eq!(a["lines"]["pairs"].as_array().unwrap().len(), 3, "{a}");
}
