//! Regression tests for engine defects: batches formed before a session was
//! free, items of callers that had gone still run, huge images blocking a
//! model's queue, a job worker proceeding without queue room, prediction
//! JSON that differed between outputs, and path items read through a link
//! swapped in after ingest, and a large request whose chunks, queued and
//! run by the caller, came back out of order.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{b64, Server, TestDb};
use labelloop::model::batcher::{BatchError, Batcher, BatcherConfig};
use labelloop::model::{Input, ItemError, LoadOptions, Model};
use labelloop::service::hub::ModelHub;
use labelloop::service::metrics::Metrics;
use labelloop::service::worker::{self, WorkerContext};
use labelloop::store::{Content, NewItem, NewProject, Store};
use serde_json::{json, Value};

fn page() -> Vec<u8> {
    std::fs::read(common::root().join("tests/fixtures/documents/page-1.png")).unwrap()
}

/// A small image: staged in well under a millisecond.
fn small_png() -> Vec<u8> {
    common::png_bytes(&image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(
        32,
        32,
        |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 128]),
    )))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn one_session(max_wait_ms: u64) -> BatcherConfig {
    BatcherConfig {
        max_batch: 64,
        max_wait: Duration::from_millis(max_wait_ms),
        queue_capacity: 1024,
        concurrency: 1,
    }
}

