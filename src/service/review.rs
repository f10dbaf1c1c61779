//! Review: the use cases experts drive, written once for every adapter (the
//! JSON API, the review page, Label Studio). Leasing the next items by a
//! strategy within the annotator's tier, recording an annotation (and whether
//! it waits for an expert's confirmation), giving leases back, project
//! settings, tiers and training the head.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::app::App;
use super::calibration;
use super::error::{Code, ServiceError, ServiceResult};
use super::exclusive;
use super::learn::{self, LearnError, Trained};
use crate::calibrate;
use crate::select::rng::Rng;
use crate::select::strategies::{self, Pool};
use crate::select::{Measure, Strategy};
use crate::store::{ItemRecord, Opened, Project, ProjectSettings, ReviewDraw, ReviewFilter, Store};

/// Longest review lease a project may set: a day, so that a lost tab frees
/// its items (the store clamps with the same bound before multiplying).
pub const MAX_LEASE_SECS: u64 = crate::store::MAX_REVIEW_LEASE_SECS;
/// Largest `train_every`: beyond it automatic training would never run anyway.
pub const MAX_TRAIN_EVERY: u64 = 1_000_000;
/// Largest review page.
pub const MAX_PAGE: i64 = 500;

/// Who is acting. The name comes from the caller's token; an admin may act
/// for someone else, and then `on_behalf_by` records the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotator {
    pub name: String,
    /// The admin who recorded this for `name`, when it is not `name` itself.
    pub on_behalf_by: Option<String>,
}

/// A review page leased to an annotator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewList {
    pub annotator: String,
    /// The annotator's tier, when the project has tiers.
    pub tier: Option<String>,
    pub strategy: String,
    pub lease_secs: i64,
    pub items: Vec<ItemRecord>,
}

/// What a training ended with, as every request that joined it gets it.
type TrainOutcome = Result<Trained, (Code, String)>;

/// The trainings this process runs, by project: every request for a
/// project's training while one runs here joins it (and gets its answer)
/// instead of training another head. Across replicas the store decides
/// (see [`lead_training`]).
#[derive(Debug, Default)]
pub struct TrainingGuard(Mutex<HashMap<i64, watch::Receiver<Option<TrainOutcome>>>>);

impl TrainingGuard {
    fn running(&self, project_id: i64) -> bool {
        let running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        running.contains_key(&project_id)
    }
}

/// Takes the project out of the guard when its training task ends (or panics).
struct Leaving {
    guard: Arc<TrainingGuard>,
    project_id: i64,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        let mut running = self.guard.0.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&self.project_id);
    }
}

/// The measure that bands tiers and ranks the diversity strategies' candidates.
fn tier_measure(settings: &ProjectSettings) -> Measure {
    settings
        .tier_measure
        .as_deref()
        .and_then(Measure::parse)
        .unwrap_or(Measure::Margin)
}

/// The annotator's tier: their stored one if the project has it, else the lowest.
pub(crate) async fn tier_of(
    app: &App,
    settings: &ProjectSettings,
    name: &str,
) -> ServiceResult<String> {
    Ok(match app.store.annotator_tier(name).await? {
        Some(t) if settings.band(&t).is_some() => t,
        _ => settings.lowest_tier().unwrap_or_default(),
    })
}

/// Which review list: ranked by a selection strategy, the audit sample, or
/// the suspected label errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOrder {
    Ranked(Strategy),
    /// Audit items waiting for a label, any tier, oldest first: their labels
    /// test the thresholds, so they are not ranked by uncertainty.
    Audit,
    /// Human labels that confident learning doubts, most suspicious first.
    Suspect,
    /// Items the last screen flagged as outliers, waiting for a person,
    /// most unusual first (`service::screening`).
    Outliers,
    /// One item per duplicate group of the last screen (its
    /// representative), waiting for a person.
    Duplicates,
    /// Items the last screen found copying an item of an earlier split or
    /// of the reference project, waiting for a person, closest copy first.
    Leaks,
}

