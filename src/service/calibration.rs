//! Calibration use cases: the audit draw at pre-label time, fitting a
//! calibration version (temperature, then thresholds with a guarantee),
//! re-routing items under it, the drift alarm, and the suspect list.
//! The statistics are [`crate::calibrate`]'s; this module decides which
//! labels feed which fit (see ARCHITECTURE.md, "Calibration").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::app::App;
use super::box_calibration::{self, BoxStored};
use super::error::{Code, ServiceError, ServiceResult};
use super::exclusive;
use super::hub::ModelHub;
use super::metrics::Metrics;
use crate::calibrate::{
    self, find_label_errors, uniform_subsample, Bin, DriftDetector, DriftState, FitOptions,
    LabeledRows, Method,
};
use crate::learn::Head;
use crate::store::{
    AuditCounts, CalibrationRow, Guarantee, Job, LabeledRow, Opened, Project, ProjectSettings,
    Reroute, Store, DEFAULT_AUDIT_RATE, DEFAULT_CALIBRATE_EVERY, DEFAULT_DELTA,
};

/// Folds of the cross-fit that gives head projects out-of-sample scores.
const FOLDS: usize = 5;
/// The drift alarm watches for precision falling this far below the target.
pub const DRIFT_MARGIN: f64 = 0.05;
/// Audit labels the drift alarm's false-alarm bound covers...
pub const DRIFT_HORIZON: u64 = 2_000;
/// ...and that bound: P(any false alarm within the horizon) ≤ this.
pub const DRIFT_ALPHA: f64 = 0.05;
/// Suspects kept per calibration version.
const MAX_SUSPECTS: usize = 1_000;

/// One calibration version as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stored {
    /// The scoring function the fit tested: model version (+ head version).
    pub model_version: String,
    /// `global` or `per-class`.
    pub method: String,
    pub target: f64,
    pub delta: f64,
    pub temperature: f64,
    /// ECE (15 bins) of the held-out audit labels before and after scaling
    /// (of the temperature labels when there are no audit labels yet).
    pub ece_before: Option<f64>,
    pub ece_after: Option<f64>,
    #[schema(value_type = Object)]
    pub reliability: Reliability,
    pub classes: Vec<ClassCalibration>,
    /// Audit labels the thresholds were tested on (after thinning to a uniform sample).
    pub audit_labels: usize,
    /// Audit labels given when the fit ran (the refit counter starts here).
    pub audit_spent_at_fit: i64,
    /// Human labels the temperature was fitted on.
    pub temperature_labels: usize,
    /// Share of machine-decided items auto-accepted under this version.
    pub coverage: f64,
    /// Pooled audit precision of the accepted audit items, and its
    /// Clopper–Pearson lower bound at 1 − δ (descriptive; the guarantee is
    /// precision ≥ target with probability ≥ 1 − δ).
    pub precision: Option<f64>,
    pub lower_bound: Option<f64>,
    /// The same figures with the audit labels of leaked items counted
    /// (issue 25): the ones above leave them out. Absent on versions fitted
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_leaked: Option<WithLeaked>,
    /// Suspected human label errors (confident learning), most suspicious first.
    pub suspects: Vec<SuspectView>,
}

/// A fit's evaluation figures with the audit labels of leaked items
/// counted too: items the last screen found copying an earlier split's item
/// (or the reference project's) and a person labeled in the audit sample
/// before that screen. They never enter the fit; the default figures
/// leave them out, these add them (descriptive: no guarantee rests on them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WithLeaked {
    /// Audit labels on leaked items, added here.
    pub leaked_audit_labels: usize,
    /// Audit labels counted: the fit's uniform sample plus the leaked ones.
    pub audit_labels: usize,
    /// Pooled precision of the accepted audit items, leaked ones included,
    /// and its Clopper–Pearson lower bound at 1 − δ.
    pub precision: Option<f64>,
    pub lower_bound: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reliability {
    pub before: Vec<Bin>,
    pub after: Vec<Bin>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClassCalibration {
    pub label: String,
    /// Auto-accept at calibrated score ≥ this; `null`: this class auto-accepts nothing.
    pub threshold: Option<f64>,
    /// Share of this class's machine-decided items auto-accepted.
    pub coverage: f64,
    pub precision: Option<f64>,
    pub lower_bound: Option<f64>,
    /// Audit labels of items predicted as this class.
    pub audit_labels: usize,
    /// Whether the drift alarm stopped this class (filled in when shown).
    #[serde(default)]
    pub drift_alarm: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuspectView {
    pub item_id: i64,
    pub given: String,
    pub predicted: String,
    /// The out-of-sample probability of the given label.
    pub self_confidence: f64,
}

/// The drift alarm's state, recomputed from the stored audit labels.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct DriftView {
    pub alarm: bool,
    /// Labels whose auto-accepting the alarm stopped.
    pub classes: Vec<String>,
    /// Audit labels of auto-accepted items since the fit, and the wrong ones.
    pub observations: u64,
    pub wrong: u64,
    /// The pooled CUSUM statistic and its alarm level.
    pub statistic: f64,
    pub threshold: f64,
}

/// `GET /v1/projects/{id}/calibration`.
#[derive(Debug, ToSchema)]
pub struct CalibrationView {
    /// `null` before the first fit (nothing is auto-accepted, or the
    /// project's explicit fixed threshold decides: see `guarantee`).
    pub version: Option<i64>,
    pub created_at: Option<i64>,
    /// What vouches for the auto-accepted labels now: `calibrated`,
    /// `no_guarantee` (a fixed threshold, before the first fit) or
    /// `awaiting_calibration` (nothing auto-accepted yet).
    pub guarantee: Guarantee,
    /// The project's explicit fixed threshold (`null`: none).
    pub fixed_threshold: Option<f64>,
    /// The target and δ of the fit in force (the project's, before one).
    pub target: f64,
    pub delta: f64,
    /// The fit in force, its keys beside the view's (see `Serialize`).
    #[serde(flatten)]
    #[schema(schema_with = fit_schema)]
    pub fit: Option<Fit>,
    pub audit: AuditCounts,
    pub drift: DriftView,
    pub history: Vec<HistoryPoint>,
    /// Budget planning (classification): what more audit labels would
    /// likely unlock, forecast from the current scores (a forecast, not a
    /// guarantee; empty for detection or without predicted items).
    pub budget: Vec<BudgetRow>,
}

/// One row of budget planning (`calibrate::plan`): the calibrated scores of
/// the machine-decided items read as the probability of being right, and the
/// global Learn-then-Test scan run on simulated audits of that size.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetRow {
    /// Audit labels beyond those given so far...
    pub more_audit_labels: usize,
    /// ...making this many in total.
    pub audit_labels: usize,
    /// Expected share of the machine-decided items auto-accepted then.
    pub expected_coverage: f64,
    /// Share of simulated audits of that size that accept anything.
    pub chance_of_any: f64,
}

