//! Dynamic batching for many concurrent callers.
//!
//! Callers send single items through a bounded `mpsc` queue. One background
//! task gathers them into batches of up to `max_batch` items, waiting at most
//! `max_wait` after the first, and hands each batch to a blocking thread
//! (never an async worker). Each caller gets its own result back on a
//! oneshot channel. When the queue is full, callers get [`BatchError::Busy`]
//! at once instead of the queue growing without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Input, ItemError, Model, Prediction};

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Items that may wait in the queue before callers are told "busy".
    pub queue_capacity: usize,
    /// Batches that may run at once (one per session in the model's pool).
    pub concurrency: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch: 64,
            max_wait: Duration::from_millis(2),
            queue_capacity: 4096,
            concurrency: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch queue is full ({capacity} items waiting); retry shortly")]
    Busy { capacity: usize },
    #[error("the batcher has shut down")]
    Closed,
    #[error(transparent)]
    Item(#[from] ItemError),
}

struct Request {
    input: Input,
    reply: oneshot::Sender<Result<Prediction, ItemError>>,
}

/// Statistics the service exposes as metrics.
#[derive(Debug, Default)]
pub struct BatcherStats {
    pub queued: AtomicUsize,
    pub batches: AtomicUsize,
    pub items: AtomicUsize,
}

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
    capacity: usize,
    stats: Arc<BatcherStats>,
}

impl Batcher {
    /// Start the background task on the current tokio runtime.
    pub fn spawn(model: Arc<Model>, config: BatcherConfig) -> Batcher {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(BatcherStats::default());
        tokio::spawn(run_queue(model, config, rx, stats.clone()));
        Batcher {
            tx,
            capacity,
            stats,
        }
    }

    pub fn stats(&self) -> &BatcherStats {
        &self.stats
    }

    /// Free places in the queue right now (a hint: other callers race for them).
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// Put one item in the queue without waiting; the receiver yields its result.
    fn enqueue(
        &self,
        input: Input,
    ) -> Result<oneshot::Receiver<Result<Prediction, ItemError>>, BatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Request { input, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BatchError::Busy {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => BatchError::Closed,
            })?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(rx)
    }

    /// Queue one item and wait for its prediction.
    pub async fn predict(&self, input: Input) -> Result<Prediction, BatchError> {
        let rx = self.enqueue(input)?;
        rx.await
            .map_err(|_| BatchError::Closed)?
            .map_err(BatchError::Item)
    }

    /// Queue many items at once (so they can share batches), then wait for
    /// all of them; results come back in input order.
    pub async fn predict_many(&self, inputs: Vec<Input>) -> Vec<Result<Prediction, BatchError>> {
        let pending: Vec<_> = inputs.into_iter().map(|i| self.enqueue(i)).collect();
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(rx) => rx
                    .await
                    .map_err(|_| BatchError::Closed)
                    .and_then(|r| r.map_err(BatchError::Item)),
                Err(e) => Err(e),
            });
        }
        out
    }
}

async fn run_queue(
    model: Arc<Model>,
    config: BatcherConfig,
    mut rx: mpsc::Receiver<Request>,
    stats: Arc<BatcherStats>,
) {
    let max_batch = config.max_batch.max(1);
    let running = Arc::new(Semaphore::new(config.concurrency.max(1)));
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(max_batch);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while batch.len() < max_batch {
            // Take what is already queued without waiting.
            match rx.try_recv() {
                Ok(r) => {
                    batch.push(r);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        stats.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        // Wait for a free session before gathering the next batch: while this
        // batch runs, the queue keeps filling and the next batch is fuller.
        let Ok(permit) = running.clone().acquire_owned().await else {
            break;
        };
        let model = model.clone();
        let stats = stats.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (inputs, replies): (Vec<Input>, Vec<_>) =
                batch.into_iter().map(|r| (r.input, r.reply)).unzip();
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.items.fetch_add(inputs.len(), Ordering::Relaxed);
            let results = model.predict(&inputs);
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone away; that is not our error.
                let _ = reply.send(result);
            }
        });
    }
    // Drain: wait for running batches so shutdown loses nothing.
    let _ = running.acquire_many(config.concurrency.max(1) as u32).await;
}
