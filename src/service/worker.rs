//! Background pre-labeling: workers claim leased batches of pending items
//! from the store, label them through the model's batcher, and record the
//! outcomes. Any number of servers may run workers against one PostgreSQL
//! database; a worker that dies simply lets its leases expire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::calibration;
use super::hub::ModelHub;
use super::metrics::Metrics;
use super::predictor::{Classifiers, ProjectPredictor};
use crate::model::batcher::BatchError;
use crate::model::{Input, ItemError};
use crate::select::strategies;
use crate::store::{Claim, ClaimedItem, Content, Disagreement, Outcome, Store};

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
    /// Trained heads and zero-shot prototypes already built.
    pub classifiers: Arc<Classifiers>,
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

/// A worker's run of failed steps, logged at its start, then at most every
/// `FAILING_LOG_EVERY` with a count, and at its end: an idle worker polls
/// every 200 ms, and a full disk logged two warnings a poll (issue #28 L1).
#[derive(Default)]
struct Failing {
    since: Option<std::time::Instant>,
    logged: Option<std::time::Instant>,
    count: u64,
}

const FAILING_LOG_EVERY: Duration = Duration::from_secs(30);

impl Failing {
    fn failed(&mut self, worker: usize, error: &str) {
        let now = std::time::Instant::now();
        self.count += 1;
        let since = *self.since.get_or_insert(now);
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= FAILING_LOG_EVERY)
        {
            self.logged = Some(now);
            tracing::warn!(
                worker,
                error,
                failed_steps = self.count,
                failing_secs = now.duration_since(since).as_secs(),
                "job step failed; retrying after a pause"
            );
        }
    }

    fn recovered(&mut self, worker: usize) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                worker,
                failed_steps = self.count,
                failing_secs = since.elapsed().as_secs(),
                "job steps succeed again"
            );
        }
        self.logged = None;
        self.count = 0;
    }
}