/// More audit labels the plan looks at.
pub const BUDGET_STEPS: [usize; 5] = [50, 100, 200, 400, 800];

/// Items the plan reads at most (an even stride over the machine-decided ones).
const BUDGET_ITEMS: usize = 5_000;

async fn budget(
    app: &App,
    project: &Project,
    scorer: Scorer,
    have: usize,
    target: f64,
    delta: f64,
) -> ServiceResult<Vec<BudgetRow>> {
    let rows = app.store.machine_rows(project.id).await?;
    let labels = project.labels.clone();
    let project_id = project.id;
    let plan = tokio::task::spawn_blocking(move || {
        let stride = rows.len().div_ceil(BUDGET_ITEMS).max(1);
        let scores: Vec<f64> = rows
            .iter()
            .filter(|r| !r.audit)
            .step_by(stride)
            .filter_map(|r| r.raw_scores.as_deref())
            .filter_map(|s| probs_in_order(s, &labels))
            .map(|p| scorer.top(&p).1)
            .collect();
        let totals: Vec<usize> = BUDGET_STEPS.iter().map(|m| have + m).collect();
        calibrate::plan::plan(&scores, &totals, target, delta, project_id as u64)
    })
    .await
    .map_err(|e| ServiceError::internal(e.to_string()))?
    .map_err(|e| ServiceError::internal(e.to_string()))?;
    Ok(plan
        .into_iter()
        .map(|r| BudgetRow {
            more_audit_labels: r.audit_labels - have,
            audit_labels: r.audit_labels,
            expected_coverage: r.expected_coverage,
            chance_of_any: r.chance_of_any,
        })
        .collect())
}

/// A version in force: a classification project's thresholds, or a
/// detection project's box thresholds (`kind: boxes`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Fit {
    Classes(Stored),
    Boxes(BoxStored),
}

/// The flattened fit: all of `Stored`'s keys, all of `BoxStored`'s (a
/// detection project), or (before the first fit) none of them.
fn fit_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Ref, Type};
    // No `model_version` (a fit always has one, a string).
    let none = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "model_version",
            ObjectBuilder::new().schema_type(Type::Null),
        )
        .description(Some("Before the first fit: none of the fit's keys."));
    OneOfBuilder::new()
        .item(Ref::from_schema_name("Stored"))
        .item(Ref::from_schema_name("BoxStored"))
        .item(none)
        .build()
        .into()
}

/// One object: the view's own keys, then the fit's, each key once (the
/// fit's `target` and `delta` are the view's; flattening both wrote them
/// twice).
impl Serialize for CalibrationView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        #[derive(Serialize)]
        struct Own<'a> {
            version: Option<i64>,
            created_at: Option<i64>,
            guarantee: Guarantee,
            fixed_threshold: Option<f64>,
            target: f64,
            delta: f64,
            audit: &'a AuditCounts,
            drift: &'a DriftView,
            history: &'a [HistoryPoint],
            budget: &'a [BudgetRow],
        }
        let own = Own {
            version: self.version,
            created_at: self.created_at,
            guarantee: self.guarantee,
            fixed_threshold: self.fixed_threshold,
            target: self.target,
            delta: self.delta,
            audit: &self.audit,
            drift: &self.drift,
            history: &self.history,
            budget: &self.budget,
        };
        let mut map = match serde_json::to_value(own).map_err(S::Error::custom)? {
            serde_json::Value::Object(m) => m,
            _ => return Err(S::Error::custom("a calibration view is an object")),
        };
        if let Some(fit) = &self.fit {
            if let serde_json::Value::Object(f) =
                serde_json::to_value(fit).map_err(S::Error::custom)?
            {
                for (k, v) in f {
                    map.entry(k).or_insert(v);
                }
            }
        }
        map.serialize(serializer)
    }
}

/// One version in the history: labels spent against coverage.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    pub version: i64,
    pub created_at: i64,
    /// Human labels when the version was fitted (temperature + audit).
    pub labels: usize,
    pub audit_labels: usize,
    pub coverage: f64,
    pub lower_bound: Option<f64>,
}

/// How a project's items are scored and routed now.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub version: Option<i64>,
    temperature: f64,
    /// Threshold per label name; a missing or `None` entry accepts nothing.
    thresholds: HashMap<String, Option<f64>>,
    alarmed: HashSet<String>,
    /// Before any calibration: the project's explicit fixed threshold on raw
    /// scores (no guarantee); without one, nothing is accepted.
    fixed: Option<f64>,
}

/// One item's decision.
#[derive(Debug, Clone)]
pub struct Decided {
    pub probs: Vec<f32>,
    pub index: usize,
    pub score: f64,
    pub auto_accept: bool,
}

impl Scorer {
    /// Before the first calibration: the project's explicit fixed threshold
    /// decides (no guarantee), or with none nothing is auto-accepted.
    pub fn fixed(threshold: Option<f64>) -> Scorer {
        Scorer {
            version: None,
            temperature: 1.0,
            thresholds: HashMap::new(),
            alarmed: HashSet::new(),
            fixed: threshold,
        }
    }

    fn from_stored(version: i64, s: &Stored, alarmed: HashSet<String>) -> Scorer {
        Scorer {
            version: Some(version),
            temperature: s.temperature,
            thresholds: s
                .classes
                .iter()
                .map(|c| (c.label.clone(), c.threshold))
                .collect(),
            alarmed,
            fixed: None,
        }
    }

    /// The calibrated top class and its score, without building the
    /// distribution: what an adapter that shows one label needs. Equal to
    /// `decide`'s `index` and `score` (the same operations, in the same
    /// order), with no allocation.
    pub fn top(&self, raw: &[f32]) -> (usize, f64) {
        let t = if self.temperature.is_finite() && self.temperature > 0.0 {
            self.temperature
        } else {
            1.0
        };
        let logit = |p: f32| f64::from(p).max(1e-300).ln() / t;
        let max = raw
            .iter()
            .map(|&p| logit(p))
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = raw.iter().map(|&p| (logit(p) - max).exp()).sum();
        let norm = if sum > 0.0 && sum.is_finite() {
            sum
        } else {
            1.0
        };
        let mut best = (0, f64::NEG_INFINITY);
        for (j, &p) in raw.iter().enumerate() {
            let q = (logit(p) - max).exp() / norm;
            if q > best.1 {
                best = (j, q);
            }
        }
        best
    }

