//! Screening through the real server (SQLite and PostgreSQL), on the
//! Fashion-MNIST CNN's stored embeddings: planted exact duplicates found as
//! groups; foreign images (real garments upside down in negative: no MNIST
//! digits are on this machine) flagged as outliers against a reference
//! project and never auto-accepted, not even after a new head re-predicts
//! the project; Datalab's within-pool rule before a reference exists, said
//! so; the project's own human labels as the reference once there are
//! enough; and the bad input (α, a reference on another model, a project
//! with no embeddings, a bad page).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::server::{b64, Server, TestDb};
use serde_json::{json, Value};

const FOREIGN: usize = 30;

/// Fashion-MNIST test image `i` upside down and in negative, as a PNG.
fn foreign_png(path: &std::path::Path) -> Vec<u8> {
    let img = image::open(path).expect("a test PNG").to_luma8();
    let (w, h) = img.dimensions();
    let flipped = image::GrayImage::from_fn(w, h, |x, y| {
        let p = img.get_pixel(w - 1 - x, h - 1 - y)[0];
        image::Luma([255 - p])
    });
    common::png_bytes(&image::DynamicImage::ImageLuma8(flipped))
}

async fn create(s: &Server, name: &str, model: &str) -> i64 {
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": name, "model": model, "threshold": 0.5,
                    "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_i64().unwrap()
}

async fn ingest(s: &Server, project: i64, items: &[Value]) {
    for chunk in items.chunks(500) {
        let (code, body) = s
            .post(&format!("/v1/projects/{project}/items"), &json!(chunk))
            .await;
        assert_eq!(code, 202, "{body}");
        s.wait_job(
            body["job"]["id"].as_i64().unwrap(),
            Duration::from_secs(300),
        )
        .await;
    }
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

/// Screen and wait for the job; the screening view after it.
async fn screen(s: &Server, project: i64, body: Option<Value>) -> Value {
    let path = format!("/v1/projects/{project}/screen");
    let (code, job) = match &body {
        Some(b) => s.post(&path, b).await,
        None => s.post_raw(&path, Vec::new(), "application/json").await,
    };
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
    assert_eq!(v["screened"], true, "{v}");
    assert_eq!(v["job_id"].as_i64(), Some(id), "{v}");
    v
}

/// Every issue of `kind` (or all), walking the pages `limit` at a time.
async fn all_issues(s: &Server, project: i64, kind: Option<&str>, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut path = format!("/v1/projects/{project}/issues?limit={limit}");
        if let Some(k) = kind {
            path.push_str(&format!("&type={k}"));
        }
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let (code, page) = s.get(&path).await;
        assert_eq!(code, 200, "{page}");
        let issues = page["issues"].as_array().unwrap();
        assert!(issues.len() <= limit);
        out.extend(issues.iter().cloned());
        match page["next_after"].as_i64() {
            Some(a) => after = Some(a),
            None => return out,
        }
    }
}

async fn expect_error(s: &Server, code: u16, path: &str, body: &Value, names: &[&str]) {
    let (got, err) = s.post(path, body).await;
    assert_eq!(got, code, "{path} {body} → {err}");
    let message = err["error"]["message"].as_str().unwrap();
    for n in names {
        assert!(message.contains(n), "{message} should name {n}");
    }
}

