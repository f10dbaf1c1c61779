//! Screening a project (issue 25): the detectors of [`crate::screen`] run
//! over the project's items with the embeddings the pre-labeling stored,
//! as an exclusive background job (one per project at a time). The results
//! replace the previous screen's, and the items they hold — outliers, dark,
//! blurry and odd-sized images — leave `auto_accepted` for review and are
//! never auto-accepted afterwards (see `store::screening`).
//!
//! Outliers are tested against a reference: another project on the same
//! model (`reference_project`, whose items are also what leaks copy), else
//! the project's own human-labeled items once there are enough of them for
//! the conformal test at α. Before a reference exists, Datalab's
//! within-pool rule decides, and the screening says so (`rule`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use super::exclusive;
use crate::model::beneath::read_beneath;
use crate::screen::outliers::{self, OutlierMethod, OutlierOptions};
use crate::screen::report::{
    self, BatchReport, Compared, Content as ScreenContent, Of, Report, ScreenItem, ScreenOptions,
};
use crate::store::{
    now_ms, Content, IssueRow, Job, KindFilter, NewIssue, Opened, ScreenRow, ScreenRun, Store,
};

/// The kind of a screen job.
pub const SCREEN: &str = "screen";

/// Issue types that keep an item from being auto-accepted.
pub const HOLDING: [&str; 4] = [
    "outlier",
    "quality:dark",
    "quality:blurry",
    "quality:odd_size",
];

/// Every issue type a screen writes; `quality` and `pii` also name their family.
pub const TYPES: [&str; 20] = [
    "exact_duplicate",
    "near_duplicate",
    "conflict",
    "outlier",
    "leak",
    "quality",
    "quality:dark",
    "quality:light",
    "quality:blurry",
    "quality:constant",
    "quality:odd_size",
    "quality:low_information",
    "quality:empty",
    "quality:garbage",
    "quality:odd_length",
    "pii",
    "pii:email",
    "pii:phone",
    "pii:card",
    "pii:iban",
];

/// A near-duplicate group takes a person's label only when every member's
/// similarity reached this (character 5-gram Jaccard for texts, shifted
/// pixel correlation for images): looser groups hold look-alikes that may
/// deserve another label, and a reviewer sees them side by side instead.
pub const PROPAGATE_NEAR: f64 = 0.9;

/// Most issues on one page.
pub const MAX_PAGE: i64 = 1000;

/// What a screen request may set.
#[derive(Debug, Clone, Copy)]
pub struct ScreenSettings {
    /// False-positive rate of the conformal outlier test, in (0, 0.5].
    pub alpha: f64,
    /// Another project on the same model: the outlier test's reference,
    /// and what leaks are copies of.
    pub reference_project: Option<i64>,
    /// Screen every item again, not only those added since the last screen.
    pub full: bool,
}

impl Default for ScreenSettings {
    fn default() -> Self {
        ScreenSettings {
            alpha: OutlierOptions::default().alpha,
            reference_project: None,
            full: false,
        }
    }
}

/// Check the request, then open the project's screen job (or join the one
/// open already: its settings stand) and run it in the background.
pub async fn start(
    app: &Arc<App>,
    project_id: i64,
    settings: ScreenSettings,
) -> ServiceResult<Job> {
    let project = app.store.get_project(project_id).await?;
    if outliers::check_alpha(settings.alpha).is_err() {
        return Err(ServiceError::invalid(
            "alpha",
            format!("must lie in (0, 0.5], got {}", settings.alpha),
        ));
    }
    if let Some(r) = settings.reference_project {
        if r == project_id {
            return Err(ServiceError::invalid(
                "reference_project",
                "a project cannot be its own reference project; leave it out to test against the project's human labels",
            ));
        }
        let reference = app.store.get_project(r).await.map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => {
                ServiceError::invalid("reference_project", format!("project {r} does not exist"))
            }
            other => other.into(),
        })?;
        if reference.model != project.model {
            return Err(ServiceError::invalid(
                "reference_project",
                format!(
                    "project {r} is on model {:?}, project {project_id} on model {:?}: embeddings of different models cannot be compared",
                    reference.model, project.model
                ),
            ));
        }
        let (_, embedded) = app.store.embedded_counts(r).await?;
        let k = OutlierOptions::default().k;
        if embedded == 0 {
            return Err(ServiceError::new(
                Code::Conflict,
                format!(
                    "reference project {r} has no embeddings yet: ingest its items and let its pre-labeling job finish (GET /v1/jobs/{{id}}), then screen"
                ),
            ));
        }
        if embedded <= k as i64 {
            return Err(ServiceError::new(
                Code::Conflict,
                format!(
                    "reference project {r} has {embedded} items with embeddings; the outlier test needs more than {k}: ingest more items into it, then screen"
                ),
            ));
        }
    }
    let (total, embedded) = app.store.embedded_counts(project_id).await?;
    if embedded == 0 {
        let what = if total == 0 {
            format!("project {project_id} has no items yet: ingest items (POST /v1/projects/{project_id}/items) and let the pre-labeling job finish, then screen")
        } else {
            format!("project {project_id} has no embeddings yet ({total} items, none pre-labeled with an embedding): let the pre-labeling job finish (GET /v1/jobs/{{id}}) on a model with an embedding output, then screen")
        };
        return Err(ServiceError::new(Code::Conflict, what));
    }
    let opened = app
        .store
        .open_exclusive(
            project_id,
            SCREEN,
            "screening",
            exclusive::runner(),
            exclusive::lease_ms(),
        )
        .await?;
    if let Opened::New(job) = &opened {
        let app = app.clone();
        let job_id = job.id;
        tokio::spawn(async move { run_job(&app, project_id, job_id, settings).await });
    }
    Ok(opened.job().clone())
}

