//! Review lists: leases under concurrency (SQLite and PostgreSQL), ranking,
//! release and expiry, tiers with expert confirmation, and the head that
//! learns from corrections (text classification from zero labels).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::server::{fashion_items, Server, TestDb};
use serde_json::{json, Value};

async fn project_with_items(s: &Server, n: usize, settings: Value) -> i64 {
    // threshold 1.0: nothing is auto-accepted, everything needs review.
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "review", "model": "fashion-mnist-cnn", "threshold": 1.0, "settings": settings}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!(fashion_items(n)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(body["job"]["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    project
}

fn margin(item: &Value) -> f64 {
    item["prediction"]["uncertainty"]["margin"]
        .as_f64()
        .unwrap()
}

async fn leases_hold(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let project = project_with_items(&s, 300, json!({"review_lease_secs": 2})).await;

    // The first page is the most uncertain, in order.
    let (code, first) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=solo&limit=5&strategy=margin"
        ))
        .await;
    assert_eq!(code, 200, "{first}");
    let first = first["items"].as_array().unwrap().clone();
    assert_eq!(first.len(), 5);
    assert!(first.windows(2).all(|w| margin(&w[0]) >= margin(&w[1])));
    let (_, all) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let max = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(margin)
        .fold(0.0, f64::max);
    assert_eq!(margin(&first[0]), max);
    let (code, _) = s
        .post(
            &format!("/v1/projects/{project}/review/release"),
            &json!({"annotator": "solo"}),
        )
        .await;
    assert_eq!(code, 200);

    // 20 annotators at once never receive the same item.
    let mut tasks = Vec::new();
    for a in 0..20 {
        let url = format!(
            "{}/v1/projects/{project}/review?annotator=ann{a}&limit=10&strategy=margin",
            s.url
        );
        let client = s.client.clone();
        tasks.push(tokio::spawn(async move {
            common::server::send(client.get(url)).await
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        let (code, body) = t.await.unwrap();
        assert_eq!(code, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            total += 1;
            assert!(
                seen.insert(item["id"].as_i64().unwrap()),
                "item {} leased twice",
                item["id"]
            );
        }
    }
    assert_eq!(total, 200);

    // Released items come back; expired leases come back.
    let (_, mine) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=ann0&limit=10"
        ))
        .await;
    let mine: Vec<i64> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    let (_, rel) = s
        .post(
            &format!("/v1/projects/{project}/review/release"),
            &json!({"annotator": "ann0", "items": mine}),
        )
        .await;
    assert_eq!(rel["released"], 10);
    let (_, late) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=late&limit=100"
        ))
        .await;
    let late: HashSet<i64> = late["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        late.len(),
        100,
        "100 free items remain (90 unleased + 10 released)"
    );
    assert!(
        mine.iter().all(|id| late.contains(id)),
        "released items are offered again"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, again) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=after&limit=300"
        ))
        .await;
    assert_eq!(
        again["items"].as_array().unwrap().len(),
        300,
        "all leases expired"
    );

    // Annotating ends the lease and takes the item out of review.
    let id = again["items"][0]["id"].as_i64().unwrap();
    let (code, _) = s
        .post(
            &format!("/v1/items/{id}/annotations"),
            &json!({"label": "Bag", "annotator": "after"}),
        )
        .await;
    assert_eq!(code, 201);
    let (_, rest) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=other&limit=500"
        ))
        .await;
    assert!(rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["id"] != id));
}

