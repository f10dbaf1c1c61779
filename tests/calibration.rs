//! Calibration through the real server (SQLite and PostgreSQL): the audit
//! draw, refusing to calibrate without audit labels, a fit whose
//! auto-accepted items meet the target against the true labels, re-routing
//! that leaves human labels alone, the drift alarm after a guideline change
//! (stopping auto-accepts, in /calibration and /metrics), suspects, and
//! agreement with conflict resolution.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::server::{b64, Server, TestDb};
use serde_json::{json, Value};

/// (client id → true label) and ingest items for Fashion-MNIST test images `range`.
fn items(range: std::ops::Range<usize>) -> (Vec<Value>, HashMap<String, String>) {
    let all = common::fashion_mnist_test();
    let mut truth = HashMap::new();
    let items = all[range]
        .iter()
        .map(|(id, path, label)| {
            truth.insert(id.clone(), label.clone());
            json!({"id": id, "image": b64(&std::fs::read(path).unwrap())})
        })
        .collect();
    (items, truth)
}

async fn all_items(s: &Server, project: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (code, page) = s
            .get(&format!(
                "/v1/projects/{project}/items?limit=1000&cursor={cursor}"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        let page = page["items"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        cursor = page.last().unwrap()["id"].as_i64().unwrap();
        out.extend(page);
    }
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

/// Answer every waiting audit item through the `audit` list with `answer(truth)`.
async fn answer_audits(
    s: &Server,
    project: i64,
    truth: &HashMap<String, String>,
    answer: impl Fn(&str) -> String,
) -> usize {
    let mut n = 0;
    loop {
        let (code, page) = s
            .get(&format!(
                "/v1/projects/{project}/review?strategy=audit&limit=200&annotator=auditor"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["strategy"], "audit");
        let page = page["items"].as_array().unwrap().clone();
        if page.is_empty() {
            return n;
        }
        for item in page {
            assert_eq!(item["audit"], true, "{item}");
            let label = answer(&truth[item["client_id"].as_str().unwrap()]);
            let (code, body) = s
                .post(
                    &format!("/v1/items/{}/annotations", item["id"]),
                    &json!({"label": label, "annotator": "auditor"}),
                )
                .await;
            assert_eq!(code, 201, "{body}");
            n += 1;
        }
    }
}

async fn calibrate(s: &Server, project: i64) -> Value {
    let (code, job) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, j) = s.get(&format!("/v1/jobs/{id}")).await;
        if j["state"] == "done" {
            break;
        }
        assert_ne!(j["state"], "failed", "{j}");
        assert!(Instant::now() < deadline, "calibration did not finish: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, c) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert_eq!(code, 200, "{c}");
    c
}

/// Realised precision of the auto-accepted items against the truth, and how many.
fn realised(items: &[Value], truth: &HashMap<String, String>) -> (f64, usize) {
    let auto: Vec<&Value> = items
        .iter()
        .filter(|i| i["status"] == "auto_accepted")
        .collect();
    let right = auto
        .iter()
        .filter(|i| {
            i["final_label"].as_str() == Some(truth[i["client_id"].as_str().unwrap()].as_str())
        })
        .count();
    (right as f64 / auto.len().max(1) as f64, auto.len())
}

async fn calibration_loop(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);

    // Bad input: 422 naming the field, and nothing is written.
    for (body, field) in [
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "precision_target": 1.5}),
            "precision_target",
        ),
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "precision_target": 0.0}),
            "precision_target",
        ),
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "settings": {"delta": 0.7}}),
            "settings.delta",
        ),
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "settings": {"delta": 0.0}}),
            "settings.delta",
        ),
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "settings": {"audit_rate": 1.5}}),
            "settings.audit_rate",
        ),
        (
            json!({"name": "bad", "model": "fashion-mnist-cnn", "settings": {"audit_rate": -0.1}}),
            "settings.audit_rate",
        ),
    ] {
        let (code, err) = s.post("/v1/projects", &body).await;
        assert_eq!(code, 422, "{body} → {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} should name {field}");
    }
    let (_, projects) = s.get("/v1/projects").await;
    assert_eq!(
        projects["projects"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{projects}"
    );

    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "calibrated", "model": "fashion-mnist-cnn", "precision_target": 0.9,
                    "threshold": 0.5,
                    "settings": {"audit_rate": 0.3, "delta": 0.1, "calibrate_every": 0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let (batch, mut truth) = items(0..1000);
    ingest(&s, project, &batch).await;

    // The audit draw: ~30%, every one waiting for a human, raw scores kept.
    let before = all_items(&s, project).await;
    let audits: Vec<&Value> = before.iter().filter(|i| i["audit"] == true).collect();
    assert!(
        (240..=360).contains(&audits.len()),
        "{} audit items",
        audits.len()
    );
    assert!(audits.iter().all(|i| i["status"] == "needs_review"));
    assert!(before
        .iter()
        .all(|i| i["prediction"]["raw_score"].is_number()));
    assert!(before.iter().all(|i| i["calibration_version"].is_null()));

    // No audit labels yet: refused, and nothing changes.
    let (code, err) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["code"], "no_audit_labels");
    let (_, c) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert!(c["version"].is_null(), "{c}");
    // Its explicit fixed threshold decides until then, with no guarantee.
    assert_eq!(c["guarantee"], "no_guarantee", "{c}");
    assert_eq!(c["fixed_threshold"], 0.5, "{c}");

    let answered = answer_audits(&s, project, &truth, |t| t.to_string()).await;
    assert_eq!(answered, audits.len());
    let c = calibrate(&s, project).await;
    assert_eq!(c["version"], 1, "{c}");
    assert_eq!(c["guarantee"], "calibrated", "{c}");
    let (_, p) = s.get(&format!("/v1/projects/{project}")).await;
    assert_eq!(p["guarantee"], "calibrated", "{p}");
    let (_, m) = s.get_text("/metrics").await;
    let gauge = format!("labelloop_project_no_guarantee{{project=\"{project}\"}} 0");
    assert!(m.contains(&gauge), "missing {gauge} in:\n{m}");
    assert_eq!(c["audit"]["spent"], answered as i64);
    assert_eq!(c["audit"]["pending"], 0);
    assert!(c["temperature"].as_f64().unwrap() > 0.0);
    assert!(
        c["ece_before"].is_number() && c["ece_after"].is_number(),
        "{c}"
    );
    assert_eq!(c["classes"].as_array().unwrap().len(), 10);
    assert_eq!(c["reliability"]["after"].as_array().unwrap().len(), 15);
    assert_eq!(c["drift"]["alarm"], false);
    // Issue #26: budget planning, from the current scores.
    let budget = c["budget"].as_array().expect("budget");
    assert_eq!(budget.len(), 5, "{c}");
    for row in budget {
        let more = row["more_audit_labels"].as_u64().unwrap();
        assert_eq!(
            row["audit_labels"].as_u64().unwrap(),
            answered as u64 + more
        );
        let cov = row["expected_coverage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&cov), "{row}");
    }
    // Issue #28 L2: each key once, and the model spelled as everywhere else.
    let (_, raw) = s
        .get_text(&format!("/v1/projects/{project}/calibration"))
        .await;
    for key in ["\"target\":", "\"delta\":"] {
        assert_eq!(raw.matches(key).count(), 1, "{key} in {raw}");
    }
    assert!(
        c["model_version"]
            .as_str()
            .unwrap()
            .starts_with("fashion-mnist-cnn@"),
        "{c}"
    );

    // Under version 1: auto-accepted items meet the target against the truth;
    // human labels did not move; machine labels name the version.
    let after = all_items(&s, project).await;
    let (precision, accepted) = realised(&after, &truth);
    assert!(accepted > 100, "only {accepted} auto-accepted: {c}");
    assert!(
        precision >= 0.9,
        "realised precision {precision} < 0.9 on {accepted} items"
    );
    let coverage = c["coverage"].as_f64().unwrap();
    let non_audit = after.iter().filter(|i| i["audit"] == false).count();
    assert!(
        (coverage - accepted as f64 / non_audit as f64).abs() < 1e-9,
        "{coverage}"
    );
    for i in &after {
        match i["status"].as_str().unwrap() {
            "auto_accepted" => {
                assert_eq!(i["calibration_version"], 1);
                assert_eq!(i["guarantee"], "calibrated", "{i}");
                let label = i["prediction"]["label"].as_str().unwrap();
                let class = c["classes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|k| k["label"] == label)
                    .unwrap();
                assert!(
                    i["prediction"]["score"].as_f64().unwrap()
                        >= class["threshold"].as_f64().unwrap()
                );
            }
            "labeled" => {
                assert_eq!(i["audit"], true);
                assert_eq!(i["final_source"], "human");
                assert_eq!(
                    i["final_label"].as_str(),
                    Some(truth[i["client_id"].as_str().unwrap()].as_str())
                );
            }
            _ => {}
        }
    }
    let (code, csv) = s
        .get_text(&format!("/v1/projects/{project}/export?format=csv"))
        .await;
    assert_eq!(code, 200);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("raw_score,calibration_version,audit,guarantee"),
        "{csv:.200}"
    );

    // A guideline change: annotators now call trousers bags, sneakers sandals,
    // and the other way round. The audit labels of auto-accepted items go
    // wrong, the drift alarm fires, and auto-accepting stops.
    let (batch, more) = items(1000..2000);
    truth.extend(more);
    ingest(&s, project, &batch).await;
    let swap = |t: &str| {
        match t {
            "Trouser" => "Bag",
            "Bag" => "Trouser",
            "Sneaker" => "Sandal",
            "Sandal" => "Sneaker",
            "Pullover" => "Coat",
            "Coat" => "Pullover",
            other => other,
        }
        .to_string()
    };
    let swapped = answer_audits(&s, project, &truth, swap).await;
    assert!(swapped > 200, "{swapped}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        let (_, c) = s.get(&format!("/v1/projects/{project}/calibration")).await;
        let (_, m) = s.get_text("/metrics").await;
        let gauge = format!("labelloop_calibration_drift_alarm{{project=\"{project}\"}} 1");
        let auto_alarmed = all_items(&s, project).await.iter().any(|i| {
            i["status"] == "auto_accepted"
                && c["drift"]["classes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| *l == i["prediction"]["label"])
        });
        if c["drift"]["alarm"] == true && m.contains(&gauge) && !auto_alarmed {
            break c;
        }
        assert!(Instant::now() < deadline, "no drift alarm: {}", c["drift"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(c["classes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["drift_alarm"] == true));

    // Suspects: the swapped labels contradict the model; a refit lists them,
    // and a refit clears the alarm.
    let c2 = calibrate(&s, project).await;
    assert_eq!(c2["version"], 2);
    assert_eq!(c2["drift"]["alarm"], false, "{}", c2["drift"]);
    let (code, list) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=suspect&limit=20&annotator=expert"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    let suspects = list["items"].as_array().unwrap();
    assert!(suspects.len() >= 10, "{list}");
    let corrupted = suspects
        .iter()
        .filter(|i| {
            assert_eq!(i["suspect"], true);
            let t = &truth[i["client_id"].as_str().unwrap()];
            i["final_label"].as_str() != Some(t.as_str())
        })
        .count();
    assert!(
        corrupted as f64 >= 0.6 * suspects.len() as f64,
        "{corrupted} of {} suspects are real label errors",
        suspects.len()
    );

    // Agreement and conflicts: three annotators on the same ten items.
    let shared: Vec<&Value> = after
        .iter()
        .filter(|i| i["status"] == "auto_accepted")
        .take(10)
        .collect();
    let labels = ["T-shirt/top", "Trouser", "Pullover"];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (n, item) in shared.iter().enumerate() {
        let la = labels[n % 3];
        let lb = labels[(n / 2) % 3];
        let lc = labels[n % 3];
        for (who, l) in [("ann-a", la), ("ann-b", lb), ("ann-c", lc)] {
            let (code, body) = s
                .post(
                    &format!("/v1/items/{}/annotations", item["id"]),
                    &json!({"label": l, "annotator": who}),
                )
                .await;
            assert_eq!(code, 201, "{body}");
        }
        a.push(n % 3);
        b.push((n / 2) % 3);
        // Majority: a and c agree, so theirs is the settled label.
        let (_, got) = s.get(&format!("/v1/items/{}", item["id"])).await;
        assert_eq!(got["final_label"], la, "{got}");
        if la != lb {
            assert_eq!(got["resolution"], "majority", "{got}");
        }
    }
    let (code, g) = s.get(&format!("/v1/projects/{project}/agreement")).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["shared_items"], 10, "{g}");
    let pair = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == "ann-a" && p["b"] == "ann-b")
        .unwrap();
    let want = labelloop::calibrate::cohen_kappa(&a, &b).unwrap();
    assert!(
        (pair["kappa"].as_f64().unwrap() - want).abs() < 1e-12,
        "{pair} vs {want}"
    );
    let ac = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == "ann-a" && p["b"] == "ann-c")
        .unwrap();
    assert!((ac["kappa"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    let c_acc = g["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "ann-c")
        .unwrap();
    assert_eq!(c_acc["consensus_accuracy"], 1.0);
    assert!(g["alpha"].as_f64().unwrap() < 1.0);
}

/// Issue #26: `threshold_method = "pooled"` end to end: one threshold per
/// class from one scan at δ, the method shown, and the target met.
async fn pooled_loop(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, err) = s
        .post(
            "/v1/projects",
            &json!({"name": "bad", "model": "fashion-mnist-cnn",
                    "settings": {"threshold_method": "pooled-ish"}}),
        )
        .await;
    assert_eq!(code, 422, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("settings.threshold_method"));
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "pooled", "model": "fashion-mnist-cnn", "precision_target": 0.9,
                    "settings": {"audit_rate": 0.3, "delta": 0.1, "calibrate_every": 0,
                                 "threshold_method": "pooled"}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let (batch, truth) = items(0..1000);
    ingest(&s, project, &batch).await;
    let before = all_items(&s, project).await;
    assert!(
        before.iter().all(|i| i["status"] != "auto_accepted"),
        "nothing accepted before a calibration"
    );
    answer_audits(&s, project, &truth, |t| t.to_string()).await;
    let c = calibrate(&s, project).await;
    assert_eq!(c["method"], "pooled", "{c}");
    let with_threshold = c["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["threshold"].is_number())
        .count();
    assert!(with_threshold >= 8, "{c}");
    let after = all_items(&s, project).await;
    let (precision, accepted) = realised(&after, &truth);
    assert!(accepted > 300, "{accepted} accepted");
    assert!(precision >= 0.9, "realised precision {precision}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_loop_sqlite() {
    pooled_loop(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_loop_sqlite() {
    calibration_loop(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_loop_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    calibration_loop(db).await;
}
