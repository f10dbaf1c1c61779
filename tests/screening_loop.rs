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

    // The `leaks` review list: the leaked items waiting for a person,
    // closest copy first, and nothing else.
    let now = items_by_client(&s, project).await;
    let waiting: BTreeSet<String> = planted
        .iter()
        .map(|p| p.0.clone())
        .filter(|cid| now[cid]["status"] == "needs_review")
        .collect();
    assert!(!waiting.is_empty(), "some leaks wait for a person");
    let (code, list) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=leaks&limit=100&annotator=alice"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    let listed: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["client_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed.iter().cloned().collect::<BTreeSet<_>>(),
        waiting,
        "{list}"
    );
    let score_of = |cid: &str| {
        leaks.iter().find(|l| l["client_id"] == cid).unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    assert!(
        listed
            .windows(2)
            .all(|w| score_of(&w[0]) >= score_of(&w[1])),
        "closest copy first: {listed:?}"
    );

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
    // A full screen replaces the issues, and finds the conflict again.
    let v = screen_with(&s, project, json!({"full": true})).await;
    assert!(v["batch"].is_null(), "{v}");
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
    // The audit sample keeps the representative only (a): the copy left it.
    let got = items_by_client(&s, audited).await;
    assert_eq!(got["a"]["audit"], true, "{}", got["a"]);
    assert_eq!(got["b"]["audit"], false, "{}", got["b"]);
    label(&s, got["b"]["id"].as_i64().unwrap(), "ham", "alice").await;
    let got = items_by_client(&s, audited).await;
    assert_eq!(got["a"]["status"], "needs_review", "{}", got["a"]);
}

async fn hook(s: &Server, project: i64, body: &Value) {
    let (code, out) = s
        .post(&format!("/labelstudio/{project}/webhook"), body)
        .await;
    assert_eq!(code, 200, "{out}");
}