    /// Calibrated probabilities (in `labels` order) and the routing decision.
    pub fn decide(&self, labels: &[String], raw: &[f32]) -> Decided {
        let raw64: Vec<f64> = raw.iter().map(|&p| f64::from(p)).collect();
        let mut out = vec![0.0; raw64.len()];
        calibrate::fit::scale_row(&raw64, self.temperature, &mut out);
        let (index, score) = calibrate::fit::top1(&out);
        let label = labels.get(index).map(String::as_str).unwrap_or("");
        let auto_accept = match self.fixed {
            Some(t) => score >= t,
            None => {
                !self.alarmed.contains(label)
                    && self
                        .thresholds
                        .get(label)
                        .copied()
                        .flatten()
                        .is_some_and(|t| score >= t)
            }
        };
        Decided {
            probs: out.iter().map(|&p| p as f32).collect(),
            index,
            score,
            auto_accept,
        }
    }
}

/// The scorer in force for a project: its current calibration, else its
/// explicit fixed threshold, else one that accepts nothing.
pub async fn scorer(store: &Store, project: &Project) -> Result<Scorer, crate::store::StoreError> {
    if project.calibration_version.is_none() {
        return Ok(Scorer::fixed(project.threshold));
    }
    match store.current_calibration(project.id).await? {
        // A detection project's version: its boxes are routed by
        // `box_calibration::thresholds`; no whole-item label is accepted.
        Some(row) if box_calibration::parse(&row.body).is_some() => Ok(Scorer {
            version: Some(row.version),
            temperature: 1.0,
            thresholds: HashMap::new(),
            alarmed: HashSet::new(),
            fixed: None,
        }),
        Some(row) => match serde_json::from_str::<Stored>(&row.body) {
            Ok(s) => Ok(Scorer::from_stored(
                row.version,
                &s,
                parse_classes(&row.drift_classes),
            )),
            Err(e) => {
                tracing::error!(project = project.id, error = %e, "unreadable calibration; auto-accepting nothing");
                Ok(Scorer {
                    version: Some(row.version),
                    temperature: 1.0,
                    thresholds: HashMap::new(),
                    alarmed: HashSet::new(),
                    fixed: None,
                })
            }
        },
        None => Ok(Scorer::fixed(project.threshold)),
    }
}

fn parse_classes(json: &str) -> HashSet<String> {
    serde_json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The audit draw's probability for an item predicted as `label`: the
/// project's rate, or 1 while that class has fewer than `audit_min` audit items.
pub fn audit_probability(settings: &ProjectSettings, audited_so_far: i64) -> f64 {
    let rate = settings
        .audit_rate
        .unwrap_or(DEFAULT_AUDIT_RATE)
        .clamp(0.0, 1.0);
    match settings.audit_min {
        Some(min) if (audited_so_far.max(0) as u64) < min => 1.0,
        _ => rate,
    }
}

/// A reproducible uniform draw in [0, 1) per (project, item): the same item
/// is drawn the same way on every re-run, and independently of its content.
pub fn audit_uniform(project_id: i64, item_id: i64) -> f64 {
    let mut z = (project_id as u64).rotate_left(32) ^ (item_id as u64) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What a calibration needs besides the store: the models (for the version
/// string) and the metrics (for the drift gauge). Cheap to clone into tasks.
#[derive(Clone)]
pub struct Calibrator {
    pub store: Store,
    pub hub: Arc<ModelHub>,
    pub metrics: Arc<Metrics>,
    /// Projects with upkeep running, and what was asked for meanwhile.
    upkeep: Arc<Mutex<HashMap<i64, Upkeep>>>,
}

/// Upkeep asked for while a project's upkeep task runs; the task runs again
/// for it instead of the request being dropped.
#[derive(Debug, Clone, Copy, Default)]
struct Upkeep {
    check: bool,
    refit: bool,
}

impl Calibrator {
    pub fn new(store: Store, hub: Arc<ModelHub>, metrics: Arc<Metrics>) -> Calibrator {
        Calibrator {
            store,
            hub,
            metrics,
            upkeep: Arc::default(),
        }
    }

    /// Ask for upkeep; one task per project does it, in order, until nothing is left.
    fn request(&self, project_id: i64, want: Upkeep) {
        {
            let mut m = self.upkeep.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(u) = m.get_mut(&project_id) {
                u.check |= want.check;
                u.refit |= want.refit;
                return;
            }
            m.insert(project_id, Upkeep::default());
        }
        let cal = self.clone();
        tokio::spawn(async move {
            let mut todo = want;
            loop {
                if let Err(e) = cal.upkeep_once(project_id, todo).await {
                    tracing::warn!(project = project_id, error = %e.message, "calibration upkeep failed");
                }
                let mut m = cal.upkeep.lock().unwrap_or_else(|e| e.into_inner());
                match m.get_mut(&project_id) {
                    Some(u) if u.check || u.refit => {
                        todo = std::mem::take(u);
                    }
                    _ => {
                        m.remove(&project_id);
                        break;
                    }
                }
            }
        });
    }

    async fn upkeep_once(&self, project_id: i64, todo: Upkeep) -> ServiceResult<()> {
        if todo.refit && self.store.audit_counts(project_id).await?.spent > 0 {
            refit(self, project_id).await?;
        }
        if todo.check {
            let project = self.store.get_project(project_id).await?;
            check_and_refit(self, &project).await?;
        }
        Ok(())
    }
}

/// Zero-shot label descriptions are embedded once per change: bounded so a
/// settings update cannot queue an unbounded embedding job.
const MAX_LABEL_DESCRIPTIONS: usize = 1_000;
const MAX_LABEL_DESCRIPTION_CHARS: usize = 2_000;

/// Check the calibration settings (bounded before any arithmetic).
pub fn validate(s: &ProjectSettings) -> ServiceResult<()> {
    if let Some(r) = s.audit_rate {
        if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
            return Err(ServiceError::invalid(
                "settings.audit_rate",
                format!("{r} is not in [0, 1]"),
            ));
        }
    }
    if let Some(d) = s.delta {
        if !(d.is_finite() && d > 0.0 && d <= 0.5) {
            return Err(ServiceError::invalid(
                "settings.delta",
                format!("{d} is not in (0, 0.5]"),
            ));
        }
    }
    if let Some(m) = s.audit_min {
        if m > 1_000_000 {
            return Err(ServiceError::invalid(
                "settings.audit_min",
                format!("{m} is above 1000000"),
            ));
        }
    }
    if let Some(e) = s.calibrate_every {
        if e > 1_000_000 {
            return Err(ServiceError::invalid(
                "settings.calibrate_every",
                format!("{e} is above 1000000"),
            ));
        }
    }
    if let Some(t) = s.iou_threshold {
        if !(t.is_finite() && t > 0.0 && t <= 1.0) {
            return Err(ServiceError::invalid(
                "settings.iou_threshold",
                format!("{t} is not in (0, 1]"),
            ));
        }
    }
    if let Some(m) = &s.threshold_method {
        if method(Some(m)).is_none() {
            return Err(ServiceError::invalid(
                "settings.threshold_method",
                format!("{m:?} is not one of global, per-class, pooled"),
            ));
        }
    }
    if let Some(d) = &s.label_descriptions {
        if d.len() > MAX_LABEL_DESCRIPTIONS {
            return Err(ServiceError::invalid(
                "settings.label_descriptions",
                format!("{} entries; at most {MAX_LABEL_DESCRIPTIONS}", d.len()),
            ));
        }
        if let Some((label, _)) = d
            .iter()
            .find(|(_, text)| text.chars().count() > MAX_LABEL_DESCRIPTION_CHARS)
        {
            return Err(ServiceError::invalid(
                "settings.label_descriptions",
                format!(
                    "the description of {label:?} is longer than {MAX_LABEL_DESCRIPTION_CHARS} characters"
                ),
            ));
        }
    }
    if let Some(u) = s.uniform_share {
        if crate::calibrate::ipw::uniform_share_check(u).is_err() {
            return Err(ServiceError::invalid(
                "settings.uniform_share",
                format!("{u} is not in [0, 1]"),
            ));
        }
    }
    if let Some(r) = &s.review_sampling {
        if r != "top-k" && r != "proportional" {
            return Err(ServiceError::invalid(
                "settings.review_sampling",
                format!("{r:?} is not one of top-k, proportional"),
            ));
        }
    }
    if let Some(c) = &s.conflict_resolution {
        if c != "majority" && c != "expert" {
            return Err(ServiceError::invalid(
                "settings.conflict_resolution",
                format!("{c:?} is not one of majority, expert"),
            ));
        }
    }
    Ok(())
}

/// The precision target must be in (0, 1).
pub fn validate_target(t: f64) -> ServiceResult<()> {
    if t.is_finite() && t > 0.0 && t < 1.0 {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "precision_target",
            format!("{t} is not in (0, 1)"),
        ))
    }
}