impl ReviewOrder {
    pub fn parse(name: &str) -> Option<ReviewOrder> {
        match name {
            "audit" => Some(ReviewOrder::Audit),
            "suspect" => Some(ReviewOrder::Suspect),
            "outliers" => Some(ReviewOrder::Outliers),
            "duplicates" => Some(ReviewOrder::Duplicates),
            "leaks" => Some(ReviewOrder::Leaks),
            other => Strategy::parse(other).map(ReviewOrder::Ranked),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewOrder::Ranked(s) => s.as_str(),
            ReviewOrder::Audit => "audit",
            ReviewOrder::Suspect => "suspect",
            ReviewOrder::Outliers => "outliers",
            ReviewOrder::Duplicates => "duplicates",
            ReviewOrder::Leaks => "leaks",
        }
    }

    /// Every list's name, for error messages and the page.
    pub fn names() -> Vec<&'static str> {
        let mut v: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
        v.extend(["audit", "suspect", "outliers", "duplicates", "leaks"]);
        v
    }
}

/// Lease the next `limit` items for `annotator` from the list `order`: a
/// strategy's ranking within the band of their tier (the top tier also gets
/// items awaiting confirmation), the audit sample, or the suspects.
pub async fn next_items(
    app: &App,
    project_id: i64,
    annotator: &Annotator,
    order: ReviewOrder,
    limit: i64,
) -> ServiceResult<ReviewList> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServiceError::invalid(
            "limit",
            format!("an integer in 1..={MAX_PAGE}"),
        ));
    }
    let project = app.store.get_project(project_id).await?;
    let strategy = match order {
        ReviewOrder::Ranked(s) => s,
        ReviewOrder::Audit
        | ReviewOrder::Suspect
        | ReviewOrder::Outliers
        | ReviewOrder::Duplicates
        | ReviewOrder::Leaks => {
            return special_list(app, &project, annotator, order, limit).await;
        }
    };
    let settings = &project.settings;
    if settings.review_sampling.as_deref() == Some("proportional") {
        // The randomised rule replaces the ranking (tiers are refused with it).
        let lease_ms = settings.review_lease_ms();
        let mut items = draw_proportional(app, &project, &annotator.name, limit, lease_ms).await?;
        with_regions(app, &project, &mut items).await?;
        return Ok(ReviewList {
            annotator: annotator.name.clone(),
            tier: None,
            strategy: "proportional".to_string(),
            lease_secs: lease_ms / 1000,
            items,
        });
    }
    let measure = tier_measure(settings);
    let (tier, filter) = if settings.tiers.is_empty() {
        (
            None,
            ReviewFilter {
                band: None,
                confirmations: true,
            },
        )
    } else {
        let tier = tier_of(app, settings, &annotator.name).await?;
        let top = settings.top_tier().as_deref() == Some(tier.as_str());
        let filter = ReviewFilter {
            band: settings.band(&tier),
            confirmations: top,
        };
        (Some(tier), filter)
    };
    if (strategy.needs_committee() || measure.needs_committee()) && project.committee.is_empty() {
        return Err(ServiceError::new(
            Code::StrategyUnavailable,
            format!(
                "strategy {:?} ranks by committee disagreement, and project {project_id} has one model; create a project with `committee` (extra models with the same labels) to use it",
                strategy.as_str()
            ),
        ));
    }
    let lease_ms = settings.review_lease_ms();
    let who = annotator.name.as_str();
    let items = match strategy.stored_measure() {
        Some(order) => {
            app.store
                .lease_review(project_id, who, order, filter, limit, lease_ms)
                .await?
        }
        None => {
            // Before a head, a text project's scores are zero-shot guesses:
            // the seed set should represent the pool, not its outliers.
            let untrained = project.head_version.is_none()
                && app.hub.get(&project.model).is_some_and(|m| {
                    m.model.manifest().task == crate::model::manifest::Task::TextEmbedding
                });
            let ids =
                choose_in_memory(app, project_id, strategy, measure, filter, limit, untrained)
                    .await?;
            app.store.lease_ids(&ids, who, lease_ms).await?
        }
    };
    let mut items = items;
    with_regions(app, &project, &mut items).await?;
    Ok(ReviewList {
        annotator: annotator.name.clone(),
        tier,
        strategy: strategy.as_str().to_string(),
        lease_secs: lease_ms / 1000,
        items,
    })
}

