//! Replaying the whole loop on data whose labels are known: a simulated
//! annotator answers (with the true label, or a wrong one at a noise rate,
//! or under a swapped guideline after a drift), the head learns, the
//! calibration decides what may be auto-accepted, and everything is
//! measured against the truth.
//!
//! Per strategy and seed, each round:
//! 1. the round's audit labels arrive (a uniform draw from the pool, fixed
//!    up front); the drift alarm sees the outcome of each one the version in
//!    force auto-accepts;
//! 2. the predictor scores every item: a head trained on the non-audit
//!    human labels, the model's own probabilities, or zero-shot similarity;
//! 3. a refit, when the service would do one (the first round, after each
//!    head retrain, after `calibrate_every` new audit labels), calls the
//!    same [`calibrate::fit`] the service calls, with the same split: the
//!    temperature on the non-audit labels (cross-fitted probabilities for a
//!    head, so no row is scored by a head that saw it), thresholds on the
//!    audit labels, which the head never trained on;
//! 4. every machine-decided item is routed, and coverage and realised
//!    precision are measured against the truth, beside a point-estimate
//!    threshold and the single-threshold oracle;
//! 5. the strategy picks the next review batch.
//!
//! Knows nothing of HTTP, storage or ONNX.

pub mod boxes;
mod plot;
pub mod screened;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

pub use plot::svg_plot;

use crate::calibrate::{
    self, find_label_errors, fit_ipw, fit_point_estimate, ipw_design, AuditSample, Curves,
    DrawKind, DriftDetector, FitOptions, Fitted, IpwDraw, Labeled, LabeledRows, Method,
    ThresholdOptions,
};
use crate::learn::{crossfit, Head, ZeroShot};
use crate::select::rng::Rng;
use crate::select::strategies::{self, Pool, Strategy};
use crate::service::calibration::{DRIFT_ALPHA, DRIFT_HORIZON, DRIFT_MARGIN};

/// Folds of the cross-fit, as the service uses.
const FOLDS: usize = 5;

/// Embedded, labeled data: `x` is n×dim row-major, `y[i]` indexes `labels`.
pub struct Dataset {
    pub ids: Vec<String>,
    pub x: Vec<f32>,
    pub dim: usize,
    pub y: Vec<usize>,
    pub labels: Vec<String>,
    /// The model's own class probabilities (n × labels, in `labels` order),
    /// for [`Predictor::Model`].
    pub model_probs: Option<Vec<f32>>,
    /// One embedding per label (labels × dim), for [`Predictor::ZeroShot`].
    pub prototypes: Option<Vec<f32>>,
}

/// What scores the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Predictor {
    /// A head trained each round on the non-audit human labels.
    Head,
    /// The model's own classifier output (fixed; only the temperature learns).
    Model,
    /// Cosine similarity to the label (description) embeddings.
    ZeroShot,
}

impl Predictor {
    pub fn parse(s: &str) -> Option<Predictor> {
        match s {
            "head" => Some(Predictor::Head),
            "model" => Some(Predictor::Model),
            "zero-shot" => Some(Predictor::ZeroShot),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub strategies: Vec<Strategy>,
    pub seed_size: usize,
    pub batch: usize,
    pub rounds: usize,
    pub seed: u64,
    /// Seeds `seed, seed + 1, …`: whole runs with fresh draws, same data.
    pub seeds: usize,
    /// Every `test_every`-th item (by input order) is held out for testing.
    pub test_every: usize,
    /// Before any audit label: an explicit fixed threshold on raw scores,
    /// with no guarantee (as a project's); `None`: nothing accepted before
    /// the first fit (as the service's default).
    pub threshold: Option<f32>,
    /// Committee size for vote-entropy and mean-KL (bootstrap heads).
    pub committee: usize,
    pub predictor: Predictor,
    pub target: f64,
    pub delta: f64,
    pub method: Method,
    /// Share of the pool drawn into the audit sample (used when
    /// `audit_labels` is `None`).
    pub audit_rate: f64,
    /// Size of the audit sample.
    pub audit_labels: Option<usize>,
    /// Audit labels answered per round (`None`: all in the first round).
    pub audit_per_round: Option<usize>,
    /// Refit after this many new audit labels (0: only on the first round
    /// and after head retrains).
    pub calibrate_every: usize,
    /// From this round on the annotator's truth for the two classes is swapped.
    pub drift_at: Option<usize>,
    pub drift_swap: Option<(usize, usize)>,
    /// The annotator answers a uniformly random wrong label at this rate.
    pub noise: f64,
    /// Keep going until every pool item is human-labeled or auto-accepted.
    pub finish: bool,
    /// How the audit items are drawn.
    pub audit_design: AuditDesign,
    /// How the review batches are chosen.
    pub review_sampling: ReviewSampling,
    /// ipw only (an anytime-valid test may stop whenever it likes): stop
    /// auditing once a round's new audit draws raised the auto-accepted
    /// items, as a share of the pool, by less than this (`None`: audit up
    /// to the budget).
    pub audit_stop_gain: Option<f64>,
}

/// How the review batches are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ReviewSampling {
    /// The strategy's ranking, strictly its top `batch` (deterministic:
    /// these labels never count towards the bound).
    TopK,
    /// Each batch drawn one item at a time, without replacement, with
    /// probability proportional to the model's chance of being wrong plus a
    /// uniform share over every unlabeled item
    /// ([`calibrate::review_design`]); the probabilities are kept, and
    /// under the ipw audit the labels count towards the bound.
    Proportional { uniform_share: f64 },
}

/// How the audit items are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AuditDesign {
    /// Once, uniformly, without replacement (the thresholds: `method`).
    Uniform,
    /// Each round, with replacement, favouring the decision region with a
    /// uniform share ([`calibrate::ipw`]); the thresholds: class curves as
    /// `pooled` orders them, tested by the betting e-process.
    Ipw { uniform_share: f64 },
}

/// A baseline's realised figures on the machine-decided items.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Baseline {
    pub threshold: Option<f64>,
    pub coverage: f64,
    pub precision: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub round: usize,
    /// Human labels so far: seed, review and audit.
    pub labels: usize,
    pub audit_labels: usize,
    pub accuracy: f64,
    /// Share of the machine-decided pool items auto-accepted.
    pub auto_coverage: f64,
    /// Their precision against the truth (1 when none is accepted).
    pub auto_precision: f64,
    /// Items decided by the machine (pool minus human-labeled and pending audit).
    pub machine_items: usize,
    /// Whether the calibration was refitted this round.
    pub refit: bool,
    pub temperature: f64,
    /// Per class: the auto-accept threshold on calibrated scores, `null` for none.
    pub thresholds: BTreeMap<String, Option<f64>>,
    /// Pooled Clopper–Pearson lower bound of the accepted audit items.
    pub precision_bound: Option<f64>,
    /// ECE (15 bins) of the held-out audit labels before and after scaling
    /// (of the temperature labels while there are no audit labels).
    pub ece_before: Option<f64>,
    pub ece_after: Option<f64>,
    /// The drift alarm was raised during this round, or is still in force
    /// after its refit (an alarm latches until a refit).
    pub drift_alarm: bool,
    /// Classes it stopped.
    pub drift_classes: Vec<String>,
    /// SageMaker-style point estimate on the same audit labels and scores.
    pub point_estimate: Baseline,
    /// The largest coverage a single threshold reaches at realised
    /// precision ≥ target, knowing the truth.
    pub oracle_coverage: f64,
    /// Audit draws so far, repeats included (`ipw`; equals `audit_labels`
    /// for the uniform design).
    pub audit_draws: usize,
}

