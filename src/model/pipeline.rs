//! Labeling a large, known set of items as fast as the machine allows.
//!
//! Used by `labelloop label`. Staging (file reads, decoding, resizing,
//! tokenizing) runs on worker threads while the calling thread drives ONNX
//! Runtime, so decoding overlaps inference. Text is batched by similar
//! length within a window, because padding dominates transformer cost, and
//! results are still emitted in input order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::{Input, ItemError, Model, Prediction, Staged};

#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    pub batch_size: usize,
    /// Threads that stage items.
    pub workers: usize,
    /// Items considered together when sorting text by length.
    pub window: usize,
    /// Threads that each stage a block and run it on their own session
    /// (the model needs this many sessions). 1: the calling thread runs
    /// every batch while `workers` threads stage.
    pub runners: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch_size: 64,
            workers: 2,
            window: 4096,
            runners: 1,
        }
    }
}

pub type ItemResult = Result<Prediction, ItemError>;

/// Label every item; `emit(index, result)` is called once per item, in input order.
pub fn label_all<F>(
    model: &Model,
    items: Vec<Result<Input, ItemError>>,
    opts: PipelineOptions,
    mut emit: F,
) where
    F: FnMut(usize, ItemResult),
{
    // An OCR page is a batch of its own: its lines are batched inside it,
    // and a page per block lets every runner take pages as they come.
    let batch = if model.is_ocr() {
        1
    } else {
        opts.batch_size.max(1)
    };
    let window = opts.window.max(batch);
    let mut base = 0;
    let mut items = items;
    while !items.is_empty() {
        let rest = items.split_off(window.min(items.len()));
        let chunk = std::mem::replace(&mut items, rest);
        let n = chunk.len();
        if model.is_audio() {
            label_window_audio(model, chunk, opts, &mut |i, r| emit(base + i, r));
        } else if model.is_text() {
            label_window_sorted(model, chunk, batch, opts, &mut |i, r| emit(base + i, r));
        } else if opts.runners > 1 {
            label_window_runners(model, chunk, batch, opts.runners, &mut |i, r| {
                emit(base + i, r)
            });
        } else {
            label_window_streaming(model, chunk, batch, opts.workers, &mut |i, r| {
                emit(base + i, r)
            });
        }
        base += n;
    }
}

/// Stage one block of items (an item that failed before staging keeps its error).
fn stage_block(
    model: &Model,
    items: &[Result<Input, ItemError>],
) -> Vec<Result<Staged, ItemError>> {
    items
        .iter()
        .map(|i| match i {
            Ok(input) => model.stage(input),
            Err(e) => Err(e.clone()),
        })
        .collect()
}

/// Emit the results that are ready from `next` on, in input order; returns the new `next`.
fn emit_ready(
    results: &mut [Option<ItemResult>],
    mut next: usize,
    emit: &mut dyn FnMut(usize, ItemResult),
) -> usize {
    while let Some(r) = results.get_mut(next).and_then(Option::take) {
        emit(next, r);
        next += 1;
    }
    next
}

/// Stage blocks of `batch` items on `workers` threads, sending each finished block.
fn stage_blocks<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    model: &'s Model,
    chunk: &'s [Result<Input, ItemError>],
    batch: usize,
    workers: usize,
) -> mpsc::Receiver<(usize, Vec<Result<Staged, ItemError>>)> {
    let blocks = chunk.len().div_ceil(batch);
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::sync_channel(workers.max(1) * 2);
    for _ in 0..workers.max(1) {
        let tx = tx.clone();
        let next = next.clone();
        scope.spawn(move || loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= blocks {
                break;
            }
            let staged = stage_block(model, &chunk[b * batch..((b + 1) * batch).min(chunk.len())]);
            if tx.send((b, staged)).is_err() {
                break;
            }
        });
    }
    rx
}

/// Images: every item has the same shape, so run blocks as soon as they are staged.
fn label_window_streaming(
    model: &Model,
    chunk: Vec<Result<Input, ItemError>>,
    batch: usize,
    workers: usize,
    emit: &mut dyn FnMut(usize, ItemResult),
) {
    let n = chunk.len();
    let mut results: Vec<Option<ItemResult>> = (0..n).map(|_| None).collect();
    let mut next_emit = 0;
    std::thread::scope(|scope| {
        let rx = stage_blocks(scope, model, &chunk, batch, workers);
        for (b, staged) in rx {
            let preds = model.predict_staged(staged);
            for (i, r) in preds.into_iter().enumerate() {
                results[b * batch + i] = Some(r);
            }
            next_emit = emit_ready(&mut results, next_emit, emit);
        }
    });
}