/// `review_sampling = "proportional"`: draw `limit` items one at a time,
/// without replacement, from every unlabeled non-audit item (auto-accepted
/// ones too) with [`calibrate::review_design`]'s probabilities, and store
/// each draw's probability with the item (so that its label can count
/// towards the bound with its inverse-probability weight).
async fn draw_proportional(
    app: &App,
    project: &Project,
    who: &str,
    limit: i64,
    lease_ms: i64,
) -> ServiceResult<Vec<ItemRecord>> {
    let all = app.store.review_draw_candidates(project.id, who).await?;
    let (mut ids, mut scores, mut open) = (Vec::new(), Vec::new(), Vec::new());
    for c in all {
        if c.score.is_finite() {
            ids.push(c.id);
            scores.push(c.score);
            open.push(c.open);
        } else {
            tracing::warn!(
                item = c.id,
                "review draw: item without a finite score skipped"
            );
        }
    }
    let u = project
        .settings
        .uniform_share
        .unwrap_or(crate::store::DEFAULT_UNIFORM_SHARE);
    let mut rng = Rng::new(crate::store::now_ms() as u64 ^ (project.id as u64).rotate_left(32));
    let mut draws = Vec::new();
    while (draws.len() as i64) < limit && !ids.is_empty() {
        let q = calibrate::review_design(&scores, &open, u)
            .map_err(|e| ServiceError::internal(format!("review draw: {e}")))?;
        let p_min = q.iter().copied().fold(1.0, f64::min);
        let j = calibrate::ipw::draw(&q, rng.unit());
        draws.push(ReviewDraw {
            id: ids.swap_remove(j),
            p: q[j],
            p_min,
        });
        scores.swap_remove(j);
        open.swap_remove(j);
    }
    Ok(app.store.lease_drawn(&draws, who, lease_ms).await?)
}

/// The audit and suspect lists: no tier band (any tier may answer an audit
/// item; suspects go to whoever checks them).
async fn special_list(
    app: &App,
    project: &Project,
    annotator: &Annotator,
    order: ReviewOrder,
    limit: i64,
) -> ServiceResult<ReviewList> {
    let lease_ms = project.settings.review_lease_ms();
    let tier = if project.settings.tiers.is_empty() {
        None
    } else {
        Some(tier_of(app, &project.settings, &annotator.name).await?)
    };
    let items = match order {
        ReviewOrder::Audit => {
            let ids = app.store.audit_candidates(project.id, limit).await?;
            app.store.lease_ids(&ids, &annotator.name, lease_ms).await?
        }
        ReviewOrder::Outliers | ReviewOrder::Duplicates | ReviewOrder::Leaks => {
            let ids = app
                .store
                .screen_review_candidates(project.id, order.as_str(), limit)
                .await?;
            app.store.lease_ids(&ids, &annotator.name, lease_ms).await?
        }
        _ => {
            // Suspects are labeled items: shown for a second look, not leased.
            let ids: Vec<i64> = calibration::suspects(app, project.id)
                .await?
                .into_iter()
                .take(limit as usize)
                .collect();
            let mut items = app.store.items_by_ids(&ids).await?;
            let pos: std::collections::HashMap<i64, usize> =
                ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            items.retain(|i| i.status == "labeled");
            items.sort_by_key(|i| pos.get(&i.id).copied());
            for i in &mut items {
                i.suspect = true;
            }
            items
        }
    };
    let mut items = items;
    with_regions(app, project, &mut items).await?;
    Ok(ReviewList {
        annotator: annotator.name.clone(),
        tier,
        strategy: order.as_str().to_string(),
        lease_secs: lease_ms / 1000,
        items,
    })
}