/// Screen under job `job_id`, which this process runs, and end the job.
async fn run_job(app: &App, project_id: i64, job_id: i64, settings: ScreenSettings) {
    let Some(outcome) =
        exclusive::hold(&app.store, job_id, run(app, project_id, job_id, settings)).await
    else {
        return;
    };
    let (ok, result) = match outcome {
        Ok(run) => {
            tracing::info!(
                project = project_id,
                items = run.items,
                held = run.held,
                rule = run.rule.as_deref().unwrap_or("none"),
                "screened"
            );
            (
                true,
                serde_json::json!({"items": run.items, "held": run.held, "mode": run.mode,
                                   "compared": run.compared}),
            )
        }
        Err(e) => {
            tracing::warn!(project = project_id, error = %e.message, "screening failed");
            let message = if e.code == Code::Internal {
                "the screen failed on the server; see its log".to_string()
            } else {
                e.message
            };
            (false, serde_json::json!({"error": message}))
        }
    };
    let result = result.to_string();
    if let Err(e) = app
        .store
        .finish_exclusive(job_id, exclusive::runner(), ok, Some(&result))
        .await
    {
        tracing::warn!(job = job_id, error = %e, "could not record the screen job's end");
    }
}

/// Decode stored items for the screen; those that cannot be read are left
/// out and counted.
fn decode(rows: Vec<ScreenRow>, root: Option<PathBuf>) -> (Vec<i64>, Vec<ScreenItem>, usize) {
    use rayon::prelude::*;
    let decoded: Vec<Option<(i64, ScreenItem)>> = rows
        .into_par_iter()
        .map(|r| {
            let content = match r.content {
                Content::Text(t) => ScreenContent::Text(t),
                Content::Image(bytes) => report::decode_image(&bytes).ok()?,
                Content::Path(p) => {
                    let root = root.as_ref()?;
                    let real = super::content::check_path(root, &p).ok()?;
                    report::decode_image(&read_beneath(root, &real).ok()?).ok()?
                }
            };
            Some((
                r.id,
                ScreenItem {
                    content,
                    embedding: Some(r.embedding),
                    split: r.split,
                },
            ))
        })
        .collect();
    let unreadable = decoded.iter().filter(|d| d.is_none()).count();
    let (ids, items) = decoded.into_iter().flatten().unzip();
    (ids, items, unreadable)
}

/// The smallest reference at which the conformal test at `alpha` with `k`
/// neighbours can flag anything: ⌈(1 − α)(n + 1)⌉ ≤ n.
pub fn min_reference(alpha: f64, k: usize) -> usize {
    let n = ((1.0 - alpha) / alpha).ceil() as usize;
    n.max(k + 1)
}

/// What one screen did.
struct Ran {
    items: i64,
    held: i64,
    rule: Option<String>,
    /// `full` or `incremental`.
    mode: &'static str,
    /// An incremental screen: what it compared.
    compared: Option<Compared>,
}

/// The screen's computation, off the async workers.
enum Computed {
    Full(Box<Report>),
    Batch(Box<BatchReport>),
    /// Incremental, and nothing new to screen.
    Nothing,
}

