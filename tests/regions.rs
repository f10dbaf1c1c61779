//! The region store through the real server and the real `layout` model
//! (issue 22), on SQLite and PostgreSQL: a detection project pre-labels
//! page images as a job, the machine's boxes are stored as regions and sent
//! to review, a reviewer's corrected set is recorded with provenance, bad
//! boxes are refused naming them with nothing written, regions survive a
//! restart, a retried or crashed batch writes its boxes once, and a
//! classification project works as before.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::detect::{corners, detect_project, ingest, machine, LAYOUT_LABELS};
use common::server::{b64, create_token, fashion_items, send, Server, TestDb};
use labelloop::region::BoxPx;
use labelloop::store::{
    Content, MachineBox, MachineRegions, NewItem, Outcome, Store, StoredPrediction,
};
use serde_json::{json, Value};

fn pages() -> Vec<Value> {
    let dir = common::root().join("tests/fixtures/documents");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 3,
        "page fixtures missing in {}",
        dir.display()
    );
    names
        .iter()
        .map(|n| json!({"id": n, "image": b64(&std::fs::read(dir.join(n)).unwrap())}))
        .collect()
}

async fn put(s: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(
        s.client
            .put(format!("{}{}", s.url, path))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

fn start(db: &TestDb) -> Server {
    common::require(&common::model_dir("layout").join("model.onnx"));
    Server::start(&db.url, &[])
}

/// Every item of the project (one page is enough here).
async fn items(s: &Server, project: i64) -> Vec<Value> {
    let (code, page) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

fn bbox(r: &Value) -> [f64; 4] {
    corners(&r["box"])
}

async fn detection_round_trip(db: TestDb) {
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let mut s = start(&db).with_token(&admin);

    // A project on the detection model: task and labels from the model.
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "pages", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "detect", "{p}");
    let labels: Vec<&str> = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, LAYOUT_LABELS);
    let project = p["id"].as_i64().unwrap();
    // A committee is for classification.
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "pages2", "model": "layout", "committee": ["fashion-mnist-cnn"]}),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    // Ingest the page images; the job pre-labels them.
    let pages = pages();
    let job = ingest(&s, project, &pages).await;
    assert_eq!(job["done"], pages.len(), "{job}");

    // Every image goes to review (no class is calibrated), with its size.
    let all = items(&s, project).await;
    assert_eq!(all.len(), pages.len());
    let mut with_boxes = Vec::new();
    for it in &all {
        assert_eq!(it["status"], "needs_review", "{it}");
        let id = it["id"].as_i64().unwrap();
        let (code, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        assert_eq!(code, 200, "{r}");
        let (w, h) = (r["width"].as_f64().unwrap(), r["height"].as_f64().unwrap());
        assert!(w > 0.0 && h > 0.0, "{r}");
        for m in machine(&r) {
            let [x0, y0, x1, y1] = bbox(&m);
            assert!(
                0.0 <= x0 && x0 < x1 && x1 <= w && 0.0 <= y0 && y0 < y1 && y1 <= h,
                "box outside the {w}x{h} image: {m}"
            );
            assert!(LAYOUT_LABELS.contains(&m["label"].as_str().unwrap()), "{m}");
            assert_eq!(m["status"], "review", "{m}");
            assert_eq!(m["kind"], "box");
            assert!(m["score"].as_f64().unwrap() >= 0.5, "{m}");
            assert!(
                m["model_version"].as_str().unwrap().contains("1.2.1"),
                "{m}"
            );
            assert!(m["annotator"].is_null(), "{m}");
        }
        if machine(&r).len() >= 3 {
            with_boxes.push((id, r));
        }
    }
    assert!(
        !with_boxes.is_empty(),
        "the layout model found fewer than 3 blocks on every page"
    );
    let (item, before) = with_boxes.remove(0);
    let path = format!("/v1/projects/{project}/items/{item}/regions");

    // The review queue hands out detection items with their machine boxes drawn.
    let (code, list) = s
        .get_as(&alice, &format!("/v1/projects/{project}/review?limit=50"))
        .await;
    assert_eq!(code, 200, "{list}");
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), pages.len(), "{list}");
    let queued = listed.iter().find(|i| i["id"] == item).unwrap();
    assert_eq!(
        queued["regions"].as_array().unwrap().len(),
        machine(&before).len(),
        "{queued}"
    );
    assert!(queued["width"].is_i64(), "{queued}");

    // A whole-item label on a detection item is refused.
    let (code, body) = s
        .post_as(
            &alice,
            &format!("/v1/items/{item}/annotations"),
            &json!({"label": "text"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    // Bad sets: refused naming the box, nothing written.
    let m = machine(&before);
    let (w, h) = (
        before["width"].as_f64().unwrap(),
        before["height"].as_f64().unwrap(),
    );
    let keep = |r: &Value| json!({"id": r["id"], "label": r["label"], "box": r["box"]});
    for (bad, field, code_name) in [
        (
            json!({"label": "text", "box": [0.0, 0.0, w + 5.0, 10.0]}),
            "regions[1].box",
            "invalid_field",
        ),
        (
            json!({"label": "text", "box": [50.0, 0.0, 10.0, 10.0]}),
            "regions[1].box",
            "invalid_field",
        ),
        (
            json!({"label": "stamp", "box": [0.0, 0.0, 10.0, 10.0]}),
            "regions[1].label",
            "unknown_label",
        ),
    ] {
        let (code, body) = put(&s, &alice, &path, &json!({"regions": [keep(&m[0]), bad]})).await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(body["error"]["code"], code_name, "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{msg}");
    }
    let (_, unchanged) = s.get(&path).await;
    assert_eq!(unchanged, before, "a refused set wrote something");

    // The reviewer keeps one, moves one, relabels one, deletes the rest and adds one.
    let moved = {
        let [x0, y0, x1, y1] = bbox(&m[1]);
        let dx = (x0 * 0.5).min(3.0);
        [x0 - dx, y0, x1 - dx, y1]
    };
    let relabel = if m[2]["label"] == "table" {
        "figure"
    } else {
        "table"
    };
    let added = [1.0, 1.0, (w / 4.0).max(2.0), (h / 10.0).max(2.0)];
    let set = json!({"regions": [
        keep(&m[0]),
        {"id": m[1]["id"], "label": m[1]["label"], "box": moved},
        {"id": m[2]["id"], "label": relabel, "box": m[2]["box"]},
        {"label": "title", "box": added},
    ]});
    let (code, after) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled");
    let by_id = |id: &Value| {
        after["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == *id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&m[0]["id"])["status"], "accepted");
    assert_eq!(by_id(&m[1]["id"])["status"], "corrected");
    assert_eq!(by_id(&m[2]["id"])["status"], "corrected");
    for r in &m[3..] {
        assert_eq!(by_id(&r["id"])["status"], "deleted", "{after}");
    }
    for r in machine(&after) {
        assert_eq!(r["annotator"], "alice", "identity from the token: {r}");
    }
    let human: Vec<&Value> = after["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "human")
        .collect();
    assert_eq!(human.len(), 3, "{after}");
    let corrected_move = human.iter().find(|r| r["replaces"] == m[1]["id"]).unwrap();
    assert_eq!(bbox(corrected_move), moved, "no rounding on the way");
    let corrected_label = human.iter().find(|r| r["replaces"] == m[2]["id"]).unwrap();
    assert_eq!(corrected_label["label"], relabel);
    let add = human.iter().find(|r| r["status"] == "added").unwrap();
    assert_eq!(bbox(add), added);
    assert!(add["replaces"].is_null());
    assert!(human.iter().all(|r| r["annotator"] == "alice"));

    // An identical repeat changes nothing (same rows, same ids).
    let (code, again) = put(&s, &alice, &path, &set).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again, after);

    // The item is labeled, and the export carries its regions.
    let (code, text) = s
        .get_text(&format!("/v1/projects/{project}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200, "{text}");
    let exported: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = exported.iter().find(|l| l["id"] == item).unwrap();
    assert_eq!(line["status"], "labeled");
    assert_eq!(
        line["regions"].as_array().unwrap().len(),
        after["regions"].as_array().unwrap().len()
    );

    // Restart: the regions are still there.
    s.terminate();
    let s = start(&db).with_token(&admin);
    let (code, restarted) = s.get(&path).await;
    assert_eq!(code, 200, "{restarted}");
    assert_eq!(restarted, after);

    // A classification project still works as before, beside it.
    let (code, c) = s
        .post(
            "/v1/projects",
            &json!({"name": "clothes", "model": "fashion-mnist-cnn", "threshold": 0.5}),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    assert_eq!(c["task"], "classify");
    let cp = c["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{cp}/items"),
            &json!(fashion_items(20)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(120),
    )
    .await;
    let citems = items(&s, cp).await;
    assert_eq!(citems.len(), 20);
    for it in &citems {
        assert!(it["prediction"]["label"].is_string(), "{it}");
        assert!(it.get("regions").is_none(), "{it}");
        assert!(it.get("width").is_none(), "{it}");
    }
    let cid = citems[0]["id"].as_i64().unwrap();
    let (code, body) = s
        .post_as(
            &alice,
            &format!("/v1/items/{cid}/annotations"),
            &json!({"label": "Bag"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["final_label"], "Bag");
    let (code, body) = s
        .get(&format!("/v1/projects/{cp}/items/{cid}/regions"))
        .await;
    assert_eq!(code, 422, "{body}");
    // An item of another project is not found under this one.
    let (code, body) = s
        .get(&format!("/v1/projects/{project}/items/{cid}/regions"))
        .await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_round_trip_sqlite() {
    detection_round_trip(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_round_trip_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    detection_round_trip(db).await;
}

/// A batch's outcome with `n` boxes for an image.
fn boxes(n: usize) -> Outcome {
    Outcome::Predicted(StoredPrediction {
        model_version: "layout@1.2.1".into(),
        regions: Some(Box::new(MachineRegions {
            width: 600,
            height: 800,
            boxes: (0..n)
                .map(|i| MachineBox {
                    label: "text".into(),
                    bbox: BoxPx::new(10.0 * i as f64, 0.0, 10.0 * i as f64 + 5.5, 7.25),
                    score: 0.7,
                    uncertainty: Some(0.6),
                    accepted: false,
                    text: None,
                    char_scores: None,
                })
                .collect(),
        })),
        ..StoredPrediction::default()
    })
}

/// A batch that outlived its lease, and a batch recorded twice, write their
/// boxes once: regions go in with the guarded item update, for the items
/// that update recorded.
async fn retried_batches_write_regions_once(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let project = detect_project(&store, "once").await;
    let new: Vec<NewItem> = (0..6)
        .map(|i| NewItem {
            client_id: format!("page-{i}"),
            content: Content::Image(vec![0u8; 4]),
        })
        .collect();
    store.ingest(project.id, &new).await.unwrap();
    // Worker a claims with a lease that runs out; worker b takes the items over.
    let a = store
        .claim("a", 10, Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = store
        .claim("b", 10, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.items.len(), 6);
    assert_eq!(b.items.len(), 6);
    let outcomes = |c: &labelloop::store::Claim| -> Vec<(i64, Outcome)> {
        c.items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id, boxes(i)))
            .collect()
    };
    assert_eq!(
        store.complete("b", b.job_id, &outcomes(&b)).await.unwrap(),
        6
    );
    // b's call retried (say, after a timeout), then a's late answer.
    assert_eq!(
        store.complete("b", b.job_id, &outcomes(&b)).await.unwrap(),
        0
    );
    assert_eq!(
        store.complete("a", a.job_id, &outcomes(&a)).await.unwrap(),
        0
    );
    let counts = store.region_counts(project.id).await.unwrap();
    let want: Vec<(i64, String, i64)> = b
        .items
        .iter()
        .enumerate()
        .filter(|(i, _)| *i > 0)
        .map(|(i, it)| (it.id, "machine".to_string(), i as i64))
        .collect();
    assert_eq!(counts, want, "each image's boxes exactly once");
    // The image with no box went to review too, with its size.
    let first = store.region_item(b.items[0].id).await.unwrap();
    assert_eq!(first.status, "needs_review");
    assert_eq!((first.width, first.height), (Some(600), Some(800)));
    let regions = store.item_regions(b.items[2].id).await.unwrap();
    assert_eq!(regions[1].bbox, Some(BoxPx::new(10.0, 0.0, 15.5, 7.25)));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_write_regions_once_sqlite() {
    retried_batches_write_regions_once(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_write_regions_once_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    retried_batches_write_regions_once(db).await;
}

/// A server killed in the middle of a detection job, then restarted: the
/// job ends, every page has one prediction and no box twice.
async fn a_crash_mid_job_duplicates_no_region(db: TestDb) {
    let admin = create_token(&db.url, "admin", "boss");
    // Small batches and short leases: the kill lands between recorded
    // batches and inside one, and PostgreSQL's leases come back quickly.
    let args = ["--claim-batch", "2", "--lease-secs", "3"];
    let mut s = Server::start(&db.url, &args).with_token(&admin);
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "crash", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    // The pages several times over, so the job spans batches.
    let mut many = Vec::new();
    for round in 0..4 {
        for mut page in pages() {
            page["id"] = json!(format!("{round}-{}", page["id"].as_str().unwrap()));
            many.push(page);
        }
    }
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(many))
        .await;
    assert_eq!(code, 202, "{body}");
    let job = body["job"]["id"].as_i64().unwrap();
    // Kill once some batches are recorded and others are not.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, j) = s.get(&format!("/v1/jobs/{job}")).await;
        if j["done"].as_i64().unwrap_or(0) >= 2 {
            assert!(j["done"].as_i64().unwrap() < many.len() as i64, "{j}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    let s = Server::start(&db.url, &args).with_token(&admin);
    let done = s.wait_job(job, Duration::from_secs(300)).await;
    assert_eq!(done["errors"], 0, "{done}");
    let store = Store::connect(&db.url).await.unwrap();
    for (item, n) in store.prediction_counts(project).await.unwrap() {
        assert_eq!(n, 1, "item {item} predicted {n} times");
    }
    let mut total = 0;
    for it in items(&s, project).await {
        let id = it["id"].as_i64().unwrap();
        let regions = store.item_regions(id).await.unwrap();
        let mut seen = HashSet::new();
        for r in &regions {
            let b = r.bbox.unwrap();
            assert!(
                seen.insert((r.label.clone(), [b.x0, b.y0, b.x1, b.y1].map(f64::to_bits))),
                "item {id}: box written twice: {r:?}"
            );
        }
        total += regions.len();
    }
    assert!(total > 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_job_duplicates_no_region_sqlite() {
    a_crash_mid_job_duplicates_no_region(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_job_duplicates_no_region_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_crash_mid_job_duplicates_no_region(db).await;
}

/// An image sent back through the model (a re-queue, as a re-predict
/// after training makes one) gets its machine set of that model version
/// replaced, in the transaction that records it, never a second set
/// beside the first; a reviewed image is not re-queued and keeps its set.
async fn a_requeued_image_gets_its_machine_set_replaced(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let project = detect_project(&store, "again").await;
    let new: Vec<NewItem> = (0..3)
        .map(|i| NewItem {
            client_id: format!("page-{i}"),
            content: Content::Image(vec![0u8; 4]),
        })
        .collect();
    store.ingest(project.id, &new).await.unwrap();
    let run = |n: usize, per_image: fn(i64) -> usize| {
        let store = store.clone();
        async move {
            let c = store
                .claim("w", 10, Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(c.items.len(), n);
            let outcomes: Vec<(i64, Outcome)> = c
                .items
                .iter()
                .map(|it| (it.id, boxes(per_image(it.id))))
                .collect();
            assert_eq!(
                store.complete("w", c.job_id, &outcomes).await.unwrap(),
                n as u64
            );
        }
    };
    run(3, |id| 2 + (id % 2) as usize).await;
    let first = store.region_counts(project.id).await.unwrap();
    let ids = |regions: &[labelloop::store::RegionRecord]| -> Vec<i64> {
        regions.iter().map(|r| r.id).collect()
    };
    let clients: Vec<String> = (0..3).map(|i| format!("page-{i}")).collect();
    let mut all: Vec<i64> = store
        .items_by_client_ids(project.id, &clients)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    all.sort_unstable();
    let before: Vec<Vec<i64>> = {
        let mut v = Vec::new();
        for id in &all {
            v.push(ids(&store.item_regions(*id).await.unwrap()));
        }
        v
    };
    // Review the first image: labeled, so the re-queue leaves it alone.
    let reviewed = store.region_item(all[0]).await.unwrap();
    let plan = labelloop::store::RegionReview {
        machine: before[0].iter().map(|id| (*id, "accepted")).collect(),
        human: Vec::new(),
    };
    assert!(store
        .apply_region_review(reviewed.id, reviewed.rev, &plan, "ann", "[]")
        .await
        .unwrap());
    // A new head re-queues the machine-decided items: the other two.
    store
        .save_head_and_requeue(project.id, "{}", 0)
        .await
        .unwrap();
    // The model answers the re-queued images with one box each now.
    run(2, |_| 1).await;
    let counts = store.region_counts(project.id).await.unwrap();
    let want: Vec<(i64, String, i64)> = first
        .iter()
        .map(|(id, source, n)| (*id, source.clone(), if *id == all[0] { *n } else { 1 }))
        .collect();
    assert_eq!(counts, want, "one machine set per image and model version");
    assert_eq!(
        ids(&store.item_regions(all[0]).await.unwrap()),
        before[0],
        "the reviewed image keeps its set"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_image_gets_its_machine_set_replaced_sqlite() {
    a_requeued_image_gets_its_machine_set_replaced(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_image_gets_its_machine_set_replaced_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_requeued_image_gets_its_machine_set_replaced(db).await;
}

/// Concurrent reviews of one image serialise: every PUT answers 200 (or
/// 409 when it lost too many times), and the stored set is exactly one of
/// the sets sent, never a mixture.
async fn concurrent_reviews_leave_one_whole_set(db: TestDb) {
    let admin = create_token(&db.url, "admin", "boss");
    let s = start(&db).with_token(&admin);
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "race", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let page = pages().remove(1);
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!([page]))
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(120),
    )
    .await;
    let item = items(&s, project).await[0]["id"].as_i64().unwrap();
    let path = format!("/v1/projects/{project}/items/{item}/regions");
    let (_, before) = s.get(&path).await;
    let m = machine(&before);
    // Set k keeps the first machine box when k is even, and adds k + 1 boxes.
    let set = |k: usize| {
        let mut regions: Vec<Value> = Vec::new();
        if k.is_multiple_of(2) {
            if let Some(first) = m.first() {
                regions
                    .push(json!({"id": first["id"], "label": first["label"], "box": first["box"]}));
            }
        }
        for j in 0..=k {
            let x = 1.0 + j as f64;
            regions.push(
                json!({"label": LAYOUT_LABELS[k % 10], "box": [x, 1.0, x + 0.5, 2.0 + k as f64]}),
            );
        }
        json!({ "regions": regions })
    };
    let answers = futures_util::future::join_all((0..8).map(|k| {
        let path = path.clone();
        let body = set(k);
        let s = &s;
        let admin = admin.clone();
        async move { put(s, &admin, &path, &body).await }
    }))
    .await;
    for (code, body) in &answers {
        assert!(*code == 200 || *code == 409, "{code} {body}");
    }
    assert!(answers.iter().any(|(c, _)| *c == 200));
    let (_, after) = s.get(&path).await;
    let human: Vec<&Value> = after["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "human")
        .collect();
    let k = human.len() - 1;
    assert!(k < 8, "{after}");
    assert!(
        human.iter().all(|r| r["label"] == LAYOUT_LABELS[k % 10]),
        "a mixture of sets: {after}"
    );
    if let Some(first) = m.first() {
        let status = machine(&after)
            .into_iter()
            .find(|r| r["id"] == first["id"])
            .unwrap()["status"]
            .clone();
        assert_eq!(
            status,
            if k.is_multiple_of(2) {
                "accepted"
            } else {
                "deleted"
            },
            "{after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reviews_leave_one_whole_set_sqlite() {
    concurrent_reviews_leave_one_whole_set(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reviews_leave_one_whole_set_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    concurrent_reviews_leave_one_whole_set(db).await;
}

/// Sizes are bounded before parsing (the server's body limit) and after
/// (at most 10,000 boxes per image).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_review_bodies_are_refused() {
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let s = Server::start(&db.url, &["--max-body-bytes", "65536"]).with_token(&admin);
    let many: Vec<Value> = (0..3000)
        .map(|i| json!({"label": "text", "box": [0.0, 0.0, 1.0 + i as f64, 1.0]}))
        .collect();
    let (code, body) = put(
        &s,
        &admin,
        "/v1/projects/1/items/1/regions",
        &json!({"regions": many}),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    drop(s);
    let s = start(&db).with_token(&admin);
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"label": "text", "box": [0.0, 0.0, 1.0, 1.0]}))
        .collect();
    let (code, body) = put(
        &s,
        &admin,
        "/v1/projects/1/items/1/regions",
        &json!({"regions": many}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("10000"),
        "{body}"
    );
    let (code, body) = put(
        &s,
        &admin,
        "/v1/projects/1/items/1/regions",
        &json!({"regions": [{"label": "text", "box": [0, 0, 1], "x": 1}]}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
}

/// A blank page: the model proposes nothing, the image still goes to review
/// (a person confirms nothing is there), and an empty set labels it.
async fn an_empty_page_is_reviewed_and_confirmed_empty(db: TestDb) {
    let admin = create_token(&db.url, "admin", "boss");
    let s = start(&db).with_token(&admin);
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "blank", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let blank = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        600,
        800,
        image::Rgb([255, 255, 255]),
    ));
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!([{"id": "blank", "image": b64(&common::png_bytes(&blank))}]),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(120),
    )
    .await;
    let it = items(&s, project).await.remove(0);
    assert_eq!(it["status"], "needs_review", "{it}");
    let path = format!("/v1/projects/{project}/items/{}/regions", it["id"]);
    let (code, r) = s.get(&path).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (r["width"].as_i64(), r["height"].as_i64()),
        (Some(600), Some(800))
    );
    assert_eq!(r["regions"], json!([]), "{r}");
    let (code, r) = put(&s, &admin, &path, &json!({"regions": []})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["status"], "labeled");
    assert_eq!(r["regions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_is_reviewed_and_confirmed_empty_sqlite() {
    an_empty_page_is_reviewed_and_confirmed_empty(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_is_reviewed_and_confirmed_empty_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    an_empty_page_is_reviewed_and_confirmed_empty(db).await;
}