/// A detection project's review items come with their regions, so the
/// reviewer sees the machine's boxes already drawn.
async fn with_regions(app: &App, project: &Project, items: &mut [ItemRecord]) -> ServiceResult<()> {
    if super::regions::has_regions(&project.task) {
        app.store.attach_regions(items).await?;
    }
    Ok(())
}

/// Diversity-aware strategies (and random) choose among the most uncertain
/// free candidates in memory; without scores yet (or, for k-center, without
/// a trained head), cold start picks representative, spread-out items.
async fn choose_in_memory(
    app: &App,
    project_id: i64,
    strategy: Strategy,
    measure: Measure,
    filter: ReviewFilter,
    limit: i64,
    untrained: bool,
) -> ServiceResult<Vec<i64>> {
    let candidates = app
        .store
        // Untrained k-center seeds from the whole pool (up to the cold-start
        // sample size), not from the items zero-shot finds most uncertain.
        .review_candidates(
            project_id,
            measure,
            filter.band,
            if untrained && strategy == Strategy::KCenter {
                strategies::COLD_START_SAMPLE
            } else {
                (limit * 20).max(200)
            },
        )
        .await?;
    let dim = candidates.first().map(|c| c.embedding.len()).unwrap_or(0);
    let probs: Vec<Vec<f32>> = candidates.iter().map(|c| c.probs.clone()).collect();
    let embeddings: Vec<f32> = candidates
        .iter()
        .filter(|c| c.embedding.len() == dim)
        .flat_map(|c| c.embedding.iter().copied())
        .collect();
    let cold = probs.iter().all(Vec::is_empty) || untrained && strategy == Strategy::KCenter;
    let limit = limit as usize;
    let chosen =
        if cold || strategy == Strategy::KCenter && embeddings.len() != candidates.len() * dim {
            strategies::cold_start(&embeddings, dim, candidates.len(), limit, 0)
        } else {
            let pool = Pool {
                probs: &probs,
                embeddings: &embeddings,
                dim,
                committee: &[],
            };
            strategies::select(strategy, &pool, &[], limit, 0)
                .map_err(|e| ServiceError::new(Code::StrategyUnavailable, e.to_string()))?
        };
    Ok(chosen
        .into_iter()
        .filter_map(|i| candidates.get(i).map(|c| c.id))
        .collect())
}

/// Give leased items back: the ones listed, or all of the annotator's.
pub async fn release(
    app: &App,
    project_id: i64,
    annotator: &Annotator,
    items: Option<&[i64]>,
) -> ServiceResult<u64> {
    app.store.get_project(project_id).await?;
    Ok(app
        .store
        .release_review(project_id, &annotator.name, items)
        .await?)
}

/// A recorded annotation: the item as it is now, and the annotation's id
/// (which `DELETE /v1/annotations/{id}` takes, for undo).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Annotated {
    pub annotation_id: i64,
    #[serde(flatten)]
    pub item: ItemRecord,
}

/// Record a human label (see [`record`]); the item as it is now.
pub async fn annotate(
    app: &App,
    item_id: i64,
    label: &str,
    annotator: &Annotator,
) -> ServiceResult<ItemRecord> {
    Ok(record(app, item_id, label, annotator).await?.item)
}