fn method(name: Option<&str>) -> Option<Method> {
    match name {
        None | Some("global") => Some(Method::Global),
        Some("per-class") => Some(Method::PerClass),
        Some("pooled") => Some(Method::Pooled),
        _ => None,
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::PerClass => "per-class",
        Method::Pooled => "pooled",
        _ => "global",
    }
}

/// `POST /v1/projects/{id}/calibrate`: refuse without audit labels, else
/// start the fit in the background and answer with its job.
pub async fn start(cal: &Calibrator, project_id: i64) -> ServiceResult<Job> {
    let project = cal.store.get_project(project_id).await?;
    let audit = cal.store.audit_counts(project_id).await?;
    if audit.spent == 0 {
        return Err(ServiceError::new(
            Code::NoAuditLabels,
            format!(
                "project {project_id} has no audit labels yet ({} audit items wait for one): label some with GET /v1/projects/{project_id}/review?strategy=audit, then calibrate",
                audit.pending
            ),
        ));
    }
    let opened = cal
        .store
        .open_exclusive(
            project.id,
            exclusive::CALIBRATE,
            "calibrating",
            exclusive::runner(),
            exclusive::lease_ms(),
        )
        .await?;
    if let Opened::New(job) = &opened {
        spawn_job(cal, project_id, job.id);
    }
    Ok(opened.job().clone())
}

/// Run calibration job `job_id` in the background (a new one, or one taken
/// over from a stopped server: a fit is safe to run again, since a version
/// takes force with its re-routing in one transaction).
pub fn spawn_job(cal: &Calibrator, project_id: i64, job_id: i64) {
    let cal = cal.clone();
    tokio::spawn(async move { run_job(&cal, project_id, job_id).await });
}

/// Fit under job `job_id`, which this process runs, and end the job.
async fn run_job(cal: &Calibrator, project_id: i64, job_id: i64) {
    let Some(outcome) = exclusive::hold(&cal.store, job_id, run(cal, project_id)).await else {
        return;
    };
    let ok = match outcome {
        Ok(v) => {
            tracing::info!(project = project_id, version = v, "calibration fitted");
            true
        }
        Err(e) => {
            tracing::warn!(project = project_id, error = %e.message, "calibration failed");
            false
        }
    };
    if let Err(e) = cal
        .store
        .finish_exclusive(job_id, exclusive::runner(), ok, None)
        .await
    {
        tracing::warn!(job = job_id, error = %e, "could not record the calibration job's end");
    }
}

/// An automatic refit: run one now unless a calibration of the project is
/// open already (on any replica), which this request then joins.
async fn refit(cal: &Calibrator, project_id: i64) -> ServiceResult<()> {
    let opened = cal
        .store
        .open_exclusive(
            project_id,
            exclusive::CALIBRATE,
            "calibrating",
            exclusive::runner(),
            exclusive::lease_ms(),
        )
        .await?;
    match opened {
        Opened::New(job) => run_job(cal, project_id, job.id).await,
        Opened::Joined(job) => {
            tracing::debug!(
                project = project_id,
                job = job.id,
                "a calibration is running; refit joins it"
            )
        }
    }
    Ok(())
}

/// Fit a new version now and re-route the project's items under it.
/// Returns the new version.
async fn run(cal: &Calibrator, project_id: i64) -> ServiceResult<i64> {
    let project = cal.store.get_project(project_id).await?;
    if super::regions::has_regions(&project.task) {
        return box_calibration::run(cal, &project).await;
    }
    let rows = cal.store.labeled_rows(project_id).await?;
    let audit_spent = rows.iter().filter(|r| r.audit).count() as i64;
    let head = match project.head_version {
        Some(v) => {
            let body = cal.store.head(project_id, v).await?;
            Some(
                serde_json::from_str::<Head>(&body)
                    .map_err(|e| ServiceError::internal(format!("head {v}: {e}")))?,
            )
        }
        None => None,
    };
    // Spelled as everywhere else (`/versions`, predictions): `<model>@<version>`.
    let base = cal
        .hub
        .get(&project.model)
        .map(|m| format!("{}@{}", project.model, m.model.version()))
        .unwrap_or_default();
    let model_version = match project.head_version {
        Some(v) => format!("{base}+head-{v}"),
        None => base,
    };
    let labels = project.labels.clone();
    let settings = project.settings.clone();
    let target = project.precision_target;
    let seed = (project_id as u64) << 20 ^ audit_spent as u64;
    let fitted = tokio::task::spawn_blocking(move || {
        fit_rows(&labels, &rows, head.as_ref(), &settings, target, seed)
    })
    .await
    .map_err(|e| ServiceError::internal(e.to_string()))??;
    let FitResult {
        fitted,
        suspects,
        temperature_labels,
        with_leaked,
    } = fitted;
    // Decide every machine item under the fit before storing it, so the
    // stored version carries its own coverage.
    let machine = cal.store.machine_rows(project_id).await?;
    let scorer_stored = stored(
        &project,
        &fitted,
        model_version,
        audit_spent,
        temperature_labels,
        suspects,
    );
    let scorer = Scorer::from_stored(0, &scorer_stored, HashSet::new());
    let mut per_class: Vec<(usize, usize)> = vec![(0, 0); project.labels.len()];
    let mut updates = Vec::with_capacity(machine.len());
    for m in &machine {
        let Some(raw) = m
            .raw_scores
            .as_deref()
            .and_then(|s| probs_in_order(s, &project.labels))
        else {
            continue;
        };
        let d = scorer.decide(&project.labels, &raw);
        if !m.audit {
            if let Some(c) = per_class.get_mut(d.index) {
                c.0 += 1;
                c.1 += usize::from(d.auto_accept);
            }
        }
        updates.push(Reroute {
            id: m.id,
            auto_accept: d.auto_accept,
            label: project.labels.get(d.index).cloned().unwrap_or_default(),
            score: d.score,
            scores_json: crate::model::output::LabelScores::new(&project.labels, &d.probs)
                .to_json(),
        });
    }
    let mut body = scorer_stored;
    body.with_leaked = Some(with_leaked);
    let (all, auto) = per_class
        .iter()
        .fold((0, 0), |acc, c| (acc.0 + c.0, acc.1 + c.1));
    body.coverage = if all == 0 {
        0.0
    } else {
        auto as f64 / all as f64
    };
    for (c, (n, a)) in body.classes.iter_mut().zip(&per_class) {
        c.coverage = if *n == 0 { 0.0 } else { *a as f64 / *n as f64 };
    }
    let json = serde_json::to_string(&body).map_err(|e| ServiceError::internal(e.to_string()))?;
    let (version, moved) = cal
        .store
        .commit_calibration(project_id, &json, body.audit_labels as i64, &updates)
        .await?;
    cal.metrics.drift_alarm(project_id, false);
    tracing::info!(
        project = project_id,
        version,
        temperature = body.temperature,
        coverage = body.coverage,
        audit_labels = body.audit_labels,
        rerouted = moved,
        "calibration version stored; items re-routed"
    );
    Ok(version)
}