async fn run(
    app: &App,
    project_id: i64,
    job_id: i64,
    settings: ScreenSettings,
) -> ServiceResult<Ran> {
    let project = app.store.get_project(project_id).await?;
    let rows = app.store.screen_rows(project_id).await?;
    let reference_rows = match settings.reference_project {
        Some(r) => Some(app.store.screen_rows(r).await?),
        None => None,
    };
    let human = app.store.human_labeled_ids(project_id).await?;
    // Incremental when the last screen used the same settings: the items
    // it covered are compared with, not screened again.
    let prev = app.store.screen_run(project_id).await?;
    let prev_summary: serde_json::Value = prev
        .as_ref()
        .and_then(|r| serde_json::from_str(&r.summary).ok())
        .unwrap_or_default();
    let same_settings = prev.as_ref().is_some_and(|r| {
        r.model == project.model
            && r.alpha == settings.alpha
            && prev_summary["reference_project"].as_i64() == settings.reference_project
    });
    let screened: std::collections::HashSet<i64> = if settings.full || !same_settings {
        Default::default()
    } else {
        app.store
            .screened_items(project_id)
            .await?
            .into_iter()
            .collect()
    };
    let prev_rule = prev.as_ref().and_then(|r| r.rule.clone());
    let pool_threshold = prev_summary["outlier_threshold"].as_f64();
    let root = app.data_root.clone();
    let opts = ScreenOptions {
        outliers: OutlierOptions {
            alpha: settings.alpha,
            ..OutlierOptions::default()
        },
        ..ScreenOptions::default()
    };
    let (k, text_near, image_near) = (opts.outliers.k, opts.text.threshold, opts.image.threshold);
    let computed = tokio::task::spawn_blocking(move || {
        let (ids, items, unreadable) = decode(rows, root.clone());
        let reference = reference_rows.map(|r| decode(r, root));
        // The project's own human labels, when there are enough of them.
        let own: Option<(Vec<f32>, usize)> = if reference.is_none() {
            let wanted: std::collections::HashSet<i64> = human.into_iter().collect();
            let picked: Vec<&Vec<f32>> = ids
                .iter()
                .zip(&items)
                .filter(|(id, _)| wanted.contains(id))
                .filter_map(|(_, it)| it.embedding.as_ref())
                .collect();
            let dim = picked.first().map_or(0, |e| e.len());
            (picked.len() >= min_reference(settings.alpha, k))
                .then(|| (picked.iter().flat_map(|e| e.iter().copied()).collect(), dim))
        } else {
            None
        };
        // The outlier rule must stay what it was (the project's own
        // labels may have become enough for the conformal test).
        let rule_now = match (&reference, &own) {
            (None, None) => "within_pool",
            _ => "conformal",
        };
        let incremental =
            !screened.is_empty() && prev_rule.as_deref().is_none_or(|r| r == rule_now);
        let own_ref = own.as_ref().map(|(e, d)| (e.as_slice(), *d));
        let reference_items = reference.as_ref().map(|r| r.1.as_slice());
        let computed = if incremental {
            let mut new = (Vec::new(), Vec::new());
            let mut stored = (Vec::new(), Vec::new());
            for (id, it) in ids.into_iter().zip(items) {
                let side = if screened.contains(&id) {
                    &mut stored
                } else {
                    &mut new
                };
                side.0.push(id);
                side.1.push(it);
            }
            let computed = if new.0.is_empty() {
                Ok(Computed::Nothing)
            } else {
                report::screen_batch(
                    &new.1,
                    &stored.1,
                    reference_items,
                    own_ref,
                    pool_threshold,
                    &opts,
                )
                .map(|b| Computed::Batch(Box::new(b)))
            };
            (new.0, Some(stored.0), computed)
        } else {
            let computed = report::screen_with(&items, reference_items, own_ref, &opts)
                .map(|r| Computed::Full(Box::new(r)));
            (ids, None, computed)
        };
        (computed, reference.map(|r| r.0), unreadable, own.is_some())
    })
    .await
    .map_err(|e| ServiceError::internal(format!("the screen stopped: {e}")))?;
    let ((ids, stored_ids, computed), reference_ids, unreadable, own_reference) = computed;
    let computed = computed.map_err(|e| {
        ServiceError::new(
            Code::Conflict,
            format!("the project's items cannot be screened together: {e}"),
        )
    })?;
    let (report, batch) = match computed {
        Computed::Nothing => {
            let Some(prev) = prev else {
                return Err(ServiceError::internal(
                    "an incremental screen without a screen before it",
                ));
            };
            return Ok(Ran {
                items: prev.items,
                held: prev.held,
                rule: prev.rule,
                mode: "incremental",
                compared: Some(Compared {
                    stored: stored_ids.map_or(0, |s| s.len()),
                    ..Compared::default()
                }),
            });
        }
        Computed::Full(r) => (*r, None),
        Computed::Batch(b) => {
            let b = *b;
            (
                b.report,
                Some((b.copies, b.new_leaks, b.stored_leaks, b.compared)),
            )
        }
    };
    // Group numbers continue after the stored ones; a batch group that
    // copies a stored item joins that item's group.
    let (stored_groups, top) = if batch.is_some() {
        app.store.duplicate_groups(project_id).await?
    } else {
        (Vec::new(), -1)
    };
    let offset = top + 1;
    let mut next_group = offset
        + report
            .issues
            .iter()
            .flatten()
            .filter_map(|is| is.group)
            .max()
            .map_or(0, |g| g as i64 + 1);
    let mut groups: std::collections::HashMap<(i64, String), (i64, i64)> = stored_groups
        .into_iter()
        .map(|(item, kind, grp, of)| ((item, kind), (grp, of.unwrap_or(item))))
        .collect();
    let mut issues = Vec::new();
    // (kind, batch group) → (stored group, its representative).
    let mut joined: std::collections::HashMap<(String, usize), (i64, i64)> = Default::default();
    let mut leaks: BTreeMap<i64, (Option<i64>, Option<i64>, f64)> = BTreeMap::new();
    if let Some((copies, new_leaks, stored_leaks, _)) = &batch {
        let stored_ids = stored_ids.as_deref().unwrap_or_default();
        for c in copies {
            let kind = if c.exact {
                "exact_duplicate"
            } else {
                "near_duplicate"
            };
            let o = stored_ids[c.stored];
            let (grp, rep) = match groups.get(&(o, kind.to_string())) {
                Some(&g) => g,
                None => {
                    // The stored item starts a group, as its representative.
                    let g = (next_group, o);
                    next_group += 1;
                    groups.insert((o, kind.to_string()), g);
                    issues.push(NewIssue {
                        item_id: o,
                        kind: kind.to_string(),
                        score: c.score,
                        group: Some(g.0),
                        of_item: None,
                        of_reference: None,
                        hold: false,
                    });
                    g
                }
            };
            let in_batch = report.issues[c.new]
                .iter()
                .find(|is| is.kind == kind)
                .and_then(|is| is.group);
            match in_batch {
                Some(bg) => {
                    joined.entry((kind.to_string(), bg)).or_insert((grp, rep));
                }
                None => issues.push(NewIssue {
                    item_id: ids[c.new],
                    kind: kind.to_string(),
                    score: c.score,
                    group: Some(grp),
                    of_item: Some(rep),
                    of_reference: None,
                    hold: false,
                }),
            }
        }
        for &(q, o, score) in new_leaks {
            keep_leak(&mut leaks, ids[q], Some(stored_ids[o]), None, score);
        }
        for &(q, o, score) in stored_leaks {
            keep_leak(&mut leaks, stored_ids[q], Some(ids[o]), None, score);
        }
    }
    let mut held = std::collections::BTreeSet::new();
    for (i, item_issues) in report.issues.iter().enumerate() {
        for is in item_issues {
            let hold = HOLDING.contains(&is.kind.as_str());
            if hold {
                held.insert(ids[i]);
            }
            let (of_item, of_reference) = match is.of {
                Some(Of::Item(j)) => (Some(ids[j]), None),
                Some(Of::Reference(j)) => (None, reference_ids.as_ref().map(|r| r[j])),
                None => (None, None),
            };
            let score = if is.score.is_finite() { is.score } else { 0.0 };
            if is.kind == "leak" {
                keep_leak(&mut leaks, ids[i], of_item, of_reference, score);
                continue;
            }
            let (group, of_item) = match is
                .group
                .and_then(|g| joined.get(&(is.kind.clone(), g)).map(|j| (g, j)))
            {
                Some((_, &(grp, rep))) => (Some(grp), Some(rep)),
                None => (is.group.map(|g| g as i64 + offset), of_item),
            };
            issues.push(NewIssue {
                item_id: ids[i],
                kind: is.kind.clone(),
                score,
                group,
                of_item,
                of_reference,
                hold,
            });
        }
    }
    for (item_id, (of_item, of_reference, score)) in leaks {
        issues.push(NewIssue {
            item_id,
            kind: "leak".into(),
            score,
            group: None,
            of_item,
            of_reference,
            hold: false,
        });
    }
    let s = &report.summary;
    let (rule, reference) = match s.outlier_method {
        Some(OutlierMethod::Conformal { reference, .. }) => (
            Some("conformal".to_string()),
            Some(match settings.reference_project {
                Some(r) => format!("project {r} ({reference} items)"),
                None if own_reference => format!("human-labeled items ({reference})"),
                None => format!("{reference} items"),
            }),
        ),
        Some(OutlierMethod::WithinPool) => (Some("within_pool".to_string()), None),
        None => (None, None),
    };
    let compared = batch.as_ref().map(|b| b.3);
    let (summary, items, held_count) = match (&prev, compared) {
        (Some(prev), Some(compared)) => {
            // The last full screen's summary (thresholds, rule) stands;
            // the batch says what it compared and found.
            let mut summary = prev_summary.clone();
            if let Some(obj) = summary.as_object_mut() {
                obj.insert(
                    "batch".into(),
                    serde_json::json!({
                        "compared": compared,
                        "counts": s.counts,
                        "unreadable": unreadable,
                        "seconds": s.seconds,
                    }),
                );
            }
            (
                summary,
                prev.items + ids.len() as i64,
                prev.held + held.len() as i64,
            )
        }
        _ => {
            let mut summary = serde_json::to_value(s).unwrap_or_default();
            if let Some(obj) = summary.as_object_mut() {
                obj.insert("unreadable".into(), unreadable.into());
                obj.insert("outlier_k".into(), k.into());
                obj.insert("text_near_threshold".into(), text_near.into());
                obj.insert("image_near_threshold".into(), image_near.into());
                obj.insert(
                    "reference_project".into(),
                    settings.reference_project.into(),
                );
            }
            (summary, ids.len() as i64, held.len() as i64)
        }
    };
    let (rule, reference) = match (&prev, compared) {
        (Some(prev), Some(_)) => (prev.rule.clone(), prev.reference.clone()),
        _ => (rule, reference),
    };
    let run = ScreenRun {
        project_id,
        job_id: Some(job_id),
        model: project.model.clone(),
        rule: rule.clone(),
        reference,
        alpha: settings.alpha,
        items,
        held: held_count,
        summary: summary.to_string(),
        created_at: now_ms(),
    };
    let moved = if compared.is_some() {
        app.store.append_screening(&run, &issues, &ids).await?
    } else {
        app.store.replace_screening(&run, &issues, &ids).await?
    };
    tracing::debug!(
        project = project_id,
        moved,
        "held items sent back to review"
    );
    // Labels people gave before this screen reach their new groups (and
    // disagreements inside a group are conflicts again).
    for (item, label) in app.store.human_labels_in_groups(project_id).await? {
        app.store
            .propagate_label(project_id, item, &label, PROPAGATE_NEAR)
            .await?;
    }
    Ok(Ran {
        items: run.items,
        held: run.held,
        rule,
        mode: if compared.is_some() {
            "incremental"
        } else {
            "full"
        },
        compared,
    })
}