/// `--finish`: what the finished data set cost.
#[derive(Debug, Clone, Serialize)]
pub struct Finish {
    /// Every pool item human-labeled or auto-accepted.
    pub complete: bool,
    pub pool: usize,
    pub seed_labels: usize,
    pub review_labels: usize,
    pub audit_labels: usize,
    pub auto_accepted: usize,
    /// (seed + review + audit) / pool.
    pub human_share: f64,
    /// Of the whole finished set, human labels taken as true.
    pub precision: f64,
}

/// `--noise`: how well the suspect list finds the corrupted labels.
#[derive(Debug, Clone, Serialize)]
pub struct LabelQuality {
    pub human_labels: usize,
    pub corrupted: usize,
    /// Suspects listed (labels the out-of-sample model contradicts).
    pub suspects: usize,
    /// Share of corrupted labels among the top k = `corrupted` suspects.
    pub precision_at_k: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub rounds: Vec<RoundResult>,
    /// Labels after which this strategy stays at or above random selection's
    /// final accuracy (None: it does not by the last round).
    pub labels_to_match_random: Option<usize>,
    /// 1 - labels_to_match_random / random's labels.
    pub label_savings: Option<f64>,
    /// Audit labels spent when the drift began (`--drift-at`).
    pub drift_start_audit: Option<usize>,
    /// Audit labels spent when the alarm fired, each time it fired.
    pub alarms_at_audit: Vec<usize>,
    /// Audit labels from the drift to the first alarm after it.
    pub drift_delay: Option<usize>,
    pub finish: Option<Finish>,
    pub label_quality: Option<LabelQuality>,
    /// Final-round rows, written by the CLI (not in simulation.json).
    #[serde(skip)]
    pub predictions: Vec<PredictionRow>,
    #[serde(skip)]
    pub quality_rows: Vec<QualityRow>,
}

/// One pool item in the final round.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionRow {
    pub seed: u64,
    pub id: String,
    /// The human label for human items, else the machine's.
    pub label: String,
    /// The machine's prediction (arg-max of the calibrated scores).
    pub predicted: String,
    /// Calibrated top score, and the raw one.
    pub score: f64,
    pub raw_score: f64,
    pub true_label: String,
    /// `auto_accepted`, `needs_review`, `human` or `audit`.
    pub status: &'static str,
    /// The annotator's answer, for human and answered audit items.
    pub human_label: Option<String>,
}