async fn tiers_route_and_confirm(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let settings = json!({
        "tiers": [{"name": "expert", "min_uncertainty": 0.5}, {"name": "general", "min_uncertainty": 0.0}],
        "tier_measure": "margin",
        "require_expert_confirmation": true
    });
    let project = project_with_items(&s, 300, settings).await;
    for (name, tier) in [("eve", "expert"), ("gus", "general")] {
        let (code, body) = s
            .client
            .put(format!("{}/v1/annotators/{name}", s.url))
            .json(&json!({"tier": tier}))
            .send()
            .await
            .map(|r| (r.status().as_u16(), ()))
            .unwrap();
        assert_eq!(code, 200, "{body:?}");
    }
    let (_, e) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=eve&limit=500"
        ))
        .await;
    let (_, g) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=gus&limit=500"
        ))
        .await;
    assert_eq!(e["tier"], "expert");
    assert_eq!(g["tier"], "general");
    let e = e["items"].as_array().unwrap().clone();
    let g = g["items"].as_array().unwrap().clone();
    assert!(!e.is_empty() && !g.is_empty());
    assert!(e.iter().all(|i| margin(i) >= 0.5));
    assert!(g.iter().all(|i| margin(i) < 0.5));
    assert_eq!(e.len() + g.len(), 300);

    // A general annotator's label on an expert-band item waits for an expert.
    let hard = e[0]["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/items/{hard}/annotations"),
            &json!({"label": "Shirt", "annotator": "gus"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"], "needs_confirmation");
    assert!(body["final_label"].is_null());
    s.post(
        &format!("/v1/projects/{project}/review/release"),
        &json!({"annotator": "eve"}),
    )
    .await;
    let (_, e2) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=eve&limit=3"
        ))
        .await;
    assert_eq!(
        e2["items"][0]["id"], hard,
        "confirmations come first for experts"
    );
    let (_, body) = s
        .post(
            &format!("/v1/items/{hard}/annotations"),
            &json!({"label": "Shirt", "annotator": "eve"}),
        )
        .await;
    assert_eq!(body["status"], "labeled");
    assert_eq!(body["final_label"], "Shirt");
    assert_eq!(body["annotations"].as_array().unwrap().len(), 2);
    // A general label in the general band is final at once.
    let easy = g[0]["id"].as_i64().unwrap();
    let (_, body) = s
        .post(
            &format!("/v1/items/{easy}/annotations"),
            &json!({"label": "Bag", "annotator": "gus"}),
        )
        .await;
    assert_eq!(body["status"], "labeled");
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// Ensemble disagreement: a project whose committee is the CNN plus an MLP
/// ranks its review list by vote entropy or mean KL, and the items it ranks
/// first really are the hard ones: the CNN is wrong at least twice as often there.
async fn committee_disagreement(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    // Bad committees are refused, naming the field.
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "c0", "model": "fashion-mnist-cnn", "committee": ["no-such-model"]}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("committee[0]"), "{body}");
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "c1", "model": "fashion-mnist-cnn", "committee": ["orientation"]}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["code"], "labels_mismatch", "{body}");
    // One model: committee strategies are unavailable, and say why.
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "single", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let single = body["id"].as_i64().unwrap();
    let (code, body) = s
        .get(&format!(
            "/v1/projects/{single}/review?annotator=a&strategy=vote-entropy"
        ))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["code"], "strategy_unavailable", "{body}");

    let n = 1000;
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "committee", "model": "fashion-mnist-cnn", "threshold": 1.0,
                    "committee": ["fashion-mnist-mlp"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["committee"], json!(["fashion-mnist-mlp"]));
    let project = body["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!(fashion_items(n)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;

    let truth: std::collections::HashMap<String, String> = common::fashion_mnist_test()[..n]
        .iter()
        .map(|(id, _, label)| (id.clone(), label.clone()))
        .collect();
    let correct = |item: &Value| {
        Some(item["prediction"]["label"].as_str().unwrap())
            == truth
                .get(item["client_id"].as_str().unwrap())
                .map(String::as_str)
    };
    let measure = |item: &Value, m: &str| item["prediction"]["uncertainty"][m].as_f64().unwrap();
    let (_, all) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let all = all["items"].as_array().unwrap().clone();
    assert_eq!(all.len(), n);
    let overall = all.iter().filter(|i| correct(i)).count() as f64 / n as f64;
    let split = all
        .iter()
        .filter(|i| measure(i, "vote_entropy") > 0.0)
        .count();
    // The two models really differ, but not everywhere.
    assert!(
        (20..300).contains(&split),
        "{split} of {n} items split the vote"
    );
    let max_kl = all
        .iter()
        .map(|i| measure(i, "mean_kl"))
        .fold(0.0, f64::max);

    let (code, page) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=ann&strategy=mean-kl&limit=50"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    let top = page["items"].as_array().unwrap().clone();
    assert_eq!(top.len(), 50);
    assert!(top
        .windows(2)
        .all(|w| measure(&w[0], "mean_kl") >= measure(&w[1], "mean_kl")));
    assert!((measure(&top[0], "mean_kl") - max_kl).abs() < 1e-9);
    let top_acc = top.iter().filter(|i| correct(i)).count() as f64 / 50.0;
    // Errors concentrate where the committee disagrees (measured: 22% vs 8%).
    assert!(
        1.0 - top_acc >= 2.0 * (1.0 - overall),
        "most disagreed-on items: CNN accuracy {top_acc:.2}, overall {overall:.2}"
    );

    // Vote entropy, to another annotator: only items the vote split on, none leased to `ann`.
    let (code, page) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=bob&strategy=vote-entropy&limit=20"
        ))
        .await;
    assert_eq!(code, 200, "{page}");
    let leased: HashSet<i64> = top.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let bob = page["items"].as_array().unwrap();
    assert_eq!(bob.len(), 20);
    assert!(bob
        .iter()
        .all(|i| !leased.contains(&i["id"].as_i64().unwrap())));
    assert!(bob
        .windows(2)
        .all(|w| measure(&w[0], "vote_entropy") >= measure(&w[1], "vote_entropy")));
    let free_split = all
        .iter()
        .filter(|i| {
            measure(i, "vote_entropy") > 0.0 && !leased.contains(&i["id"].as_i64().unwrap())
        })
        .count();
    let bob_split = bob
        .iter()
        .filter(|i| measure(i, "vote_entropy") > 0.0)
        .count();
    assert_eq!(bob_split, free_split.min(20));
}