/// Record a human label. A lower tier's label on an item in the top tier's
/// band waits for a top-tier confirmation when the project asks for it; an
/// annotation may trigger automatic training.
pub async fn record(
    app: &App,
    item_id: i64,
    label: &str,
    annotator: &Annotator,
) -> ServiceResult<Annotated> {
    let item = app.store.get_item(item_id).await?;
    if item.status == "rejected" {
        return Err(ServiceError::new(
            Code::Conflict,
            format!(
                "item {item_id} was rejected as an outlier (a screening verdict): undo the verdict (DELETE /v1/projects/{}/issues/{{issue}}/verdict) before labeling it",
                item.project_id
            ),
        ));
    }
    let project = app.store.get_project(item.project_id).await?;
    if super::regions::has_regions(&project.task) {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "item {item_id} belongs to a {} project: record its regions with PUT /v1/projects/{}/items/{item_id}/regions",
                match project.task.as_str() {
                    super::regions::SEGMENTS => "speech",
                    super::regions::LINES => "OCR",
                    _ => "detection",
                },
                project.id
            ),
        ));
    }
    if !project.labels.iter().any(|l| l == label) {
        return Err(ServiceError::new(
            Code::UnknownLabel,
            format!(
                "field `label`: {label:?} is not in the project's label set {:?}",
                project.labels
            ),
        ));
    }
    if let Some(admin) = &annotator.on_behalf_by {
        tracing::info!(item = item_id, annotator = %annotator.name, recorded_by = %admin, "annotation recorded on behalf of an annotator");
    }
    let annotation_id = if needs_confirmation(app, &project, item_id, &annotator.name).await? {
        app.store
            .annotate_pending_confirmation(item_id, label, &annotator.name)
            .await?
    } else {
        let id = app.store.annotate(item_id, label, &annotator.name).await?;
        resolve_conflict(app, &project, item_id).await?;
        // Screening (issue 25): the item's duplicates take its label.
        super::screening::after_label(app, item_id).await;
        id
    };
    maybe_autotrain(app, &project);
    if item.audit {
        calibration::after_audit_label(&app.calibrator, &project);
    }
    Ok(Annotated {
        annotation_id,
        item: app.store.get_item(item_id).await?,
    })
}

/// When annotators disagree on an item, settle its final label: by majority
/// of each annotator's latest label (ties: the latest label among the tied),
/// or, with `conflict_resolution = "expert"`, the top tier's latest label
/// when there is one. The provenance is stored in `resolution`.
async fn resolve_conflict(app: &App, project: &Project, item_id: i64) -> ServiceResult<()> {
    let item = app.store.get_item(item_id).await?;
    let mut latest: Vec<(&str, &str, i64)> = Vec::new(); // annotator, label, time
    for a in &item.annotations {
        match latest.iter_mut().find(|(who, _, _)| *who == a.annotator) {
            Some(e) => {
                e.1 = &a.label;
                e.2 = a.created_at;
            }
            None => latest.push((&a.annotator, &a.label, a.created_at)),
        }
    }
    let distinct: HashSet<&str> = latest.iter().map(|e| e.1).collect();
    if latest.len() < 2 || distinct.len() < 2 {
        return Ok(());
    }
    let settings = &project.settings;
    if settings.conflict_resolution.as_deref() == Some("expert") {
        if let Some(top) = settings.top_tier() {
            let mut expert: Option<(&str, i64)> = None;
            for (who, label, at) in &latest {
                if tier_of(app, settings, who).await? == top && expert.is_none_or(|e| *at >= e.1) {
                    expert = Some((label, *at));
                }
            }
            if let Some((label, _)) = expert {
                app.store.resolve_item(item_id, label, "expert").await?;
                return Ok(());
            }
        }
    }
    let mut votes: Vec<(&str, usize, i64)> = Vec::new();
    for (_, label, at) in &latest {
        match votes.iter_mut().find(|v| v.0 == *label) {
            Some(v) => {
                v.1 += 1;
                v.2 = v.2.max(*at);
            }
            None => votes.push((label, 1, *at)),
        }
    }
    votes.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    if let Some((label, _, _)) = votes.first() {
        app.store.resolve_item(item_id, label, "majority").await?;
    }
    Ok(())
}