/// One human label with its out-of-sample probabilities (for comparing
/// the suspect list with other label-error finders on the same numbers).
#[derive(Debug, Clone, Serialize)]
pub struct QualityRow {
    pub seed: u64,
    pub id: String,
    pub given: usize,
    pub truth: usize,
    pub corrupted: bool,
    pub probs: Vec<f64>,
    /// Position in the suspect list (0 = most suspicious), if listed.
    pub suspect_rank: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedResults {
    pub seed: u64,
    pub random_final_accuracy: Option<f64>,
    pub results: Vec<StrategyResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub items: usize,
    pub pool: usize,
    pub test: usize,
    pub dim: usize,
    pub labels: Vec<String>,
    pub seed_size: usize,
    pub batch: usize,
    pub rounds: usize,
    pub seed: u64,
    pub threshold: Option<f32>,
    pub predictor: Predictor,
    pub target: f64,
    pub delta: f64,
    pub method: String,
    pub audit_design: AuditDesign,
    pub review_sampling: ReviewSampling,
    pub audit_sample: usize,
    pub random_final_accuracy: Option<f64>,
    /// The first seed's results (what the plot and the table show).
    pub results: Vec<StrategyResult>,
    /// Every seed's results, the first included.
    pub runs: Vec<SeedResults>,
}

fn rows(x: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
    out
}

fn to64(p: &[f32]) -> Vec<f64> {
    p.iter().map(|&v| f64::from(v)).collect()
}

/// A reproducible draw per (seed, item): the same item gets the same noise
/// under every strategy, so strategies differ only by what they select.
fn item_uniform(seed: u64, item: usize, salt: u64) -> f64 {
    let mut z = seed.rotate_left(17) ^ (item as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Shared per-run context.
struct Ctx<'a> {
    data: &'a Dataset,
    opts: &'a SimOptions,
    pool: Vec<usize>,
    test: Vec<usize>,
    k: usize,
    /// The zero-shot classifier, built once.
    zero_shot: Option<ZeroShot>,
}

impl Ctx<'_> {
    /// The annotator's truth for item `i` (dataset index) in `round`.
    fn truth(&self, i: usize, round: usize) -> usize {
        let y = self.data.y[i];
        match (self.opts.drift_at, self.opts.drift_swap) {
            (Some(at), Some((a, b))) if round >= at => {
                if y == a {
                    b
                } else if y == b {
                    a
                } else {
                    y
                }
            }
            _ => y,
        }
    }
}

/// Run every strategy over every seed; `progress(strategy, round)` is
/// called as rounds finish.
pub fn run(
    data: &Dataset,
    opts: &SimOptions,
    mut progress: impl FnMut(Strategy, usize),
) -> Result<SimReport, String> {
    let n = data.y.len();
    if n == 0 || data.x.len() != n * data.dim {
        return Err("the data set is empty or its embeddings do not match its labels".into());
    }
    let k = data.labels.len();
    if data.ids.len() != n {
        return Err("the data set's ids do not match its labels".into());
    }
    let zero_shot = match opts.predictor {
        Predictor::ZeroShot => {
            let protos = data
                .prototypes
                .clone()
                .ok_or("zero-shot needs label embeddings")?;
            Some(
                ZeroShot::new(protos, data.dim, crate::learn::zero_shot::DEFAULT_SCALE)
                    .map_err(|e| e.to_string())?,
            )
        }
        _ => None,
    };
    if opts.predictor == Predictor::Model
        && data.model_probs.as_ref().is_none_or(|p| p.len() != n * k)
    {
        return Err(
            "--predictor model needs the model's class probabilities for every item".into(),
        );
    }
    let test_every = opts.test_every.max(2);
    let test: Vec<usize> = (0..n).filter(|i| i % test_every == 0).collect();
    let pool: Vec<usize> = (0..n).filter(|i| i % test_every != 0).collect();
    if pool.len() < opts.seed_size + opts.batch {
        return Err(format!(
            "the pool has {} items: too few for the seed set and one batch",
            pool.len()
        ));
    }
    let ctx = Ctx {
        data,
        opts,
        pool,
        test,
        k,
        zero_shot,
    };
    let audit_sample = audit_size(&ctx);
    let mut runs = Vec::new();
    for s in 0..opts.seeds.max(1) {
        let seed = opts.seed.wrapping_add(s as u64);
        let mut results = Vec::new();
        for &strategy in &opts.strategies {
            results.push(run_one(&ctx, strategy, seed, &mut progress)?);
        }
        let random_final = savings(&mut results);
        runs.push(SeedResults {
            seed,
            random_final_accuracy: random_final,
            results,
        });
    }
    let first = runs.first().cloned();
    Ok(SimReport {
        items: n,
        pool: ctx.pool.len(),
        test: ctx.test.len(),
        dim: data.dim,
        labels: data.labels.clone(),
        seed_size: opts.seed_size,
        batch: opts.batch,
        rounds: opts.rounds,
        seed: opts.seed,
        threshold: opts.threshold,
        predictor: opts.predictor,
        target: opts.target,
        delta: opts.delta,
        method: format!("{:?}", opts.method).to_lowercase(),
        audit_design: opts.audit_design,
        review_sampling: opts.review_sampling,
        audit_sample,
        random_final_accuracy: first.as_ref().and_then(|f| f.random_final_accuracy),
        results: first.map(|f| f.results).unwrap_or_default(),
        runs,
    })
}

fn audit_size(ctx: &Ctx) -> usize {
    let rest = ctx.pool.len().saturating_sub(ctx.opts.seed_size);
    ctx.opts
        .audit_labels
        .unwrap_or_else(|| (ctx.opts.audit_rate.clamp(0.0, 1.0) * rest as f64).round() as usize)
        .min(rest)
}

/// Savings against random: labels needed to reach random's final accuracy.
fn savings(results: &mut [StrategyResult]) -> Option<f64> {
    let random_final = results
        .iter()
        .find(|r| r.strategy == Strategy::Random.as_str())
        .and_then(|r| r.rounds.last().map(|x| (x.accuracy, x.labels)));
    if let Some((target, random_labels)) = random_final {
        for r in results.iter_mut() {
            // The first round from which the strategy stays at or above the
            // target: one lucky round does not count as reaching it.
            r.labels_to_match_random = (0..r.rounds.len())
                .find(|&i| r.rounds[i..].iter().all(|x| x.accuracy >= target))
                .map(|i| r.rounds[i].labels);
            r.label_savings = r
                .labels_to_match_random
                .map(|l| 1.0 - l as f64 / random_labels.max(1) as f64);
        }
    }
    random_final.map(|r| r.0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Seed,
    Review,
    Audit,
}

/// The calibration in force.
enum Version {
    /// No audit label yet: the explicit fixed threshold on raw scores, if any.
    Fixed,
    Fitted(Box<Fitted>),
}

impl Version {
    /// (predicted class, calibrated score, raw top score, passes the threshold).
    fn decide(&self, raw: &[f32], fixed: Option<f64>) -> (usize, f64, f64, bool) {
        let raw64 = to64(raw);
        match self {
            Version::Fixed => {
                let (c, s) = calibrate::fit::top1(&raw64);
                (c, s, s, fixed.is_some_and(|t| s >= t))
            }
            Version::Fitted(f) => {
                let d = f.decide(&raw64);
                (d.predicted, d.score, raw64[d.predicted], d.auto_accept)
            }
        }
    }
}

/// The drift detectors: one per class and one pooled, as the service runs them.
struct Drift {
    pooled: DriftDetector,
    per_class: Vec<DriftDetector>,
}

impl Drift {
    fn new(target: f64, k: usize) -> Result<Drift, String> {
        // α split over the K per-class detectors and the pooled one.
        let alpha = DRIFT_ALPHA / (k as f64 + 1.0);
        let margin = DRIFT_MARGIN.min(target / 2.0);
        let make = || {
            DriftDetector::for_horizon(target, margin, DRIFT_HORIZON, alpha)
                .map_err(|e| e.to_string())
        };
        Ok(Drift {
            pooled: make()?,
            per_class: (0..k).map(|_| make()).collect::<Result<_, _>>()?,
        })
    }

    /// Stopped classes: all for a pooled alarm, else the alarmed ones.
    fn stopped(&self) -> HashSet<usize> {
        if self.pooled.state().alarm {
            (0..self.per_class.len()).collect()
        } else {
            (0..self.per_class.len())
                .filter(|&c| self.per_class[c].state().alarm)
                .collect()
        }
    }
}

struct Annotated {
    given: Vec<Option<usize>>,
    kind: Vec<Kind>,
    corrupted: Vec<bool>,
}

impl Annotated {
    /// The simulated annotator labels pool position `p` in `round`.
    fn annotate(&mut self, ctx: &Ctx, seed: u64, p: usize, round: usize, kind: Kind) {
        let truth = ctx.truth(ctx.pool[p], round);
        let mut label = truth;
        if ctx.opts.noise > 0.0 && ctx.k > 1 && item_uniform(seed, p, 1) < ctx.opts.noise {
            let shift =
                1 + ((item_uniform(seed, p, 2) * (ctx.k - 1) as f64) as usize).min(ctx.k - 2);
            label = (truth + shift) % ctx.k;
            self.corrupted[p] = true;
        }
        self.given[p] = Some(label);
        self.kind[p] = kind;
    }
}

/// Probabilities (pool positions then test rows) from the predictor, and
/// the head when one was trained.
fn predict(
    ctx: &Ctx,
    train_pos: &[usize],
    ann: &Annotated,
    positions: &[usize],
) -> Result<(Vec<f32>, Option<Head>), String> {
    let d = ctx.data;
    let idx: Vec<usize> = positions.iter().map(|&p| ctx.pool[p]).collect();
    match ctx.opts.predictor {
        Predictor::Head => {
            let tidx: Vec<usize> = train_pos.iter().map(|&p| ctx.pool[p]).collect();
            let x = rows(&d.x, d.dim, &tidx);
            let y: Vec<usize> = train_pos.iter().filter_map(|&p| ann.given[p]).collect();
            let head = Head::train(
                &x,
                d.dim,
                &y,
                d.labels.clone(),
                crate::service::learn::head_options(),
            )
            .map_err(|e| e.to_string())?;
            let p = head
                .predict_proba_batch(&rows(&d.x, d.dim, &idx))
                .map_err(|e| e.to_string())?;
            Ok((p, Some(head)))
        }
        Predictor::Model => {
            let mp = d.model_probs.as_deref().unwrap_or(&[]);
            Ok((rows(mp, ctx.k, &idx), None))
        }
        Predictor::ZeroShot => {
            let z = ctx.zero_shot.as_ref().ok_or("no zero-shot classifier")?;
            let p = z
                .predict_proba_batch(&rows(&d.x, d.dim, &idx))
                .map_err(|e| e.to_string())?;
            Ok((p, None))
        }
    }
}

fn test_probs(ctx: &Ctx, head: Option<&Head>) -> Result<Vec<f32>, String> {
    let d = ctx.data;
    let x = rows(&d.x, d.dim, &ctx.test);
    match ctx.opts.predictor {
        Predictor::Head => head
            .ok_or("no head")?
            .predict_proba_batch(&x)
            .map_err(|e| e.to_string()),
        Predictor::Model => Ok(rows(
            d.model_probs.as_deref().unwrap_or(&[]),
            ctx.k,
            &ctx.test,
        )),
        Predictor::ZeroShot => ctx
            .zero_shot
            .as_ref()
            .ok_or("no zero-shot classifier")?
            .predict_proba_batch(&x)
            .map_err(|e| e.to_string()),
    }
}

/// Out-of-sample probabilities of the non-audit human labels (cross-fitted
/// for a head, the fixed predictor's own otherwise), as (position, row).
fn temperature_rows(
    ctx: &Ctx,
    train_pos: &[usize],
    ann: &Annotated,
    probs: &[f32],
) -> Vec<(usize, Vec<f64>)> {
    let k = ctx.k;
    match ctx.opts.predictor {
        Predictor::Head => {
            let d = ctx.data;
            let idx: Vec<usize> = train_pos.iter().map(|&p| ctx.pool[p]).collect();
            let x = rows(&d.x, d.dim, &idx);
            let y: Vec<usize> = train_pos.iter().filter_map(|&p| ann.given[p]).collect();
            crossfit::cross_fit(
                &x,
                d.dim,
                &y,
                &d.labels,
                crate::service::learn::head_options(),
                FOLDS,
            )
            .into_iter()
            .zip(train_pos)
            .filter_map(|(r, &p)| r.map(|r| (p, to64(&r))))
            .collect()
        }
        _ => train_pos
            .iter()
            .map(|&p| (p, to64(&probs[p * k..(p + 1) * k])))
            .collect(),
    }
}

fn top(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// The largest share of `items` (score, correct) a single threshold
/// accepts at precision ≥ target.
fn oracle_coverage(items: &mut [(f64, bool)], target: f64) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut right, mut best) = (0usize, 0usize);
    for i in 0..items.len() {
        right += usize::from(items[i].1);
        let boundary = items.get(i + 1).is_none_or(|n| n.0 < items[i].0);
        if boundary && right as f64 >= target * (i + 1) as f64 {
            best = i + 1;
        }
    }
    best as f64 / items.len() as f64
}

fn run_one(
    ctx: &Ctx,
    strategy: Strategy,
    seed: u64,
    progress: &mut impl FnMut(Strategy, usize),
) -> Result<StrategyResult, String> {
    let opts = ctx.opts;
    let (k, npool) = (ctx.k, ctx.pool.len());
    let data = ctx.data;
    // The same seed set and audit sample for every strategy of a seed.
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..npool).collect();
    rng.shuffle(&mut order);
    let audit_total = audit_size(ctx);
    let seed_set = order[..opts.seed_size].to_vec();
    let ipw_share = match opts.audit_design {
        AuditDesign::Ipw { uniform_share } => Some(uniform_share),
        AuditDesign::Uniform => None,
    };
    // The uniform design draws its whole sample up front; ipw draws each round.
    let audit_order = if ipw_share.is_some() {
        Vec::new()
    } else {
        order[opts.seed_size..opts.seed_size + audit_total].to_vec()
    };
    let mut ipw = IpwState::default();
    let per_round = opts.audit_per_round.unwrap_or(audit_total).max(1);
    let mut drawn = vec![false; npool];
    for &p in &audit_order {
        drawn[p] = true;
    }
    let mut ann = Annotated {
        given: vec![None; npool],
        kind: vec![Kind::None; npool],
        corrupted: vec![false; npool],
    };
    for &p in &seed_set {
        ann.annotate(ctx, seed, p, 0, Kind::Seed);
    }
    let mut train_pos: Vec<usize> = seed_set.clone(); // non-audit human labels, in order
    let mut audit_answered = 0usize;
    let mut version = Version::Fixed;
    let mut fitted_once = false;
    let mut audits_at_fit = 0usize;
    let mut drift = Drift::new(opts.target, k)?;
    let mut prev_probs: Vec<f32> = Vec::new();
    let mut drift_start_audit = None;
    let mut alarms_at_audit = Vec::new();
    let mut rounds = Vec::new();
    let all_pos: Vec<usize> = (0..npool).collect();
    let max_round = if opts.finish {
        // Each round answers a batch or audit labels, or ends the run.
        npool / opts.batch.max(1) + audit_total / per_round + 2
    } else {
        opts.rounds
    };
    let mut last_probs = Vec::new();
    let mut last_version_scores: Vec<(usize, f64, f64, bool)> = Vec::new();
    let mut last_fitted: Option<Fitted> = None;
    for round in 0..=max_round {
        // 1. The round's audit labels, seen by the drift alarm.
        if opts.drift_at == Some(round) {
            drift_start_audit = Some(audit_answered);
        }
        let want = audit_total.min(per_round.saturating_mul(round + 1));
        while ipw_share.is_none() && audit_answered < want {
            let p = audit_order[audit_answered];
            ann.annotate(ctx, seed, p, round, Kind::Audit);
            audit_answered += 1;
            if fitted_once && !prev_probs.is_empty() {
                let (pred, _, _, accept) = version.decide(
                    &prev_probs[p * k..(p + 1) * k],
                    opts.threshold.map(f64::from),
                );
                if accept {
                    let was = drift.pooled.state().alarm || drift.per_class[pred].state().alarm;
                    let correct = ann.given[p] == Some(pred);
                    drift.pooled.push(correct);
                    drift.per_class[pred].push(correct);
                    let now = drift.pooled.state().alarm || drift.per_class[pred].state().alarm;
                    if now && !was {
                        alarms_at_audit.push(audit_answered);
                    }
                }
            }
        }
        // Classes the alarm stopped during this round's audit labels (a
        // refit below may resume them).
        let alarmed_in_round = drift.stopped();
        // 2. Scores for every pool item.
        let (probs, head) = predict(ctx, &train_pos, &ann, &all_pos)?;
        // 2b. ipw: this round's audit draws, from the current scores.
        let mut audited_now = false;
        if let Some(u) = ipw_share {
            if audit_answered < want && !ipw.stuck {
                audited_now = true;
                ipw.draw_round(
                    ctx,
                    seed,
                    round,
                    u,
                    &version,
                    &probs,
                    &mut ann,
                    &mut drawn,
                    want,
                    &mut audit_answered,
                )?;
            }
        }
        let tp = test_probs(ctx, head.as_ref())?;
        let right = tp
            .chunks_exact(k)
            .zip(&ctx.test)
            .filter(|(p, &i)| top(p) == ctx.truth(i, round))
            .count();
        let accuracy = right as f64 / ctx.test.len().max(1) as f64;
        // 3. Refit when the service would.
        let retrained = opts.predictor == Predictor::Head;
        let due = !fitted_once
            || retrained
            || (opts.calibrate_every > 0 && audit_answered - audits_at_fit >= opts.calibrate_every);
        let audit_pos: Vec<usize> = if ipw_share.is_some() {
            ipw.audited.clone()
        } else {
            audit_order[..audit_answered].to_vec()
        };
        if due {
            let trows = temperature_rows(ctx, &train_pos, &ann, &probs);
            let tp64: Vec<f64> = trows.iter().flat_map(|r| r.1.iter().copied()).collect();
            let ty: Vec<usize> = trows.iter().filter_map(|r| ann.given[r.0]).collect();
            let ap: Vec<f64> = audit_pos
                .iter()
                .flat_map(|&p| to64(&probs[p * k..(p + 1) * k]))
                .collect();
            let ay: Vec<usize> = audit_pos.iter().filter_map(|&p| ann.given[p]).collect();
            let fopts = FitOptions {
                target: opts.target,
                delta: opts.delta,
                method: opts.method,
                ..FitOptions::default()
            };
            let fitted = if ipw_share.is_some() {
                ipw.fit(ctx, &ann, &probs, &trows, &tp64, &ty)?
            } else {
                calibrate::fit(
                    k,
                    LabeledRows {
                        probs: &tp64,
                        labels: &ty,
                    },
                    LabeledRows {
                        probs: &ap,
                        labels: &ay,
                    },
                    &fopts,
                )
                .map_err(|e| e.to_string())?
            };
            version = if audit_pos.is_empty() {
                // Before the first audit label the explicit fixed threshold
                // decides (none: nothing is accepted); the temperature fit is still reported.
                Version::Fixed
            } else {
                Version::Fitted(Box::new(fitted.clone()))
            };
            if !audit_pos.is_empty() || !fitted_once {
                audits_at_fit = audit_answered;
            }
            fitted_once = true;
            // A refit clears a raised alarm (the stopped classes resume if
            // it passes); without an alarm the stream goes on.
            if !drift.stopped().is_empty() {
                drift = Drift::new(opts.target, k)?;
            }
            last_fitted = Some(fitted);
        }
        prev_probs = probs.clone();
        // 4. Route every machine-decided item.
        let stopped = drift.stopped();
        let fixed = opts.threshold.map(f64::from);
        let mut machine: Vec<(f64, bool)> = Vec::new();
        let (mut covered, mut right) = (0usize, 0usize);
        let mut scores = Vec::with_capacity(npool);
        for p in 0..npool {
            let d = version.decide(&probs[p * k..(p + 1) * k], fixed);
            let accept = d.3 && !stopped.contains(&d.0);
            scores.push((d.0, d.1, d.2, accept));
            if ann.given[p].is_some() || drawn[p] {
                continue;
            }
            let correct = d.0 == ctx.truth(ctx.pool[p], round);
            machine.push((d.1, correct));
            if accept {
                covered += 1;
                right += usize::from(correct);
            }
        }
        // The point estimate on the same audit samples.
        let samples: Vec<AuditSample> = audit_pos
            .iter()
            .map(|&p| {
                let (pred, score, _, _) = scores[p];
                AuditSample {
                    score,
                    predicted: pred,
                    correct: ann.given[p] == Some(pred),
                }
            })
            .collect();
        let point = point_estimate(&samples, &scores, &ann, &drawn, ctx, round)?;
        let oracle = oracle_coverage(&mut machine.clone(), opts.target);
        let (temperature, thresholds, bound, ece_b, ece_a) = match (&version, &last_fitted) {
            (Version::Fitted(f), _) => (
                f.temperature,
                data.labels
                    .iter()
                    .zip(&f.thresholds.classes)
                    .map(|(l, c)| (l.clone(), c.threshold))
                    .collect(),
                f.thresholds.lower_bound,
                f.audit_ece_before.or(f.ece_before),
                f.audit_ece_after.or(f.ece_after),
            ),
            (Version::Fixed, f) => (
                1.0,
                data.labels.iter().map(|l| (l.clone(), fixed)).collect(),
                None,
                f.as_ref().and_then(|f| f.ece_before),
                f.as_ref().and_then(|f| f.ece_after),
            ),
        };
        let mut drift_classes: Vec<String> = stopped
            .union(&alarmed_in_round)
            .map(|&c| data.labels[c].clone())
            .collect();
        drift_classes.sort();
        let human = ann.given.iter().filter(|g| g.is_some()).count();
        rounds.push(RoundResult {
            round,
            labels: human,
            audit_labels: audit_answered,
            accuracy,
            auto_coverage: covered as f64 / machine.len().max(1) as f64,
            auto_precision: if covered == 0 {
                1.0
            } else {
                right as f64 / covered as f64
            },
            machine_items: machine.len(),
            refit: due,
            temperature,
            thresholds,
            precision_bound: bound,
            ece_before: ece_b,
            ece_after: ece_a,
            drift_alarm: !drift_classes.is_empty(),
            drift_classes,
            point_estimate: point,
            oracle_coverage: oracle,
            audit_draws: if ipw_share.is_some() {
                ipw.draws.len()
            } else {
                audit_answered
            },
        });
        // An anytime-valid audit may stop when it stops paying.
        if let (true, Some(gain)) = (audited_now && due, opts.audit_stop_gain) {
            // Accepted items as a share of the pool (a review batch shrinks
            // the machine-decided set, which alone would raise the coverage).
            let now = covered as f64 / npool.max(1) as f64;
            if ipw.best_coverage.is_some_and(|best| now < best + gain) {
                ipw.stuck = true;
            }
            ipw.best_coverage = Some(ipw.best_coverage.map_or(now, |b| b.max(now)));
        }
        progress(strategy, round);
        last_probs = probs;
        last_version_scores = scores;
        // 5. Done?
        let pending_audit = audit_answered < audit_total && !ipw.stuck;
        if opts.finish {
            let open = (0..npool)
                .filter(|&p| ann.given[p].is_none() && !last_version_scores[p].3)
                .count();
            if open == 0 && !pending_audit {
                break;
            }
        } else if round == opts.rounds {
            break;
        }
        // 6. The next review batch: unlabeled, not drawn for audit (and in
        // --finish, not auto-accepted: those need no human; the
        // proportional rule keeps them drawable at the uniform share).
        if let ReviewSampling::Proportional { uniform_share } = opts.review_sampling {
            // Every item no person labeled keeps a positive probability,
            // the auto-accepted ones too (that is what lets the labels count).
            let reviewed = ipw.review_batch(
                ctx,
                seed,
                round,
                uniform_share,
                &version,
                &last_probs,
                &mut ann,
                &drawn,
            )?;
            train_pos.extend(&reviewed);
            if reviewed.is_empty() && !pending_audit {
                break;
            }
            continue;
        }
        let unlabeled: Vec<usize> = (0..npool)
            .filter(|&p| ann.given[p].is_none() && !drawn[p])
            .filter(|&p| !opts.finish || !last_version_scores[p].3)
            .collect();
        if unlabeled.is_empty() {
            if pending_audit {
                continue;
            }
            break;
        }
        let chosen = select_batch(
            ctx,
            strategy,
            seed,
            round,
            &unlabeled,
            &last_probs,
            &train_pos,
            &ann,
            head.as_ref(),
        )?;
        for c in chosen {
            let p = unlabeled[c];
            if ann.given[p].is_none() {
                ann.annotate(ctx, seed, p, round, Kind::Review);
                ipw.left(p, DrawKind::Review);
                train_pos.push(p);
            }
        }
    }
    let last_round = rounds.last().map(|r: &RoundResult| r.round).unwrap_or(0);
    let finish = opts
        .finish
        .then(|| finish_summary(ctx, &ann, &last_version_scores, &drawn, last_round));
    let drift_delay = drift_start_audit.and_then(|start| {
        alarms_at_audit
            .iter()
            .find(|&&a| a > start)
            .map(|&a| a - start)
    });
    let (label_quality, quality_rows) = if opts.noise > 0.0 {
        label_quality(
            ctx,
            seed,
            &train_pos,
            &audit_order[..audit_answered],
            &ann,
            &last_probs,
            last_round,
        )
    } else {
        (None, Vec::new())
    };
    let predictions = (0..npool)
        .map(|p| {
            let (pred, score, raw, accept) = last_version_scores[p];
            let i = ctx.pool[p];
            let status = match ann.kind[p] {
                Kind::Audit => "audit",
                Kind::Seed | Kind::Review => "human",
                Kind::None if drawn[p] => "audit",
                Kind::None if accept => "auto_accepted",
                Kind::None => "needs_review",
            };
            let given = ann.given[p].map(|g| data.labels[g].clone());
            PredictionRow {
                seed,
                id: data.ids[i].clone(),
                label: given.clone().unwrap_or_else(|| data.labels[pred].clone()),
                predicted: data.labels[pred].clone(),
                score,
                raw_score: raw,
                true_label: data.labels[ctx.truth(i, last_round)].clone(),
                status,
                human_label: given,
            }
        })
        .collect();
    Ok(StrategyResult {
        strategy: strategy.as_str().to_string(),
        rounds,
        labels_to_match_random: None,
        label_savings: None,
        drift_start_audit,
        alarms_at_audit,
        drift_delay,
        finish,
        label_quality,
        predictions,
        quality_rows,
    })
}

