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

    // Never screened: the exports are as before.
    let (code, jsonl) = s
        .get_text(&format!("/v1/projects/{project}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200);
    let first: Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert!(first.get("screening").is_none(), "{first}");
    let (_, csv) = s
        .get_text(&format!("/v1/projects/{project}/export?format=csv"))
        .await;
    assert!(
        csv.lines().next().unwrap().ends_with(",audit,guarantee"),
        "{csv}"
    );

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
    // Exports carry the flags: JSONL `screening`, CSV columns.
    let (code, jsonl) = s
        .get_text(&format!("/v1/projects/{project}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200);
    let exported: HashMap<String, Value> = jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["client_id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(exported.len(), items.len());
    let leaked_json: BTreeSet<(String, i64)> = exported
        .iter()
        .filter_map(|(cid, v)| Some((cid.clone(), v["screening"]["leak_of"].as_i64()?)))
        .collect();
    let expected_json: BTreeSet<(String, i64)> = planted
        .iter()
        .map(|(id, _, _, of)| (id.clone(), by_client[of.as_str()]["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(leaked_json, expected_json);
    assert_eq!(
        exported["dup-in-train"]["screening"]["duplicate_of"],
        by_client["train-6"]["id"]
    );
    assert_eq!(
        exported["train-9"]["screening"],
        json!({}),
        "no issue, no flag"
    );
    assert_eq!(exported["train-9"]["split"], "train");
    let (_, csv) = s
        .get_text(&format!("/v1/projects/{project}/export?format=csv"))
        .await;
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (cid, split, leak_of) = (col("client_id"), col("split"), col("leak_of"));
    let mut leaked_csv = BTreeSet::new();
    for row in r.records() {
        let row = row.unwrap();
        assert_eq!(row.len(), header.len());
        if !row[leak_of].is_empty() {
            leaked_csv.insert((row[cid].to_string(), row[leak_of].parse::<i64>().unwrap()));
        }
        if &row[cid] == "leak-val-5" {
            assert_eq!(&row[split], "val");
        }
    }
    assert_eq!(leaked_csv, expected_json);

    // The copies inside one split are duplicates, not leaks.
    let dups = issues(&s, project, "exact_duplicate").await;
    for cid in ["dup-in-train", "dup-in-test", "no-split"] {
        assert!(
            dups.iter().any(|d| d["client_id"] == cid),
            "{cid} is an exact duplicate"
        );
    }
}

async fn label(s: &Server, item: i64, label: &str, who: &str) -> Value {
    let (code, body) = s
        .post(
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": label, "annotator": who}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body
}

async fn items_by_client(s: &Server, project: i64) -> HashMap<String, Value> {
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["client_id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

/// A person labels one member of a duplicate group; the members still
/// waiting take the label as `propagated` (naming its source), a loose
/// near-duplicate group does not, a human label is never overridden, and
/// two people disagreeing inside a group become `conflict` issues.
async fn propagation(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms groups", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.9, "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let t = distinct_texts(20);
    let mut items: Vec<Value> = t
        .iter()
        .enumerate()
        .map(|(i, x)| json!({"id": format!("x-{i}"), "text": x}))
        .collect();
    // Enough fresh 5-grams to bring Jaccard near 0.7: a loose group.
    let mut suffix = String::new();
    let mut k = 0;
    while suffix.len() < t[2].len() * 2 / 5 {
        suffix.push_str(&format!(" w{}", 7000 + 37 * k));
        k += 1;
    }
    for (id, x) in [
        ("dup-a1", t[0].clone()),
        ("dup-a2", t[0].replace(' ', "  ")),
        ("near-strict", format!("{}!!", t[1])),
        ("near-loose", format!("{}{suffix}", t[2])),
        ("conf-1", t[3].clone()),
        ("conf-2", t[3].clone()),
        ("pre-copy", t[4].clone()),
    ] {
        items.push(json!({"id": id, "text": x}));
    }
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
    // A label given before the screen reaches the group it finds.
    let pre = items_by_client(&s, project).await;
    label(&s, pre["x-4"]["id"].as_i64().unwrap(), "spam", "carol").await;
    let v = screen(&s, project).await;
    // Groups: x-0, dup-a1, dup-a2; x-3, conf-1, conf-2; x-4, pre-copy.
    assert_eq!(v["counts"]["exact_duplicate"], 8, "{v}");
    let near = issues(&s, project, "near_duplicate").await;
    let score = |cid: &str| {
        near.iter()
            .find(|n| n["client_id"] == cid)
            .unwrap_or_else(|| panic!("{cid} is a near duplicate: {near:?}"))["score"]
            .as_f64()
            .unwrap()
    };
    assert!(score("near-strict") >= 0.9, "{near:?}");
    let loose = score("near-loose");
    assert!((0.5..0.9).contains(&loose), "a loose group: {loose}");

    let before = items_by_client(&s, project).await;
    let id = |cid: &str| before[cid]["id"].as_i64().unwrap();
    for cid in [
        "dup-a1",
        "dup-a2",
        "near-strict",
        "near-loose",
        "conf-2",
        "x-5",
    ] {
        assert_eq!(before[cid]["status"], "needs_review", "{}", before[cid]);
    }
    assert_eq!(
        (
            before["pre-copy"]["final_label"].as_str(),
            before["pre-copy"]["final_source"].as_str(),
            before["pre-copy"]["propagated_from"].as_i64()
        ),
        (Some("spam"), Some("propagated"), pre["x-4"]["id"].as_i64()),
        "{}",
        before["pre-copy"]
    );

    label(&s, id("x-0"), "ham", "alice").await;
    let x1 = label(&s, id("x-1"), "spam", "alice").await["annotation_id"]
        .as_i64()
        .unwrap();
    label(&s, id("x-2"), "ham", "alice").await;
    let now = items_by_client(&s, project).await;
    for (cid, from, l) in [
        ("dup-a1", "x-0", "ham"),
        ("dup-a2", "x-0", "ham"),
        ("near-strict", "x-1", "spam"),
    ] {
        let it = &now[cid];
        assert_eq!(
            (
                it["status"].as_str(),
                it["final_label"].as_str(),
                it["final_source"].as_str(),
                it["propagated_from"].as_i64()
            ),
            (Some("labeled"), Some(l), Some("propagated"), Some(id(from))),
            "{it}"
        );
        assert!(
            it["annotations"].as_array().is_none_or(Vec::is_empty),
            "no annotation invented: {it}"
        );
    }
    assert_eq!(
        now["near-loose"]["status"], "needs_review",
        "loose groups wait for a person"
    );
    assert_eq!(now["x-5"]["status"], "needs_review");
    assert_eq!(now["x-0"]["final_source"], "human");

    // Undo: the copy waits for a person again.
    let (code, body) =
        common::server::send(s.client.delete(format!("{}/v1/annotations/{x1}", s.url))).await;
    assert_eq!(code, 200, "{body}");
    let now = items_by_client(&s, project).await;
    assert_eq!(
        (
            now["near-strict"]["status"].as_str(),
            now["near-strict"]["final_source"].as_str()
        ),
        (Some("needs_review"), None),
        "{}",
        now["near-strict"]
    );

    // A person changes their mind: the copies follow.
    label(&s, id("x-0"), "spam", "alice").await;
    let now = items_by_client(&s, project).await;
    assert_eq!(now["dup-a1"]["final_label"], "spam", "{}", now["dup-a1"]);
    assert_eq!(now["dup-a2"]["final_source"], "propagated");

    // Two people disagree inside a group: nobody's label is overridden.
    label(&s, id("conf-1"), "ham", "alice").await;
    let now = items_by_client(&s, project).await;
    assert_eq!(now["conf-2"]["final_source"], "propagated");
    label(&s, id("conf-2"), "spam", "bob").await;
    let now = items_by_client(&s, project).await;
    assert_eq!(
        (
            now["conf-1"]["final_label"].as_str(),
            now["conf-1"]["final_source"].as_str()
        ),
        (Some("ham"), Some("human"))
    );
    assert_eq!(
        (
            now["conf-2"]["final_label"].as_str(),
            now["conf-2"]["final_source"].as_str()
        ),
        (Some("spam"), Some("human"))
    );
    assert!(
        now["conf-2"].get("propagated_from").is_none(),
        "{}",
        now["conf-2"]
    );
    let conflicts = issues(&s, project, "conflict").await;
    let pairs: BTreeSet<(String, String)> = conflicts
        .iter()
        .map(|c| {
            (
                c["client_id"].as_str().unwrap().to_string(),
                c["of_client_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [("conf-1", "conf-2"), ("conf-2", "conf-1")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(pairs, expected);
    let (_, v) = s.get(&format!("/v1/projects/{project}/screening")).await;
    assert_eq!(v["counts"]["conflict"], 2, "{v}");
    // A new screen replaces the issues, and finds the conflict again.
    let v = screen(&s, project).await;
    assert_eq!(v["counts"]["conflict"], 2, "{v}");
    let now = items_by_client(&s, project).await;
    assert_eq!(now["conf-1"]["final_label"], "ham");
    assert_eq!(now["conf-2"]["final_label"], "spam");

    // Audit items wait for a person's own label: the guarantee's evidence.
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms audited", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.9, "settings": {"audit_rate": 1.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let audited = p["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{audited}/items"),
            &json!([{"id": "a", "text": t[5]}, {"id": "b", "text": t[5]}, {"id": "c", "text": t[6]}]),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
    screen(&s, audited).await;
    let got = items_by_client(&s, audited).await;
    assert_eq!(got["b"]["audit"], true, "{}", got["b"]);
    label(&s, got["a"]["id"].as_i64().unwrap(), "ham", "alice").await;
    let got = items_by_client(&s, audited).await;
    assert_eq!(got["b"]["status"], "needs_review", "{}", got["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_on_sqlite() {
    propagation(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    propagation(db).await;
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
