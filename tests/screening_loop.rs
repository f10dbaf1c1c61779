//! Screening fed into the loop, through the real server (SQLite and
//! PostgreSQL) on real SMS texts embedded by MiniLM: items ingested into
//! splits, and copies across splits reported as leaks — exactly the planted
//! ones, each naming both items and their splits, while copies inside one
//! split stay duplicates.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::server::{Server, TestDb};
use serde_json::{json, Value};

/// Real SMS texts (ham and spam), in file order.
fn sms() -> Vec<String> {
    let path = common::root().join("data/sms-spam/sms.jsonl");
    std::fs::read_to_string(common::require(&path))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn grams(t: &str) -> HashSet<String> {
    let c: Vec<char> = t.to_lowercase().chars().collect();
    c.windows(5).map(|w| w.iter().collect()).collect()
}

/// `n` texts of at least 40 characters, no two alike (character 5-gram
/// Jaccard below 0.2), so that the only copies are the planted ones.
fn distinct_texts(n: usize) -> Vec<String> {
    let mut picked: Vec<(String, HashSet<String>)> = Vec::new();
    for t in sms() {
        if picked.len() == n {
            break;
        }
        if t.len() < 40 {
            continue;
        }
        let g = grams(&t);
        let alike = picked.iter().any(|(_, o)| {
            let inter = g.intersection(o).count() as f64;
            inter / (g.len() + o.len()) as f64 > 0.2 / 1.2
        });
        if !alike {
            picked.push((t, g));
        }
    }
    assert_eq!(picked.len(), n, "too few distinct SMS texts");
    picked.into_iter().map(|p| p.0).collect()
}

async fn screen(s: &Server, project: i64) -> Value {
    let (code, job) = s
        .post(&format!("/v1/projects/{project}/screen"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, j) = s.get(&format!("/v1/jobs/{id}")).await;
        if j["state"] == "done" {
            break;
        }
        assert_ne!(j["state"], "failed", "{j}");
        assert!(Instant::now() < deadline, "the screen did not finish: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = s.get(&format!("/v1/projects/{project}/screening")).await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn issues(s: &Server, project: i64, kind: &str) -> Vec<Value> {
    let (code, page) = s
        .get(&format!(
            "/v1/projects/{project}/issues?type={kind}&limit=1000"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    assert!(page["next_after"].is_null(), "{page}");
    page["issues"].as_array().unwrap().clone()
}

async fn leaks_between_splits(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms splits", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.9, "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();

    // A split name is short and plain: refused whole, naming the item.
    for bad in ["train set", "", &"x".repeat(33)] {
        let (code, e) = s
            .post(
                &format!("/v1/projects/{project}/items"),
                &json!([{"id": "ok", "text": "hello there", "split": "train"},
                        {"id": "bad", "text": "hello again", "split": bad}]),
            )
            .await;
        assert_eq!(code, 422, "{bad:?}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("[1].split"),
            "{e}"
        );
    }

    let t = distinct_texts(50);
    let (train, test) = (&t[..30], &t[30..]);
    let mut items: Vec<Value> = Vec::new();
    for (i, x) in train.iter().enumerate() {
        items.push(json!({"id": format!("train-{i}"), "text": x, "split": "train"}));
    }
    for (i, x) in test.iter().enumerate() {
        items.push(json!({"id": format!("test-{i}"), "text": x, "split": "test"}));
    }
    // Planted leaks: (id, text, split) → the item it copies.
    let planted: Vec<(String, String, &str, String)> = vec![
        (
            "leak-exact-0".into(),
            train[0].clone(),
            "test",
            "train-0".into(),
        ),
        (
            "leak-exact-1".into(),
            train[1].clone(),
            "test",
            "train-1".into(),
        ),
        (
            "leak-space-2".into(),
            train[2].replace(' ', "  "),
            "test",
            "train-2".into(),
        ),
        (
            "leak-suffix-3".into(),
            format!("{} see you", train[3]),
            "test",
            "train-3".into(),
        ),
        (
            "leak-upper-4".into(),
            train[4].to_uppercase(),
            "test",
            "train-4".into(),
        ),
        (
            "leak-val-5".into(),
            train[5].clone(),
            "val",
            "train-5".into(),
        ),
        // val against test: test comes first (train, then by name).
        (
            "leak-val-test".into(),
            test[0].clone(),
            "val",
            "test-0".into(),
        ),
    ];
    for (id, x, split, _) in &planted {
        items.push(json!({"id": id, "text": x, "split": split}));
    }
    // Copies that are no leaks: inside one split, or without a split.
    items.push(json!({"id": "dup-in-train", "text": train[6], "split": "train"}));
    items.push(json!({"id": "dup-in-test", "text": test[1], "split": "test"}));
    items.push(json!({"id": "no-split", "text": train[7]}));
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;

    // The split is kept on the item.
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    let listed = page["items"].as_array().unwrap();
    assert_eq!(listed.len(), items.len());
    let by_client: HashMap<&str, &Value> = listed
        .iter()
        .map(|i| (i["client_id"].as_str().unwrap(), i))
        .collect();
    assert_eq!(by_client["leak-val-5"]["split"], "val");
    assert_eq!(by_client["train-9"]["split"], "train");
    assert!(by_client["no-split"].get("split").is_none());
    let (code, one) = s
        .get(&format!("/v1/items/{}", by_client["test-3"]["id"]))
        .await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["split"], "test");

    let v = screen(&s, project).await;
    assert_eq!(
        v["thresholds"]["leaks_against"], "splits train < test < val",
        "{v}"
    );
    let leaks = issues(&s, project, "leak").await;
    let found: BTreeSet<(String, String, String, String)> = leaks
        .iter()
        .map(|l| {
            assert_eq!(l["type"], "leak");
            (
                l["client_id"].as_str().unwrap().to_string(),
                l["split"].as_str().unwrap().to_string(),
                l["of_client_id"].as_str().unwrap().to_string(),
                l["of_split"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let split_of = |cid: &str| cid.split('-').next().unwrap().to_string();
    let expected: BTreeSet<(String, String, String, String)> = planted
        .iter()
        .map(|(id, _, split, of)| (id.clone(), split.to_string(), of.clone(), split_of(of)))
        .collect();
    assert_eq!(found, expected, "exactly the planted leaks");
    assert_eq!(v["counts"]["leak"], planted.len() as i64, "{v}");
    // The copies inside one split are duplicates, not leaks.
    let dups = issues(&s, project, "exact_duplicate").await;
    for cid in ["dup-in-train", "dup-in-test", "no-split"] {
        assert!(
            dups.iter().any(|d| d["client_id"] == cid),
            "{cid} is an exact duplicate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_between_splits_on_sqlite() {
    leaks_between_splits(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_between_splits_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    leaks_between_splits(db).await;
}