struct FitResult {
    fitted: calibrate::Fitted,
    suspects: Vec<SuspectView>,
    temperature_labels: usize,
    with_leaked: WithLeaked,
}

/// The probability rows of labeled items, split as the guarantee needs:
/// out-of-sample scores for every row (cross-fitted heads for head
/// projects), temperature rows = non-audit labels plus audit labels thinned
/// out of the uniform sample, audit rows = the uniform audit sample. Audit
/// labels of leaked items ([`LabeledRow::leaked_audit`]) are in neither:
/// they only join the audit rows in the [`WithLeaked`] figures.
fn fit_rows(
    labels: &[String],
    rows: &[LabeledRow],
    head: Option<&Head>,
    settings: &ProjectSettings,
    target: f64,
    seed: u64,
) -> ServiceResult<FitResult> {
    let k = labels.len();
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    // (row, label index, probabilities)
    let mut scored: Vec<(usize, usize, Vec<f64>)> = Vec::with_capacity(rows.len());
    match head {
        Some(h) => {
            let dim = rows
                .iter()
                .find_map(|r| r.embedding.as_ref().map(Vec::len))
                .unwrap_or(0);
            let usable: Vec<usize> = (0..rows.len())
                .filter(|&i| {
                    rows[i].embedding.as_ref().is_some_and(|e| e.len() == dim)
                        && index.contains_key(rows[i].label.as_str())
                })
                .collect();
            // Audit rows (and leaked ones): the current head never trained on them.
            for &i in usable
                .iter()
                .filter(|&&i| rows[i].audit || rows[i].leaked_audit)
            {
                if let Some(e) = &rows[i].embedding {
                    if let Ok(p) = h.predict_proba(e) {
                        scored.push((i, index[rows[i].label.as_str()], to64(&p)));
                    }
                }
            }
            // Training rows: cross-fitted, so that no row is scored by a head that saw it.
            let train: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|&i| !rows[i].audit && !rows[i].leaked_audit)
                .collect();
            scored.extend(cross_fit(labels, rows, &train, dim, &index));
        }
        None => {
            for (i, r) in rows.iter().enumerate() {
                let (Some(&y), Some(raw)) = (
                    index.get(r.label.as_str()),
                    r.raw_scores
                        .as_deref()
                        .and_then(|s| probs_in_order(s, labels)),
                ) else {
                    continue;
                };
                scored.push((i, y, to64(&raw)));
            }
        }
    }
    // Thin the audit sample to a uniform one (audit_min raises some classes' rate).
    let audit_idx: Vec<usize> = (0..scored.len())
        .filter(|&j| rows[scored[j].0].audit)
        .collect();
    let inclusion: Vec<f64> = audit_idx
        .iter()
        .map(|&j| {
            rows[scored[j].0]
                .audit_p
                .unwrap_or(DEFAULT_AUDIT_RATE)
                .clamp(1e-9, 1.0)
        })
        .collect();
    let kept: HashSet<usize> = if inclusion.is_empty() {
        HashSet::new()
    } else {
        uniform_subsample(&inclusion, seed)
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .into_iter()
            .map(|i| audit_idx[i])
            .collect()
    };
    let (mut tp, mut ty, mut ap, mut ay) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (j, (i, y, p)) in scored.iter().enumerate() {
        if kept.contains(&j) {
            ap.extend_from_slice(p);
            ay.push(*y);
        } else if !rows[*i].leaked_audit {
            tp.extend_from_slice(p);
            ty.push(*y);
        }
    }
    let opts = FitOptions {
        target,
        delta: settings.delta.unwrap_or(DEFAULT_DELTA),
        method: method(settings.threshold_method.as_deref()).unwrap_or(Method::Global),
        audit_min: settings.audit_min.unwrap_or(1).max(1) as usize,
        ..FitOptions::default()
    };
    let fitted = calibrate::fit(
        k,
        LabeledRows {
            probs: &tp,
            labels: &ty,
        },
        LabeledRows {
            probs: &ap,
            labels: &ay,
        },
        &opts,
    )
    .map_err(|e| ServiceError::invalid("calibration", e.to_string()))?;
    let with_leaked = with_leaked(&fitted, rows, &scored, &kept, opts.delta);
    // Confident learning on every out-of-sample row.
    let all_p: Vec<f64> = scored.iter().flat_map(|s| s.2.iter().copied()).collect();
    let all_y: Vec<usize> = scored.iter().map(|s| s.1).collect();
    let suspects = if all_y.len() >= 2 {
        match find_label_errors(&all_p, k, &all_y) {
            Ok(found) => found
                .suspects
                .iter()
                .filter(|s| s.confident.is_some())
                .take(MAX_SUSPECTS)
                .map(|s| SuspectView {
                    item_id: rows[scored[s.index].0].id,
                    given: labels.get(s.given).cloned().unwrap_or_default(),
                    predicted: labels.get(s.predicted).cloned().unwrap_or_default(),
                    self_confidence: s.self_confidence,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "no label-error check this time");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Ok(FitResult {
        fitted,
        suspects,
        temperature_labels: ty.len(),
        with_leaked,
    })
}

/// The fit's pooled audit precision and its lower bound at 1 − `delta`,
/// over the audit rows it tested (`kept`) plus the audit labels of leaked
/// items, under its own thresholds.
fn with_leaked(
    fitted: &calibrate::Fitted,
    rows: &[LabeledRow],
    scored: &[(usize, usize, Vec<f64>)],
    kept: &HashSet<usize>,
    delta: f64,
) -> WithLeaked {
    let (mut counted, mut leaked, mut accepted, mut right) = (0usize, 0usize, 0u64, 0u64);
    for (j, (i, y, p)) in scored.iter().enumerate() {
        let leak = rows[*i].leaked_audit;
        if !(leak || kept.contains(&j)) {
            continue;
        }
        counted += 1;
        leaked += usize::from(leak);
        let d = fitted.decide(p);
        if d.auto_accept {
            accepted += 1;
            right += u64::from(d.predicted == *y);
        }
    }
    WithLeaked {
        leaked_audit_labels: leaked,
        audit_labels: counted,
        precision: (accepted > 0).then(|| right as f64 / accepted as f64),
        lower_bound: (accepted > 0)
            .then(|| calibrate::binomial::lower_bound(right, accepted, delta).ok())
            .flatten(),
    }
}

/// K-fold out-of-sample probabilities of `train` rows (each scored by a head
/// trained on the other folds). Rows of a fold whose head cannot train are skipped.
fn cross_fit(
    labels: &[String],
    rows: &[LabeledRow],
    train: &[usize],
    dim: usize,
    index: &HashMap<&str, usize>,
) -> Vec<(usize, usize, Vec<f64>)> {
    let mut out = Vec::with_capacity(train.len());
    if train.len() < FOLDS * 2 || dim == 0 {
        return out;
    }
    for fold in 0..FOLDS {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (n, &i) in train.iter().enumerate() {
            if n % FOLDS != fold {
                if let Some(e) = &rows[i].embedding {
                    x.extend_from_slice(e);
                    y.push(index[rows[i].label.as_str()]);
                }
            }
        }
        let Ok(h) = Head::train(&x, dim, &y, labels.to_vec(), super::learn::head_options()) else {
            continue;
        };
        for (n, &i) in train.iter().enumerate() {
            if n % FOLDS == fold {
                if let Some(Ok(p)) = rows[i].embedding.as_ref().map(|e| h.predict_proba(e)) {
                    out.push((i, index[rows[i].label.as_str()], to64(&p)));
                }
            }
        }
    }
    out
}

fn to64(p: &[f32]) -> Vec<f64> {
    p.iter().map(|&v| f64::from(v)).collect()
}

/// `{label: p}` JSON into a row in `labels` order; `None` if a label is missing.
pub fn probs_in_order(json: &str, labels: &[String]) -> Option<Vec<f32>> {
    let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    labels
        .iter()
        .map(|l| m.get(l).and_then(|v| v.as_f64()).map(|v| v as f32))
        .collect()
}

fn stored(
    project: &Project,
    f: &calibrate::Fitted,
    model_version: String,
    audit_spent: i64,
    temperature_labels: usize,
    suspects: Vec<SuspectView>,
) -> Stored {
    let t = &f.thresholds;
    Stored {
        model_version,
        method: method_name(t.method).to_string(),
        target: t.target,
        delta: t.delta,
        temperature: f.temperature,
        ece_before: f.audit_ece_before.or(f.ece_before),
        ece_after: f.audit_ece_after.or(f.ece_after),
        reliability: Reliability {
            before: f.reliability_before.clone(),
            after: f.reliability_after.clone(),
        },
        classes: project
            .labels
            .iter()
            .zip(&t.classes)
            .map(|(label, c)| ClassCalibration {
                label: label.clone(),
                threshold: c.threshold,
                coverage: 0.0,
                precision: c.precision,
                lower_bound: c.lower_bound,
                audit_labels: c.audit_labels,
                drift_alarm: false,
            })
            .collect(),
        audit_labels: t.audit_labels,
        audit_spent_at_fit: audit_spent,
        temperature_labels,
        coverage: 0.0,
        precision: t.precision,
        lower_bound: t.lower_bound,
        with_leaked: None,
        suspects,
    }
}

/// The versions whose audit labels the drift alarm reads now, oldest first,
/// each with the time it came into force and its scorer: every version
/// after the last one (before `current`) that raised an alarm, through
/// `current`. A refit does not restart the stream; only a refit after an
/// alarm does. Why: a guideline change that drops precision from 0.95 to
/// 0.8 needs ~140 auto-accepted audit labels to show, more than one
/// version's worth at the default `calibrate_every`, so restarting at every
/// refit would rarely alarm. `simulate` does the same.
fn drift_epoch(history: &[CalibrationRow], current: &CalibrationRow) -> Vec<(i64, Scorer)> {
    let mut epoch: Vec<(i64, Scorer)> = epoch_rows(history, current)
        .into_iter()
        .filter_map(|r| {
            let s: Stored = serde_json::from_str(&r.body).ok()?;
            Some((
                r.created_at,
                Scorer::from_stored(r.version, &s, HashSet::new()),
            ))
        })
        .collect();
    epoch.sort_by_key(|(at, _)| *at);
    epoch
}

/// The rows of [`drift_epoch`]: versions after the last alarmed one before
/// `current`, then `current`.
fn epoch_rows<'a>(
    history: &'a [CalibrationRow],
    current: &'a CalibrationRow,
) -> Vec<&'a CalibrationRow> {
    let last_alarm = history
        .iter()
        .filter(|r| r.version < current.version && !parse_classes(&r.drift_classes).is_empty())
        .map(|r| r.version)
        .max()
        .unwrap_or(i64::MIN);
    history
        .iter()
        .filter(|r| r.version > last_alarm && r.version < current.version)
        .chain(std::iter::once(current))
        .collect()
}

