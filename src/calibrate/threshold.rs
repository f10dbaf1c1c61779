//! Auto-accept thresholds with a stated guarantee:
//! **P(precision of the auto-accepted items ≥ target) ≥ 1 − δ.**
//!
//! # Method: Learn-then-Test, fixed-sequence
//! (Angelopoulos, Bates, Candès, Jordan & Lei, *Learn then Test*, 2021.)
//! Within one predicted class (or over all items, for [`fit_global`]) the
//! audit items are sorted by score, highest first. Candidate `j` accepts the
//! top `m_j = start + j·step` audit items, that is every item whose score is
//! at least the `m_j`-th audit score; ties extend the accepted set; the last
//! candidate is all `n` audit items. For each candidate, H0 "precision of the
//! items at or above this threshold < target" is tested with the exact
//! binomial p-value `P(X ≥ correct | accepted, target)` (equivalently: the
//! one-sided Clopper–Pearson lower bound at level 1 − δ is ≥ target).
//! Candidates are tested strict to loose and the scan **stops at the first
//! failure**; the loosest passing candidate is the threshold. Fixed-sequence
//! testing controls the family-wise error at δ with no multiplicity
//! penalty, because the order is fixed before the labels are looked at.
//!
//! The grid is stepped by accepted audit counts, not by score values: a grid
//! in score space starts where only a handful of audit items are accepted,
//! where one error makes the bound fail and the scan stops having accepted
//! nothing. Every count from `start` on is a candidate (`step` 1: on the
//! figures' audit sets a coarser grid of 10 lost 0.3–2.5 points of
//! coverage and no violations were saved). The default `start` is a count
//! fixed from the sample size alone, before any label is read:
//! - the smallest count at which a candidate **with one error** can pass
//!   (93 at 0.95 and δ' = 0.05), when there are at least twice that many
//!   audit items. A first candidate that must be error-free (59 items)
//!   fails on a single confidently wrong or mislabelled audit item and the
//!   scan accepts nothing: on SMS spam that happened in 3 of 20 seeds
//!   (mean coverage 0.850, against 1.000 from the one-error start);
//! - otherwise the smallest count at which an error-free candidate can pass,
//!   `⌈ln δ' / ln target⌉` (59), so that small samples can pass at all.
//!
//! [`fit_per_class`] runs one scan per predicted class at δ' = δ / K
//! (Bonferroni over the K = `num_classes` classes, fixed in advance): all K
//! statements hold together with probability ≥ 1 − δ, so every class's
//! auto-accepted set, and therefore their union, has precision ≥ target.
//! [`fit_global`] runs one scan at δ over all scores: one shared threshold.
//! Both return the same [`ThresholdFit`] so callers can compare coverage.
//! A class whose audit labels are too few to reach `start` accepts nothing.
//!
//! # Assumptions (the guarantee holds only under them)
//! - The audit items are a uniform random sample (i.i.d. or exchangeable)
//!   of the items the thresholds will be applied to, at least within each
//!   predicted class: a per-class audit rate (`audit_min`) is fine for
//!   [`fit_per_class`]; [`fit_global`] and the pooled figures need one audit
//!   rate for all classes. Review-list labels are biased toward hard items
//!   and must not be passed here.
//! - The scores being tested were not fitted on these audit labels (neither
//!   the head nor the temperature): hold out, split or cross-fit.
//! - Items and their correctness are exchangeable between audit and use:
//!   drift breaks this, which is what [`super::drift`] watches for.
//! - Thresholds are audit order statistics. Given the `m`-th audit score
//!   `t`, the `m − 1` audit items above it are i.i.d. from the items above
//!   `t`, so the binomial test is exact for them; the boundary item at `t`
//!   itself is counted too, which is conservative when P(correct | score)
//!   increases with the score.
//!
//! `lower_bound` and `precision` are reported at the chosen threshold for
//! inspection; since that threshold was selected on the same labels, the
//! guaranteed statement is "precision ≥ target", not "precision ≥ the
//! reported lower bound".

use super::binomial::{lower_bound, p_value_at_least};
use super::CalibrateError;

/// One audited item: its (calibrated) top-class score, the class the
/// machine predicted, and whether a human confirmed that prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditSample {
    pub score: f64,
    pub predicted: usize,
    pub correct: bool,
}