/// Images on several sessions: each runner thread stages a block and runs it
/// itself, so no thread ever waits on another's staging and ONNX Runtime
/// (one intra-op thread per session) never competes with a decoder for a
/// core in the middle of an operator. Results are emitted in input order.
fn label_window_runners(
    model: &Model,
    chunk: Vec<Result<Input, ItemError>>,
    batch: usize,
    runners: usize,
    emit: &mut dyn FnMut(usize, ItemResult),
) {
    let n = chunk.len();
    let blocks = n.div_ceil(batch);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<ItemResult>> = (0..n).map(|_| None).collect();
    let mut next_emit = 0;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(runners * 2);
        for _ in 0..runners {
            let tx = tx.clone();
            let (next, chunk) = (&next, &chunk);
            scope.spawn(move || loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= blocks {
                    break;
                }
                let staged = stage_block(model, &chunk[b * batch..((b + 1) * batch).min(n)]);
                if tx.send((b, model.predict_staged(staged))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (b, preds) in rx {
            for (i, r) in preds.into_iter().enumerate() {
                results[b * batch + i] = Some(r);
            }
            next_emit = emit_ready(&mut results, next_emit, emit);
        }
    });
}

/// Audio: `workers` threads decode and resample recordings one at a time
/// while each of `runners` threads keeps a batch of streams going on its own
/// session, taking the next decoded recording whenever a stream ends (see
/// [`super::vad::run_streams`]). Results are emitted in input order.
fn label_window_audio(
    model: &Model,
    chunk: Vec<Result<Input, ItemError>>,
    opts: PipelineOptions,
    emit: &mut dyn FnMut(usize, ItemResult),
) {
    use super::vad::Feed;
    let n = chunk.len();
    let mut results: Vec<Option<ItemResult>> = (0..n).map(|_| None).collect();
    let mut next_emit = 0;
    std::thread::scope(|scope| {
        let staged = std::sync::Arc::new(std::sync::Mutex::new(stage_blocks(
            scope,
            model,
            &chunk,
            1,
            opts.workers,
        )));
        let (tx, rx) = mpsc::channel::<(usize, ItemResult)>();
        for _ in 0..opts.runners.max(1) {
            let (tx, staged) = (tx.clone(), staged.clone());
            scope.spawn(move || {
                let mut feed = |wait: bool| loop {
                    // A runner with live streams never waits, not even for
                    // the lock another runner holds while it waits.
                    let got = if wait {
                        match staged.lock() {
                            Ok(rx) => rx.recv().map_err(|_| true),
                            Err(_) => Err(true),
                        }
                    } else {
                        match staged.try_lock() {
                            Ok(rx) => rx
                                .try_recv()
                                .map_err(|e| e == mpsc::TryRecvError::Disconnected),
                            Err(std::sync::TryLockError::WouldBlock) => Err(false),
                            Err(std::sync::TryLockError::Poisoned(_)) => Err(true),
                        }
                    };
                    match got {
                        Ok((i, mut block)) => match block.pop() {
                            Some(Ok(Staged::Audio(samples))) => return Feed::Ready(i, samples),
                            Some(Ok(_)) => {
                                let _ = tx.send((i, Err(ItemError::Invalid("not audio".into()))));
                            }
                            Some(Err(e)) => {
                                let _ = tx.send((i, Err(e)));
                            }
                            None => {}
                        },
                        Err(true) => return Feed::Done,
                        Err(false) => return Feed::Later,
                    }
                };
                let tx2 = tx.clone();
                model.run_audio(&mut feed, &mut |i, r| {
                    let _ = tx2.send((i, r));
                });
            });
        }
        drop(tx);
        for (i, r) in rx {
            results[i] = Some(r);
            next_emit = emit_ready(&mut results, next_emit, emit);
        }
    });
}

/// A batch of similar-length texts: their indexes in the window, and their staged inputs.
type Group = (Vec<usize>, Vec<Result<Staged, ItemError>>);

/// Text: stage the whole window, then batch items of similar length.
fn label_window_sorted(
    model: &Model,
    chunk: Vec<Result<Input, ItemError>>,
    batch: usize,
    opts: PipelineOptions,
    emit: &mut dyn FnMut(usize, ItemResult),
) {
    let n = chunk.len();
    let mut staged: Vec<Option<Result<Staged, ItemError>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let rx = stage_blocks(scope, model, &chunk, batch, opts.workers);
        for (b, block) in rx {
            for (i, s) in block.into_iter().enumerate() {
                staged[b * batch + i] = Some(s);
            }
        }
    });
    let mut results: Vec<Option<ItemResult>> = (0..n).map(|_| None).collect();
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for (i, s) in staged.iter_mut().enumerate() {
        match s.take() {
            Some(Ok(st)) => {
                *s = Some(Ok(st));
                order.push(i);
            }
            Some(Err(e)) => results[i] = Some(Err(e)),
            None => results[i] = Some(Err(ItemError::Invalid("item was not staged".into()))),
        }
    }
    order.sort_by_key(|&i| match &staged[i] {
        Some(Ok(s)) => s.seq_len(),
        _ => 0,
    });
    let groups: Vec<Group> = order
        .chunks(batch)
        .map(|group| {
            let items = group
                .iter()
                .map(|&i| {
                    staged[i]
                        .take()
                        .unwrap_or(Err(ItemError::Invalid("item was not staged".into())))
                })
                .collect();
            (group.to_vec(), items)
        })
        .collect();
    // Each runner takes the next group and runs it on its own session.
    let queue = std::sync::Mutex::new(groups.into_iter());
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..opts.runners.max(1) {
            let (tx, queue) = (tx.clone(), &queue);
            scope.spawn(move || loop {
                // Take the group and let go of the lock before running it.
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((ids, items)) = next else { break };
                if tx.send((ids, model.predict_staged(items))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (ids, preds) in rx {
            for (i, r) in ids.into_iter().zip(preds) {
                results[i] = Some(r);
            }
        }
    });
    for (i, r) in results.into_iter().enumerate() {
        emit(
            i,
            r.unwrap_or(Err(ItemError::Invalid("item was not labeled".into()))),
        );
    }
}