/// The drift alarm over the audit labels given since the drift epoch began
/// ([`drift_epoch`]), in the order they arrived: one Bernoulli CUSUM per
/// class and one pooled, fed the outcome of every audit label on an item
/// that the version in force when the label arrived auto-accepts.
fn drift_of(
    project: &Project,
    epoch: &[(i64, Scorer)],
    s: &Stored,
    rows: &[LabeledRow],
) -> DriftView {
    let k = project.labels.len();
    // α split over the K per-class detectors and the pooled one.
    let alpha = DRIFT_ALPHA / (k as f64 + 1.0);
    let target = s.target;
    let margin = DRIFT_MARGIN.min(target / 2.0);
    let make = || DriftDetector::for_horizon(target, margin, DRIFT_HORIZON, alpha).ok();
    let Some(mut pooled) = make() else {
        return DriftView::default();
    };
    let mut per_class: Vec<Option<DriftDetector>> = (0..k).map(|_| make()).collect();
    let Some(start) = epoch.first().map(|(at, _)| *at) else {
        return DriftView::default();
    };
    // `labeled_rows` is ordered by `labeled_at`.
    for r in rows.iter().filter(|r| r.audit && r.labeled_at > start) {
        let in_force = epoch.partition_point(|(at, _)| *at < r.labeled_at);
        let Some((_, scorer)) = in_force.checked_sub(1).and_then(|i| epoch.get(i)) else {
            continue;
        };
        let Some(raw) = r
            .raw_scores
            .as_deref()
            .and_then(|j| probs_in_order(j, &project.labels))
        else {
            continue;
        };
        let d = scorer.decide(&project.labels, &raw);
        if !d.auto_accept {
            continue;
        }
        let correct = project.labels.get(d.index) == Some(&r.label);
        pooled.push(correct);
        if let Some(Some(c)) = per_class.get_mut(d.index) {
            c.push(correct);
        }
    }
    let state: DriftState = pooled.state();
    let mut classes: Vec<String> = if state.alarm {
        project.labels.clone()
    } else {
        per_class
            .iter()
            .zip(&project.labels)
            .filter(|(d, _)| d.as_ref().is_some_and(|d| d.state().alarm))
            .map(|(_, l)| l.clone())
            .collect()
    };
    classes.sort();
    DriftView {
        alarm: !classes.is_empty(),
        classes,
        observations: state.observations,
        wrong: state.wrong,
        statistic: state.statistic,
        threshold: state.threshold,
    }
}

