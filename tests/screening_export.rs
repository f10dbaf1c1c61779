//! Screening results fed into exports, the audit sample and the evaluation
//! figures, through the real server (SQLite and PostgreSQL) on real SMS
//! texts embedded by MiniLM:
//! - `export?exclude=…` leaves out exactly the flagged items it names, and
//!   `rejected` items never export;
//! - a screen takes non-representative duplicate members and leaked items
//!   out of the audit sample, and calibration counts no audit label on them.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::server::{Server, TestDb};
use serde_json::{json, Value};

/// Real SMS texts (ham and spam) with their labels, in file order.
fn sms() -> Vec<(String, String)> {
    let path = common::root().join("data/sms-spam/sms.jsonl");
    std::fs::read_to_string(common::require(&path))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn grams(t: &str) -> HashSet<String> {
    let c: Vec<char> = t.to_lowercase().chars().collect();
    c.windows(5).map(|w| w.iter().collect()).collect()
}

/// `n` texts of at least 40 characters, no two alike (character 5-gram
/// Jaccard below 0.2), so that the only copies are the planted ones.
fn distinct_texts(n: usize) -> Vec<(String, String)> {
    let mut picked: Vec<((String, String), HashSet<String>)> = Vec::new();
    for t in sms() {
        if picked.len() == n {
            break;
        }
        if t.0.len() < 40 || t.0.contains('@') {
            continue;
        }
        let g = grams(&t.0);
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

/// Run one SQL statement on the test's database directly (not through the server).
async fn execute(db: &TestDb, sql: &str) {
    if db.kind == "postgres" {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
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

/// Every issue of the last screen.
async fn issues(s: &Server, project: i64) -> Vec<Value> {
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/issues?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    assert!(page["next_after"].is_null(), "{page}");
    page["issues"].as_array().unwrap().clone()
}

async fn project(s: &Server, name: &str, settings: Value) -> i64 {
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": name, "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.9, "settings": settings}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_i64().unwrap()
}

async fn ingest(s: &Server, project: i64, items: &[Value]) {
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
}

/// Every item of the project, by client id.
async fn items_by_client(s: &Server, project: i64) -> BTreeMap<String, Value> {
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

/// The client ids an export holds, in its format.
async fn exported(s: &Server, project: i64, format: &str, exclude: &str) -> BTreeSet<String> {
    let q = if exclude.is_empty() {
        String::new()
    } else {
        format!("&exclude={exclude}")
    };
    let (code, body) = s
        .get_text(&format!("/v1/projects/{project}/export?format={format}{q}"))
        .await;
    assert_eq!(code, 200, "{format} {exclude}: {body}");
    match format {
        "jsonl" => body
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["client_id"].as_str().unwrap().to_string()
            })
            .collect(),
        "csv" => {
            let mut r = csv::Reader::from_reader(body.as_bytes());
            let cid = r
                .headers()
                .unwrap()
                .iter()
                .position(|h| h == "client_id")
                .unwrap();
            r.records()
                .map(|row| row.unwrap()[cid].to_string())
                .collect()
        }
        _ => {
            let v: Value = serde_json::from_str(&body).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| t["data"]["id"].as_str().unwrap().to_string())
                .collect()
        }
    }
}

async fn export_filters(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let project = project(&s, "sms export filters", json!({"audit_rate": 0.0})).await;
    let t = distinct_texts(24);
    let mut items: Vec<Value> = Vec::new();
    for (i, (x, _)) in t.iter().take(20).enumerate() {
        items.push(json!({"id": format!("train-{i}"), "text": x, "split": "train"}));
    }
    for (i, (x, _)) in t.iter().skip(20).enumerate() {
        items.push(json!({"id": format!("test-{i}"), "text": x, "split": "test"}));
    }
    // Planted: an exact copy inside train (a duplicate member), two
    // near copies of one text (a near group), a test copy of a training
    // text (a leak), an e-mail address (pii), a replacement character
    // (quality: garbage).
    items.push(json!({"id": "dup-0", "text": t[0].0, "split": "train"}));
    items.push(json!({"id": "near-1a", "text": format!("{} ok", t[1].0), "split": "train"}));
    items.push(json!({"id": "near-1b", "text": t[1].0.to_uppercase(), "split": "train"}));
    items.push(json!({"id": "leak-2", "text": t[2].0, "split": "test"}));
    items.push(json!({"id": "pii-3", "text": format!("{} mail me at jo.smith@example.com", t[3].0), "split": "train"}));
    items.push(
        json!({"id": "garbage-4", "text": format!("{}\u{FFFD}\u{FFFD}", t[4].0), "split": "train"}),
    );
    ingest(&s, project, &items).await;
    let all: BTreeSet<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();

    // Unknown names are refused, naming the field; blanks are ignored.
    for bad in ["dupes", "duplicates,everything", "Leaked"] {
        let (code, e) = s
            .get(&format!("/v1/projects/{project}/export?exclude={bad}"))
            .await;
        assert_eq!(code, 422, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "invalid_field", "{e}");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("exclude") && m.contains("duplicates, leaked"),
            "{m}"
        );
    }
    // Never screened: no flags, the filter leaves nothing out.
    assert_eq!(
        exported(&s, project, "jsonl", "duplicates,leaked,pii").await,
        all
    );
    assert_eq!(exported(&s, project, "jsonl", " ,").await, all);

    screen(&s, project).await;
    let found = issues(&s, project).await;
    // Which item each name leaves out, read from the issues.
    let flagged = |pred: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        found
            .iter()
            .filter(|i| pred(i))
            .map(|i| i["client_id"].as_str().unwrap().to_string())
            .collect()
    };
    let kind = |i: &Value| i["type"].as_str().unwrap().to_string();
    let members = flagged(&|i| {
        matches!(kind(i).as_str(), "exact_duplicate" | "near_duplicate") && !i["of"].is_null()
    });
    let leaked = flagged(&|i| kind(i) == "leak");
    let outliers = flagged(&|i| kind(i) == "outlier");
    let quality = flagged(&|i| kind(i).starts_with("quality:"));
    let pii = flagged(&|i| kind(i).starts_with("pii:"));
    let held = flagged(&|i| i["held"] == true);
    // The planted ones are among them, and the representatives are not
    // members.
    assert!(members.contains("dup-0"), "{members:?}");
    assert!(
        !members.contains("train-0") && !members.contains("train-1"),
        "{members:?}"
    );
    assert!(
        members.contains("near-1a") || members.contains("near-1b"),
        "{members:?}"
    );
    assert_eq!(leaked, BTreeSet::from(["leak-2".to_string()]));
    assert!(pii.contains("pii-3"), "{pii:?}");
    assert!(quality.contains("garbage-4"), "{quality:?}");

    let minus = |out: &[&BTreeSet<String>]| -> BTreeSet<String> {
        all.iter()
            .filter(|c| !out.iter().any(|o| o.contains(*c)))
            .cloned()
            .collect()
    };
    assert_eq!(exported(&s, project, "jsonl", "").await, all);
    for (names, out) in [
        ("duplicates", vec![&members]),
        ("leaked", vec![&leaked]),
        ("outliers", vec![&outliers]),
        ("quality", vec![&quality]),
        ("pii", vec![&pii]),
        ("held", vec![&held]),
        (
            "duplicates,leaked,outliers,quality,pii",
            vec![&members, &leaked, &outliers, &quality, &pii],
        ),
    ] {
        let want = minus(&out);
        for format in ["jsonl", "csv", "labelstudio"] {
            assert_eq!(
                exported(&s, project, format, names).await,
                want,
                "{format} exclude={names}"
            );
        }
    }

    // A rejected item never exports, filter or not.
    let by_client = items_by_client(&s, project).await;
    let rejected = by_client["train-9"]["id"].as_i64().unwrap();
    execute(
        &db,
        &format!("UPDATE items SET status = 'rejected' WHERE id = {rejected}"),
    )
    .await;
    let mut want = all.clone();
    want.remove("train-9");
    for format in ["jsonl", "csv", "labelstudio"] {
        assert_eq!(exported(&s, project, format, "").await, want, "{format}");
    }
    want.remove("leak-2");
    assert_eq!(exported(&s, project, "jsonl", "leaked").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_filters_on_sqlite() {
    export_filters(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_filters_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    export_filters(db).await;
}

async fn label(s: &Server, item: i64, label: &str) {
    let (code, body) = s
        .post(
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": label, "annotator": "alice"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

/// The screen takes duplicate members and leaked items out of the audit
/// sample; the audit draw's query names exactly them; calibration counts
/// no audit label on them, and reports the figures with the leaked item's
/// audit label beside the default ones.
async fn audit_of_representatives(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    // Every item is drawn into the audit sample, and nothing refits by itself.
    let project = project(
        &s,
        "sms audit representatives",
        json!({"audit_rate": 1.0, "calibrate_every": 0}),
    )
    .await;
    let t = distinct_texts(16);
    let truth: BTreeMap<String, String> = t
        .iter()
        .enumerate()
        .map(|(i, (_, l))| (format!("{i}"), l.clone()))
        .collect();
    let mut items: Vec<Value> = Vec::new();
    // (client id, text index)
    let mut text_of: Vec<(String, usize)> = Vec::new();
    for i in 0..12 {
        text_of.push((format!("train-{i}"), i));
    }
    for i in 12..16 {
        text_of.push((format!("test-{i}"), i));
    }
    // Copies: two of train-0 inside train (members), train-1 and train-2 in
    // test (leaks).
    text_of.push(("dup-a".into(), 0));
    text_of.push(("dup-b".into(), 0));
    text_of.push(("leak-a".into(), 1));
    text_of.push(("leak-b".into(), 2));
    for (cid, i) in &text_of {
        let split = if cid.starts_with("test") || cid.starts_with("leak") {
            "test"
        } else {
            "train"
        };
        items.push(json!({"id": cid, "text": t[*i].0, "split": split}));
    }
    ingest(&s, project, &items).await;
    let label_of = |cid: &str| {
        let i = text_of.iter().find(|(c, _)| c == cid).unwrap().1;
        truth[&i.to_string()].clone()
    };
    let before = items_by_client(&s, project).await;
    assert!(
        before
            .values()
            .all(|v| v["audit"] == true && v["status"] == "needs_review"),
        "every item is in the audit sample before the screen"
    );
    let id = |cid: &str| before[cid]["id"].as_i64().unwrap();
    // Audit labels given before the screen: on a copy and on a leak.
    label(&s, id("dup-a"), &label_of("dup-a")).await;
    label(&s, id("leak-a"), &label_of("leak-a")).await;

    screen(&s, project).await;
    let after = items_by_client(&s, project).await;
    for (cid, v) in &after {
        // Waiting members and leaks left the sample; labeled ones keep
        // their flag (calibration does not count them, below).
        let want = !matches!(cid.as_str(), "dup-b" | "leak-b");
        assert_eq!(v["audit"], want, "{cid}: {v}");
    }
    // The waiting member is no audit item now: the label a person gave its
    // group before the screen reaches it.
    assert_eq!(
        after["dup-b"]["final_source"], "propagated",
        "{}",
        after["dup-b"]
    );
    assert_eq!(after["dup-b"]["propagated_from"], id("dup-a"));
    // Without the screen's change it would have stayed an audit item.
    assert_eq!(after["leak-b"]["status"], "needs_review");
    // The audit draw skips exactly the members and leaks.
    let store = labelloop::store::Store::connect(&db.url).await.unwrap();
    let all: Vec<i64> = after.values().map(|v| v["id"].as_i64().unwrap()).collect();
    let mut skipped = store.off_audit(project, &all).await.unwrap();
    skipped.sort_unstable();
    let mut want: Vec<i64> = ["dup-a", "dup-b", "leak-a", "leak-b"]
        .iter()
        .map(|c| id(c))
        .collect();
    want.sort_unstable();
    assert_eq!(skipped, want);
    // Every representative's audit label, then a fit.
    for i in 0..16 {
        let cid = if i < 12 {
            format!("train-{i}")
        } else {
            format!("test-{i}")
        };
        label(&s, id(&cid), &label_of(&cid)).await;
    }
    let (code, job) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    s.wait_job(job["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    let (code, cal) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert_eq!(code, 200, "{cal}");
    let fit = &cal;
    // 16 representatives (train-0..11, test-12..15): not dup-a, not leak-a.
    assert_eq!(fit["audit_labels"], 16, "{cal}");
    let w = &fit["with_leaked"];
    assert_eq!(w["leaked_audit_labels"], 1, "{cal}");
    assert_eq!(w["audit_labels"], 17, "{cal}");
    let (code, progress) = s.get(&format!("/v1/projects/{project}/progress")).await;
    assert_eq!(code, 200, "{progress}");
    assert_eq!(progress["with_leaked"], *w, "{progress}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_representatives_on_sqlite() {
    audit_of_representatives(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_representatives_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    audit_of_representatives(db).await;
}
