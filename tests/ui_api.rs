//! The API routes the review page needs, through a real server with real
//! tokens: who am I, the strategies, an item's content (and the refusals:
//! another project's item, a file outside the data root, never read),
//! deleting an annotation (author or admin, once), a project's progress, and
//! the page itself with its security headers. Undo runs on SQLite and
//! PostgreSQL (its SQL is written once for both).

mod common;

use std::path::Path;
use std::time::Duration;

use common::server::{b64, create_token, send, Server, TestDb};
use serde_json::{json, Value};

struct Tokens {
    admin: String,
    ann: String,
    bob: String,
    predictor: String,
}

fn tokens(db: &str) -> Tokens {
    Tokens {
        admin: create_token(db, "admin", "boss"),
        ann: create_token(db, "annotator", "ann"),
        bob: create_token(db, "annotator", "bob"),
        predictor: create_token(db, "predictor", "robot"),
    }
}

async fn delete(s: &Server, who: &str, path: &str) -> (u16, Value) {
    send(s.client.delete(format!("{}{path}", s.url)).bearer_auth(who)).await
}

/// Status, content type and bytes of a GET, with a deadline: a server that
/// opened a FIFO would hang, and that is a failure, not a wait.
async fn get_bytes(s: &Server, who: Option<&str>, path: &str) -> (u16, String, Vec<u8>) {
    let mut r = s
        .client
        .get(format!("{}{path}", s.url))
        .timeout(Duration::from_secs(10));
    if let Some(t) = who {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.expect("answered in time");
    let code = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (code, ct, resp.bytes().await.unwrap().to_vec())
}

async fn project(s: &Server, admin: &str, name: &str, items: Value) -> (i64, Vec<Value>) {
    let (code, body) = s
        .post_as(
            admin,
            "/v1/projects",
            &json!({"name": name, "model": "fashion-mnist-cnn", "threshold": 1.0}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (code, body) = s
        .post_as(admin, &format!("/v1/projects/{id}/items"), &items)
        .await;
    assert_eq!(code, 202, "{body}");
    let job = body["job"]["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (code, j) = s.get_as(admin, &format!("/v1/jobs/{job}")).await;
        assert_eq!(code, 200, "{j}");
        if j["state"] == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "job {job}: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, listed) = s
        .get_as(admin, &format!("/v1/projects/{id}/items?limit=100"))
        .await;
    assert_eq!(code, 200, "{listed}");
    (id, listed["items"].as_array().unwrap().clone())
}

fn copy_png(i: usize, to: &Path) {
    std::fs::copy(&common::fashion_mnist_test()[i].1, to).unwrap();
}

#[tokio::test]
async fn me_strategies_content_progress_and_the_page() {
    let db = TestDb::sqlite();
    let t = tokens(&db.url);
    let root = tempfile::tempdir().unwrap();
    let other_root = tempfile::tempdir().unwrap();
    copy_png(0, &root.path().join("a.png"));
    copy_png(1, &root.path().join("b.png"));
    copy_png(2, &other_root.path().join("secret.png"));
    let s = Server::start(&db.url, &["--data-root", root.path().to_str().unwrap()]);

    // Who am I: the token's name and role; no token or a wrong one: 401.
    for (tok, name, role) in [
        (&t.admin, "boss", "admin"),
        (&t.ann, "ann", "annotator"),
        (&t.predictor, "robot", "predictor"),
    ] {
        let (code, me) = s.get_as(tok, "/v1/me").await;
        assert_eq!(code, 200, "{me}");
        assert_eq!(
            (me["name"].as_str(), me["role"].as_str()),
            (Some(name), Some(role))
        );
        assert_eq!(me["auth"], true);
    }
    assert_eq!(s.get("/v1/me").await.0, 401);
    let (code, body) = s.get_as("ll_not_a_token", "/v1/me").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // The strategies are the API's review orders.
    let (code, st) = s.get_as(&t.ann, "/v1/strategies").await;
    assert_eq!(code, 200, "{st}");
    let names: Vec<&str> = st["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in [
        "margin",
        "entropy",
        "least-confidence",
        "k-center",
        "random",
        "audit",
        "suspect",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(st["default"], "margin");
    assert_eq!(s.get_as(&t.predictor, "/v1/strategies").await.0, 403);

    let png2 = std::fs::read(&common::fashion_mnist_test()[3].1).unwrap();
    let (p1, items1) = project(
        &s,
        &t.admin,
        "one",
        json!([{"id": "a", "path": "a.png"}, {"id": "b", "path": "b.png"}, {"id": "c", "image": b64(&png2)}]),
    )
    .await;
    let (p2, items2) = project(
        &s,
        &t.admin,
        "two",
        json!([{"id": "z", "image": b64(&png2)}]),
    )
    .await;
    let id_of = |items: &[Value], cid: &str| {
        items
            .iter()
            .find(|i| i["client_id"] == cid)
            .and_then(|i| i["id"].as_i64())
            .unwrap()
    };
    let (a, b, c) = (
        id_of(&items1, "a"),
        id_of(&items1, "b"),
        id_of(&items1, "c"),
    );
    let z = id_of(&items2, "z");

    // Content: the file under the data root and the stored bytes, as PNG.
    let a_bytes = std::fs::read(root.path().join("a.png")).unwrap();
    let (code, ct, bytes) = get_bytes(
        &s,
        Some(&t.ann),
        &format!("/v1/items/{a}/content?project={p1}"),
    )
    .await;
    assert_eq!((code, ct.as_str()), (200, "image/png"));
    assert_eq!(bytes, a_bytes);
    let (code, ct, bytes) = get_bytes(&s, Some(&t.ann), &format!("/v1/items/{c}/content")).await;
    assert_eq!((code, ct.as_str()), (200, "image/png"));
    assert_eq!(bytes, png2);
    // Another project's item is 404 like a missing one; bad ids and bad query too.
    let (code, _, body) = get_bytes(
        &s,
        Some(&t.ann),
        &format!("/v1/items/{a}/content?project={p2}"),
    )
    .await;
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    assert_ne!(body, a_bytes);
    assert_eq!(
        get_bytes(
            &s,
            Some(&t.ann),
            &format!("/v1/items/{z}/content?project={p2}")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get_bytes(&s, Some(&t.ann), "/v1/items/999999/content")
            .await
            .0,
        404
    );
    assert_eq!(
        get_bytes(&s, Some(&t.ann), "/v1/items/abc/content").await.0,
        404
    );
    assert_eq!(
        get_bytes(
            &s,
            Some(&t.ann),
            &format!("/v1/items/{a}/content?project=x")
        )
        .await
        .0,
        422
    );
    assert_eq!(
        get_bytes(&s, Some(&t.predictor), &format!("/v1/items/{a}/content"))
            .await
            .0,
        403
    );
    assert_eq!(
        get_bytes(&s, None, &format!("/v1/items/{a}/content"))
            .await
            .0,
        401
    );

    // A file swapped for a link out of the root after ingest: 403, not read.
    std::fs::remove_file(root.path().join("b.png")).unwrap();
    std::os::unix::fs::symlink(
        other_root.path().join("secret.png"),
        root.path().join("b.png"),
    )
    .unwrap();
    let secret = std::fs::read(other_root.path().join("secret.png")).unwrap();
    let (code, _, body) = get_bytes(&s, Some(&t.ann), &format!("/v1/items/{b}/content")).await;
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert_ne!(body, secret);
    assert!(
        !String::from_utf8_lossy(&body).contains(root.path().to_str().unwrap()),
        "no server path in the message"
    );

    // Progress: every item counted once, nothing vouched for before a calibration.
    let (code, pr) = s
        .get_as(&t.ann, &format!("/v1/projects/{p1}/progress"))
        .await;
    assert_eq!(code, 200, "{pr}");
    assert_eq!(pr["total"], 3);
    assert_eq!(
        pr["needs_review"], 3,
        "threshold 1.0: everything waits: {pr}"
    );
    assert_eq!(
        pr["auto_accepted"].as_i64().unwrap() + pr["human"].as_i64().unwrap(),
        0
    );
    assert!(
        pr["precision"].is_null()
            && pr["lower_bound"].is_null()
            && pr["calibration_version"].is_null()
    );
    assert_eq!(pr["precision_target"], 0.95);
    let (code, body) = s.get_as(&t.ann, "/v1/projects/424242/progress").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // The page, with its headers; deep links answer the page.
    for path in [
        "/ui",
        "/ui/",
        "/ui/projects/1/review?strategy=margin",
        "/ui/projects/7",
    ] {
        let resp = s
            .client
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let html = resp.text().await.unwrap();
        assert!(html.contains("/ui/assets/app.js"));
    }
    let resp = s
        .client
        .get(format!("{}/ui/assets/app.js", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let again = s
        .client
        .get(format!("{}/ui/assets/app.js", s.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "revalidated by its ETag");
    assert_eq!(s.get("/ui/assets/nope.js").await.0, 404);

    // The new routes are in the OpenAPI document.
    let (_, doc) = s.get("/v1/openapi.json").await;
    for p in [
        "/v1/me",
        "/v1/strategies",
        "/v1/items/{id}/content",
        "/v1/annotations/{id}",
        "/v1/projects/{id}/progress",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} not documented");
    }
    assert!(doc["paths"]["/v1/annotations/{id}"].get("delete").is_some());
    drop(s);

    // The same database under another data root: the old file is outside
    // it. It is now a FIFO, so a server that opened it would hang.
    let fifo = root.path().join("a.png");
    std::fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let s = Server::start(
        &db.url,
        &["--data-root", other_root.path().to_str().unwrap()],
    );
    let (code, _, body) = get_bytes(
        &s,
        Some(&t.ann),
        &format!("/v1/items/{a}/content?project={p1}"),
    )
    .await;
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    let s2 = Server::start(&db.url, &[]);
    let (code, _, _) = get_bytes(&s2, Some(&t.ann), &format!("/v1/items/{a}/content")).await;
    assert_eq!(code, 403, "no --data-root: no path item is read");
}

async fn undo(db: TestDb) {
    let t = tokens(&db.url);
    let s = Server::start(&db.url, &[]);
    let (p, items) = project(
        &s,
        &t.admin,
        "undo",
        json!(common::server::fashion_items(6)),
    )
    .await;
    let review = |who: &str| {
        let (s, who) = (&s, who.to_string());
        async move {
            let (code, list) = s
                .get_as(
                    &who,
                    &format!("/v1/projects/{p}/review?limit=2&strategy=margin"),
                )
                .await;
            assert_eq!(code, 200, "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    let mine = review(&t.ann).await;
    let item = mine[0];
    let (code, done) = s
        .post_as(
            &t.ann,
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": "Coat"}),
        )
        .await;
    assert_eq!(code, 201, "{done}");
    let ann_id = done["annotation_id"]
        .as_i64()
        .expect("annotation_id in the answer");
    assert_eq!(done["id"], item, "the answer is still the item");
    assert_eq!(done["annotations"][0]["id"], ann_id);
    assert_eq!(done["status"], "labeled");

    // Neither the author nor an admin: 403, and the annotation stays.
    let (code, body) = delete(&s, &t.bob, &format!("/v1/annotations/{ann_id}")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        delete(&s, &t.predictor, &format!("/v1/annotations/{ann_id}"))
            .await
            .0,
        403
    );
    let (_, it) = s.get_as(&t.admin, &format!("/v1/items/{item}")).await;
    assert_eq!(it["annotations"].as_array().unwrap().len(), 1);

    // The author: gone, the item waits again, leased back to the author.
    let (code, body) = delete(&s, &t.ann, &format!("/v1/annotations/{ann_id}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["deleted"], ann_id);
    assert_eq!(body["item"]["status"], "needs_review");
    assert!(body["item"]["final_label"].is_null());
    assert!(body["item"]["annotations"].as_array().unwrap().is_empty());
    let (_, it) = s.get_as(&t.admin, &format!("/v1/items/{item}")).await;
    assert_eq!(it["status"], "needs_review");
    assert!(it["annotations"].as_array().unwrap().is_empty());
    // Twice: 404.
    let (code, body) = delete(&s, &t.ann, &format!("/v1/annotations/{ann_id}")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(delete(&s, &t.ann, "/v1/annotations/x").await.0, 404);
    assert_eq!(delete(&s, &t.ann, "/v1/annotations/987654").await.0, 404);
    let bobs = review(&t.bob).await;
    assert!(
        !bobs.contains(&item),
        "the undone item stays with its author"
    );
    let again = review(&t.ann).await;
    assert!(again.contains(&item), "{again:?}");

    // Two annotators on one item; an admin deletes the later one: the
    // earlier label is final again.
    let (_, first) = s
        .post_as(
            &t.ann,
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": "Bag"}),
        )
        .await;
    let (_, second) = s
        .post_as(
            &t.bob,
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": "Coat"}),
        )
        .await;
    let second_id = second["annotation_id"].as_i64().unwrap();
    assert_ne!(first["annotation_id"], second["annotation_id"]);
    let (code, body) = delete(&s, &t.admin, &format!("/v1/annotations/{second_id}")).await;
    assert_eq!(code, 200, "an admin may undo anyone's: {body}");
    assert_eq!(body["item"]["status"], "labeled");
    assert_eq!(body["item"]["final_label"], "Bag");
    assert_eq!(body["item"]["annotations"].as_array().unwrap().len(), 1);

    // Progress follows.
    let (_, pr) = s
        .get_as(&t.ann, &format!("/v1/projects/{p}/progress"))
        .await;
    assert_eq!(pr["total"], items.len());
    assert_eq!(pr["human"], 1);
    assert_eq!(pr["needs_review"], items.len() - 1);
}

#[tokio::test]
async fn undo_sqlite() {
    undo(TestDb::sqlite()).await;
}

#[tokio::test]
async fn undo_postgres() {
    if let Some(db) = TestDb::postgres().await {
        undo(db).await;
    }
}

#[tokio::test]
async fn the_page_under_no_auth() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, me) = s.get("/v1/me").await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        (me["role"].as_str(), me["auth"].as_bool()),
        (Some("admin"), Some(false))
    );
    assert_eq!(s.get_text("/ui/projects/1/review").await.0, 200);
}