/// After an audit label: update the drift alarm (stopping alarmed classes
/// and sending their items back to review), and refit when
/// `calibrate_every` new audit labels arrived since the current version.
pub fn after_audit_label(cal: &Calibrator, project: &Project) {
    cal.request(
        project.id,
        Upkeep {
            check: true,
            refit: false,
        },
    );
}

async fn check_and_refit(cal: &Calibrator, project: &Project) -> ServiceResult<()> {
    if project.task == super::regions::DETECT || project.task == super::regions::LINES {
        return refit_boxes_when_due(cal, project).await;
    }
    if project.task == super::regions::SEGMENTS {
        // No recording calibration yet: nothing to refit.
        return Ok(());
    }
    let rows = cal.store.labeled_rows(project.id).await?;
    let spent = rows.iter().filter(|r| r.audit).count() as i64;
    let every = project
        .settings
        .calibrate_every
        .unwrap_or(DEFAULT_CALIBRATE_EVERY) as i64;
    let current = cal.store.current_calibration(project.id).await?;
    let Some(row) = current else {
        if every > 0 && spent >= every {
            refit(cal, project.id).await?;
        }
        return Ok(());
    };
    let Ok(s) = serde_json::from_str::<Stored>(&row.body) else {
        return Ok(());
    };
    let history = cal.store.calibration_history(project.id).await?;
    let drift = drift_of(project, &drift_epoch(&history, &row), &s, &rows);
    let before = parse_classes(&row.drift_classes);
    let now: HashSet<String> = drift.classes.iter().cloned().collect();
    if now != before {
        let json = serde_json::to_string(&drift.classes).unwrap_or_else(|_| "[]".into());
        cal.store
            .set_drift_classes(project.id, row.version, &json)
            .await?;
        cal.metrics.drift_alarm(project.id, drift.alarm);
        if drift.alarm {
            tracing::warn!(
                project = project.id,
                version = row.version,
                classes = ?drift.classes,
                observations = drift.observations,
                wrong = drift.wrong,
                "drift alarm: audited precision of auto-accepted items fell below the target; these classes stop auto-accepting until a refit passes"
            );
            stop_classes(cal, project, row.version, &s, &now).await?;
        }
    }
    if every > 0 && spent - s.audit_spent_at_fit >= every {
        refit(cal, project.id).await?;
    }
    Ok(())
}

/// A detection project refits when `calibrate_every` new audit images were
/// reviewed since the version in force (no drift alarm for boxes yet).
async fn refit_boxes_when_due(cal: &Calibrator, project: &Project) -> ServiceResult<()> {
    let every = project
        .settings
        .calibrate_every
        .unwrap_or(DEFAULT_CALIBRATE_EVERY) as i64;
    if every == 0 {
        return Ok(());
    }
    let spent = cal.store.audit_counts(project.id).await?.spent;
    let at_fit = match cal.store.current_calibration(project.id).await? {
        Some(row) => box_calibration::parse(&row.body).map_or(0, |s| s.audit_spent_at_fit),
        None => 0,
    };
    if spent - at_fit >= every {
        refit(cal, project.id).await?;
    }
    Ok(())
}

/// Send the auto-accepted items of alarmed classes back to review.
async fn stop_classes(
    cal: &Calibrator,
    project: &Project,
    version: i64,
    s: &Stored,
    alarmed: &HashSet<String>,
) -> ServiceResult<()> {
    let scorer = Scorer::from_stored(version, s, alarmed.clone());
    let machine = cal.store.machine_rows(project.id).await?;
    let updates: Vec<Reroute> = machine
        .iter()
        .filter(|m| m.status == "auto_accepted")
        .filter_map(|m| {
            let raw = probs_in_order(m.raw_scores.as_deref()?, &project.labels)?;
            let d = scorer.decide(&project.labels, &raw);
            (!d.auto_accept).then(|| Reroute {
                id: m.id,
                auto_accept: false,
                label: project.labels.get(d.index).cloned().unwrap_or_default(),
                score: d.score,
                scores_json: crate::model::output::LabelScores::new(&project.labels, &d.probs)
                    .to_json(),
            })
        })
        .collect();
    cal.store.reroute(version, &updates).await?;
    Ok(())
}

/// After a head retrain: refit on the new head's scores if there are audit labels.
pub fn after_training(cal: &Calibrator, project_id: i64) {
    cal.request(
        project_id,
        Upkeep {
            check: false,
            refit: true,
        },
    );
}

