//! The Label Studio door (issue #28): each defect the probe of `9beca30`
//! found on the `/labelstudio/{project}` routes, replayed from the probe's
//! command against a real `labelloop serve` (the Fashion-MNIST CNN, SQLite
//! and PostgreSQL). Bodies start from the ones a real Label Studio 1.23.2
//! sent (`tests/fixtures/labelstudio/`); their changes are synthetic.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{create_token, Server, TestDb};
use serde_json::{json, Value};

/// A Label Studio host on the allow-list; nothing listens there (`/setup`
/// only records it).
const LS_HOST: &str = "127.0.0.1:18080";

fn fixture(name: &str) -> Value {
    let path = common::root().join(format!("tests/fixtures/labelstudio/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config() -> String {
    fixture("setup_fashion")["schema"]
        .as_str()
        .unwrap()
        .to_string()
}

struct Door {
    server: Server,
    db: TestDb,
    project: i64,
}

/// A server with a Fashion-MNIST project; token auth on unless `extra`
/// says `--no-auth` (then the admin token is unused).
async fn door(db: TestDb, extra: &[&str]) -> Door {
    let admin = create_token(&db.url, "admin", "admin");
    let data = common::root().join("data");
    let mut args = vec!["--data-root", data.to_str().unwrap(), "--ls-hosts", LS_HOST];
    args.extend_from_slice(extra);
    let server = Server::start(&db.url, &args).with_token(&admin);
    let (code, p) = server
        .post(
            "/v1/projects",
            &json!({"name": "door", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    Door {
        server,
        db,
        project: p["id"].as_i64().unwrap(),
    }
}

/// Call a protocol route as Label Studio would: no bearer token, Basic
/// credentials if given.
async fn ls(
    d: &Door,
    route: &str,
    body: Option<&Value>,
    creds: Option<(&str, &str)>,
) -> (u16, Value) {
    let url = format!("{}/labelstudio/{}/{route}", d.server.url, d.project);
    let mut r = match body {
        Some(b) => d.server.client.post(url).json(b),
        None => d.server.client.get(url),
    };
    if let Some((u, p)) = creds {
        r = r.basic_auth(u, Some(p));
    }
    common::server::send(r).await
}

/// Post a webhook until it is applied (`queued` means not yet; posting the
/// same event again writes nothing and answers once it is applied).
async fn hook(d: &Door, body: &Value, creds: Option<(&str, &str)>) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = ls(d, "webhook", Some(body), creds).await;
        if code != 200 || out["status"] != "queued" {
            return (code, out);
        }
        assert!(Instant::now() < deadline, "webhook never applied: {out}");
    }
}

async fn alive(d: &Door) {
    let (code, _) = d.server.get_text("/healthz").await;
    assert_eq!(code, 200, "the server must survive");
}

/// An ANNOTATION_CREATED for task `task` (a local Fashion-MNIST image), by `email`.
fn created(annotation: i64, task: i64, email: &str, label: &str) -> Value {
    let mut b = fixture("webhook_ANNOTATION_CREATED");
    b["annotation"]["id"] = json!(annotation);
    b["annotation"]["task"] = json!(task);
    b["annotation"]["completed_by"] = json!({"id": 1, "email": email});
    b["annotation"]["result"][0]["value"]["choices"] = json!([label]);
    b["task"]["id"] = json!(task);
    b["task"]["data"]["image"] = json!(format!("fashion-mnist/test/{:05}.png", task % 1000));
    b
}

async fn items(d: &Door) -> Vec<Value> {
    let (code, body) = d
        .server
        .get(&format!("/v1/projects/{}/items?limit=1000", d.project))
        .await;
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn annotations_of(items: &[Value], task: i64) -> Vec<Value> {
    items
        .iter()
        .find(|i| i["client_id"] == format!("ls-task-{task}"))
        .map(|i| i["annotations"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// `/predict` of two tasks, the image at `url` and a local one: the first
/// gets an empty result (not fetched, or given up on), the second a label.
async fn refused_then_predicted(d: &Door, url: &str, label_config: Option<String>) {
    let mut body = json!({"tasks": [
        {"id": 1, "data": {"image": url}},
        {"id": 2, "data": {"image": "fashion-mnist/test/00001.png"}},
    ]});
    if let Some(c) = label_config {
        body["label_config"] = json!(c);
    }
    let (code, out) = ls(d, "predict", Some(&body), None).await;
    assert_eq!(code, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert!(results[0]["result"].as_array().unwrap().is_empty(), "{out}");
    assert!(
        !results[1]["result"].as_array().unwrap().is_empty(),
        "{out}"
    );
}

async fn credentials(d: &Door) -> (String, String) {
    let (code, c) = d
        .server
        .post(
            &format!("/v1/projects/{}/labelstudio/credentials", d.project),
            &json!(null),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    assert_eq!(c["backend_path"], format!("/labelstudio/{}", d.project));
    (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    )
}

/// C1: `'<View>' * d + '</View>' * d` aborted the process (stack overflow)
/// through /validate, /setup, /predict and /webhook from depth ~4,000.
/// Now every depth up to the body limit is a 4xx naming the problem.
#[tokio::test]
async fn c1_deeply_nested_configs_are_refused_and_the_server_lives() {
    let d = door(TestDb::sqlite(), &["--no-auth"]).await;
    // 13 bytes a level: the last depth fills most of the 32 MiB body limit.
    for depth in [3_000usize, 5_000, 80_000, 2_500_000] {
        let xml = format!("{}{}", "<View>".repeat(depth), "</View>".repeat(depth));
        let mut webhook = created(1, 1, "a@example.com", "Bag");
        webhook["project"]["label_config"] = json!(xml);
        let cases = [
            ("validate", json!({"config": xml})),
            (
                "setup",
                json!({"schema": xml, "hostname": format!("http://{LS_HOST}")}),
            ),
            ("predict", json!({"tasks": [], "label_config": xml})),
            ("webhook", webhook),
        ];
        for (route, body) in cases {
            let (code, err) = ls(&d, route, Some(&body), None).await;
            assert!(
                (400..500).contains(&code),
                "{route} at depth {depth}: {code}"
            );
            let msg = err["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("deep") || msg.contains("bytes"),
                "{route} at depth {depth}: {err}"
            );
            alive(&d).await;
        }
    }
    // Depth at the cap still parses (and is judged on its labels).
    let xml = format!(
        "{}{}{}",
        "<View>".repeat(60),
        config(),
        "</View>".repeat(60)
    );
    let (code, out) = ls(&d, "validate", Some(&json!({"config": xml})), None).await;
    assert_eq!(code, 200, "{out}");
}

/// H3: 8,000 `<Choices>` took 7.2 s to validate (quadratic object lookup,
/// on the async workers). Now a config is capped at 1 MiB, objects are
/// indexed once, and the big one still finds the matching tag at its end.
#[tokio::test]
async fn h3_many_choices_are_bounded_and_found() {
    let d = door(TestDb::sqlite(), &["--no-auth"]).await;
    let filler: String = (0..6_000)
        .map(|i| format!(r#"<Choices name="c{i}" toName="image"><Choice value="x"/></Choices>"#))
        .collect();
    let real = config();
    let xml = real.replacen("<View>", &format!("<View>{filler}"), 1);
    assert!(xml.len() < 1 << 20 && xml.len() > 300_000, "{}", xml.len());
    let (code, out) = ls(&d, "validate", Some(&json!({"config": xml})), None).await;
    assert_eq!(code, 200, "{out}");
    // Over the cap: refused before parsing, with the cap named.
    let filler: String = (0..16_000)
        .map(|i| format!(r#"<Choices name="c{i}" toName="image"><Choice value="x"/></Choices>"#))
        .collect();
    let xml = real.replacen("<View>", &format!("<View>{filler}"), 1);
    let (code, err) = ls(&d, "validate", Some(&json!({"config": xml})), None).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("bytes"),
        "{err}"
    );
    // A config of many unmatched tags names a few and counts the rest.
    let xml = format!(
        r#"<View><Image name="image" value="$image"/>{}</View>"#,
        (0..100)
            .map(|i| format!(
                r#"<Choices name="c{i}" toName="image"><Choice value="x"/></Choices>"#
            ))
            .collect::<String>()
    );
    let (code, err) = ls(&d, "validate", Some(&json!({"config": xml})), None).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("and 95 more"),
        "{err}"
    );
    alive(&d).await;
}

/// H1, L6: with token auth on, the protocol routes answered anyone, and a
/// webhook's `completed_by.email` became a token holder's name. Now they
/// need the project's credentials, and Label Studio names are `ls:` names.
#[tokio::test]
async fn h1_the_door_is_closed_by_default_and_names_are_claims() {
    let d = door(TestDb::sqlite(), &[]).await;
    let hook_body = created(7, 3, "alice", "Bag");
    for (route, body) in [
        ("health", None),
        ("webhook", Some(&hook_body)),
        ("predict", Some(&fixture("predict_fashion"))),
        (
            "setup",
            Some(&json!({"hostname": format!("http://{LS_HOST}")})),
        ),
    ] {
        let (code, err) = ls(&d, route, body, None).await;
        assert_eq!(code, 401, "{route}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("credentials"),
            "{err}"
        );
    }
    // A labelloop bearer token is not a Label Studio credential.
    let url = format!("{}/labelstudio/{}/health", d.server.url, d.project);
    let r = d
        .server
        .client
        .get(&url)
        .bearer_auth(d.server.token.as_ref().unwrap());
    assert_eq!(common::server::send(r).await.0, 401);
    assert!(items(&d).await.is_empty(), "nothing was written");

    let (user, password) = credentials(&d).await;
    let creds = Some((user.as_str(), password.as_str()));
    assert_eq!(ls(&d, "health", None, Some((&user, "wrong"))).await.0, 401);
    assert_eq!(
        ls(&d, "health", None, Some(("other", &password))).await.0,
        401
    );
    assert_eq!(ls(&d, "health", None, creds).await.0, 200);
    let (code, out) = hook(&d, &hook_body, creds).await;
    assert_eq!((code, out["recorded"].as_i64()), (200, Some(1)), "{out}");
    let a = annotations_of(&items(&d).await, 3);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0]["annotator"], "ls:alice",
        "a claim, never the token holder alice"
    );

    // L6: names are bounded and clean, or the event is refused whole.
    for (i, bad) in [
        "",
        "   ",
        &"x".repeat(1_000_000),
        "a\u{0}b",
        "<script>x</script>",
    ]
    .into_iter()
    .enumerate()
    {
        let (code, err) = ls(
            &d,
            "webhook",
            Some(&created(100 + i as i64, 50 + i as i64, bad, "Bag")),
            creds,
        )
        .await;
        assert_eq!(code, 400, "{err}");
        assert_eq!(err["error"]["code"], "bad_webhook");
    }
    let all = items(&d).await;
    assert_eq!(all.len(), 1, "only task 3 was ever stored");

    // The keyed backend URL: what Label Studio's own webhook (which sends
    // no Basic auth) reaches the door with.
    let (code, c) = d
        .server
        .post(
            &format!("/v1/projects/{}/labelstudio/credentials", d.project),
            &json!(null),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let keyed = format!(
        "{}{}",
        d.server.url,
        c["keyed_backend_path"].as_str().unwrap()
    );
    assert!(keyed.ends_with(c["password"].as_str().unwrap()));
    let r = d
        .server
        .client
        .post(format!("{keyed}/webhook"))
        .json(&created(8, 5, "carol", "Coat"));
    let (code, out) = common::server::send(r).await;
    assert_eq!(code, 200, "{out}");
    let wrong = format!(
        "{}/labelstudio/{}/key/ll_wrong/health",
        d.server.url, d.project
    );
    assert_eq!(
        common::server::send(d.server.client.get(wrong)).await.0,
        401
    );
    let other = format!(
        "{}/labelstudio/{}/key/{}/health",
        d.server.url,
        d.project + 1,
        c["password"].as_str().unwrap()
    );
    assert_eq!(
        common::server::send(d.server.client.get(other)).await.0,
        401,
        "a key opens its own project only"
    );
    let (user, password) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let creds = Some((user.as_str(), password.as_str()));

    // Rotating the credentials closes the door to the old password at once.
    let (_, fresh) = credentials(&d).await;
    assert_eq!(ls(&d, "health", None, creds).await.0, 401);
    assert_eq!(ls(&d, "health", None, Some((&user, &fresh))).await.0, 200);
}

/// H2, L3: an anonymous /setup took over the connection and steered fetches
/// to any local port. Now allow-lists carry the port, a kept connection is
/// replaced only with credentials, and a missing hostname is a 422.
#[tokio::test]
async fn h2_setup_cannot_hijack_the_connection() {
    // The loudly logged opt-out: the door lets anonymous callers in.
    let d = door(TestDb::sqlite(), &["--ls-open"]).await;
    let (code, err) = ls(&d, "setup", Some(&json!({"schema": config()})), None).await;
    assert_eq!(code, 422, "L3: {err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hostname"),
        "{err}"
    );
    let hijack = json!({"hostname": "http://127.0.0.1:18090", "access_token": "attacker"});
    let (code, err) = ls(&d, "setup", Some(&hijack), None).await;
    assert_eq!(code, 403, "another port of a listed host: {err}");
    let legit = json!({"hostname": format!("http://{LS_HOST}"), "access_token": "real", "schema": config()});
    assert_eq!(
        ls(&d, "setup", Some(&legit), None).await.0,
        200,
        "the first connection"
    );
    let again = json!({"hostname": format!("http://{LS_HOST}"), "access_token": "attacker"});
    let (code, err) = ls(&d, "setup", Some(&again), None).await;
    assert_eq!(code, 403, "an anonymous caller cannot replace it: {err}");
    let (user, password) = credentials(&d).await;
    assert_eq!(
        ls(&d, "setup", Some(&again), Some((&user, &password)))
            .await
            .0,
        200
    );
    // Image URLs on an unlisted port are never fetched: that task alone is empty.
    refused_then_predicted(&d, "http://127.0.0.1:18090/internal-admin?x=1", None).await;
    // Even with the open door, a webhook's name stays a claim.
    let (code, _) = hook(&d, &created(9, 4, "admin", "Bag"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        annotations_of(&items(&d).await, 4)[0]["annotator"],
        "ls:admin"
    );
}

/// M1: chunked image bodies were read whole before the 64 MiB check (eight
/// 300 MiB answers took the server to 2.29 GB). Now the read stops at the
/// limit: the stand-in counts what was pulled from it.
#[tokio::test]
async fn m1_fetches_stop_reading_at_the_limit() {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let app = axum::Router::new().route(
        "/big.png",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                // 300 MiB in 1 MiB chunks, no Content-Length.
                let chunks = futures_util::stream::iter(0..300).map(move |_| {
                    counter.fetch_add(1 << 20, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 1 << 20]))
                });
                axum::body::Body::from_stream(chunks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let host = format!("127.0.0.1:{port}");
    let d = door(TestDb::sqlite(), &["--no-auth", "--ls-image-hosts", &host]).await;
    refused_then_predicted(&d, &format!("http://{host}/big.png"), Some(config())).await;
    let pulled = served.load(Ordering::Relaxed);
    // 64 MiB, and what the socket buffers and the stand-in produced ahead.
    assert!(
        pulled <= 96 << 20,
        "read {} MiB of a 300 MiB body",
        pulled >> 20
    );
    alive(&d).await;
}

use futures_util::StreamExt as _;

/// M2, M3 on one store: ten concurrent copies of one ANNOTATION_CREATED
/// gave nine annotations; a sender that gave up after 50 ms lost its
/// annotation. Now both give exactly one.
async fn once(db: TestDb) {
    let d = door(db, &["--no-auth"]).await;
    let body = created(21, 11, "bob@example.com", "Trouser");
    let calls = (0..10).map(|_| ls(&d, "webhook", Some(&body), None));
    for (code, out) in futures_util::future::join_all(calls).await {
        assert_eq!(code, 200, "{out}");
    }
    hook(&d, &body, None).await;
    let a = annotations_of(&items(&d).await, 11);
    assert_eq!(a.len(), 1, "{} on {}: {a:?}", a.len(), d.db.kind);

    // A sender that gives up long before the answer (unseen task: the
    // worker waits for its pre-label first).
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let url = format!("{}/labelstudio/{}/webhook", d.server.url, d.project);
    let _ = quick
        .post(&url)
        .json(&created(22, 12, "bob@example.com", "Bag"))
        .send()
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = annotations_of(&items(&d).await, 12);
        if a.len() == 1 {
            assert_eq!(a[0]["label"], "Bag");
            break;
        }
        assert!(a.is_empty(), "{a:?}");
        assert!(
            Instant::now() < deadline,
            "the annotation was lost on {}",
            d.db.kind
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn m2_m3_webhooks_apply_exactly_once_sqlite() {
    once(TestDb::sqlite()).await;
}

#[tokio::test]
async fn m2_m3_webhooks_apply_exactly_once_postgres() {
    if let Some(db) = TestDb::postgres().await {
        once(db).await;
    }
}

/// L7: 100,000 ids in one ANNOTATIONS_DELETED cost 10 s of statements one
/// by one. Now one set-wise pass per 500 ids; more than 100,000 is refused.
#[tokio::test]
async fn l7_bulk_deletes_are_set_wise_and_bounded() {
    let d = door(TestDb::sqlite(), &["--no-auth"]).await;
    for (a, t) in [(31, 1), (32, 2), (33, 3)] {
        assert_eq!(
            hook(&d, &created(a, t, "c@example.com", "Bag"), None)
                .await
                .0,
            200
        );
    }
    let ids: Vec<Value> = (0..100_000).map(|i| json!({"id": i})).collect();
    let (code, out) = hook(
        &d,
        &json!({"action": "ANNOTATIONS_DELETED", "annotations": ids}),
        None,
    )
    .await;
    assert_eq!((code, out["recorded"].as_i64()), (200, Some(3)), "{out}");
    let all = items(&d).await;
    for t in 1..=3 {
        assert!(annotations_of(&all, t).is_empty());
    }
    assert!(
        all.iter().all(|i| i["final_label"].is_null()),
        "labels went with them"
    );
    let ids: Vec<Value> = (0..100_001).map(|i| json!({"id": i})).collect();
    let (code, err) = ls(
        &d,
        "webhook",
        Some(&json!({"action": "ANNOTATIONS_DELETED", "annotations": ids})),
        None,
    )
    .await;
    assert_eq!(code, 400, "{err}");
}

/// M9: SQLite reused the largest annotation id after a delete, so a retried
/// undo deleted someone else's newer annotation. Ids are never reused now.
#[tokio::test]
async fn m9_annotation_ids_are_never_reused() {
    let d = door(TestDb::sqlite(), &["--no-auth"]).await;
    let (code, _) = d
        .server
        .post(
            &format!("/v1/projects/{}/items", d.project),
            &json!(common::server::fashion_items(2)),
        )
        .await;
    assert!(code == 200 || code == 202, "{code}");
    let all = items(&d).await;
    let (first, second) = (
        all[0]["id"].as_i64().unwrap(),
        all[1]["id"].as_i64().unwrap(),
    );
    let annotate = |item: i64| {
        let s = &d.server;
        async move {
            let (code, a) = s
                .post(
                    &format!("/v1/items/{item}/annotations"),
                    &json!({"label": "Bag", "annotator": "ann"}),
                )
                .await;
            assert_eq!(code, 201, "{a}");
            a["annotation_id"].as_i64().unwrap()
        }
    };
    let delete = |id: i64| {
        let s = &d.server;
        async move {
            let r = s.client.delete(format!("{}/v1/annotations/{id}", s.url));
            common::server::send(r).await.0
        }
    };
    let a = annotate(first).await;
    assert_eq!(delete(a).await, 200);
    let b = annotate(second).await;
    assert_ne!(a, b, "the id was reused");
    assert_eq!(delete(a).await, 404, "a retried undo finds nothing");
    let left = annotations_of(&items(&d).await, 0);
    assert!(left.is_empty());
    let all = items(&d).await;
    let item = all.iter().find(|i| i["id"] == second).unwrap();
    assert_eq!(item["annotations"].as_array().unwrap().len(), 1, "{item}");
}