/// Keep an item's closest copy as its leak (an exact one scores 1).
fn keep_leak(
    leaks: &mut BTreeMap<i64, (Option<i64>, Option<i64>, f64)>,
    item: i64,
    of_item: Option<i64>,
    of_reference: Option<i64>,
    score: f64,
) {
    let better = leaks.get(&item).is_none_or(|&(_, _, b)| score > b);
    if better {
        leaks.insert(item, (of_item, of_reference, score));
    }
}

/// `GET /v1/projects/{id}/screening`: the last screen of a project.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScreeningView {
    pub project_id: i64,
    /// Whether the project was ever screened (the fields below are `null` or empty if not).
    pub screened: bool,
    /// The screen job running now, if any (`GET /v1/jobs/{id}`).
    pub running_job: Option<i64>,
    /// The last screen job: its id, state, and why it failed.
    pub last_job: Option<LastJob>,
    /// The job that wrote the results shown.
    pub job_id: Option<i64>,
    pub model: Option<String>,
    /// When the results shown were written (Unix ms).
    pub screened_at: Option<i64>,
    /// Items screened (those with an embedding and readable content).
    pub items: i64,
    /// Items the screen keeps from being auto-accepted (outliers, dark, blurry, odd-sized).
    pub held: i64,
    /// The outlier rule used: `conformal` (tested against `reference`,
    /// false-positive rate ≤ `alpha`) or `within_pool` (no reference yet:
    /// cleanlab Datalab's rule, mean 10-NN distance above Q3 + 1.7·IQR of
    /// the pool's own; no rate is promised).
    #[schema(example = "within_pool")]
    pub rule: Option<String>,
    /// The rule in words.
    pub rule_note: Option<String>,
    /// What outliers (and leaks) were measured against.
    pub reference: Option<String>,
    pub alpha: Option<f64>,
    /// Issues per type.
    pub counts: BTreeMap<String, i64>,
    /// The thresholds used: `outlier` (on the raw k-NN distance), `outlier_k`,
    /// `text_near` (character 5-gram Jaccard), `image_near` (shifted pixel
    /// correlation), `image` and `text_length` (fences set from the project's
    /// own items), and `leaks_against`.
    #[schema(value_type = Object)]
    pub thresholds: serde_json::Value,
    /// The last screen was incremental (the items added since the screen
    /// before, against those it covered): what it compared (`compared`:
    /// `new`, `stored`, `queries`, `leak_queries`, `copies`), the issues it
    /// found in the batch (`counts`) and seconds per stage. `null` after a
    /// full screen, whose `thresholds` and `rule` an incremental one keeps.
    #[schema(value_type = Option<Object>)]
    pub batch: Option<serde_json::Value>,
}