both_backends!(leases_hold, tiers_route_and_confirm, committee_disagreement);

fn sms() -> Vec<(String, String, String)> {
    let path = common::root().join("data/sms-spam/sms.jsonl");
    std::fs::read_to_string(common::require(&path))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Text classification from zero labels: an embedding model, cold start,
/// human labels, a trained head as a new model version, re-prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_learns_from_corrections() {
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);
    let (code, body) = s
        .post("/v1/projects", &json!({"name": "sms", "model": "minilm-l6", "labels": ["ham", "spam"], "threshold": 0.9}))
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();
    let data = sms();
    let data = &data[..600];
    let items: Vec<Value> = data
        .iter()
        .map(|(id, text, _)| json!({"id": id, "text": text}))
        .collect();
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;

    // No head yet: training refuses without labels.
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/train"), &json!({}))
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (422, Some("not_enough_labels"))
    );

    // Cold start: a diverse seed set by k-center on the embeddings.
    let truth = |client_id: &str| {
        data.iter()
            .find(|(id, _, _)| id == client_id)
            .unwrap()
            .2
            .clone()
    };
    let mut labeled = 0;
    for _ in 0..3 {
        let (code, page) = s
            .get(&format!(
                "/v1/projects/{project}/review?annotator=a&limit=20&strategy=k-center"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            // No head yet: labels from zero, by similarity to the label names.
            assert_eq!(
                item["prediction"]["model_version"], "1.0.0+zero-shot",
                "{item}"
            );
            let id = item["id"].as_i64().unwrap();
            let label = truth(item["client_id"].as_str().unwrap());
            let (code, _) = s
                .post(
                    &format!("/v1/items/{id}/annotations"),
                    &json!({"label": label, "annotator": "a"}),
                )
                .await;
            assert_eq!(code, 201);
            labeled += 1;
        }
    }
    assert_eq!(labeled, 60);
    let (code, trained) = s
        .post(&format!("/v1/projects/{project}/train"), &json!({}))
        .await;
    assert_eq!(code, 201, "{trained}");
    assert_eq!(trained["version"], 1);
    assert_eq!(trained["model_version"], "1.0.0+head-1");
    s.wait_job(
        trained["repredict_job"]["id"].as_i64().unwrap(),
        Duration::from_secs(300),
    )
    .await;
    let (_, p) = s.get(&format!("/v1/projects/{project}")).await;
    assert_eq!(p["head_version"], 1);

    // Every machine-decided item now has a head prediction; check accuracy.
    let mut cursor = 0;
    let (mut right, mut total) = (0, 0);
    loop {
        let (_, page) = s
            .get(&format!(
                "/v1/projects/{project}/items?limit=200&cursor={cursor}"
            ))
            .await;
        let items = page["items"].as_array().unwrap();
        for item in items {
            if item["status"] == "labeled" {
                continue;
            }
            assert_eq!(
                item["prediction"]["model_version"], "1.0.0+head-1",
                "{item}"
            );
            total += 1;
            if item["prediction"]["label"].as_str().unwrap()
                == truth(item["client_id"].as_str().unwrap())
            {
                right += 1;
            }
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(total, 540);
    let acc = right as f64 / total as f64;
    eprintln!("head trained on 60 cold-start labels: accuracy {acc:.3} on the other 540 messages");
    assert!(acc >= 0.9, "accuracy {acc}");

    // Automatic retraining every N annotations makes head 2.
    let (code, _) = s
        .client
        .put(format!("{}/v1/projects/{project}/settings", s.url))
        .json(&json!({"train_every": 10}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 200);
    let (_, page) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=b&limit=10&strategy=margin"
        ))
        .await;
    let mut batch: Vec<Value> = page["items"].as_array().unwrap().clone();
    if batch.len() < 10 {
        // Few items need review: correct some auto-accepted ones too.
        let (_, more) = s
            .get(&format!(
                "/v1/projects/{project}/items?status=auto_accepted&limit=10"
            ))
            .await;
        batch.extend(
            more["items"]
                .as_array()
                .unwrap()
                .iter()
                .take(10 - batch.len())
                .cloned(),
        );
    }
    assert_eq!(batch.len(), 10);
    for item in &batch {
        let id = item["id"].as_i64().unwrap();
        let label = truth(item["client_id"].as_str().unwrap());
        s.post(
            &format!("/v1/items/{id}/annotations"),
            &json!({"label": label, "annotator": "b"}),
        )
        .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) = s.get(&format!("/v1/projects/{project}")).await;
        if p["head_version"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no automatic retraining: {p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