/// Run `n` worker loops until `shutdown` turns true. Each finishes the batch
/// it holds (so nothing is half-written), then returns its leases.
pub async fn run(ctx: WorkerContext, n: usize, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for i in 0..n.max(1) {
        let ctx = ctx.clone();
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut failing = Failing::default();
            loop {
                if *stop.borrow() {
                    break;
                }
                let worked = match step(&ctx).await {
                    Ok(n) => {
                        failing.recovered(i);
                        n > 0
                    }
                    Err(e) => {
                        failing.failed(i, &e.to_string());
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

/// Claim one batch, label it, record it. Returns the number of items handled
/// (0: nothing to claim). Public for the tests that count what a batch asks
/// of the database (`tests/job_statements.rs`).
pub async fn step(ctx: &WorkerContext) -> Result<usize, String> {
    let started = std::time::Instant::now();
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
    // Read the project each batch: its threshold or head may have changed.
    let project = ctx
        .store
        .get_project(project_id)
        .await
        .map_err(|e| e.to_string())?;
    ctx.metrics.claimed(items.len());
    let Some(loaded) = ctx.hub.get(&project.model) else {
        let why = format!("model {:?} is not loaded on this server", project.model);
        return fail_batch(ctx, job_id, &items, &why).await;
    };
    // A committee member that is not loaded fails the batch the same way.
    let mut committee = Vec::with_capacity(project.committee.len());
    for name in &project.committee {
        match ctx.hub.get(name) {
            Some(m) => committee.push(m),
            None => {
                let why = format!("committee model {name:?} is not loaded on this server");
                return fail_batch(ctx, job_id, &items, &why).await;
            }
        }
    }
    // Before the batch's items go to the model: a project's first batch
    // embeds its zero-shot label texts, which must not queue behind the
    // batch (the lease would run out meanwhile). Without the head or the
    // prototypes the batch cannot be scored; its leases expire and it is retried.
    let predictor =
        ProjectPredictor::for_project(&ctx.store, &ctx.classifiers, loaded, &project).await?;
    let claimed = items.len();
    let root: Option<Arc<Path>> = ctx.data_root.as_deref().map(Arc::from);
    let mut outcomes = Vec::with_capacity(claimed);
    let mut ids: Vec<i64> = Vec::with_capacity(claimed);
    let mut inputs: Vec<Input> = Vec::with_capacity(claimed);
    let off_audit: Vec<i64> = items.iter().filter(|i| i.off_audit).map(|i| i.id).collect();
    for item in items {
        match input_for(item.content, root.as_ref()) {
            Ok(input) => {
                ids.push(item.id);
                inputs.push(input);
            }
            Err(e) => outcomes.push((item.id, Outcome::Failed(e.to_string()))),
        }
    }
    let claim_ms = started.elapsed().as_secs_f64() * 1e3;
    // The committee sees the same inputs; its members' batchers run alongside
    // the main model's. Only committee projects pay for the copies. A job
    // waits for room in each queue (back-pressure from HTTP callers delays
    // it) instead of being told "busy".
    let member_runs: Vec<_> = committee
        .iter()
        .map(|m| m.predict_job(inputs.clone()))
        .collect();
    let (results, member_results) = tokio::join!(
        loaded.predict_job(inputs),
        futures_util::future::join_all(member_runs)
    );
    let predict_ms = started.elapsed().as_secs_f64() * 1e3 - claim_ms;
    if super::regions::has_regions(&project.task) {
        // Boxes and segments are routed by the project's calibration in
        // force; segments by its fixed threshold before the first one.
        let thresholds = super::box_calibration::thresholds(&ctx.store, &project)
            .await
            .map_err(|e| e.to_string())?;
        // The one label of a speech or OCR project's regions.
        let speech = project.labels.first().map_or("Speech", String::as_str);
        let segment_threshold = super::box_calibration::segment_threshold(&thresholds, &project);
        for (id, result) in ids.into_iter().zip(results) {
            let audit = super::box_calibration::audit_draw(&project.settings, project.id, id);
            let outcome = match result {
                Ok(pred) if project.task == super::regions::DETECT => {
                    super::regions::detection_outcome(
                        &pred,
                        loaded.labels(),
                        predictor.model_version(),
                        &thresholds,
                        audit,
                    )
                }
                // Text lines are routed like segments: one threshold on the
                // line's recognition confidence.
                Ok(pred) if project.task == super::regions::LINES => super::regions::lines_outcome(
                    &pred,
                    speech,
                    predictor.model_version(),
                    segment_threshold,
                    audit,
                ),
                Ok(pred) => super::regions::segments_outcome(
                    &pred,
                    speech,
                    predictor.model_version(),
                    segment_threshold,
                    audit,
                ),
                Err(BatchError::Busy { .. }) | Err(BatchError::Closed) => continue,
                Err(BatchError::Item(e)) => Outcome::Failed(e.to_string()),
            };
            outcomes.push((id, outcome));
        }
        return record(
            ctx, job_id, started, claimed, claim_ms, predict_ms, outcomes,
        )
        .await;
    }
    let mut member_results: Vec<std::vec::IntoIter<_>> =
        member_results.into_iter().map(Vec::into_iter).collect();
    let mut members: Vec<Member<'_>> = Vec::with_capacity(committee.len());
    let first_predicted = outcomes.len();
    for (id, result) in ids.into_iter().zip(results) {
        members.clear();
        for (m, r) in committee.iter().zip(member_results.iter_mut()) {
            if let Some(Ok(p)) = r.next() {
                if let Some(c) = p.class {
                    members.push(Member {
                        labels: m.labels(),
                        probs: c.probs,
                    });
                }
            }
        }
        let outcome = match result {
            Ok(pred) => predictor.label(pred, loaded.labels(), |labels, probs| {
                (!members.is_empty()).then(|| disagreement(labels, probs, &members))
            }),
            // Not this item's fault: its lease expires and it is retried.
            Err(BatchError::Busy { .. }) | Err(BatchError::Closed) => continue,
            Err(BatchError::Item(e)) => Outcome::Failed(e.to_string()),
        };
        outcomes.push((id, outcome));
    }
    draw_audit(ctx, &project, &off_audit, &mut outcomes[first_predicted..]).await?;
    record(
        ctx, job_id, started, claimed, claim_ms, predict_ms, outcomes,
    )
    .await
}

/// Record a batch's outcomes in one transaction, count them, log the timing.
async fn record(
    ctx: &WorkerContext,
    job_id: i64,
    started: std::time::Instant,
    claimed: usize,
    claim_ms: f64,
    predict_ms: f64,
    outcomes: Vec<(i64, Outcome)>,
) -> Result<usize, String> {
    let recorded = ctx
        .store
        .complete(&ctx.worker_id, job_id, &outcomes)
        .await
        .map_err(|e| e.to_string())?;
    for (_, o) in &outcomes {
        match o {
            Outcome::Predicted(p) => ctx.metrics.labeled(p.label.as_ref().map(|_| p.auto_accept)),
            Outcome::Failed(_) => ctx.metrics.failed(),
        }
    }
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(
        job = job_id,
        claimed,
        recorded,
        claim_ms,
        predict_ms,
        record_ms = total_ms - claim_ms - predict_ms,
        "batch recorded"
    );
    Ok(claimed)
}

/// Draw the batch's predicted items into the audit sample, in item order:
/// each with the project's rate, or with certainty while its class has fewer
/// than `audit_min` audit items. The counts come from the store once per
/// batch, for the classes this batch predicted only, each up to the minimum
/// (past it the rate applies whatever the count). Items the last screen
/// found to be duplicate members or leaked are never drawn (the audit is a
/// sample of representatives; the claim reads which, see
/// [`crate::store::ClaimedItem::off_audit`]).
async fn draw_audit(
    ctx: &WorkerContext,
    project: &crate::store::Project,
    off_audit: &[i64],
    outcomes: &mut [(i64, Outcome)],
) -> Result<(), String> {
    let mut audited: HashMap<String, i64> = HashMap::new();
    if let Some(min) = project.settings.audit_min {
        let mut labels: Vec<&str> = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Predicted(p) => p.label.as_deref(),
                Outcome::Failed(_) => None,
            })
            .collect();
        labels.sort_unstable();
        labels.dedup();
        let cap = i64::try_from(min).unwrap_or(i64::MAX);
        let counts = ctx
            .store
            .audit_class_counts(project.id, &labels, cap)
            .await
            .map_err(|e| e.to_string())?;
        audited = labels.iter().map(|l| l.to_string()).zip(counts).collect();
    }
    for (id, o) in outcomes.iter_mut() {
        if let Outcome::Predicted(p) = o {
            if let Some(label) = &p.label {
                let seen = audited.entry(label.clone()).or_insert(0);
                let prob = calibration::audit_probability(&project.settings, *seen);
                p.audit_p = Some(prob);
                p.audit =
                    !off_audit.contains(id) && calibration::audit_uniform(project.id, *id) < prob;
                if p.audit {
                    *seen += 1;
                }
            }
        }
    }
    Ok(())
}

/// Record every claimed item as failed for the same reason (a model it needs is missing).
async fn fail_batch(
    ctx: &WorkerContext,
    job_id: i64,
    items: &[ClaimedItem],
    why: &str,
) -> Result<usize, String> {
    let outcomes: Vec<(i64, Outcome)> = items
        .iter()
        .map(|i| (i.id, Outcome::Failed(why.to_string())))
        .collect();
    ctx.store
        .complete(&ctx.worker_id, job_id, &outcomes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(outcomes.len())
}

/// The model input for a stored item. A path is read only under the
/// (canonical) data root, and checked again when the file is opened (see
/// [`crate::model::beneath`]): ingest checked it, but the file may have been
/// swapped for a link since.
pub fn input_for(content: Content, data_root: Option<&Arc<Path>>) -> Result<Input, ItemError> {
    Ok(match content {
        Content::Text(t) => Input::Text(t),
        Content::Image(b) => Input::Image(b),
        Content::Path(p) => match data_root {
            Some(root) => Input::ImageInRoot {
                root: root.clone(),
                path: PathBuf::from(p),
            },
            None => {
                return Err(ItemError::Invalid(format!(
                    "path item {p:?}: this server has no --data-root, and path items are only read inside one"
                )))
            }
        },
    })
}

/// One committee member's distribution for an item, in its own label order.
pub struct Member<'a> {
    pub labels: &'a [String],
    pub probs: Vec<f32>,
}

/// Vote entropy and mean KL of the main distribution (`probs` over `labels`)
/// and the members', matched by label name so members may order labels differently.
pub fn disagreement(labels: &[String], probs: &[f32], members: &[Member<'_>]) -> Disagreement {
    let aligned: Vec<Vec<f32>> = members
        .iter()
        .map(|m| {
            labels
                .iter()
                .map(|l| {
                    m.labels
                        .iter()
                        .position(|x| x == l)
                        .and_then(|j| m.probs.get(j).copied())
                        .unwrap_or(0.0)
                })
                .collect()
        })
        .collect();
    let mut all: Vec<&[f32]> = Vec::with_capacity(aligned.len() + 1);
    all.push(probs);
    all.extend(aligned.iter().map(Vec::as_slice));
    Disagreement {
        vote_entropy: strategies::vote_entropy(&all),
        mean_kl: strategies::mean_kl(&all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Prediction;
    use crate::select::Uncertainty;
    use crate::service::calibration::Scorer;
    use crate::service::predictor::Classifier;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn members_are_matched_by_label_name_not_position() {
        let project = labels(&["cat", "dog", "fox"]);
        let main = [0.7f32, 0.2, 0.1];
        // The same belief as `main`, with the labels in another order: no disagreement.
        let reordered = labels(&["fox", "cat", "dog"]);
        let same = [Member {
            labels: &reordered,
            probs: vec![0.1, 0.7, 0.2],
        }];
        let d = disagreement(&project, &main, &same);
        assert_eq!(d.vote_entropy, 0.0);
        assert!(d.mean_kl < 1e-6, "{d:?}");
        // A member voting for another class splits the vote.
        let other = [Member {
            labels: &reordered,
            probs: vec![0.1, 0.1, 0.8],
        }];
        let d = disagreement(&project, &main, &other);
        assert!((d.vote_entropy - 1.0).abs() < 1e-6, "{d:?}");
        assert!(d.mean_kl > 0.1, "{d:?}");
    }

    #[test]
    fn committee_measures_reach_the_stored_uncertainty() {
        let project = labels(&["cat", "dog"]);
        let pred = Prediction {
            class: Some(crate::model::ClassPrediction {
                index: 0,
                score: 0.9,
                probs: vec![0.9, 0.1],
                uncertainty: Uncertainty::from_distribution(&[0.9, 0.1]),
            }),
            embedding: None,
            truncated: false,
            detections: None,
            segments: None,
            ocr: None,
        };
        let member = [Member {
            labels: &project,
            probs: vec![0.2, 0.8],
        }];
        let predictor = ProjectPredictor::from_parts(
            Classifier::Model,
            Scorer::fixed(Some(0.95)),
            &project,
            "v1",
        );
        let Outcome::Predicted(p) = predictor.label(pred, &project, |labels, probs| {
            Some(disagreement(labels, probs, &member))
        }) else {
            panic!("expected a prediction");
        };
        let d = p
            .disagreement
            .expect("a committee project records disagreement");
        assert!((d.vote_entropy - 1.0).abs() < 1e-6);
        assert!(d.mean_kl > 0.0);
        assert!(p.uncertainty.is_some(), "the margin etc. are stored too");
    }
}

#[cfg(test)]
mod failing_tests {
    use super::Failing;

    #[test]
    fn a_run_of_failures_logs_once_per_interval_and_ends_on_success() {
        let mut f = Failing::default();
        f.failed(0, "the database's disk is full");
        let first = f.logged;
        assert!(first.is_some());
        for _ in 0..10 {
            f.failed(0, "the database's disk is full");
        }
        assert_eq!(f.logged, first, "logged again within the interval");
        assert_eq!(f.count, 11);
        f.recovered(0);
        assert!(f.since.is_none() && f.logged.is_none() && f.count == 0);
    }
}