/// A screen job as the screening view shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastJob {
    pub id: i64,
    /// `screening`, `done` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
}

pub async fn view(app: &App, project_id: i64) -> ServiceResult<ScreeningView> {
    app.store.get_project(project_id).await?;
    let run = app.store.screen_run(project_id).await?;
    let counts: BTreeMap<String, i64> = app
        .store
        .screen_counts(project_id)
        .await?
        .into_iter()
        .collect();
    let running_job = app.store.open_job_of(project_id, SCREEN).await?;
    let last_job = app
        .store
        .last_job_of(project_id, SCREEN)
        .await?
        .map(|(id, state, result)| LastJob {
            id,
            error: result
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
                .and_then(|v| v["error"].as_str().map(str::to_string)),
            state,
        });
    let Some(run) = run else {
        return Ok(ScreeningView {
            project_id,
            screened: false,
            running_job,
            last_job,
            job_id: None,
            model: None,
            screened_at: None,
            items: 0,
            held: 0,
            rule: None,
            rule_note: None,
            reference: None,
            alpha: None,
            counts,
            thresholds: serde_json::json!({}),
            batch: None,
        });
    };
    let summary: serde_json::Value = serde_json::from_str(&run.summary).unwrap_or_default();
    let thresholds = serde_json::json!({
        "outlier": summary["outlier_threshold"],
        "outlier_k": summary["outlier_k"],
        "text_near": summary["text_near_threshold"],
        "image_near": summary["image_near_threshold"],
        "image": summary["image_thresholds"],
        "text_length": summary["text_length"],
        "leaks_against": summary["leaks_against"],
    });
    let rule_note = run.rule.as_deref().map(|r| match r {
        "conformal" => format!(
            "conformal k-NN test against {}: at most a fraction {} of in-domain items flagged",
            run.reference.as_deref().unwrap_or("a reference"),
            run.alpha
        ),
        _ => "no reference yet (no reference_project, and too few human labels for the conformal test): Datalab's within-pool rule, no false-positive rate promised".to_string(),
    });
    Ok(ScreeningView {
        project_id,
        screened: true,
        running_job,
        last_job,
        job_id: run.job_id,
        model: Some(run.model),
        screened_at: Some(run.created_at),
        items: run.items,
        held: run.held,
        rule: run.rule,
        rule_note,
        reference: run.reference,
        alpha: Some(run.alpha),
        counts,
        thresholds,
        batch: summary.get("batch").cloned(),
    })
}

