//! Labels from zero: a text project on an embedding model with no head yet
//! predicts by similarity to its label names or descriptions, from the first
//! item, through the real server and the real MiniLM model; on SMS spam,
//! against the truth.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::server::{Server, TestDb};
use serde_json::{json, Value};

/// The first `n` SMS messages: (id, text, label).
fn sms(n: usize) -> Vec<(String, String, String)> {
    let path = common::root().join("data/sms-spam/sms.jsonl");
    std::fs::read_to_string(common::require(&path))
        .expect("sms.jsonl")
        .lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["id"].as_str().expect("id").to_string(),
                v["text"].as_str().expect("text").to_string(),
                v["label"].as_str().expect("label").to_string(),
            )
        })
        .collect()
}

/// Accuracy, balanced accuracy and the model versions of every item's prediction.
async fn score(
    s: &Server,
    project: i64,
    truth: &HashMap<String, String>,
) -> (f64, f64, Vec<String>) {
    let mut cursor = 0;
    let mut versions = Vec::new();
    // per true label: (right, total)
    let mut per: HashMap<String, (usize, usize)> = HashMap::new();
    loop {
        let (code, page) = s
            .get(&format!(
                "/v1/projects/{project}/items?limit=500&cursor={cursor}"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            let want = &truth[item["client_id"].as_str().expect("client_id")];
            let got = item["prediction"]["label"].as_str().unwrap_or("");
            let e = per.entry(want.clone()).or_default();
            e.1 += 1;
            e.0 += usize::from(got == want);
            versions.push(item["prediction"]["model_version"].to_string());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = c,
            None => break,
        }
    }
    let (right, total) = per.values().fold((0, 0), |(r, t), (a, b)| (r + a, t + b));
    let balanced = per
        .values()
        .map(|(r, t)| *r as f64 / *t as f64)
        .sum::<f64>()
        / per.len() as f64;
    (right as f64 / total as f64, balanced, versions)
}

/// The descriptions the figures script uses too.
fn descriptions() -> Value {
    let path = common::root().join("scripts/sms_label_descriptions.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("descriptions file"))
        .expect("descriptions JSON")
}

async fn zero_shot_project(s: &Server, name: &str, settings: Value, items: &[Value]) -> i64 {
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": name, "model": "minilm-l6", "labels": ["ham", "spam"], "settings": settings}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().expect("project id");
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    let job = s
        .wait_job(
            body["job"]["id"].as_i64().expect("job id"),
            Duration::from_secs(600),
        )
        .await;
    assert_eq!(job["state"], "done", "{job}");
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_spam_from_label_descriptions() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let data = sms(1000);
    let truth: HashMap<String, String> = data
        .iter()
        .map(|(id, _, l)| (id.clone(), l.clone()))
        .collect();
    let items: Vec<Value> = data
        .iter()
        .map(|(id, text, _)| json!({"id": id, "text": text}))
        .collect();
    let spam = data.iter().filter(|d| d.2 == "spam").count() as f64 / data.len() as f64;

    let bare = zero_shot_project(&s, "sms bare names", json!({}), &items).await;
    let (bare_acc, bare_bal, versions) = score(&s, bare, &truth).await;
    assert!(
        versions.iter().all(|v| v == "\"1.0.0+zero-shot\""),
        "every item is predicted, by zero-shot: {:?}",
        versions.first()
    );

    let described = zero_shot_project(
        &s,
        "sms described",
        json!({ "label_descriptions": descriptions() }),
        &items,
    )
    .await;
    let (acc, bal, _) = score(&s, described, &truth).await;
    eprintln!(
        "zero-shot SMS spam, {} messages ({:.3} spam): bare label names accuracy {bare_acc:.3} \
         (balanced {bare_bal:.3}); with descriptions accuracy {acc:.3} (balanced {bal:.3}); \
         majority baseline {:.3}",
        data.len(),
        spam,
        1.0 - spam
    );
    // Descriptions carry the meaning that the bare word "ham" lacks.
    assert!(bal > bare_bal, "descriptions help: {bal} vs {bare_bal}");
    assert!(bal >= ZERO_SHOT_MIN_BALANCED, "balanced accuracy {bal}");
}

/// Chance is 0.5; see the figure in README ("Labels from zero").
const ZERO_SHOT_MIN_BALANCED: f64 = 0.75;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_descriptions_are_refused_by_name() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "settings": {"label_descriptions": {"ham": "x".repeat(2001)}}}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("label_descriptions")),
        "{body}"
    );
}