/// The draw-time facts of one ipw round: every eligible item's
/// probability is `q_in` inside the region, `q_out` outside.
struct IpwRound {
    q_in: f64,
    q_out: f64,
    eligible: Vec<bool>,
    in_region: Vec<bool>,
}

/// The ipw audit of one run: every draw (repeats included) and the rounds'
/// designs, kept so that each fit reads the inclusion probabilities fixed at
/// draw time; the randomised review draws; and when each labeled item left
/// the population (one clock for draws and labels).
#[derive(Default)]
struct IpwState {
    /// (pool position, its probability at the draw, round index, clock).
    draws: Vec<(usize, f64, usize, u64)>,
    /// Review draws: (pool position, probability, smallest probability, clock).
    review_draws: Vec<(usize, f64, f64, u64)>,
    /// Labeled items after the seed set: (pool position, clock, how).
    left: Vec<(usize, u64, DrawKind)>,
    clock: u64,
    rounds: Vec<IpwRound>,
    /// Distinct audited positions, in first-draw order.
    audited: Vec<usize>,
    /// The draw budget ran out before enough distinct items (every eligible
    /// item audited), or the coverage stopped growing
    /// (`audit_stop_gain`): stop asking for more.
    stuck: bool,
    /// The best auto-accepted coverage after a round with new audit draws.
    best_coverage: Option<f64>,
}