/// One issue of one item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssueView {
    /// The issue's id (the paging cursor).
    pub id: i64,
    pub item_id: i64,
    pub client_id: String,
    /// `exact_duplicate`, `near_duplicate`, `outlier`, `leak`, `quality:<kind>`,
    /// `pii:<kind>`, or `conflict` (people labeled two members of one
    /// duplicate group differently; `of` is the other item).
    #[serde(rename = "type")]
    #[schema(example = "outlier")]
    pub kind: String,
    /// Duplicates: the similarity (1 for exact); outliers: the k-NN
    /// distance over the threshold (above 1 is flagged); PII: the number of spans.
    pub score: f64,
    /// The duplicate group (every member carries it).
    pub group: Option<i64>,
    /// The group's representative (an item id of this project).
    pub of: Option<i64>,
    pub of_client_id: Option<String>,
    /// The reference project's item a leak copies.
    pub of_reference: Option<i64>,
    /// The issue keeps the item from being auto-accepted.
    pub held: bool,
    /// The item's split (given at ingest), if any.
    pub split: Option<String>,
    /// A leak between splits: the split of the item it copies (`of`).
    pub of_split: Option<String>,
}

impl From<IssueRow> for IssueView {
    fn from(r: IssueRow) -> Self {
        IssueView {
            id: r.id,
            item_id: r.item_id,
            client_id: r.client_id,
            kind: r.kind,
            score: r.score,
            group: r.group,
            of: r.of_item,
            of_client_id: r.of_client_id,
            of_reference: r.of_reference,
            held: r.hold,
            split: r.split,
            of_split: r.of_split,
        }
    }
}