/// Start a batch of 48 document pages and return once it is running: the
/// one session stays busy for a good while (tens of milliseconds per page).
async fn occupy_the_session(batcher: &Batcher) -> tokio::task::JoinHandle<()> {
    let b = batcher.clone();
    let pages = vec![Input::Image(page()); 48];
    let busy = tokio::spawn(async move {
        for r in b.predict_many(pages).await {
            r.unwrap();
        }
    });
    wait_for("the first batch to start", || {
        batcher.stats().batches.load(Ordering::Relaxed) == 1
    })
    .await;
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_whose_caller_has_gone_is_never_run() {
    let batcher = Batcher::spawn(common::shared("orientation"), one_session(1));
    let busy = occupy_the_session(&batcher).await;
    // This caller gives up once its item is queued, while the session is
    // still busy (as when a client disconnects): the item is abandoned.
    let gone = batcher.predict(Input::Image(small_png()));
    tokio::select! {
        r = gone => panic!("answered while the session was busy: {r:?}"),
        _ = wait_for("the item to be queued", || {
            batcher.stats().queued.load(Ordering::Relaxed) == 1
        }) => {}
    }
    assert_eq!(batcher.stats().batches.load(Ordering::Relaxed), 1);
    let waited = batcher.predict(Input::Image(small_png())).await;
    assert!(waited.is_ok(), "{waited:?}");
    busy.await.unwrap();
    let stats = batcher.stats();
    assert_eq!(
        stats.items.load(Ordering::Relaxed),
        48 + 1,
        "the abandoned item was run"
    );
    assert_eq!(stats.abandoned.load(Ordering::Relaxed), 1);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_queued_while_the_session_is_busy_all_go_in_the_next_batch() {
    let batcher = Batcher::spawn(common::shared("orientation"), one_session(1));
    let busy = occupy_the_session(&batcher).await;
    // Six callers, each arriving well after `max_wait` of the one before.
    let mut callers = Vec::new();
    for _ in 0..6 {
        let b = batcher.clone();
        callers.push(tokio::spawn(async move {
            b.predict(Input::Image(small_png())).await
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(
        batcher.stats().batches.load(Ordering::Relaxed),
        1,
        "the session was busy all along"
    );
    for c in callers {
        assert!(c.await.unwrap().is_ok());
    }
    busy.await.unwrap();
    let stats = batcher.stats();
    assert_eq!(stats.items.load(Ordering::Relaxed), 48 + 6);
    assert_eq!(
        stats.batches.load(Ordering::Relaxed),
        2,
        "a batch was closed before a session was free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_runs_its_last_chunk_itself_in_order() {
    let (model, inputs, expected) = common::fashion_inputs_and_classes(100);
    let classes = |rs: Vec<Result<labelloop::model::Prediction, BatchError>>| -> Vec<usize> {
        rs.into_iter()
            .map(|r| r.unwrap().class.unwrap().index)
            .collect()
    };
    // Idle, 64 items: the caller packs and runs them itself.
    let batcher = Batcher::spawn(model, one_session(1));
    let stats = batcher.stats();
    let got = classes(batcher.predict_many(inputs[..64].to_vec()).await);
    assert_eq!(got, expected[..64]);
    assert_eq!(stats.by_caller.load(Ordering::Relaxed), 1);
    assert_eq!(stats.batches.load(Ordering::Relaxed), 1);
    // 100 items: the first chunk of 64 goes through the queue (it runs
    // while the last 36 decode), the last runs itself if the session is
    // free by then; the answers stay in input order either way.
    let got = classes(batcher.predict_many(inputs).await);
    assert_eq!(got, expected, "answers out of order across the two paths");
    assert_eq!(stats.batches.load(Ordering::Relaxed), 3);
    assert!(stats.by_caller.load(Ordering::Relaxed) <= 2);
    assert_eq!(stats.items.load(Ordering::Relaxed), 164);
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_room_for_all_its_items_is_refused_whole() {
    let batcher = Batcher::spawn(
        common::shared("fashion-mnist-cnn"),
        BatcherConfig {
            queue_capacity: 4,
            ..one_session(1)
        },
    );
    let img = std::fs::read(&common::fashion_mnist_test()[0].1).unwrap();
    let results = batcher
        .predict_many(vec![Input::Image(img.clone()); 6])
        .await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(BatchError::Busy { capacity: 4 }))),
        "{results:?}"
    );
    let stats = batcher.stats();
    assert_eq!(stats.items.load(Ordering::Relaxed), 0, "part of it ran");
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    // A job waits for room instead, a batch at a time, and is never "busy".
    let results = batcher.predict_job(vec![Input::Image(img); 10]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stats.items.load(Ordering::Relaxed), 10);
}

/// A 16-bit RGBA image: 8 bytes per pixel, slow to decode and convert.
fn big_rgba16(side: u32) -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_fn(side, side, |x, y| {
        image::Rgba([
            (x * 37) as u16,
            (y * 91) as u16,
            ((x ^ y) * 13) as u16,
            65535,
        ])
    });
    common::png_bytes(&image::DynamicImage::ImageRgba16(img))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_request_is_answered_while_a_large_one_decodes() {
    let model = common::shared("fashion-mnist-cnn");
    let batcher = Batcher::spawn(model, one_session(2));
    let big = big_rgba16(600);
    let small = std::fs::read(&common::fashion_mnist_test()[0].1).unwrap();
    let b = batcher.clone();
    let large = tokio::spawn(async move {
        let started = Instant::now();
        let results = b.predict_many(vec![Input::Image(big); 4]).await;
        let finished = Instant::now();
        eprintln!("large request: {:?}", finished - started);
        for r in results {
            r.unwrap();
        }
        finished
    });
    // The large request is under way (its 4 images take a while to decode)
    // when the small one arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!large.is_finished());
    let r = batcher.predict(Input::Image(small)).await;
    let small_answered = Instant::now();
    assert!(r.is_ok(), "{r:?}");
    let large_finished = large.await.unwrap();
    assert!(
        small_answered < large_finished,
        "the 1-item request waited for the large one to decode ({:?} after it)",
        small_answered - large_finished
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_decode_budget_fails_the_extra_items_only() {
    let dir = common::model_dir("fashion-mnist-cnn");
    // Room for two 28x28 grey images (784 bytes decoded each), not three.
    let model = Model::load(
        &dir,
        LoadOptions {
            request_decode_bytes: 2000,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let batcher = Batcher::spawn(Arc::new(model), one_session(2));
    let img = std::fs::read(&common::fashion_mnist_test()[0].1).unwrap();
    let mut inputs = vec![Input::Image(img.clone()); 4];
    inputs.insert(1, Input::Text("not an image".into()));
    let results = batcher.predict_many(inputs).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    // A failed item costs nothing.
    assert!(matches!(
        results[1],
        Err(BatchError::Item(ItemError::WrongKind { .. }))
    ));
    assert!(results[2].is_ok(), "{:?}", results[2]);
    for r in &results[3..] {
        match r {
            Err(BatchError::Item(e @ ItemError::OverBudget { needed: 784, .. })) => {
                assert_eq!(e.code(), "request_decode_budget");
                assert!(e.to_string().contains("separate requests"), "{e}");
            }
            other => panic!("expected the budget error, got {other:?}"),
        }
    }
    // The next request has a budget of its own.
    let again = batcher.predict_many(vec![Input::Image(img); 2]).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");
}

fn worker_context(store: Store, hub: ModelHub, data_root: Option<&Path>) -> WorkerContext {
    WorkerContext {
        store,
        hub: Arc::new(hub),
        metrics: Arc::new(Metrics::default()),
        wake: Default::default(),
        worker_id: "test-worker".into(),
        claim_batch: 8,
        // Long: an item the worker skipped would not come back during the test.
        lease: Duration::from_secs(600),
        poll: Duration::from_millis(20),
        data_root: data_root.map(Path::to_path_buf),
        classifiers: Default::default(),
    }
}

async fn fashion_project(store: &Store) -> i64 {
    let model = common::shared("fashion-mnist-cnn");
    store
        .create_project(&NewProject {
            name: "p".into(),
            model: "fashion-mnist-cnn".into(),
            labels: model.labels().to_vec(),
            precision_target: 0.95,
            threshold: Some(0.9),
            settings: Default::default(),
            committee: Vec::new(),
        })
        .await
        .unwrap()
        .id
}

/// Run one worker until `job` is done (or 60 s), then stop it.
async fn run_worker_until_done(ctx: WorkerContext, job: i64) -> labelloop::store::Job {
    let store = ctx.store.clone();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker::run(ctx, 1, stop_rx));
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let j = store.get_job(job).await.unwrap();
        if j.state == "done" || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    running.await.unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_worker_waits_for_queue_room_instead_of_skipping_items() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let project = fashion_project(&store).await;
    let items: Vec<NewItem> = common::fashion_mnist_test()[..8]
        .iter()
        .map(|(id, p, _)| NewItem {
            client_id: id.clone(),
            content: Content::Image(std::fs::read(p).unwrap()),
        })
        .collect();
    let job = store.ingest(project, &items).await.unwrap().job_id;
    // A queue of 2 for a claim of 8: the job must go through in pieces.
    let mut hub = ModelHub::default();
    hub.insert(
        common::shared("fashion-mnist-cnn"),
        BatcherConfig {
            queue_capacity: 2,
            ..one_session(1)
        },
    );
    let job = run_worker_until_done(worker_context(store, hub, None), job).await;
    assert_eq!(
        (job.state.as_str(), job.done, job.errors),
        ("done", 8, 0),
        "items were skipped for want of queue room: {job:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_swapped_in_after_ingest_is_not_followed_out_of_the_data_root() {
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().canonicalize().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let data = common::fashion_mnist_test();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::copy(&data[0].1, root.join("sub/a.png")).unwrap();
    std::fs::copy(&data[1].1, root.join("sub/b.png")).unwrap();
    // A valid image outside: read, it would be labeled like any other.
    std::fs::copy(&data[2].1, outside.path().join("secret.png")).unwrap();

    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let project = fashion_project(&store).await;
    // As ingest stores them: canonical paths inside the root.
    let items: Vec<NewItem> = ["a", "b"]
        .iter()
        .map(|n| NewItem {
            client_id: n.to_string(),
            content: Content::Path(root.join(format!("sub/{n}.png")).display().to_string()),
        })
        .collect();
    let job = store.ingest(project, &items).await.unwrap().job_id;
    // After ingest, before the worker reads it: a.png becomes a link out.
    std::fs::remove_file(root.join("sub/a.png")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.png"), root.join("sub/a.png")).unwrap();

    let mut hub = ModelHub::default();
    hub.insert(common::shared("fashion-mnist-cnn"), one_session(1));
    let job = run_worker_until_done(worker_context(store.clone(), hub, Some(&root)), job).await;
    assert_eq!((job.done, job.errors), (1, 1), "{job:?}");
    let listed = store.list_items(project, None, None, 10).await.unwrap();
    let a = listed.iter().find(|i| i.client_id == "a").unwrap();
    let b = listed.iter().find(|i| i.client_id == "b").unwrap();
    assert_eq!(a.status, "failed");
    assert!(a.prediction.is_none(), "the outside file was labeled");
    assert!(
        a.error
            .as_deref()
            .is_some_and(|e| e.contains("path leaves the data root")),
        "{:?}",
        a.error
    );
    assert!(b.prediction.is_some(), "the rest of the batch is labeled");
}

/// The keys of a JSON object, in the order they were written.
fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_lists_scores_in_the_model_label_order() {
    let model = common::shared("fashion-mnist-cnn");
    let order: Vec<String> = model.labels().to_vec();
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(order, sorted, "this test needs labels that are not sorted");
    let png = &common::fashion_mnist_test()[0].1;
    let db = TestDb::sqlite();
    let s = Server::start(&db.url, &["--no-auth"]);

    // The stored prediction, read back through GET /v1/items/{id}.
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "order", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();
    let image = b64(&std::fs::read(png).unwrap());
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!([{"id": "x", "image": image}]),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(body["job"]["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    let (_, list) = s.get(&format!("/v1/projects/{project}/items")).await;
    let id = list["items"][0]["id"].as_i64().unwrap();
    let (code, item) = s.get(&format!("/v1/items/{id}")).await;
    assert_eq!(code, 200, "{item}");
    assert_eq!(keys(&item["prediction"]["scores"]), order, "stored: {item}");

    // POST /v1/predict.
    let (code, body) = s
        .post(
            "/v1/predict",
            &json!({"model": "fashion-mnist-cnn", "items": [{"id": "x", "image": image}]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let predicted = &body["predictions"][0];
    assert_eq!(keys(&predicted["scores"]), order, "predict: {body}");
    assert_eq!(predicted["label"], item["prediction"]["label"]);

    // An embedding model's answer says something: its embedding, no nulls.
    let (code, body) = s
        .post(
            "/v1/predict",
            &json!({"model": "minilm-l6", "items": [{"id": "t", "text": "a red dress"}]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let p = &body["predictions"][0];
    assert_eq!(p["embedding"].as_array().map(Vec::len), Some(384), "{body}");
    assert!(
        p.as_object().unwrap().values().all(|v| !v.is_null()),
        "null fields: {body}"
    );

    // `labelloop label`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .current_dir(common::root())
        .args(["-q", "label", "-m", "fashion-mnist-cnn"])
        .arg(png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys(&line["scores"]), order, "label: {line}");
    // The CLI and the API write the same fields for the same prediction.
    assert_eq!(keys(&line), keys(predicted));
}
