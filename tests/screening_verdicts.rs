//! Verdicts on screen issues (issue 25) through the real server, on SQLite
//! and PostgreSQL: real Fashion-MNIST test images with two planted exact
//! copies and foreign images (real garments upside down in negative),
//! screened against a reference project. A member rejected leaves its group
//! and the label it took; undone, both come back; confirmed, it keeps them.
//! An outlier confirmed loses its hold; rejected, it is `rejected`, counted
//! so, refused a label; a full re-screen keeps both verdicts. Repeats write
//! nothing, the other verdict is 409, bad targets 422/404, identity from the
//! token.

mod common;

use std::time::Duration;

use common::server::{b64, create_token, send, Server, TestDb};
use serde_json::{json, Value};

fn foreign_png(path: &std::path::Path) -> Vec<u8> {
    let img = image::open(path).expect("a test PNG").to_luma8();
    let (w, h) = img.dimensions();
    let flipped = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([255 - img.get_pixel(w - 1 - x, h - 1 - y)[0]])
    });
    common::png_bytes(&image::DynamicImage::ImageLuma8(flipped))
}

async fn create(s: &Server, tok: &str, name: &str) -> (i64, Vec<String>) {
    let (code, p) = s
        .post_as(
            tok,
            "/v1/projects",
            &json!({"name": name, "model": "fashion-mnist-cnn", "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let labels = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (p["id"].as_i64().unwrap(), labels)
}

async fn ingest(s: &Server, tok: &str, project: i64, items: &[Value]) {
    let (code, body) = s
        .post_as(tok, &format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(600),
    )
    .await;
}

async fn screen(s: &Server, tok: &str, project: i64, body: Value) {
    let (code, job) = s
        .post_as(tok, &format!("/v1/projects/{project}/screen"), &body)
        .await;
    assert_eq!(code, 202, "{job}");
    s.wait_job(job["id"].as_i64().unwrap(), Duration::from_secs(600))
        .await;
}

async fn issues(s: &Server, tok: &str, project: i64, kind: &str) -> Vec<Value> {
    let (code, page) = s
        .get_as(
            tok,
            &format!("/v1/projects/{project}/issues?type={kind}&limit=1000"),
        )
        .await;
    assert_eq!(code, 200, "{page}");
    page["issues"].as_array().unwrap().clone()
}

async fn item(s: &Server, tok: &str, id: i64) -> Value {
    let (code, v) = s.get_as(tok, &format!("/v1/items/{id}")).await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn verdict(s: &Server, tok: &str, project: i64, issue: i64, v: &str) -> (u16, Value) {
    s.post_as(
        tok,
        &format!("/v1/projects/{project}/issues/{issue}/verdict"),
        &json!({"verdict": v}),
    )
    .await
}

async fn undo(s: &Server, tok: &str, project: i64, issue: i64) -> (u16, Value) {
    send(
        s.client
            .delete(format!(
                "{}/v1/projects/{project}/issues/{issue}/verdict",
                s.url
            ))
            .bearer_auth(tok),
    )
    .await
}

async fn verdicts(db: TestDb) {
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let bob = create_token(&db.url, "annotator", "bob");
    let s = Server::start(&db.url, &[]).with_token(&admin);
    let test = common::fashion_mnist_test();
    let png = |p: &std::path::Path| b64(&std::fs::read(p).unwrap());

    let (reference, _) = create(&s, &admin, "reference").await;
    let refs: Vec<Value> = test[..300]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": png(p)}))
        .collect();
    ingest(&s, &admin, reference, &refs).await;
    let (project, labels) = create(&s, &admin, "screened").await;
    let mut items: Vec<Value> = test[5000..5150]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": png(p)}))
        .collect();
    for (id, p, _) in &test[5000..5002] {
        items.push(json!({"id": format!("{id}-copy"), "image": png(p)}));
    }
    for (i, (_, p, _)) in test[6000..6010].iter().enumerate() {
        items.push(json!({"id": format!("foreign-{i}"), "image": b64(&foreign_png(p))}));
    }
    ingest(&s, &admin, project, &items).await;
    let settings = json!({"reference_project": reference});
    screen(&s, &admin, project, settings.clone()).await;

    // A planted pair: the member's issue names the representative.
    let exact = issues(&s, &admin, project, "exact_duplicate").await;
    let member = exact
        .iter()
        .find(|i| i["of"].is_i64() && i["client_id"].as_str().unwrap().ends_with("-copy"))
        .unwrap_or_else(|| panic!("a planted copy in a group: {exact:?}"))
        .clone();
    let (m, rep, m_issue) = (
        member["item_id"].as_i64().unwrap(),
        member["of"].as_i64().unwrap(),
        member["id"].as_i64().unwrap(),
    );
    let rep_issue = exact
        .iter()
        .find(|i| i["item_id"] == rep && i["of"].is_null())
        .expect("the representative's issue")["id"]
        .as_i64()
        .unwrap();
    let (code, a) = s
        .post_as(
            &alice,
            &format!("/v1/items/{rep}/annotations"),
            &json!({"label": labels[3]}),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    let before = item(&s, &admin, m).await;
    assert_eq!(before["final_source"], "propagated", "{before}");

    // Reject: out of the group, the copied label gone; once only.
    let (code, v) = verdict(&s, &alice, project, m_issue, "reject").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["recorded"], &v["annotator"], &v["type"]),
        (&json!(true), &json!("alice"), &json!("exact_duplicate")),
        "{v}"
    );
    let after = item(&s, &admin, m).await;
    assert_eq!(
        (&after["status"], &after["final_label"]),
        (&json!("needs_review"), &Value::Null),
        "{after}"
    );
    let now = issues(&s, &admin, project, "exact_duplicate").await;
    assert!(!now.iter().any(|i| i["item_id"] == m), "{now:?}");
    assert!(
        !now.iter().any(|i| i["item_id"] == rep),
        "a group of one is no group"
    );
    let (code, v) = verdict(&s, &alice, project, m_issue, "reject").await;
    assert_eq!((code, &v["recorded"]), (200, &json!(false)), "{v}");
    let (code, e) = verdict(&s, &alice, project, m_issue, "confirm").await;
    assert_eq!(code, 409, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("undo"),
        "{e}"
    );
    // Only its author or an admin undoes it; undone, all comes back.
    let (code, e) = undo(&s, &bob, project, m_issue).await;
    assert_eq!(code, 403, "{e}");
    let (code, v) = undo(&s, &alice, project, m_issue).await;
    assert_eq!(code, 200, "{v}");
    let back = item(&s, &admin, m).await;
    assert_eq!(
        (&back["final_source"], &back["final_label"]),
        (&json!("propagated"), &json!(labels[3])),
        "{back}"
    );
    assert_eq!(issues(&s, &admin, project, "exact_duplicate").await, exact);
    let (code, e) = undo(&s, &alice, project, m_issue).await;
    assert_eq!(code, 404, "{e}");
    let (code, v) = verdict(&s, &alice, project, m_issue, "confirm").await;
    assert_eq!((code, &v["recorded"]), (200, &json!(true)), "{v}");
    assert_eq!(item(&s, &admin, m).await["final_source"], "propagated");

    // Bad targets.
    let (code, e) = verdict(&s, &alice, project, rep_issue, "reject").await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("representative"),
        "{e}"
    );
    let (code, e) = verdict(&s, &alice, project, 9_999_999, "reject").await;
    assert_eq!(code, 404, "{e}");
    let (code, e) = verdict(&s, &alice, reference, m_issue, "reject").await;
    assert_eq!(code, 404, "another project's issue: {e}");
    let (code, e) = s
        .post_as(
            &alice,
            &format!("/v1/projects/{project}/issues/{m_issue}/verdict"),
            &json!({"verdict": "confirm", "annotator": "bob"}),
        )
        .await;
    assert_eq!(code, 422, "identity comes from the token: {e}");

    // Outliers: confirm lifts the hold; reject makes the item `rejected`.
    let outliers = issues(&s, &admin, project, "outlier").await;
    assert!(outliers.len() >= 2, "{outliers:?}");
    let (o1, o1_issue) = (
        outliers[0]["item_id"].as_i64().unwrap(),
        outliers[0]["id"].as_i64().unwrap(),
    );
    let (o2, o2_issue) = (
        outliers[1]["item_id"].as_i64().unwrap(),
        outliers[1]["id"].as_i64().unwrap(),
    );
    assert_eq!(outliers[0]["held"], true);
    let (code, v) = verdict(&s, &alice, project, o1_issue, "confirm").await;
    assert_eq!(code, 200, "{v}");
    let held = |list: &[Value], id: i64| {
        list.iter()
            .find(|i| i["item_id"] == id)
            .map(|i| i["held"].clone())
    };
    let now = issues(&s, &admin, project, "outlier").await;
    assert_eq!(held(&now, o1), Some(json!(false)));
    let (code, v) = verdict(&s, &alice, project, o2_issue, "reject").await;
    assert_eq!((code, &v["item_status"]), (200, &json!("rejected")), "{v}");
    let (_, prog) = s
        .get_as(&admin, &format!("/v1/projects/{project}/progress"))
        .await;
    assert_eq!(prog["rejected"], 1, "{prog}");
    let (code, e) = s
        .post_as(
            &alice,
            &format!("/v1/items/{o2}/annotations"),
            &json!({"label": labels[0]}),
        )
        .await;
    assert_eq!(code, 409, "{e}");
    let (code, list) = s
        .get_as(
            &alice,
            &format!("/v1/projects/{project}/review?strategy=outliers&limit=500"),
        )
        .await;
    assert_eq!(code, 200, "{list}");
    assert!(
        !list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == o2),
        "a rejected outlier is reviewed no more"
    );
    let (code, rejected) = s
        .get_as(
            &admin,
            &format!("/v1/projects/{project}/items?status=rejected"),
        )
        .await;
    assert_eq!(code, 200, "{rejected}");
    assert_eq!(rejected["items"].as_array().unwrap().len(), 1, "{rejected}");

    // A full re-screen keeps the verdicts.
    let mut full = settings.clone();
    full["full"] = json!(true);
    screen(&s, &admin, project, full).await;
    let now = issues(&s, &admin, project, "outlier").await;
    if let Some(h) = held(&now, o1) {
        assert_eq!(h, json!(false), "a confirmed outlier stays unheld");
    }
    assert_eq!(item(&s, &admin, o2).await["status"], "rejected");
    let now = issues(&s, &admin, project, "exact_duplicate").await;
    assert!(
        now.iter().any(|i| i["item_id"] == m),
        "confirmed: still grouped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_on_sqlite() {
    verdicts(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    verdicts(db).await;
}