/// Target, risk, and the candidate grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdOptions {
    /// Precision the auto-accepted items must reach, in (0, 1).
    pub target: f64,
    /// Allowed probability of missing the target, in (0, 0.5].
    pub delta: f64,
    /// Accepted audit items added from one candidate to the next (≥ 1).
    pub step: usize,
    /// Accepted audit items at the first candidate (≥ 1). `None`: fixed
    /// from the sample size (the module doc says how).
    pub start: Option<usize>,
}

impl Default for ThresholdOptions {
    fn default() -> Self {
        ThresholdOptions {
            target: 0.95,
            delta: 0.05,
            step: 1,
            start: None,
        }
    }
}

/// Which procedure produced a [`ThresholdFit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One scan per predicted class, δ / K each.
    PerClass,
    /// One scan over all classes, one threshold, δ.
    Global,
    /// One scan at δ over a class-aware score (per-class correctness curves
    /// fitted on non-audit labels, shrunk to the pooled one): one threshold
    /// per class, no Bonferroni split ([`super::pooled`]).
    Pooled,
    /// The loosest global threshold whose audit precision is ≥ target: a
    /// point estimate with no confidence level (the SageMaker Ground Truth
    /// rule), for comparison only.
    PointEstimate,
}

/// What one predicted class gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassThreshold {
    /// Auto-accept items of this class with score ≥ threshold; `None`:
    /// accept none.
    pub threshold: Option<f64>,
    /// Audit labels of this predicted class that were given.
    pub audit_labels: usize,
    /// Of those, how many the threshold accepts...
    pub accepted: usize,
    /// ...and how many of the accepted were correct.
    pub correct: usize,
    /// `correct / accepted`, `None` if nothing accepted.
    pub precision: Option<f64>,
    /// Clopper–Pearson lower bound on that precision at level
    /// 1 − `test_delta` (descriptive, see the module doc).
    pub lower_bound: Option<f64>,
}

/// The thresholds of every class and the pooled audit figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdFit {
    pub method: Method,
    pub target: f64,
    pub delta: f64,
    /// δ given to each scan: δ / K per class, δ for the global threshold.
    pub test_delta: f64,
    /// Indexed by predicted class, `num_classes` entries.
    pub classes: Vec<ClassThreshold>,
    /// All audit labels given.
    pub audit_labels: usize,
    /// Pooled over classes: accepted audit items...
    pub accepted: usize,
    /// ...and the correct ones among them.
    pub correct: usize,
    /// Share of audit items auto-accepted: the audit estimate of coverage.
    pub coverage: f64,
    /// Pooled `correct / accepted`.
    pub precision: Option<f64>,
    /// Pooled Clopper–Pearson lower bound at level 1 − δ (descriptive).
    pub lower_bound: Option<f64>,
}

impl ThresholdFit {
    /// Whether an item predicted as `predicted` with `score` is
    /// auto-accepted. Unknown classes and NaN scores are not.
    pub fn accepts(&self, predicted: usize, score: f64) -> bool {
        match self.threshold(predicted) {
            Some(t) => score >= t,
            None => false,
        }
    }

    /// The threshold of one class, `None` if it accepts nothing.
    pub fn threshold(&self, class: usize) -> Option<f64> {
        self.classes.get(class).and_then(|c| c.threshold)
    }
}

fn validate(
    samples: &[AuditSample],
    num_classes: usize,
    opts: &ThresholdOptions,
) -> Result<(), CalibrateError> {
    super::open_unit("target", opts.target)?;
    super::risk_level(opts.delta)?;
    if opts.step == 0 {
        return Err(CalibrateError::OutOfRange {
            name: "step",
            value: 0.0,
            domain: "[1, ∞)",
        });
    }
    if opts.start == Some(0) {
        return Err(CalibrateError::OutOfRange {
            name: "start",
            value: 0.0,
            domain: "[1, ∞)",
        });
    }
    if num_classes == 0 {
        return Err(CalibrateError::Empty("classes"));
    }
    for (i, s) in samples.iter().enumerate() {
        if !s.score.is_finite() {
            return Err(CalibrateError::NonFinite {
                what: "samples.score",
                index: i,
            });
        }
        if s.predicted >= num_classes {
            return Err(CalibrateError::ClassOutOfRange {
                what: "samples.predicted",
                index: i,
                class: s.predicted,
                num_classes,
            });
        }
    }
    Ok(())
}