/// The score the design ranks by: the version in force's calibrated top
/// score, through its class curves when it has them (raw before a fit).
fn design_score(version: &Version, raw: &[f32]) -> f64 {
    match version {
        Version::Fixed => calibrate::fit::top1(&to64(raw)).1,
        Version::Fitted(f) => {
            let d = f.decide(&to64(raw));
            match &f.curves {
                Some(c) => c.adjust(d.predicted, d.score),
                None => d.score,
            }
        }
    }
}

impl IpwState {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Item `p` was labeled now.
    fn left(&mut self, p: usize, how: DrawKind) {
        let at = self.tick();
        self.left.push((p, at, how));
    }

    /// One review batch by the proportional rule: `batch` draws without
    /// replacement from every item no person labeled (and not drawn for
    /// audit), each with its probability kept. Returns the reviewed positions.
    #[allow(clippy::too_many_arguments)]
    fn review_batch(
        &mut self,
        ctx: &Ctx,
        seed: u64,
        round: usize,
        uniform_share: f64,
        version: &Version,
        probs: &[f32],
        ann: &mut Annotated,
        drawn: &[bool],
    ) -> Result<Vec<usize>, String> {
        let k = ctx.k;
        let mut cands: Vec<usize> = (0..ctx.pool.len())
            .filter(|&p| ann.given[p].is_none() && !drawn[p])
            .collect();
        let mut scores: Vec<f64> = cands
            .iter()
            .map(|&p| design_score(version, &probs[p * k..(p + 1) * k]))
            .collect();
        // Waiting for review: what the version in force does not accept.
        let fixed = ctx.opts.threshold.map(f64::from);
        let mut open: Vec<bool> = cands
            .iter()
            .map(|&p| !version.decide(&probs[p * k..(p + 1) * k], fixed).3)
            .collect();
        let mut rng = Rng::new(seed ^ 0x4E71_E3A5 ^ ((round as u64) << 20));
        let mut out = Vec::new();
        while out.len() < ctx.opts.batch && !cands.is_empty() {
            let q = calibrate::review_design(&scores, &open, uniform_share)
                .map_err(|e| e.to_string())?;
            let p_min = q.iter().copied().fold(1.0, f64::min);
            let j = calibrate::ipw::draw(&q, rng.unit());
            let p = cands.swap_remove(j);
            scores.swap_remove(j);
            open.swap_remove(j);
            ann.annotate(ctx, seed, p, round, Kind::Review);
            let at = self.tick();
            self.review_draws.push((p, q[j], p_min, at));
            self.left.push((p, at, DrawKind::Review));
            out.push(p);
        }
        Ok(out)
    }

