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