/// `GET /v1/projects/{id}/issues`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuePage {
    pub issues: Vec<IssueView>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next_after: Option<i64>,
}

/// A page of the last screen's issues, of one type (or family) or all.
pub async fn issues(
    store: &Store,
    project_id: i64,
    kind: Option<&str>,
    after: Option<i64>,
    limit: Option<i64>,
) -> ServiceResult<IssuePage> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServiceError::invalid(
            "limit",
            format!("must lie in 1..={MAX_PAGE}, got {limit}"),
        ));
    }
    let filter = match kind {
        None => KindFilter::All,
        Some(k) if !TYPES.contains(&k) => {
            return Err(ServiceError::invalid(
                "type",
                format!("{k:?} is not one of {}", TYPES.join(", ")),
            ))
        }
        Some(k) if !k.contains(':') && (k == "quality" || k == "pii") => {
            KindFilter::Family(k.to_string())
        }
        Some(k) => KindFilter::Exact(k.to_string()),
    };
    store.get_project(project_id).await?;
    let rows = store
        .screen_issues(project_id, &filter, after.unwrap_or(0), limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    let issues: Vec<IssueView> = rows
        .into_iter()
        .take(limit as usize)
        .map(IssueView::from)
        .collect();
    let next_after = if more {
        issues.last().map(|i| i.id)
    } else {
        None
    };
    Ok(IssuePage { issues, next_after })
}

/// The annotation path's hooks: the label is recorded whatever happens
/// here (an error would make a client retry a label that is already
/// stored), so a failure is logged, and the next screen propagates again.
pub async fn after_label(app: &App, item_id: i64) {
    if let Err(e) = propagate(app, item_id).await {
        tracing::warn!(item = item_id, error = %e.message, "label not propagated to the duplicate group");
    }
    settle(app, item_id).await;
}

/// Conflicts naming `item_id` that its new label (or its undo) resolved
/// go; failures are logged, as in [`after_label`].
async fn settle(app: &App, item_id: i64) {
    let done = async {
        let item = app.store.get_item(item_id).await?;
        app.store
            .settle_conflicts(item.project_id, item_id, PROPAGATE_NEAR)
            .await?;
        Ok::<_, ServiceError>(())
    };
    if let Err(e) = done.await {
        tracing::warn!(item = item_id, error = %e.message, "conflicts not settled");
    }
}

/// Before Label Studio's annotations `ls_ids` are deleted: the items they
/// label that belong to a duplicate group of the last screen, for
/// [`after_unlabel_all`]. A failure is logged and reads as none.
pub async fn grouped_ls_items(app: &App, project_id: i64, ls_ids: &[i64]) -> Vec<i64> {
    match app.store.ls_grouped_items(project_id, ls_ids).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(project = project_id, error = %e, "grouped items of deleted Label Studio annotations not read");
            Vec::new()
        }
    }
}

/// [`after_unlabel`] for each item (Label Studio deleted their annotations).
pub async fn after_unlabel_all(app: &App, items: &[i64]) {
    for &item in items {
        after_unlabel(app, item).await;
    }
}

