//! Background pre-labeling: workers claim leased batches of pending items
//! from the store, label them through the model's batcher, and record the
//! outcomes. Any number of servers may run workers against one PostgreSQL
//! database; a worker that dies simply lets its leases expire.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::hub::ModelHub;
use super::metrics::Metrics;
use crate::model::batcher::BatchError;
use crate::model::Input;
use crate::store::{Claim, Content, Outcome, Project, Store, StoredPrediction};

#[derive(Clone)]
pub struct WorkerContext {
    pub store: Store,
    pub hub: Arc<ModelHub>,
    pub metrics: Arc<Metrics>,
    /// Woken by ingest so idle workers start at once instead of at the next poll.
    pub wake: Arc<Notify>,
    pub worker_id: String,
    pub claim_batch: i64,
    pub lease: Duration,
    pub poll: Duration,
    pub data_root: Option<PathBuf>,
}

/// A name unique to this process, recorded on every lease and prediction.
pub fn worker_id() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "labelloop".into()),
        std::process::id(),
        u32::from_le_bytes(b)
    )
}

/// Run `n` worker loops until `shutdown` turns true. Each finishes the batch
/// it holds (so nothing is half-written), then returns its leases.
pub async fn run(ctx: WorkerContext, n: usize, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for i in 0..n.max(1) {
        let ctx = ctx.clone();
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut projects: HashMap<i64, Project> = HashMap::new();
            loop {
                if *stop.borrow() {
                    break;
                }
                let worked = match step(&ctx, &mut projects).await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(worker = i, error = %e, "job step failed; retrying after a pause");
                        false
                    }
                };
                if !worked {
                    tokio::select! {
                        _ = ctx.wake.notified() => {}
                        _ = tokio::time::sleep(ctx.poll) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }));
    }
    let _ = shutdown.changed().await;
    for t in tasks {
        let _ = t.await;
    }
    match ctx.store.release_leases(Some(&ctx.worker_id)).await {
        Ok(n) if n > 0 => tracing::info!(released = n, "returned leases on shutdown"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not return leases; they will expire"),
    }
}

/// Claim one batch, label it, record it. Returns the number of items handled.
async fn step(ctx: &WorkerContext, projects: &mut HashMap<i64, Project>) -> Result<usize, String> {
    let Some(claim) = ctx
        .store
        .claim(&ctx.worker_id, ctx.claim_batch, ctx.lease)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(0);
    };
    let Claim {
        job_id,
        project_id,
        items,
    } = claim;
    let project = match projects.get(&project_id) {
        Some(p) => p.clone(),
        None => {
            let p = ctx
                .store
                .get_project(project_id)
                .await
                .map_err(|e| e.to_string())?;
            projects.insert(project_id, p.clone());
            p
        }
    };
    ctx.metrics.job_batch_size.observe(items.len() as f64);
    let Some(loaded) = ctx.hub.get(&project.model) else {
        let why = format!("model {:?} is not loaded on this server", project.model);
        let outcomes: Vec<(i64, Outcome)> = items
            .iter()
            .map(|i| (i.id, Outcome::Failed(why.clone())))
            .collect();
        ctx.store
            .complete(&ctx.worker_id, job_id, &outcomes)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(outcomes.len());
    };
    // Leave room in the batch queue rather than be told "busy": back-pressure
    // from the HTTP callers delays the job instead of failing its items.
    for _ in 0..500 {
        if loaded.batcher.room() >= items.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let inputs: Vec<Input> = items
        .into_iter()
        .map(|i| input_for(i.content, ctx.data_root.as_deref()))
        .collect();
    let claimed = inputs.len();
    let results = loaded.predict_many(inputs).await;
    let version = loaded.model.version().to_string();
    let labels = loaded.labels();
    let mut outcomes = Vec::with_capacity(claimed);
    for (id, result) in ids.into_iter().zip(results) {
        let outcome = match result {
            Ok(pred) => match pred.class {
                Some(c) => {
                    let scores: serde_json::Map<String, serde_json::Value> = labels
                        .iter()
                        .zip(&c.probs)
                        .map(|(l, p)| (l.clone(), serde_json::json!(p)))
                        .collect();
                    let auto_accept = f64::from(c.score) >= project.threshold;
                    Outcome::Predicted(StoredPrediction {
                        label: labels.get(c.index).cloned().unwrap_or_default(),
                        score: f64::from(c.score),
                        scores_json: serde_json::Value::Object(scores).to_string(),
                        uncertainty_json: serde_json::to_string(&c.uncertainty).unwrap_or_default(),
                        model_version: version.clone(),
                        auto_accept,
                    })
                }
                None => Outcome::Failed("the project's model gives no class prediction".into()),
            },
            // Not this item's fault: its lease expires and it is retried.
            Err(BatchError::Busy { .. }) | Err(BatchError::Closed) => continue,
            Err(BatchError::Item(e)) => Outcome::Failed(e.to_string()),
        };
        outcomes.push((id, outcome));
    }
    let recorded = ctx
        .store
        .complete(&ctx.worker_id, job_id, &outcomes)
        .await
        .map_err(|e| e.to_string())?;
    for (_, o) in &outcomes {
        match o {
            Outcome::Predicted(p) => {
                ctx.metrics.items_labeled.fetch_add(1, Ordering::Relaxed);
                if p.auto_accept {
                    ctx.metrics.auto_accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    ctx.metrics.needs_review.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Failed(_) => {
                ctx.metrics.items_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracing::debug!(job = job_id, claimed, recorded, "batch recorded");
    Ok(claimed)
}

fn input_for(content: Content, data_root: Option<&std::path::Path>) -> Input {
    match content {
        Content::Text(t) => Input::Text(t),
        Content::Image(b) => Input::Image(b),
        Content::Path(p) => {
            let path = PathBuf::from(p);
            match data_root {
                Some(root) if path.is_relative() => Input::ImagePath(root.join(path)),
                _ => Input::ImagePath(path),
            }
        }
    }
}