async fn needs_confirmation(
    app: &App,
    project: &Project,
    item_id: i64,
    annotator: &str,
) -> ServiceResult<bool> {
    let settings = &project.settings;
    if !settings.require_expert_confirmation || settings.tiers.is_empty() {
        return Ok(false);
    }
    let top = settings.top_tier().unwrap_or_default();
    if tier_of(app, settings, annotator).await? == top {
        return Ok(false);
    }
    let u = app
        .store
        .item_uncertainty(item_id, tier_measure(settings))
        .await?;
    Ok(match (u, settings.band(&top)) {
        (Some(u), Some((lo, _))) => u >= lo,
        _ => false,
    })
}

/// Train a head on the human labels now (on request: the API, Label
/// Studio's `START_TRAINING`). One training per project at a time: a
/// request while one runs (here or on another replica) joins it and gets
/// its answer. The training runs in its own task, so a caller that goes
/// away stops nothing.
pub async fn train(app: &App, project_id: i64) -> ServiceResult<Trained> {
    let project = app.store.get_project(project_id).await?;
    if project.task == super::regions::SEGMENTS {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "project {project_id} is a speech project: it has no head to train; its segments \
                 are routed by the project's threshold"
            ),
        ));
    }
    if project.task == super::regions::DETECT {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "project {project_id} is a detection project: it has no head to train; its boxes \
                 learn from corrections through box calibration (POST /v1/projects/{project_id}/calibrate)"
            ),
        ));
    }
    if project.task == super::regions::LINES {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "project {project_id} is an OCR project: it has no head to train; its lines \
                 learn from transcriptions through page calibration (POST /v1/projects/{project_id}/calibrate)"
            ),
        ));
    }
    let mut rx = Trainer::of(app).join_or_start(&project);
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(o) => o.clone(),
        Err(_) => None,
    };
    match outcome {
        Some(Ok(t)) => Ok(t),
        Some(Err((code, message))) => Err(ServiceError::new(code, message)),
        None => Err(ServiceError::internal("the training task stopped")),
    }
}

/// What a training needs of the app, cheap to clone into its task.
#[derive(Clone)]
struct Trainer {
    store: Store,
    hub: Arc<super::hub::ModelHub>,
    wake: Arc<tokio::sync::Notify>,
    calibrator: calibration::Calibrator,
    training: Arc<TrainingGuard>,
}

impl Trainer {
    fn of(app: &App) -> Trainer {
        Trainer {
            store: app.store.clone(),
            hub: app.hub.clone(),
            wake: app.wake_workers.clone(),
            calibrator: app.calibrator.clone(),
            training: app.training.clone(),
        }
    }

    /// Join this process's training of the project, or start one.
    fn join_or_start(&self, project: &Project) -> watch::Receiver<Option<TrainOutcome>> {
        let mut running = self.training.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = running.get(&project.id) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        running.insert(project.id, rx.clone());
        drop(running);
        let leaving = Leaving {
            guard: self.training.clone(),
            project_id: project.id,
        };
        let t = self.clone();
        let project_id = project.id;
        let base = self
            .hub
            .get(&project.model)
            .map(|m| m.model.version().to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            let outcome = lead_training(&t.store, project_id, &base).await;
            if outcome.is_ok() {
                t.wake.notify_waiters();
                calibration::after_training(&t.calibrator, project_id);
            }
            let _ = tx.send(Some(outcome));
            drop(leaving);
        });
        rx
    }
}