/// Smallest `m` with `target^m ≤ delta`: below it even `m` correct out of
/// `m` cannot pass.
fn min_passing_count(target: f64, delta: f64) -> usize {
    let m = (delta.ln() / target.ln()).ceil();
    if m.is_finite() && m >= 1.0 {
        m as usize
    } else {
        1
    }
}

/// Smallest `m` at which `m − errors` correct out of `m` pass at `delta`:
/// `P(X ≥ m − errors | m, target) ≤ delta`. Capped, for absurd inputs.
fn min_count_with_errors(errors: u64, target: f64, delta: f64) -> usize {
    const CAP: u64 = 1 << 24;
    let mut m = (min_passing_count(target, delta) as u64).max(errors + 1);
    while m < CAP {
        match p_value_at_least(m - errors, m, target) {
            Ok(p) if p <= delta => break,
            Ok(_) => m += 1,
            Err(_) => break,
        }
    }
    m as usize
}

/// The first candidate's accepted count (see the module doc): the option if
/// given; else the one-error count when the sample holds at least twice
/// that many items, and the error-free count when it does not.
fn start_count(n: usize, opts: &ThresholdOptions, test_delta: f64) -> usize {
    if let Some(start) = opts.start {
        return start;
    }
    let one_error = min_count_with_errors(1, opts.target, test_delta);
    if n >= 2 * one_error {
        one_error
    } else {
        min_passing_count(opts.target, test_delta)
    }
}

/// One fixed-sequence scan over audit items sorted by descending score.
/// Returns the loosest passing threshold, if any.
fn scan(
    sorted: &[AuditSample],
    target: f64,
    test_delta: f64,
    start: usize,
    step: usize,
) -> Result<Option<f64>, CalibrateError> {
    let n = sorted.len();
    if n < start {
        return Ok(None);
    }
    let mut correct_prefix = Vec::with_capacity(n + 1);
    let mut acc = 0usize;
    correct_prefix.push(0);
    for s in sorted {
        acc += usize::from(s.correct);
        correct_prefix.push(acc);
    }
    let mut best = None;
    let mut tested_up_to = 0usize;
    let mut m = start;
    loop {
        let m_eff = m.min(n);
        // A tie block may already have carried an earlier candidate past m.
        if m_eff > tested_up_to {
            let t = sorted[m_eff - 1].score;
            let mut a = m_eff;
            while a < n && sorted[a].score >= t {
                a += 1;
            }
            let k = correct_prefix[a];
            if p_value_at_least(k as u64, a as u64, target)? > test_delta {
                break;
            }
            best = Some(t);
            tested_up_to = a;
        }
        if m_eff == n {
            break;
        }
        m = m.saturating_add(step);
    }
    Ok(best)
}

fn class_summary(
    samples: &[AuditSample],
    class: usize,
    threshold: Option<f64>,
    bound_delta: f64,
) -> Result<ClassThreshold, CalibrateError> {
    let (mut audit_labels, mut accepted, mut correct) = (0, 0, 0);
    for s in samples.iter().filter(|s| s.predicted == class) {
        audit_labels += 1;
        if threshold.is_some_and(|t| s.score >= t) {
            accepted += 1;
            correct += usize::from(s.correct);
        }
    }
    let (precision, lb) = precision_and_bound(correct, accepted, bound_delta)?;
    Ok(ClassThreshold {
        threshold,
        audit_labels,
        accepted,
        correct,
        precision,
        lower_bound: lb,
    })
}

type Estimate = (Option<f64>, Option<f64>);

fn precision_and_bound(
    correct: usize,
    accepted: usize,
    delta: f64,
) -> Result<Estimate, CalibrateError> {
    if accepted == 0 {
        return Ok((None, None));
    }
    Ok((
        Some(correct as f64 / accepted as f64),
        Some(lower_bound(correct as u64, accepted as u64, delta)?),
    ))
}

fn assemble(
    method: Method,
    samples: &[AuditSample],
    thresholds: &[Option<f64>],
    opts: &ThresholdOptions,
    test_delta: f64,
) -> Result<ThresholdFit, CalibrateError> {
    let classes = thresholds
        .iter()
        .enumerate()
        .map(|(c, &t)| class_summary(samples, c, t, test_delta))
        .collect::<Result<Vec<_>, _>>()?;
    let accepted: usize = classes.iter().map(|c| c.accepted).sum();
    let correct: usize = classes.iter().map(|c| c.correct).sum();
    let (precision, lb) = precision_and_bound(correct, accepted, opts.delta)?;
    Ok(ThresholdFit {
        method,
        target: opts.target,
        delta: opts.delta,
        test_delta,
        classes,
        audit_labels: samples.len(),
        accepted,
        correct,
        coverage: if samples.is_empty() {
            0.0
        } else {
            accepted as f64 / samples.len() as f64
        },
        precision,
        lower_bound: lb,
    })
}