/// Poll the project's items until `done` holds of them (a webhook may be
/// answered `queued` before its event is applied).
async fn until(
    s: &Server,
    project: i64,
    what: &str,
    done: impl Fn(&HashMap<String, Value>) -> bool,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = items_by_client(s, project).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Label Studio annotation reaches the item's duplicates at once (not at
/// the next screen), through the same propagation as the page's labels,
/// and its deletion takes the copies back; a conflict goes when a relabel
/// or an undo resolves the disagreement.
async fn label_studio_and_conflicts(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms ls", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.99, "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let t = distinct_texts(12);
    // Items named as Label Studio tasks 1..: 1 and 2 copies, 3 and 4 copies.
    let mut items: Vec<Value> = Vec::new();
    for (task, x) in [(1, &t[0]), (2, &t[0]), (3, &t[1]), (4, &t[1])] {
        items.push(json!({"id": format!("ls-task-{task}"), "text": x}));
    }
    for (i, x) in t[2..].iter().enumerate() {
        items.push(json!({"id": format!("ls-task-{}", 10 + i), "text": x}));
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
    let v = screen(&s, project).await;
    assert_eq!(v["counts"]["exact_duplicate"], 4, "{v}");
    let before = items_by_client(&s, project).await;
    for cid in ["ls-task-2", "ls-task-4"] {
        assert_eq!(before[cid]["status"], "needs_review", "{}", before[cid]);
    }
    let id = |cid: &str| before[cid]["id"].as_i64().unwrap();

    let config =
        "<View><Text name=\"text\" value=\"$text\"/><Choices name=\"label\" toName=\"text\">\
                  <Choice value=\"ham\"/><Choice value=\"spam\"/></Choices></View>";
    let created = json!({
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 11, "task": 1, "completed_by": {"email": "ann@example.com"},
                       "updated_at": "2026-12-07T23:00:00Z",
                       "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                   "value": {"choices": ["spam"]}}]},
        "task": {"id": 1, "data": {"text": t[0]}},
        "project": {"id": 1, "label_config": config},
    });
    hook(&s, project, &created).await;
    let now = until(&s, project, "the copy takes the Label Studio label", |m| {
        m["ls-task-2"]["final_source"] == "propagated"
    })
    .await;
    assert_eq!(
        (
            now["ls-task-1"]["final_label"].as_str(),
            now["ls-task-2"]["final_label"].as_str(),
            now["ls-task-2"]["propagated_from"].as_i64()
        ),
        (Some("spam"), Some("spam"), Some(id("ls-task-1"))),
        "{}",
        now["ls-task-2"]
    );
    // Deleted in Label Studio: the copy waits for a person again.
    hook(
        &s,
        project,
        &json!({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}], "project": {"id": 1}}),
    )
    .await;
    let now = until(&s, project, "the copy is taken back", |m| {
        m["ls-task-1"]["status"] != "labeled"
    })
    .await;
    assert_eq!(
        (
            now["ls-task-2"]["status"].as_str(),
            now["ls-task-2"]["final_source"].as_str()
        ),
        (Some("needs_review"), None),
        "{}",
        now["ls-task-2"]
    );

    // Two people disagree: a conflict on both items.
    label(&s, id("ls-task-3"), "ham", "alice").await;
    label(&s, id("ls-task-4"), "spam", "bob").await;
    assert_eq!(issues(&s, project, "conflict").await.len(), 2);
    // Bob comes round: the conflict goes.
    label(&s, id("ls-task-4"), "ham", "bob").await;
    assert!(
        issues(&s, project, "conflict").await.is_empty(),
        "resolved by a relabel"
    );
    // Again apart, then undone: the conflict goes with the undo.
    let again = label(&s, id("ls-task-4"), "spam", "bob").await["annotation_id"]
        .as_i64()
        .unwrap();
    assert_eq!(issues(&s, project, "conflict").await.len(), 2);
    let (code, body) =
        common::server::send(s.client.delete(format!("{}/v1/annotations/{again}", s.url))).await;
    assert_eq!(code, 200, "{body}");
    let now = items_by_client(&s, project).await;
    assert_eq!(
        now["ls-task-4"]["final_label"], "ham",
        "{}",
        now["ls-task-4"]
    );
    assert!(
        issues(&s, project, "conflict").await.is_empty(),
        "resolved by an undo"
    );
    let (_, v) = s.get(&format!("/v1/projects/{project}/screening")).await;
    assert!(v["counts"].get("conflict").is_none(), "{v}");
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

async fn screen_with(s: &Server, project: i64, body: Value) -> Value {
    let (code, job) = s
        .post(&format!("/v1/projects/{project}/screen"), &body)
        .await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, v) = s.get(&format!("/v1/projects/{project}/screening")).await;
        if v["last_job"]["id"] == id && v["last_job"]["state"] != "screening" {
            assert_eq!(v["last_job"]["state"], "done", "{v}");
            return v;
        }
        assert!(Instant::now() < deadline, "the screen did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (client id, type, the client id it names) of the duplicate and leak issues.
async fn dup_leaks(s: &Server, project: i64) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for kind in ["exact_duplicate", "near_duplicate", "leak"] {
        for i in issues(s, project, kind).await {
            out.insert((
                i["client_id"].as_str().unwrap().to_string(),
                kind.to_string(),
                i["of_client_id"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// A second ingest batch is screened against the stored items, not all
/// against all again: the screen compares the batch's items only (counts
/// in `batch.compared`), finds its copies of stored items (joining their
/// duplicate groups), its leaks into the earlier split, and its own
/// duplicates, and ends where a full screen of everything ends.
async fn incremental(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "sms batches", "model": "minilm-l6", "labels": ["ham", "spam"],
                    "threshold": 0.9, "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let t = distinct_texts(46);
    let mut first: Vec<Value> = t[..30]
        .iter()
        .enumerate()
        .map(|(i, x)| json!({"id": format!("x-{i}"), "text": x, "split": "train"}))
        .collect();
    first.push(json!({"id": "x-0-copy", "text": t[0], "split": "train"}));
    ingest(&s, project, &first).await;
    let v = screen_with(&s, project, json!({})).await;
    assert!(v["batch"].is_null(), "a first screen is full: {v}");
    assert_eq!(v["items"], first.len() as i64, "{v}");
    assert_eq!(v["counts"]["exact_duplicate"], 2, "{v}");

    let mut second: Vec<Value> = t[30..40]
        .iter()
        .enumerate()
        .map(|(i, x)| json!({"id": format!("y-{i}"), "text": x, "split": "test"}))
        .collect();
    for (id, x) in [
        ("y-copy-0", t[0].clone()),
        ("y-copy-1", t[1].clone()),
        ("y-near-2", format!("{}!!", t[2])),
        ("y-inner-a", t[40].clone()),
        ("y-inner-b", t[40].clone()),
    ] {
        second.push(json!({"id": id, "text": x, "split": "test"}));
    }
    ingest(&s, project, &second).await;
    let v = screen_with(&s, project, json!({})).await;
    let compared = &v["batch"]["compared"];
    assert_eq!(compared["new"], second.len() as i64, "{v}");
    assert_eq!(compared["stored"], first.len() as i64, "{v}");
    // One duplicate query and one outlier query per new item, one leak
    // query per new test item: nothing grows with the stored items' pairs.
    assert_eq!(compared["queries"], 2 * second.len() as i64, "{v}");
    assert_eq!(compared["leak_queries"], second.len() as i64, "{v}");
    assert_eq!(compared["copies"], 3, "{v}");
    assert_eq!(v["items"], (first.len() + second.len()) as i64, "{v}");

    let found = dup_leaks(&s, project).await;
    let has = |cid: &str, kind: &str, of: &str| {
        found.contains(&(cid.to_string(), kind.to_string(), of.to_string()))
    };
    for (cid, kind, of) in [
        ("y-copy-0", "exact_duplicate", "x-0"),
        ("y-copy-1", "exact_duplicate", "x-1"),
        ("x-1", "exact_duplicate", ""),
        ("y-near-2", "near_duplicate", "x-2"),
        ("x-2", "near_duplicate", ""),
        ("y-inner-b", "exact_duplicate", "y-inner-a"),
        ("y-copy-0", "leak", "x-0"),
        ("y-copy-1", "leak", "x-1"),
        ("y-near-2", "leak", "x-2"),
    ] {
        assert!(has(cid, kind, of), "{cid} {kind} of {of:?}: {found:?}");
    }
    // y-copy-0 joined x-0's group.
    let exact = issues(&s, project, "exact_duplicate").await;
    let group = |cid: &str| {
        exact.iter().find(|i| i["client_id"] == cid).unwrap()["group"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(group("y-copy-0"), group("x-0"));
    assert_eq!(group("x-0-copy"), group("x-0"));
    assert_ne!(group("y-copy-1"), group("x-0"));

    // A full screen of everything finds the same duplicates and leaks.
    let v = screen_with(&s, project, json!({"full": true})).await;
    assert!(v["batch"].is_null(), "{v}");
    assert_eq!(dup_leaks(&s, project).await, found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_on_sqlite() {
    incremental(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    incremental(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_studio_and_conflicts_on_sqlite() {
    label_studio_and_conflicts(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_studio_and_conflicts_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    label_studio_and_conflicts(db).await;
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