/// What a finished training job keeps for requests on other replicas that joined it.
#[derive(Serialize, Deserialize)]
struct TrainingRecord {
    version: i64,
    model_version: String,
    trained_on: usize,
    classes_seen: usize,
    train_accuracy: f64,
    repredict_job: i64,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Open the project's training job and train under it, or, when one is
/// open already (another replica trains), wait for its answer.
async fn lead_training(store: &Store, project_id: i64, base: &str) -> TrainOutcome {
    let internal = |e: crate::store::StoreError| -> (Code, String) {
        let e: ServiceError = e.into();
        (e.code, e.message)
    };
    let opened = store
        .open_exclusive(
            project_id,
            exclusive::TRAIN,
            "training",
            exclusive::runner(),
            exclusive::lease_ms(),
        )
        .await
        .map_err(internal)?;
    let job = match opened {
        Opened::Joined(job) => return joined_training(store, job.id).await,
        Opened::New(job) => job,
    };
    crate::failpoint::hit("training-opened");
    let trained = exclusive::hold(store, job.id, learn::train_head(store, project_id, base))
        .await
        .ok_or((
            Code::Internal,
            "another server took this training over".to_string(),
        ))?;
    let (record, outcome) = match trained {
        Ok(t) => (
            TrainingRecord {
                version: t.version,
                model_version: t.model_version.clone(),
                trained_on: t.trained_on,
                classes_seen: t.classes_seen,
                train_accuracy: t.train_accuracy,
                repredict_job: t.repredict_job.id,
                code: None,
                message: None,
            },
            Ok(t),
        ),
        Err(e) => {
            let e = learn_error(e);
            (
                TrainingRecord {
                    version: 0,
                    model_version: String::new(),
                    trained_on: 0,
                    classes_seen: 0,
                    train_accuracy: 0.0,
                    repredict_job: 0,
                    code: Some(e.code.as_str().to_string()),
                    message: Some(e.message.clone()),
                },
                Err((e.code, e.message)),
            )
        }
    };
    let json = serde_json::to_string(&record).ok();
    if let Err(e) = store
        .finish_exclusive(
            job.id,
            exclusive::runner(),
            outcome.is_ok(),
            json.as_deref(),
        )
        .await
    {
        tracing::warn!(job = job.id, error = %e, "could not record the training job's end");
    }
    outcome
}

/// Wait for another replica's training job to end, and answer as it did.
async fn joined_training(store: &Store, job_id: i64) -> TrainOutcome {
    let internal = |e: crate::store::StoreError| -> (Code, String) {
        let e: ServiceError = e.into();
        (e.code, e.message)
    };
    let (state, result) = loop {
        if let Some(end) = store.job_outcome(job_id).await.map_err(internal)? {
            break end;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let record = result.and_then(|r| serde_json::from_str::<TrainingRecord>(&r).ok());
    match (state.as_str(), record) {
        ("done", Some(r)) => Ok(Trained {
            version: r.version,
            model_version: r.model_version,
            trained_on: r.trained_on,
            classes_seen: r.classes_seen,
            train_accuracy: r.train_accuracy,
            repredict_job: store.get_job(r.repredict_job).await.map_err(internal)?,
        }),
        (_, Some(r)) if r.code.as_deref() == Some(Code::NotEnoughLabels.as_str()) => {
            Err((Code::NotEnoughLabels, r.message.unwrap_or_default()))
        }
        _ => Err((
            Code::Internal,
            format!("the training it joined (job {job_id}) failed"),
        )),
    }
}

fn learn_error(e: LearnError) -> ServiceError {
    match e {
        LearnError::Store(e) => e.into(),
        LearnError::NotEnough(why) => ServiceError::new(Code::NotEnoughLabels, why),
        LearnError::Train(why) => ServiceError::internal(why),
    }
}

/// After an annotation: retrain in the background if `train_every` new
/// human labels arrived since the current head, unless a training for the
/// project is already running (it then covers this label or the next one
/// triggers again).
fn maybe_autotrain(app: &App, project: &Project) {
    let every = match project.settings.train_every {
        Some(every) if every > 0 => every.min(MAX_TRAIN_EVERY) as i64,
        _ => return,
    };
    if app.training.running(project.id) {
        return;
    }
    let trainer = Trainer::of(app);
    let project = project.clone();
    tokio::spawn(async move {
        let project_id = project.id;
        let (Ok(labeled), Ok(trained_on)) = (
            trainer.store.human_labeled_count(project_id).await,
            trainer.store.head_trained_on(project_id).await,
        ) else {
            return;
        };
        if labeled - trained_on < every {
            return;
        }
        let mut rx = trainer.join_or_start(&project);
        match rx.wait_for(Option::is_some).await.map(|o| o.clone()) {
            Ok(Some(Ok(t))) => tracing::info!(
                project = project_id,
                version = t.version,
                "automatic retraining done"
            ),
            Ok(Some(Err((Code::NotEnoughLabels, why)))) => {
                tracing::debug!(project = project_id, %why, "not retraining yet")
            }
            Ok(Some(Err((_, why)))) => {
                tracing::warn!(project = project_id, error = %why, "automatic retraining failed")
            }
            _ => {}
        }
    });
}

/// Check project settings: names, bands, the measure, and every number
/// bounded before anything does arithmetic with it.
pub fn validate_settings(s: &ProjectSettings) -> ServiceResult<()> {
    let mut names = HashSet::new();
    for t in &s.tiers {
        if t.name.trim().is_empty() || !names.insert(t.name.as_str()) {
            return Err(ServiceError::invalid(
                "settings.tiers",
                "tier names must be distinct and non-empty",
            ));
        }
        if !(0.0..=1.0).contains(&t.min_uncertainty) {
            return Err(ServiceError::invalid(
                "settings.tiers[].min_uncertainty",
                "must be in [0, 1]",
            ));
        }
    }
    let mut mins: Vec<f64> = s.tiers.iter().map(|t| t.min_uncertainty).collect();
    mins.sort_by(f64::total_cmp);
    if mins.windows(2).any(|w| w[0] == w[1]) {
        return Err(ServiceError::invalid(
            "settings.tiers[].min_uncertainty",
            "two tiers share a minimum, so one of them would get an empty band; give each tier its own",
        ));
    }
    if let Some(m) = &s.tier_measure {
        if Measure::parse(m).is_none() {
            return Err(ServiceError::invalid(
                "settings.tier_measure",
                format!("one of {}", Measure::names()),
            ));
        }
    }
    if let Some(secs) = s.review_lease_secs {
        if !(1..=MAX_LEASE_SECS).contains(&secs) {
            return Err(ServiceError::invalid(
                "settings.review_lease_secs",
                format!("must be in 1..={MAX_LEASE_SECS} seconds"),
            ));
        }
    }
    if let Some(every) = s.train_every {
        if every > MAX_TRAIN_EVERY {
            return Err(ServiceError::invalid(
                "settings.train_every",
                format!("must be in 0..={MAX_TRAIN_EVERY} annotations (0: only on request)"),
            ));
        }
    }
    if let Some(m) = &s.text_match {
        if crate::calibrate::matching::TextMatch::parse(m).is_none() {
            return Err(ServiceError::invalid(
                "settings.text_match",
                "one of exact, relaxed",
            ));
        }
    }
    if s.review_sampling.as_deref() == Some("proportional") && !s.tiers.is_empty() {
        return Err(ServiceError::invalid(
            "settings.review_sampling",
            "proportional draws over the whole queue, so it is not combined with tiers",
        ));
    }
    if let Some(m) = s.line_agreement_min {
        if !(0.0..=1.0).contains(&m) {
            return Err(ServiceError::invalid(
                "settings.line_agreement_min",
                "must be in [0, 1] (character-level agreement of two transcriptions)",
            ));
        }
    }
    calibration::validate(s)
}

/// Replace a project's settings.
pub async fn update_settings(
    app: &App,
    project_id: i64,
    settings: &ProjectSettings,
) -> ServiceResult<Project> {
    validate_settings(settings)?;
    app.store.update_settings(project_id, settings).await?;
    Ok(app.store.get_project(project_id).await?)
}

/// Set an annotator's tier.
pub async fn set_tier(app: &App, name: &str, tier: &str) -> ServiceResult<()> {
    if tier.trim().is_empty() || name.trim().is_empty() {
        return Err(ServiceError::invalid(
            "tier",
            "annotator name and `tier` must not be empty",
        ));
    }
    Ok(app.store.set_annotator_tier(name, tier).await?)
}