    /// Draws until `want` distinct items are audited (repeats reuse the label).
    #[allow(clippy::too_many_arguments)]
    fn draw_round(
        &mut self,
        ctx: &Ctx,
        seed: u64,
        round: usize,
        uniform_share: f64,
        version: &Version,
        probs: &[f32],
        ann: &mut Annotated,
        drawn: &mut [bool],
        want: usize,
        answered: &mut usize,
    ) -> Result<(), String> {
        let (k, npool) = (ctx.k, ctx.pool.len());
        let elig: Vec<usize> = (0..npool)
            .filter(|&p| !matches!(ann.kind[p], Kind::Seed | Kind::Review))
            .collect();
        if elig.is_empty() {
            self.stuck = true;
            return Ok(());
        }
        let scores: Vec<f64> = elig
            .iter()
            .map(|&p| design_score(version, &probs[p * k..(p + 1) * k]))
            .collect();
        let q = ipw_design(&scores, uniform_share, ctx.opts.target).map_err(|e| e.to_string())?;
        let q_out = q.iter().copied().fold(f64::INFINITY, f64::min);
        let q_in = q.iter().copied().fold(0.0, f64::max);
        let (mut eligible, mut in_region) = (vec![false; npool], vec![false; npool]);
        for (j, &p) in elig.iter().enumerate() {
            eligible[p] = true;
            in_region[p] = q[j] >= q_in * (1.0 - 1e-12);
        }
        let r_idx = self.rounds.len();
        self.rounds.push(IpwRound {
            q_in,
            q_out,
            eligible,
            in_region,
        });
        let mut rng = Rng::new(seed ^ 0x5EED_A0D1 ^ ((round as u64) << 24));
        let budget = 50 * (want + 10);
        let mut tries = 0;
        while *answered < want {
            if tries >= budget {
                self.stuck = true;
                break;
            }
            tries += 1;
            let j = calibrate::ipw::draw(&q, rng.unit());
            let p = elig[j];
            let at = self.tick();
            self.draws.push((p, q[j], r_idx, at));
            if !drawn[p] {
                drawn[p] = true;
                ann.annotate(ctx, seed, p, round, Kind::Audit);
                self.audited.push(p);
                self.left.push((p, at, DrawKind::Audit));
                *answered += 1;
            }
        }
        Ok(())
    }

