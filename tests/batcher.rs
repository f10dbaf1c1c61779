//! Dynamic batching: many concurrent callers, each gets its own answer,
//! requests are gathered into real batches, and a full queue says "busy".

mod common;

use std::sync::Arc;
use std::time::Duration;

use labelloop::model::batcher::{BatchError, Batcher, BatcherConfig};
use labelloop::model::Input;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_their_own_results_in_shared_batches() {
    let (model, inputs, expected) = common::fashion_inputs_and_classes(256);
    let batcher = Batcher::spawn(
        model.clone(),
        BatcherConfig {
            max_batch: 32,
            max_wait: Duration::from_millis(20),
            queue_capacity: 1024,
            concurrency: 1,
        },
    );
    let mut tasks = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let b = batcher.clone();
        tasks.push(tokio::spawn(async move { (i, b.predict(input).await) }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(
            r.unwrap().class.unwrap().index,
            expected[i],
            "caller {i} got someone else's answer"
        );
    }
    let stats = batcher.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let items = stats.items.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(items, 256);
    assert!(
        batches <= 256 / 4,
        "requests were not gathered: {batches} batches for 256 items"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_fails_alone_inside_a_batch() {
    let model = common::shared("fashion-mnist-cnn");
    let good = std::fs::read(&common::fashion_mnist_test()[0].1).unwrap();
    let batcher = Batcher::spawn(
        model,
        BatcherConfig {
            max_wait: Duration::from_millis(50),
            ..BatcherConfig::default()
        },
    );
    let results = batcher
        .predict_many(vec![
            Input::Image(good.clone()),
            Input::Image(b"junk".to_vec()),
            Input::Image(good),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(BatchError::Item(_))));
    assert!(results[2].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let model = common::shared("orientation");
    let page = std::fs::read(common::root().join("tests/fixtures/documents/page-1.png")).unwrap();
    let batcher = Batcher::spawn(
        model,
        BatcherConfig {
            max_batch: 2,
            max_wait: Duration::from_millis(1),
            queue_capacity: 4,
            concurrency: 1,
        },
    );
    let batcher = Arc::new(batcher);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let b = batcher.clone();
        let input = Input::Image(page.clone());
        tasks.push(tokio::spawn(async move { b.predict(input).await }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(BatchError::Busy { capacity }) => {
                assert_eq!(capacity, 4);
                busy += 1
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(busy > 0, "64 requests into a queue of 4 must hit 'busy'");
    assert!(ok > 0);
    assert_eq!(ok + busy, 64);
}