/// [`assemble`] for the sibling modules (the pooled fit).
pub(crate) fn assemble_for(
    method: Method,
    samples: &[AuditSample],
    thresholds: &[Option<f64>],
    opts: &ThresholdOptions,
    test_delta: f64,
) -> Result<ThresholdFit, CalibrateError> {
    assemble(method, samples, thresholds, opts, test_delta)
}

fn sorted_desc(mut v: Vec<AuditSample>) -> Vec<AuditSample> {
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    v
}

/// Per-predicted-class thresholds, δ split evenly over the `num_classes`
/// classes (Bonferroni). No samples is not an error: every class then
/// accepts nothing, which is the honest answer (the service decides
/// whether to refuse calibrating without audit labels).
pub fn fit_per_class(
    samples: &[AuditSample],
    num_classes: usize,
    opts: &ThresholdOptions,
) -> Result<ThresholdFit, CalibrateError> {
    validate(samples, num_classes, opts)?;
    let test_delta = opts.delta / num_classes as f64;
    let mut by_class: Vec<Vec<AuditSample>> = vec![Vec::new(); num_classes];
    for s in samples {
        by_class[s.predicted].push(*s);
    }
    let thresholds = by_class
        .into_iter()
        .map(|v| {
            let sorted = sorted_desc(v);
            let start = start_count(sorted.len(), opts, test_delta);
            scan(&sorted, opts.target, test_delta, start, opts.step)
        })
        .collect::<Result<Vec<_>, _>>()?;
    assemble(Method::PerClass, samples, &thresholds, opts, test_delta)
}

/// One threshold shared by all classes, tested at the full δ.
pub fn fit_global(
    samples: &[AuditSample],
    num_classes: usize,
    opts: &ThresholdOptions,
) -> Result<ThresholdFit, CalibrateError> {
    validate(samples, num_classes, opts)?;
    let sorted = sorted_desc(samples.to_vec());
    let start = start_count(sorted.len(), opts, opts.delta);
    let found = scan(&sorted, opts.target, opts.delta, start, opts.step)?;
    assemble(
        Method::Global,
        samples,
        &vec![found; num_classes],
        opts,
        opts.delta,
    )
}

/// For comparison only, with **no guarantee**: the loosest single
/// threshold at which the accepted audit items' precision is ≥ target
/// (every audit score is a candidate, no stopping). With calibrated scores
/// it lands near the oracle threshold and so misses the target in about
/// half of the draws; `tests/calibrate.rs` measures that.
pub fn fit_point_estimate(
    samples: &[AuditSample],
    num_classes: usize,
    opts: &ThresholdOptions,
) -> Result<ThresholdFit, CalibrateError> {
    validate(samples, num_classes, opts)?;
    let sorted = sorted_desc(samples.to_vec());
    let mut best = None;
    let mut correct = 0usize;
    for (i, s) in sorted.iter().enumerate() {
        correct += usize::from(s.correct);
        let boundary = sorted.get(i + 1).is_none_or(|next| next.score < s.score);
        if boundary && correct as f64 >= opts.target * (i + 1) as f64 {
            best = Some(s.score);
        }
    }
    assemble(
        Method::PointEstimate,
        samples,
        &vec![best; num_classes],
        opts,
        opts.delta,
    )
}