/// `GET /v1/projects/{id}/calibration`.
pub async fn view(app: &App, project_id: i64) -> ServiceResult<CalibrationView> {
    let project = app.store.get_project(project_id).await?;
    let audit = app.store.audit_counts(project_id).await?;
    let history_rows = app.store.calibration_history(project_id).await?;
    let history = history_rows
        .iter()
        .filter_map(|r| {
            if let Some(b) = box_calibration::parse(&r.body) {
                return Some(HistoryPoint {
                    version: r.version,
                    created_at: r.created_at,
                    labels: b.audit_images,
                    audit_labels: b.audit_images,
                    coverage: b.coverage,
                    lower_bound: b.fdp_upper.map(|u| 1.0 - u),
                });
            }
            let s: Stored = serde_json::from_str(&r.body).ok()?;
            Some(HistoryPoint {
                version: r.version,
                created_at: r.created_at,
                labels: s.temperature_labels + s.audit_labels,
                audit_labels: s.audit_labels,
                coverage: s.coverage,
                lower_bound: s.lower_bound,
            })
        })
        .collect();
    let target = project.precision_target;
    let delta = project.settings.delta.unwrap_or(DEFAULT_DELTA);
    let current = app.store.current_calibration(project_id).await?;
    let have = audit.spent.max(0) as usize;
    let Some(row) = current else {
        let budget = if !super::regions::has_regions(&project.task) {
            budget(app, &project, Scorer::fixed(None), have, target, delta).await?
        } else {
            Vec::new()
        };
        return Ok(CalibrationView {
            budget,
            version: None,
            created_at: None,
            guarantee: Guarantee::of(None, project.threshold),
            fixed_threshold: project.threshold,
            target,
            delta,
            fit: None,
            audit,
            drift: DriftView::default(),
            history,
        });
    };
    if let Some(s) = box_calibration::parse(&row.body) {
        return Ok(CalibrationView {
            version: Some(row.version),
            created_at: Some(row.created_at),
            guarantee: Guarantee::Calibrated,
            fixed_threshold: project.threshold,
            target: s.target,
            delta: s.delta,
            fit: Some(Fit::Boxes(s)),
            audit,
            drift: DriftView::default(),
            history,
            budget: Vec::new(),
        });
    }
    let mut s: Stored = serde_json::from_str(&row.body)
        .map_err(|e| ServiceError::internal(format!("calibration {}: {e}", row.version)))?;
    let rows = app.store.labeled_rows(project_id).await?;
    let drift = drift_of(&project, &drift_epoch(&history_rows, &row), &s, &rows);
    for c in &mut s.classes {
        c.drift_alarm = drift.classes.contains(&c.label);
    }
    let scorer = Scorer::from_stored(row.version, &s, HashSet::new());
    let budget = budget(app, &project, scorer, have, s.target, s.delta).await?;
    Ok(CalibrationView {
        budget,
        version: Some(row.version),
        created_at: Some(row.created_at),
        guarantee: Guarantee::Calibrated,
        fixed_threshold: project.threshold,
        target: s.target,
        delta: s.delta,
        fit: Some(Fit::Classes(s)),
        audit,
        drift,
        history,
    })
}

/// The current version's suspects, as item ids, most suspicious first.
pub async fn suspects(app: &App, project_id: i64) -> ServiceResult<Vec<i64>> {
    let Some(row) = app.store.current_calibration(project_id).await? else {
        return Ok(Vec::new());
    };
    if box_calibration::parse(&row.body).is_some() {
        return Ok(Vec::new());
    }
    let s: Stored = serde_json::from_str(&row.body)
        .map_err(|e| ServiceError::internal(format!("calibration {}: {e}", row.version)))?;
    Ok(s.suspects.iter().map(|x| x.item_id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_draw_is_uniform_and_reproducible() {
        let n = 100_000;
        let hits = (0..n).filter(|&i| audit_uniform(3, i) < 0.05).count();
        let rate = hits as f64 / n as f64;
        assert!((rate - 0.05).abs() < 0.004, "{rate}");
        assert_eq!(audit_uniform(3, 17), audit_uniform(3, 17));
        assert_ne!(audit_uniform(3, 17), audit_uniform(4, 17));
    }

    #[test]
    fn the_drift_epoch_runs_over_refits_and_restarts_after_an_alarm() {
        let row = |version: i64, alarmed: &str| CalibrationRow {
            version,
            body: "{}".into(),
            audit_labels: 0,
            drift_classes: alarmed.into(),
            created_at: version * 1000,
        };
        let versions = |h: &[CalibrationRow], c: &CalibrationRow| {
            epoch_rows(h, c)
                .iter()
                .map(|r| r.version)
                .collect::<Vec<_>>()
        };
        let quiet: Vec<_> = (1..=4).map(|v| row(v, "[]")).collect();
        assert_eq!(versions(&quiet, &quiet[3]), vec![1, 2, 3, 4]);
        let mut h = quiet.clone();
        h[1] = row(2, r#"["Bag"]"#);
        // v2 alarmed: the refits after it start over.
        assert_eq!(versions(&h, &h[3]), vec![3, 4]);
        // The alarmed version itself keeps its own stream (and its alarm).
        assert_eq!(versions(&h, &h[1]), vec![1, 2]);
        assert_eq!(versions(&[], &row(1, "[]")), vec![1]);
    }

    #[test]
    fn top_gives_decides_class_and_score_without_the_distribution() {
        let labels: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let mut rng = crate::select::rng::Rng::new(11);
        for t in [0.3, 0.8, 1.0, 1.7, 4.0, f64::NAN, 0.0] {
            let s = Scorer {
                temperature: t,
                ..Scorer::fixed(Some(0.9))
            };
            for _ in 0..500 {
                let mut row: Vec<f32> = (0..5).map(|_| rng.below(1000) as f32 / 999.0).collect();
                if rng.below(10) == 0 {
                    row[rng.below(5)] = 0.0;
                }
                let sum: f32 = row.iter().sum::<f32>().max(1e-6);
                row.iter_mut().for_each(|p| *p /= sum);
                let d = s.decide(&labels, &row);
                assert_eq!(s.top(&row), (d.index, d.score), "{row:?} at T = {t}");
            }
        }
    }

    #[test]
    fn a_fixed_scorer_uses_raw_scores_and_a_calibrated_one_its_thresholds() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let d = Scorer::fixed(Some(0.9)).decide(&labels, &[0.95, 0.05]);
        assert!(d.auto_accept);
        // Without an explicit fixed threshold nothing is accepted before a fit.
        let d = Scorer::fixed(None).decide(&labels, &[1.0, 0.0]);
        assert!(!d.auto_accept);
        let mut thresholds = HashMap::new();
        thresholds.insert("a".to_string(), Some(0.99));
        thresholds.insert("b".to_string(), Some(0.6));
        let s = Scorer {
            version: Some(1),
            temperature: 1.0,
            thresholds,
            alarmed: HashSet::new(),
            fixed: None,
        };
        assert!(!s.decide(&labels, &[0.95, 0.05]).auto_accept);
        assert!(s.decide(&labels, &[0.3, 0.7]).auto_accept);
        let mut alarmed = s.clone();
        alarmed.alarmed.insert("b".into());
        assert!(!alarmed.decide(&labels, &[0.3, 0.7]).auto_accept);
    }

    #[test]
    fn audit_min_audits_every_item_of_a_short_class() {
        let s = ProjectSettings {
            audit_rate: Some(0.1),
            audit_min: Some(5),
            ..ProjectSettings::default()
        };
        assert_eq!(audit_probability(&s, 4), 1.0);
        assert_eq!(audit_probability(&s, 5), 0.1);
    }
}