    /// Temperature and class curves on the non-audit rows (as `pooled`),
    /// then the betting scan over every draw so far on the fit-time scores.
    fn fit(
        &self,
        ctx: &Ctx,
        ann: &Annotated,
        probs: &[f32],
        trows: &[(usize, Vec<f64>)],
        tp64: &[f64],
        ty: &[usize],
    ) -> Result<Fitted, String> {
        let (k, npool, opts) = (ctx.k, ctx.pool.len(), ctx.opts);
        let fopts = FitOptions {
            target: opts.target,
            delta: opts.delta,
            method: Method::Pooled,
            ..FitOptions::default()
        };
        let mut f = calibrate::fit(
            k,
            LabeledRows {
                probs: tp64,
                labels: ty,
            },
            LabeledRows::EMPTY,
            &fopts,
        )
        .map_err(|e| e.to_string())?;
        let curves = f.curves.clone().unwrap_or_else(|| Curves::identity(k));
        let score = |row: &[f64]| {
            let d = f.decide(row);
            (d.predicted, curves.adjust(d.predicted, d.score))
        };
        let mut adj: Vec<(usize, f64)> = (0..npool)
            .map(|p| score(&to64(&probs[p * k..(p + 1) * k])))
            .collect();
        // A reviewed item is scored out of sample: by the cross-fitted head
        // that did not train on it (the fixed predictor's own row otherwise).
        for (p, row) in trows {
            if ann.kind[*p] == Kind::Review {
                adj[*p] = score(row);
            }
        }
        // The statement is about the items no person labeled; the candidates
        // are read from them and the audited ones (which items the audit
        // drew must not move the thresholds it tests).
        let population: Vec<f64> = (0..npool)
            .filter(|&p| ann.kind[p] == Kind::None)
            .map(|p| adj[p].1)
            .collect();
        let grid: Vec<f64> = (0..npool)
            .filter(|&p| matches!(ann.kind[p], Kind::None | Kind::Audit))
            .map(|p| adj[p].1)
            .collect();
        // Per round: the highest fit-time score of an item that was
        // eligible but outside the region (−∞: none).
        let above: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| {
                (0..npool)
                    .filter(|&p| r.eligible[p] && !r.in_region[p])
                    .map(|p| adj[p].1)
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        let correct = |p: usize| ann.given[p] == Some(adj[p].0);
        let mut draws: Vec<IpwDraw> = self
            .draws
            .iter()
            .map(|&(p, q, r, at)| IpwDraw {
                score: adj[p].1,
                predicted: adj[p].0,
                correct: correct(p),
                p: q,
                p_min: self.rounds[r].q_out,
                above: above[r],
                p_min_above: self.rounds[r].q_in,
                at,
                kind: DrawKind::Audit,
            })
            .collect();
        // The randomised review rule's labels count, at their probabilities.
        draws.extend(self.review_draws.iter().map(|&(p, q, q_min, at)| IpwDraw {
            score: adj[p].1,
            predicted: adj[p].0,
            correct: correct(p),
            p: q,
            p_min: q_min,
            above: f64::INFINITY,
            p_min_above: q_min,
            at,
            kind: DrawKind::Review,
        }));
        draws.sort_by_key(|d| d.at);
        let labeled: Vec<Labeled> = self
            .left
            .iter()
            .map(|&(p, at, kind)| Labeled {
                score: adj[p].1,
                correct: correct(p),
                at,
                kind,
            })
            .collect();
        let fit = fit_ipw(
            &draws,
            &labeled,
            &grid,
            &population,
            npool,
            opts.target,
            opts.delta,
        )
        .map_err(|e| e.to_string())?;
        for (c, class) in f.thresholds.classes.iter_mut().enumerate() {
            class.threshold = fit.threshold.and_then(|l| curves.classes[c].inverse(l));
        }
        let above_t: Vec<&IpwDraw> = draws
            .iter()
            .filter(|d| fit.threshold.is_some_and(|t| d.score >= t))
            .collect();
        tracing::debug!(
            draws_above = above_t.len(),
            wrong_above = above_t.iter().filter(|d| !d.correct).count(),
            threshold = ?fit.threshold,
            coverage = fit.coverage,
            e_value = ?fit.e_value,
            start = fit.start_share,
            draws = draws.len(),
            "ipw fit"
        );
        Ok(f)
    }
}

/// The point-estimate threshold on the audit samples, measured on the
/// machine-decided items.
fn point_estimate(
    samples: &[AuditSample],
    scores: &[(usize, f64, f64, bool)],
    ann: &Annotated,
    drawn: &[bool],
    ctx: &Ctx,
    round: usize,
) -> Result<Baseline, String> {
    let none = Baseline {
        threshold: None,
        coverage: 0.0,
        precision: None,
    };
    if samples.is_empty() {
        return Ok(none);
    }
    let topts = ThresholdOptions {
        target: ctx.opts.target,
        delta: ctx.opts.delta,
        ..ThresholdOptions::default()
    };
    let fit = fit_point_estimate(samples, ctx.k, &topts).map_err(|e| e.to_string())?;
    let Some(t) = fit.threshold(0) else {
        return Ok(none);
    };
    let (mut n, mut acc, mut right) = (0usize, 0usize, 0usize);
    for (p, &(pred, score, _, _)) in scores.iter().enumerate() {
        if ann.given[p].is_some() || drawn[p] {
            continue;
        }
        n += 1;
        if score >= t {
            acc += 1;
            right += usize::from(pred == ctx.truth(ctx.pool[p], round));
        }
    }
    Ok(Baseline {
        threshold: Some(t),
        coverage: acc as f64 / n.max(1) as f64,
        precision: (acc > 0).then(|| right as f64 / acc as f64),
    })
}

/// The strategy's next batch among `unlabeled` (pool positions).
#[allow(clippy::too_many_arguments)]
fn select_batch(
    ctx: &Ctx,
    strategy: Strategy,
    seed: u64,
    round: usize,
    unlabeled: &[usize],
    probs: &[f32],
    train_pos: &[usize],
    ann: &Annotated,
    head: Option<&Head>,
) -> Result<Vec<usize>, String> {
    let (k, d) = (ctx.k, ctx.data);
    let upos: Vec<Vec<f32>> = unlabeled
        .iter()
        .map(|&p| probs[p * k..(p + 1) * k].to_vec())
        .collect();
    let ux_idx: Vec<usize> = unlabeled.iter().map(|&p| ctx.pool[p]).collect();
    let ux = if strategy.needs_embeddings() || strategy.needs_committee() {
        rows(&d.x, d.dim, &ux_idx)
    } else {
        Vec::new()
    };
    let lidx: Vec<usize> = train_pos.iter().map(|&p| ctx.pool[p]).collect();
    let committee: Vec<Vec<Vec<f32>>> = match head {
        Some(head) if strategy.needs_committee() => (0..ctx.opts.committee.max(2))
            .map(|m| {
                let mut r = Rng::new(seed ^ ((round as u64) << 16) ^ (m as u64 + 1));
                let boot: Vec<usize> = (0..train_pos.len())
                    .map(|_| train_pos[r.below(train_pos.len())])
                    .collect();
                let bidx: Vec<usize> = boot.iter().map(|&p| ctx.pool[p]).collect();
                let bx = rows(&d.x, d.dim, &bidx);
                let by: Vec<usize> = boot.iter().filter_map(|&p| ann.given[p]).collect();
                let h = Head::train(
                    &bx,
                    d.dim,
                    &by,
                    d.labels.clone(),
                    crate::service::learn::head_options(),
                )
                .unwrap_or_else(|_| head.clone());
                h.predict_proba_batch(&ux)
                    .map(|f| f.chunks_exact(k).map(<[f32]>::to_vec).collect())
                    .unwrap_or_else(|_| upos.clone())
            })
            .collect(),
        // A fixed predictor has no bootstrap: a committee of one opinion.
        _ if strategy.needs_committee() => vec![upos.clone(); ctx.opts.committee.max(2)],
        _ => Vec::new(),
    };
    let labeled_x = if strategy.needs_embeddings() {
        rows(&d.x, d.dim, &lidx)
    } else {
        Vec::new()
    };
    let pool_view = Pool {
        probs: &upos,
        embeddings: if strategy.needs_embeddings() {
            &ux
        } else {
            &[]
        },
        dim: d.dim,
        committee: &committee,
    };
    let s = seed.wrapping_add(round as u64 + 1);
    strategies::select(strategy, &pool_view, &labeled_x, ctx.opts.batch, s)
        .map_err(|e| e.to_string())
}

fn finish_summary(
    ctx: &Ctx,
    ann: &Annotated,
    scores: &[(usize, f64, f64, bool)],
    drawn: &[bool],
    round: usize,
) -> Finish {
    let count = |kind: Kind| ann.kind.iter().filter(|&&x| x == kind).count();
    let (seed_labels, review_labels, audit_labels) =
        (count(Kind::Seed), count(Kind::Review), count(Kind::Audit));
    let (mut auto, mut right, mut open) = (0usize, 0usize, 0usize);
    for (p, &(pred, _, _, accept)) in scores.iter().enumerate() {
        let truth = ctx.truth(ctx.pool[p], round);
        match ann.given[p] {
            // Human labels are taken as true.
            Some(_) => right += 1,
            None if accept && !drawn[p] => {
                auto += 1;
                right += usize::from(pred == truth);
            }
            None => open += 1,
        }
    }
    let npool = ctx.pool.len().max(1);
    Finish {
        complete: open == 0,
        pool: ctx.pool.len(),
        seed_labels,
        review_labels,
        audit_labels,
        auto_accepted: auto,
        human_share: (seed_labels + review_labels + audit_labels) as f64 / npool as f64,
        precision: right as f64 / (npool - open).max(1) as f64,
    }
}

/// Confident learning on the out-of-sample probabilities of every human
/// label, as the service computes its suspects, scored against the
/// corruption the annotator made.
fn label_quality(
    ctx: &Ctx,
    seed: u64,
    train_pos: &[usize],
    audit_pos: &[usize],
    ann: &Annotated,
    probs: &[f32],
    round: usize,
) -> (Option<LabelQuality>, Vec<QualityRow>) {
    let k = ctx.k;
    let mut rows_: Vec<(usize, Vec<f64>)> = temperature_rows(ctx, train_pos, ann, probs);
    rows_.extend(
        audit_pos
            .iter()
            .map(|&p| (p, to64(&probs[p * k..(p + 1) * k]))),
    );
    let flat: Vec<f64> = rows_.iter().flat_map(|r| r.1.iter().copied()).collect();
    let given: Vec<usize> = rows_.iter().filter_map(|r| ann.given[r.0]).collect();
    if given.len() != rows_.len() || given.len() < 2 {
        return (None, Vec::new());
    }
    let Ok(found) = find_label_errors(&flat, k, &given) else {
        return (None, Vec::new());
    };
    let mut rank = vec![None; rows_.len()];
    for (r, s) in found.suspects.iter().enumerate() {
        rank[s.index] = Some(r);
    }
    let corrupted = rows_.iter().filter(|r| ann.corrupted[r.0]).count();
    let hits = found
        .suspects
        .iter()
        .take(corrupted)
        .filter(|s| ann.corrupted[rows_[s.index].0])
        .count();
    let quality = LabelQuality {
        human_labels: rows_.len(),
        corrupted,
        suspects: found.suspects.len(),
        precision_at_k: (corrupted > 0).then(|| hits as f64 / corrupted as f64),
    };
    let out = rows_
        .iter()
        .enumerate()
        .map(|(j, (p, pr))| QualityRow {
            seed,
            id: ctx.data.ids[ctx.pool[*p]].clone(),
            given: given[j],
            truth: ctx.truth(ctx.pool[*p], round),
            corrupted: ann.corrupted[*p],
            probs: pr.clone(),
            suspect_rank: rank[j],
        })
        .collect();
    (Some(quality), out)
}