/// Thins an audit sample drawn with unequal inclusion probabilities (for
/// instance a higher rate for rare classes, to reach `audit_min`) into a
/// uniform one: item i is kept with probability `min(π) / π_i`, so every
/// kept item had the same overall chance `min(π)` of being kept. Returns
/// the kept indices, in order; deterministic for a seed.
///
/// Why thin rather than weight: a Horvitz–Thompson-weighted proportion has
/// no exact binomial law, so the Clopper–Pearson guarantee would become an
/// approximation. Thinning keeps it exact at the price of the extra labels,
/// which [`fit_per_class`] can still use in full (its samples only need to
/// be uniform within each predicted class).
pub fn uniform_subsample(inclusion: &[f64], seed: u64) -> Result<Vec<usize>, CalibrateError> {
    for (i, &p) in inclusion.iter().enumerate() {
        if !p.is_finite() {
            return Err(CalibrateError::NonFinite {
                what: "inclusion",
                index: i,
            });
        }
        if !(p > 0.0 && p <= 1.0) {
            return Err(CalibrateError::OutOfRange {
                name: "inclusion probability",
                value: p,
                domain: "(0, 1]",
            });
        }
    }
    let min = inclusion.iter().copied().fold(1.0, f64::min);
    let mut rng = crate::select::Rng::new(seed);
    Ok(inclusion
        .iter()
        .enumerate()
        .filter(|&(_, &p)| rng.unit() < min / p)
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f64, predicted: usize, correct: bool) -> AuditSample {
        AuditSample {
            score,
            predicted,
            correct,
        }
    }

    #[test]
    fn min_passing_count_is_tight() {
        assert_eq!(min_passing_count(0.95, 0.05), 59);
        assert!(0.95_f64.powi(59) <= 0.05 && 0.95_f64.powi(58) > 0.05);
    }

    #[test]
    fn all_correct_accepts_everything() {
        let v: Vec<_> = (0..205)
            .map(|i| s(1.0 - i as f64 / 1000.0, 0, true))
            .collect();
        let fit = fit_global(&v, 1, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.accepted, 205);
        assert_eq!(fit.threshold(0), Some(v[204].score));
        assert!(fit.accepts(0, v[204].score) && !fit.accepts(0, v[204].score - 1e-9));
        assert!(!fit.accepts(5, 1.0));
        assert!(!fit.accepts(0, f64::NAN));
    }

    #[test]
    fn one_early_error_does_not_sink_the_scan() {
        // 300 high scores with one error at rank 10, then 100 lower ones, all
        // correct. A 59-item first candidate holds the error, fails, and
        // accepts nothing; the one-error start (93) passes and goes on.
        let mut v: Vec<_> = (0..300)
            .map(|i| s(0.9999 - i as f64 * 1e-5, 0, i != 10))
            .collect();
        v.extend((0..100).map(|i| s(0.98 - i as f64 * 1e-4, 0, true)));
        let o = ThresholdOptions::default();
        let from_59 = fit_global(
            &v,
            1,
            &ThresholdOptions {
                start: Some(59),
                ..o
            },
        )
        .unwrap();
        assert_eq!(from_59.accepted, 0);
        let fit = fit_global(&v, 1, &o).unwrap();
        assert_eq!(fit.accepted, 400);
        assert_eq!(start_count(400, &o, 0.05), 93);
        // Fewer than twice 93: the error-free count, so small samples pass.
        assert_eq!(start_count(185, &o, 0.05), 59);
    }

    #[test]
    fn min_count_with_errors_is_tight() {
        assert_eq!(min_count_with_errors(0, 0.95, 0.05), 59);
        assert_eq!(min_count_with_errors(1, 0.95, 0.05), 93);
        assert!(p_value_at_least(92, 93, 0.95).unwrap() <= 0.05);
        assert!(p_value_at_least(91, 92, 0.95).unwrap() > 0.05);
        assert_eq!(min_count_with_errors(2, 0.95, 0.05), 124);
    }

    #[test]
    fn stops_at_first_failure() {
        // 100 correct at the top, a block of errors, then many correct: the
        // pooled precision at the very end would pass again, but the scan
        // must stop at the block.
        let mut v: Vec<_> = (0..100)
            .map(|i| s(1.0 - i as f64 * 1e-3, 0, true))
            .collect();
        v.extend((0..30).map(|i| s(0.8 - i as f64 * 1e-3, 0, false)));
        v.extend((0..2000).map(|i| s(0.7 - i as f64 * 1e-4, 0, true)));
        let fit = fit_global(&v, 1, &ThresholdOptions::default()).unwrap();
        let t = fit.threshold(0).unwrap();
        assert!(t > 0.78, "threshold {t} went past the block of errors");
        assert!(fit.precision.unwrap() >= 0.95);
        assert!(fit.accepted < 150);
    }

    #[test]
    fn too_few_labels_accept_nothing() {
        let v: Vec<_> = (0..58)
            .map(|i| s(0.99 - i as f64 * 1e-3, 0, true))
            .collect();
        let fit = fit_per_class(&v, 1, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.threshold(0), None);
        assert_eq!(fit.accepted, 0);
        assert_eq!(fit.coverage, 0.0);
        assert_eq!(fit.classes[0].audit_labels, 58);
        assert_eq!(fit.precision, None);
        let empty = fit_per_class(&[], 3, &ThresholdOptions::default()).unwrap();
        assert!(empty.classes.iter().all(|c| c.threshold.is_none()));
    }

    #[test]
    fn per_class_splits_delta() {
        // 60 error-free items pass alone at δ = 0.05 but not at δ/2 (needs 72).
        let mut v: Vec<_> = (0..60)
            .map(|i| s(0.99 - i as f64 * 1e-3, 0, true))
            .collect();
        v.extend((0..100).map(|i| s(0.99 - i as f64 * 1e-3, 1, true)));
        let fit = fit_per_class(&v, 2, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.test_delta, 0.025);
        assert_eq!(fit.threshold(0), None);
        assert!(fit.threshold(1).is_some());
        assert_eq!(fit.classes[1].accepted, 100);
        let global = fit_global(&v, 2, &ThresholdOptions::default()).unwrap();
        assert_eq!(global.accepted, 160);
        assert_eq!(global.method, Method::Global);
    }

    #[test]
    fn ties_are_accepted_together() {
        // One tie block of 60 at 0.9 with one error: 59/60 fails at 0.95.
        let mut v: Vec<_> = (0..59).map(|_| s(0.9, 0, true)).collect();
        v.push(s(0.9, 0, false));
        let fit = fit_global(&v, 1, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.threshold(0), None);
    }

    #[test]
    fn point_estimate_takes_the_loosest_passing_cut() {
        // 19 correct then 1 wrong: 19/20 = 0.95 passes at the bottom.
        let mut v: Vec<_> = (0..19)
            .map(|i| s(0.99 - i as f64 * 1e-3, 0, true))
            .collect();
        v.push(s(0.5, 0, false));
        let fit = fit_point_estimate(&v, 1, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.threshold(0), Some(0.5));
        assert_eq!(fit.method, Method::PointEstimate);
        // The guaranteed scan cannot pass with 20 labels at all.
        assert_eq!(
            fit_global(&v, 1, &ThresholdOptions::default())
                .unwrap()
                .threshold(0),
            None
        );
        v.push(s(0.4, 0, false));
        let fit = fit_point_estimate(&v, 1, &ThresholdOptions::default()).unwrap();
        assert_eq!(fit.threshold(0), Some(0.5));
    }

    #[test]
    fn thinning_equalises_inclusion() {
        // Class A audited at 0.2, class B at 0.05: after thinning, A keeps
        // about a quarter of its audit items and B all of them.
        let mut incl = vec![0.2; 4000];
        incl.extend(vec![0.05; 1000]);
        let kept = uniform_subsample(&incl, 9).unwrap();
        let a = kept.iter().filter(|&&i| i < 4000).count();
        let b = kept.len() - a;
        assert_eq!(b, 1000);
        assert!((900..1100).contains(&a), "kept {a} of class A");
        assert_eq!(kept, uniform_subsample(&incl, 9).unwrap());
        assert!(uniform_subsample(&[0.5, 0.0], 1).is_err());
        assert!(uniform_subsample(&[1.5], 1).is_err());
        assert!(uniform_subsample(&[f64::NAN], 1).is_err());
        assert_eq!(uniform_subsample(&[], 1).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn bad_input_is_an_error() {
        let ok = [s(0.9, 0, true)];
        let o = ThresholdOptions::default();
        assert!(fit_per_class(&ok, 0, &o).is_err());
        assert!(fit_per_class(&[s(f64::NAN, 0, true)], 1, &o).is_err());
        assert!(fit_per_class(&[s(0.9, 3, true)], 2, &o).is_err());
        for (target, delta) in [(1.0, 0.05), (0.0, 0.05), (0.9, 0.0), (0.9, 0.6)] {
            let o = ThresholdOptions { target, delta, ..o };
            assert!(fit_global(&ok, 1, &o).is_err(), "{target} {delta}");
        }
        assert!(fit_global(&ok, 1, &ThresholdOptions { step: 0, ..o }).is_err());
        let o0 = ThresholdOptions {
            start: Some(0),
            ..o
        };
        assert!(fit_global(&ok, 1, &o0).is_err());
    }
}
