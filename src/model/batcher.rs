//! Dynamic batching for many concurrent callers (after the queue of
//! text-embeddings-inference).
//!
//! Each caller stages (decodes and resizes, or tokenizes) its own items on a
//! blocking thread before they enter the queue, so the queue only ever holds
//! model-ready items and a batch costs packing and one ONNX Runtime run. A
//! caller with forty huge images therefore spends its own time decoding
//! them, while a caller with one small image is staged, queued and answered
//! in the meantime; a per-request [`DecodeBudget`] bounds how long any one
//! request decodes at all.
//!
//! One background task forms batches. It waits for the first queued item,
//! then for a free session, and only then gathers more, up to `max_batch`
//! items or `max_wait` after the first: while every session is busy the
//! queue keeps filling, and all of it goes into the next batch instead of a
//! batch closed early that then waits for a session anyway. Items whose
//! caller has stopped waiting (a dropped connection, a request already
//! answered) are skipped, never run.
//!
//! A caller whose last chunk alone makes at least half a batch skips the
//! queue when a session is free once those items are staged: it packs and
//! runs them on the blocking thread that staged them. That saves the
//! hand-offs to the batching task, to another blocking thread and back.
//! Earlier chunks of a larger request still go through the queue, so that
//! one chunk runs while the next decodes. Queued items keep priority: a
//! session the batching task waits for goes to it first.
//!
//! An HTTP request's items get queue room all at once or not at all: when
//! the queue cannot take them all, the caller gets [`BatchError::Busy`] at
//! once and nothing is queued. Background jobs wait for room instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::{DecodeBudget, Input, ItemError, Model, Prediction, Staged};

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

type Reply = oneshot::Sender<Result<Prediction, ItemError>>;
type Result1 = Result<Prediction, BatchError>;

struct Request {
    staged: Staged,
    reply: Reply,
}

/// Statistics the service exposes as metrics.
#[derive(Debug, Default)]
pub struct BatcherStats {
    /// Items in the queue now.
    pub queued: AtomicUsize,
    pub batches: AtomicUsize,
    /// Items run through the model.
    pub items: AtomicUsize,
    /// Items taken off the queue and dropped because their caller had gone.
    pub abandoned: AtomicUsize,
    /// Batches a caller ran itself, past the queue (also in `batches`).
    pub by_caller: AtomicUsize,
}

/// How a caller gets room in the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Room {
    /// All items at once, or "busy" at once (HTTP callers).
    AllOrBusy,
    /// Wait for room, a batch at a time (background jobs).
    Wait,
}

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
    model: Arc<Model>,
    capacity: usize,
    /// Items staged per blocking task, and per wait for room.
    chunk: usize,
    /// Free sessions, shared with the batching task.
    running: Arc<Semaphore>,
    /// A chunk at least this long runs on its own when a session is free.
    inline_min: usize,
    stats: Arc<BatcherStats>,
}

impl Batcher {
    /// Start the background task on the current tokio runtime.
    pub fn spawn(model: Arc<Model>, config: BatcherConfig) -> Batcher {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(BatcherStats::default());
        let running = Arc::new(Semaphore::new(config.concurrency.max(1)));
        tokio::spawn(run_queue(
            model.clone(),
            config,
            rx,
            running.clone(),
            stats.clone(),
        ));
        let chunk = config.max_batch.clamp(1, capacity);
        Batcher {
            tx,
            model,
            capacity,
            chunk,
            running,
            inline_min: chunk.div_ceil(2).max(2),
            stats,
        }
    }

    pub fn stats(&self) -> &BatcherStats {
        &self.stats
    }

    /// Stage one item and wait for its prediction; "busy" if the queue is full.
    pub async fn predict(&self, input: Input) -> Result1 {
        let mut out = self.predict_many(vec![input]).await;
        out.pop().unwrap_or(Err(BatchError::Closed))
    }

    /// One request's items: room for all of them or [`BatchError::Busy`] for
    /// all, decoding charged to the model's per-request budget. Results come
    /// back in input order. Dropping the future withdraws the queued items.
    pub async fn predict_many(&self, inputs: Vec<Input>) -> Vec<Result1> {
        self.submit(inputs, Room::AllOrBusy, self.model.request_budget())
            .await
    }

    /// A background job's items: waits for queue room (a batch at a time)
    /// instead of failing, and decodes without a per-request budget, since
    /// the claim size already bounds the work. Never "busy".
    pub async fn predict_job(&self, inputs: Vec<Input>) -> Vec<Result1> {
        self.submit(inputs, Room::Wait, DecodeBudget::unlimited())
            .await
    }

