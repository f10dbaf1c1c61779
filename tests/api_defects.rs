//! Regression tests for defects found by probing the running server with
//! bad input: unbounded settings, 405s, public routes and wrong tokens,
//! duplicate ids within one request.

mod common;

use common::server::{b64, send, Server, TestDb};
use serde_json::json;

#[tokio::test]
async fn settings_numbers_are_bounded_and_nothing_is_half_written() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "bounds", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let put = |settings: serde_json::Value| {
        send(
            s.client
                .put(format!("{}/v1/projects/{id}/settings", s.url))
                .json(&settings),
        )
    };
    for (field, settings) in [
        ("review_lease_secs", json!({"review_lease_secs": u64::MAX})),
        ("review_lease_secs", json!({"review_lease_secs": 0})),
        ("train_every", json!({"train_every": u64::MAX})),
    ] {
        let (code, body) = put(settings.clone()).await;
        assert_eq!(code, 422, "{settings}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "names {field}: {body}"
        );
    }
    let (_, project) = s.get(&format!("/v1/projects/{id}")).await;
    assert_eq!(project["settings"]["review_lease_secs"], json!(null));
    assert_eq!(project["settings"]["train_every"], json!(null));
    let (code, body) = put(json!({"review_lease_secs": 86400, "train_every": 50})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["settings"]["review_lease_secs"], 86400);
    // Issue #28 L4: `[]` was read as a struct of defaults and reset every
    // setting. Settings are an object, or a 422 that changes nothing.
    for not_object in [json!([]), json!([86400]), json!("x"), json!(null)] {
        let (code, body) = put(not_object.clone()).await;
        assert_eq!(code, 422, "{not_object}: {body}");
    }
    let (_, project) = s.get(&format!("/v1/projects/{id}")).await;
    assert_eq!(project["settings"]["train_every"], 50, "{project}");
}

/// Issue #28 L5: pairwise agreement grew with the square of the annotators
/// (600 names on one item gave a 10 MB answer). κ pairs are now reported
/// for the 50 annotators with the most shared items.
#[tokio::test]
async fn agreement_pairs_are_capped() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (_, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "agree", "model": "fashion-mnist-cnn"}),
        )
        .await;
    let id = p["id"].as_i64().unwrap();
    let (code, _) = s
        .post(
            &format!("/v1/projects/{id}/items"),
            &json!(common::server::fashion_items(1)),
        )
        .await;
    assert!(code == 200 || code == 202);
    let (_, page) = s.get(&format!("/v1/projects/{id}/items")).await;
    let item = page["items"][0]["id"].as_i64().unwrap();
    for i in 0..120 {
        let label = if i % 3 == 0 { "Bag" } else { "Coat" };
        let (code, body) = s
            .post(
                &format!("/v1/items/{item}/annotations"),
                &json!({"label": label, "annotator": format!("name{i:03}")}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, text) = s.get_text(&format!("/v1/projects/{id}/agreement")).await;
    assert_eq!(code, 200);
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["pairs"].as_array().unwrap().len(), 50 * 49 / 2);
    assert_eq!(body["pairs_left_out"], 70);
    assert_eq!(body["annotators"].as_array().unwrap().len(), 120);
    assert!(text.len() < 1 << 20, "{} bytes", text.len());
}

#[tokio::test]
async fn wrong_method_is_405_and_ids_repeated_in_a_request_are_counted() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, body) = send(s.client.delete(format!("{}/v1/projects", s.url))).await;
    assert_eq!(code, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let (_, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "dups", "model": "fashion-mnist-cnn"}),
        )
        .await;
    let id = body["id"].as_i64().unwrap();
    let img = b64(&std::fs::read(&common::fashion_mnist_test()[0].1).unwrap());
    let items = json!([
        {"id": "a", "image": img},
        {"id": "a", "image": img},
        {"id": "b", "image": img},
    ]);
    let (code, body) = s.post(&format!("/v1/projects/{id}/items"), &items).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        (body["inserted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    // Sent again: all three are duplicates now.
    let (_, body) = s.post(&format!("/v1/projects/{id}/items"), &items).await;
    assert_eq!(
        (body["inserted"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
}

#[tokio::test]
async fn public_routes_answer_a_wrong_token_and_responses_carry_a_request_id() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &[]);
    for path in ["/healthz", "/metrics", "/v1/openapi.json"] {
        let resp = s
            .client
            .get(format!("{}{path}", s.url))
            .bearer_auth("ll_not_a_real_token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert!(resp.headers().contains_key("x-request-id"), "{path}");
    }
    let resp = s
        .client
        .get(format!("{}/v1/projects", s.url))
        .bearer_auth("ll_not_a_real_token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