/// After a person's label on `item_id` was deleted: if a person's label
/// still decides the item, its copies follow that one; otherwise they wait
/// for a person again. Failures are logged, as in [`after_label`].
pub async fn after_unlabel(app: &App, item_id: i64) {
    let done = async {
        let item = app.store.get_item(item_id).await?;
        if item.status == "labeled" && item.final_source.as_deref() == Some("human") {
            propagate(app, item_id).await?;
        } else {
            app.store.withdraw_propagation(item_id).await?;
        }
        Ok::<_, ServiceError>(())
    };
    if let Err(e) = done.await {
        tracing::warn!(item = item_id, error = %e.message, "propagated labels not taken back");
    }
    settle(app, item_id).await;
}

/// After a person's final label on `item_id`: the other members of its
/// duplicate groups that still wait for a person take the same label with
/// provenance `propagated` (so a group is reviewed once), and members a
/// person labeled otherwise become `conflict` issues. Called by the
/// annotation path; an item in no group costs one read.
pub async fn propagate(app: &App, item_id: i64) -> ServiceResult<crate::store::Propagated> {
    let item = app.store.get_item(item_id).await?;
    let (Some(label), Some("human")) = (item.final_label.as_deref(), item.final_source.as_deref())
    else {
        return Ok(Default::default());
    };
    if item.status != "labeled" {
        return Ok(Default::default());
    }
    let done = app
        .store
        .propagate_label(item.project_id, item_id, label, PROPAGATE_NEAR)
        .await?;
    if !done.items.is_empty() || !done.conflicts.is_empty() {
        tracing::debug!(
            item = item_id,
            propagated = done.items.len(),
            conflicts = done.conflicts.len(),
            "label propagated to the duplicate group"
        );
    }
    Ok(done)
}

/// An item's screening flags as exports carry them (JSONL `screening`, and
/// the CSV's screening columns); absent keys mean no such issue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportFlags {
    /// The exact-duplicate group, and its representative (absent on the
    /// representative itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dup_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<i64>,
    /// The near-duplicate group, and its representative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_duplicate_of: Option<i64>,
    /// A leak: the item of an earlier split, or of the reference project,
    /// it copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leak_of: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leak_of_reference: Option<i64>,
    /// The k-NN distance over the threshold (above 1: flagged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_score: Option<f64>,
    /// `dark`, `blurry`, … (the `quality:` issues' kinds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<String>,
    /// `email`, `phone`, `card`, `iban`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pii: Vec<String>,
    /// A group member a person labeled otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_with: Option<i64>,
    /// Kept from being auto-accepted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Flags per item from one page's issues ([`Store::screen_flags`]).
pub fn export_flags(issues: &[NewIssue]) -> std::collections::HashMap<i64, ExportFlags> {
    let mut out: std::collections::HashMap<i64, ExportFlags> = Default::default();
    for is in issues {
        let f = out.entry(is.item_id).or_default();
        f.held |= is.hold;
        match is.kind.as_str() {
            "exact_duplicate" => (f.dup_group, f.duplicate_of) = (is.group, is.of_item),
            "near_duplicate" => (f.near_group, f.near_duplicate_of) = (is.group, is.of_item),
            "leak" => (f.leak_of, f.leak_of_reference) = (is.of_item, is.of_reference),
            "outlier" => f.outlier_score = Some(is.score),
            "conflict" => f.conflict_with = is.of_item,
            k => {
                if let Some(q) = k.strip_prefix("quality:") {
                    f.quality.push(q.to_string());
                } else if let Some(q) = k.strip_prefix("pii:") {
                    f.pii.push(q.to_string());
                }
            }
        }
    }
    out
}

/// The columns a screened project's CSV export adds after the usual ones:
/// the item's split, then [`ExportFlags`] (lists joined with `;`).
pub const CSV_COLUMNS: [&str; 12] = [
    "split",
    "dup_group",
    "duplicate_of",
    "near_group",
    "near_duplicate_of",
    "leak_of",
    "leak_of_reference",
    "outlier_score",
    "quality",
    "pii",
    "conflict_with",
    "held",
];

/// [`CSV_COLUMNS`] of one item.
pub fn csv_cells(split: Option<&str>, f: Option<&ExportFlags>) -> [String; 12] {
    let d = ExportFlags::default();
    let f = f.unwrap_or(&d);
    let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        split.unwrap_or_default().to_string(),
        n(f.dup_group),
        n(f.duplicate_of),
        n(f.near_group),
        n(f.near_duplicate_of),
        n(f.leak_of),
        n(f.leak_of_reference),
        f.outlier_score.map(|v| v.to_string()).unwrap_or_default(),
        f.quality.join(";"),
        f.pii.join(";"),
        n(f.conflict_with),
        f.held.to_string(),
    ]
}