    async fn submit(&self, inputs: Vec<Input>, room: Room, budget: DecodeBudget) -> Vec<Result1> {
        let n = inputs.len();
        if n == 0 {
            return Vec::new();
        }
        // Room before decoding: a full queue is answered before any work.
        let mut all = match room {
            Room::AllOrBusy => match self.tx.try_reserve_many(n) {
                Ok(p) => Some(p),
                Err(mpsc::error::TrySendError::Full(())) => {
                    let busy = BatchError::Busy {
                        capacity: self.capacity,
                    };
                    return vec![Err(busy); n];
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return vec![Err(BatchError::Closed); n]
                }
            },
            Room::Wait => None,
        };
        let mut pending: Vec<Pending> = Vec::with_capacity(n);
        let mut budget = budget;
        let mut inputs = inputs.into_iter();
        loop {
            let chunk: Vec<Input> = inputs.by_ref().take(self.chunk).collect();
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            let mut waited;
            let permits = match all.as_mut() {
                Some(p) => p,
                None => match self.tx.reserve_many(len).await {
                    Ok(p) => {
                        waited = p;
                        &mut waited
                    }
                    Err(_) => {
                        pending.extend((0..len).map(|_| Pending::Done(Err(BatchError::Closed))));
                        continue;
                    }
                },
            };
            let model = self.model.clone();
            let last = inputs.len() == 0;
            let running = (last && len >= self.inline_min).then(|| self.running.clone());
            let stats = self.stats.clone();
            let work = move || {
                let staged: Vec<_> = chunk
                    .iter()
                    .map(|i| model.stage_within(i, &mut budget))
                    .collect();
                let free = running.and_then(|r| r.try_acquire_owned().ok());
                let out = match free {
                    Some(_session) => {
                        let ok = staged.iter().filter(|s| s.is_ok()).count();
                        if ok > 0 {
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats.by_caller.fetch_add(1, Ordering::Relaxed);
                            stats.items.fetch_add(ok, Ordering::Relaxed);
                        }
                        Chunk::Ran(model.predict_staged(staged))
                    }
                    None => Chunk::Staged(staged),
                };
                (out, budget)
            };
            let staged = tokio::task::spawn_blocking(work).await;
            let staged = match staged {
                Ok((Chunk::Staged(staged), left)) => {
                    budget = left;
                    staged
                }
                Ok((Chunk::Ran(results), left)) => {
                    budget = left;
                    pending.extend(
                        results
                            .into_iter()
                            .map(|r| Pending::Done(r.map_err(BatchError::Item))),
                    );
                    continue;
                }
                Err(e) => {
                    let e = ItemError::Inference(format!("staging failed: {e}"));
                    vec![Err(e); len]
                }
            };
            for s in staged {
                pending.push(match s {
                    Ok(staged) => match permits.next() {
                        Some(permit) => {
                            let (reply, rx) = oneshot::channel();
                            permit.send(Request { staged, reply });
                            self.stats.queued.fetch_add(1, Ordering::Relaxed);
                            Pending::Queued(rx)
                        }
                        None => Pending::Done(Err(BatchError::Closed)),
                    },
                    Err(e) => Pending::Done(Err(BatchError::Item(e))),
                });
            }
        }
        // Room held for items that failed to stage goes back now.
        drop(all);
        let mut out = Vec::with_capacity(n);
        for p in pending {
            out.push(match p {
                Pending::Queued(rx) => rx
                    .await
                    .map_err(|_| BatchError::Closed)
                    .and_then(|r| r.map_err(BatchError::Item)),
                Pending::Done(r) => r,
            });
        }
        out
    }
}

/// A chunk after its blocking task: staged for the queue, or already run.
enum Chunk {
    Staged(Vec<Result<Staged, ItemError>>),
    Ran(Vec<Result<Prediction, ItemError>>),
}

enum Pending {
    Queued(oneshot::Receiver<Result<Prediction, ItemError>>),
    Done(Result1),
}

/// The next queued item whose caller still waits, with a free session to
/// run it on; `None` once the queue closes. The item is taken first and the
/// session after, so that no session sits reserved by an idle queue while a
/// large request could run on it; the item counts as queued until then.
async fn next_live(
    rx: &mut mpsc::Receiver<Request>,
    running: &Arc<Semaphore>,
    stats: &BatcherStats,
) -> Option<(Request, OwnedSemaphorePermit)> {
    loop {
        let r = rx.recv().await?;
        let permit = running.clone().acquire_owned().await.ok()?;
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if !r.reply.is_closed() {
            return Some((r, permit));
        }
        stats.abandoned.fetch_add(1, Ordering::Relaxed);
    }
}

async fn run_queue(
    model: Arc<Model>,
    config: BatcherConfig,
    mut rx: mpsc::Receiver<Request>,
    running: Arc<Semaphore>,
    stats: Arc<BatcherStats>,
) {
    let max_batch = config.max_batch.max(1);
    let sessions = config.concurrency.max(1);
    loop {
        // A session before the batch: a batch is only formed when it can
        // run at once, so everything queued meanwhile goes into it.
        let Some((first, permit)) = next_live(&mut rx, &running, &stats).await else {
            break;
        };
        let mut batch = Vec::with_capacity(max_batch);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while batch.len() < max_batch {
            // Take what is already queued without waiting.
            let r = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(r)) => r,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            if r.reply.is_closed() {
                stats.abandoned.fetch_add(1, Ordering::Relaxed);
            } else {
                batch.push(r);
            }
        }
        let model = model.clone();
        let stats = stats.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // A caller may also have gone while the batch was gathered.
            let (live, gone): (Vec<Request>, Vec<Request>) =
                batch.into_iter().partition(|r| !r.reply.is_closed());
            stats.abandoned.fetch_add(gone.len(), Ordering::Relaxed);
            if live.is_empty() {
                return;
            }
            let (staged, replies): (Vec<_>, Vec<Reply>) =
                live.into_iter().map(|r| (Ok(r.staged), r.reply)).unzip();
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.items.fetch_add(staged.len(), Ordering::Relaxed);
            let results = model.predict_staged(staged);
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone away since; that is not our error.
                let _ = reply.send(result);
            }
        });
    }
    // Drain: wait for running batches so shutdown loses nothing.
    let _ = running.acquire_many(sessions as u32).await;
}