async fn screening_loop(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let test = common::fashion_mnist_test();

    // The reference: 3,000 test images. The screened project: 400 others,
    // 5 exact copies of its own, and the foreign images.
    let reference = create(&s, "reference", "fashion-mnist-cnn").await;
    let ref_items: Vec<Value> = test[..3000]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": b64(&std::fs::read(p).unwrap())}))
        .collect();
    ingest(&s, reference, &ref_items).await;

    let project = create(&s, "screened", "fashion-mnist-cnn").await;
    let mut items: Vec<Value> = test[5000..5400]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": b64(&std::fs::read(p).unwrap())}))
        .collect();
    for (id, p, _) in &test[5000..5005] {
        items.push(json!({"id": format!("{id}-copy"), "image": b64(&std::fs::read(p).unwrap())}));
    }
    let foreign_ids: HashSet<String> = (0..FOREIGN).map(|i| format!("foreign-{i}")).collect();
    for (i, (_, p, _)) in test[6000..6000 + FOREIGN].iter().enumerate() {
        items.push(json!({"id": format!("foreign-{i}"), "image": b64(&foreign_png(p))}));
    }
    ingest(&s, project, &items).await;
    let before = all_items(&s, project).await;
    assert_eq!(before.len(), 435);
    let foreign_accepted_before = before
        .iter()
        .filter(|i| {
            foreign_ids.contains(i["client_id"].as_str().unwrap()) && i["status"] == "auto_accepted"
        })
        .count();
    eprintln!(
        "foreign images auto-accepted before screening: {foreign_accepted_before} of {FOREIGN}"
    );
    assert!(
        foreign_accepted_before > 0,
        "the threshold lets no foreign image through: nothing to show"
    );

    // Bad input: 422 naming the field (both models), 409 saying what to run first.
    let path = format!("/v1/projects/{project}/screen");
    for alpha in [json!(0.0), json!(0.7), json!(-0.1)] {
        expect_error(&s, 422, &path, &json!({"alpha": alpha}), &["alpha"]).await;
    }
    let mlp = create(&s, "other-model", "fashion-mnist-mlp").await;
    expect_error(
        &s,
        422,
        &path,
        &json!({"reference_project": mlp}),
        &[
            "reference_project",
            "fashion-mnist-mlp",
            "fashion-mnist-cnn",
        ],
    )
    .await;
    expect_error(
        &s,
        422,
        &path,
        &json!({"reference_project": 999_999}),
        &["reference_project"],
    )
    .await;
    expect_error(
        &s,
        422,
        &path,
        &json!({"reference_project": project}),
        &["reference_project"],
    )
    .await;
    expect_error(&s, 422, &path, &json!({"speed": 1}), &["speed"]).await;
    let empty = create(&s, "empty", "fashion-mnist-cnn").await;
    expect_error(
        &s,
        409,
        &format!("/v1/projects/{empty}/screen"),
        &json!({}),
        &["no items yet", "ingest"],
    )
    .await;
    expect_error(
        &s,
        409,
        &path,
        &json!({"reference_project": empty}),
        &["no embeddings yet"],
    )
    .await;
    // A JSON `null` body is no body (the document's optional body): the
    // request gets as far as the project's state.
    let (code, err) = s
        .post_raw(
            &format!("/v1/projects/{empty}/screen"),
            b"null".to_vec(),
            "application/json",
        )
        .await;
    assert_eq!(code, 409, "{err}");
    expect_error(&s, 404, "/v1/projects/999999/screen", &json!({}), &[]).await;
    let (code, v) = s.get(&format!("/v1/projects/{empty}/screening")).await;
    assert_eq!((code, &v["screened"]), (200, &json!(false)), "{v}");
    for (q, field) in [
        ("type=bogus", "type"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=x", "after"),
    ] {
        let (code, err) = s.get(&format!("/v1/projects/{project}/issues?{q}")).await;
        assert_eq!(code, 422, "{q} → {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{err}"
        );
    }

    // No reference yet: Datalab's within-pool rule, and the view says so.
    let v = screen(&s, project, None).await;
    assert_eq!(v["rule"], "within_pool", "{v}");
    assert!(
        v["rule_note"].as_str().unwrap().contains("within-pool"),
        "{v}"
    );
    assert_eq!(v["items"], 435, "{v}");

    // Against the reference project: the conformal test at α = 0.05.
    let v = screen(
        &s,
        project,
        Some(json!({"alpha": 0.05, "reference_project": reference})),
    )
    .await;
    eprintln!("screening: {v}");
    assert_eq!(v["rule"], "conformal", "{v}");
    assert_eq!(v["alpha"], 0.05);
    assert!(
        v["reference"]
            .as_str()
            .unwrap()
            .contains(&format!("project {reference}")),
        "{v}"
    );
    assert!(v["thresholds"]["outlier"].as_f64().unwrap() > 0.0, "{v}");

    // The planted copies: each pair one group, the copy pointing at the original.
    let by_id: HashMap<i64, String> = before
        .iter()
        .map(|i| {
            (
                i["id"].as_i64().unwrap(),
                i["client_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let exact = all_issues(&s, project, Some("exact_duplicate"), 7).await;
    assert!(exact.len() >= 10, "{exact:?}");
    for (id, _, _) in &test[5000..5005] {
        let copy = format!("{id}-copy");
        let a = exact
            .iter()
            .find(|i| i["client_id"] == id.as_str())
            .expect("original flagged");
        let b = exact
            .iter()
            .find(|i| i["client_id"] == copy.as_str())
            .expect("copy flagged");
        assert_eq!(a["group"], b["group"]);
        assert!(a["group"].is_i64());
        assert_eq!(b["of_client_id"], id.as_str(), "{b}");
        assert_eq!(by_id[&b["of"].as_i64().unwrap()], *id);
    }

    // Outliers: the foreign images, and few of the garments.
    let outliers = all_issues(&s, project, Some("outlier"), 50).await;
    let flagged: HashSet<String> = outliers
        .iter()
        .map(|i| i["client_id"].as_str().unwrap().to_string())
        .collect();
    let caught = foreign_ids.intersection(&flagged).count();
    let false_pos = flagged.len() - caught;
    eprintln!(
        "outliers: {caught} of {FOREIGN} foreign caught, {false_pos} of 405 garments flagged"
    );
    assert!(caught as f64 >= 0.75 * FOREIGN as f64, "caught {caught}");
    assert!(false_pos <= 40, "{false_pos} garments flagged");
    assert!(outliers
        .iter()
        .all(|i| i["held"] == true && i["score"].as_f64().unwrap() > 1.0));
    assert_eq!(v["counts"]["outlier"].as_i64(), Some(outliers.len() as i64));
    // The family filter and the unfiltered list agree with the counts.
    let everything = all_issues(&s, project, None, 1000).await;
    let total: i64 = v["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c.as_i64().unwrap())
        .sum();
    assert_eq!(everything.len() as i64, total);

    // None of the held items is auto-accepted any more.
    let held: HashSet<i64> = everything
        .iter()
        .filter(|i| i["held"] == true)
        .map(|i| i["item_id"].as_i64().unwrap())
        .collect();
    assert_eq!(v["held"].as_i64(), Some(held.len() as i64));
    let after = all_items(&s, project).await;
    for i in &after {
        if held.contains(&i["id"].as_i64().unwrap()) {
            assert_ne!(i["status"], "auto_accepted", "{i}");
        }
    }
    assert!(after
        .iter()
        .filter(|i| foreign_ids.contains(i["client_id"].as_str().unwrap())
            && flagged.contains(i["client_id"].as_str().unwrap()))
        .all(|i| i["status"] == "needs_review"));

    // The review lists: the outliers waiting for a person, most unusual
    // first; one representative per duplicate group.
    let (code, list) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=outliers&limit=500&annotator=screener"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["strategy"], "outliers");
    let listed = list["items"].as_array().unwrap();
    let score_of: HashMap<i64, f64> = outliers
        .iter()
        .map(|i| (i["item_id"].as_i64().unwrap(), i["score"].as_f64().unwrap()))
        .collect();
    let waiting = after
        .iter()
        .filter(|i| {
            score_of.contains_key(&i["id"].as_i64().unwrap()) && i["status"] == "needs_review"
        })
        .count();
    assert_eq!(listed.len(), waiting, "{list}");
    let scores: Vec<f64> = listed
        .iter()
        .map(|i| score_of[&i["id"].as_i64().unwrap()])
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let (code, list) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=duplicates&limit=500&annotator=screener"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    let representatives: HashSet<i64> = exact
        .iter()
        .filter(|i| i["of"].is_null())
        .map(|i| i["item_id"].as_i64().unwrap())
        .collect();
    for i in list["items"].as_array().unwrap() {
        assert!(
            representatives.contains(&i["id"].as_i64().unwrap())
                || everything.iter().any(|x| x["item_id"] == i["id"]
                    && x["type"] == "near_duplicate"
                    && x["of"].is_null()),
            "{i}"
        );
        assert_eq!(i["status"], "needs_review");
    }
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/review/release"),
            &json!({"annotator": "screener"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // People label 40 garments; a head trained on them re-predicts the
    // project, and still no held item is auto-accepted.
    let truth: HashMap<&str, &str> = test
        .iter()
        .map(|(id, _, l)| (id.as_str(), l.as_str()))
        .collect();
    let mut labeled = 0;
    for i in &after {
        let cid = i["client_id"].as_str().unwrap();
        if labeled == 40 || held.contains(&i["id"].as_i64().unwrap()) {
            continue;
        }
        let Some(label) = truth.get(cid) else {
            continue;
        };
        let (code, body) = s
            .post(
                &format!("/v1/items/{}/annotations", i["id"]),
                &json!({"label": label, "annotator": "alice"}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        labeled += 1;
    }
    let (code, trained) = s
        .post(&format!("/v1/projects/{project}/train"), &json!({}))
        .await;
    assert_eq!(code, 201, "{trained}");
    s.wait_job(
        trained["repredict_job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
    let retrained = all_items(&s, project).await;
    let auto_after_train = retrained
        .iter()
        .filter(|i| i["status"] == "auto_accepted")
        .count();
    assert!(
        auto_after_train > 0,
        "the head accepts nothing: nothing to show"
    );
    for i in &retrained {
        if held.contains(&i["id"].as_i64().unwrap()) {
            assert_ne!(i["status"], "auto_accepted", "{i}");
        }
    }

    // With 40 human labels the project is its own reference at α = 0.05.
    let v = screen(&s, project, Some(json!({"alpha": 0.05}))).await;
    assert_eq!(v["rule"], "conformal", "{v}");
    assert!(
        v["reference"].as_str().unwrap().contains("human-labeled"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_on_sqlite() {
    screening_loop(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    screening_loop(db).await;
}
