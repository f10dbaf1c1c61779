//! Pool before splitting: one Learn-then-Test scan on a **class-aware score
//! order learned from labels the audit never sees**.
//!
//! # The estimator
//! 1. On the *non-audit* labeled rows (seed and review labels, scored out of
//!    sample: the temperature rows of [`super::fit`]) fit one correctness
//!    curve per predicted class,
//!    `P(correct | predicted c, score s) ≈ σ(α_c + γ_c · logit s)`,
//!    by penalised logistic regression **shrunk toward the pooled curve**
//!    `σ(α + γ · logit s)` (a Gaussian prior of precision [`SHRINK`] on
//!    `(α_c − α, γ_c − γ)`), with `γ_c` kept positive. A class with few
//!    labels gets the pooled curve; a class whose labels show it is worse (or
//!    better) at the same score moves away from it as its labels accumulate.
//! 2. Every audit item gets the adjusted score `a = σ(α_c + γ_c · logit s)`
//!    of its predicted class, and **one** fixed-sequence scan over the
//!    adjusted scores (the same exact binomial scan as
//!    [`super::threshold::fit_global`], at the full δ) picks one threshold λ
//!    on `a`.
//! 3. Because every curve is increasing, `a ≥ λ` is `s ≥ t_c` for one
//!    calibrated-score threshold per class, `t_c = min{s : a_c(s) ≥ λ}`;
//!    those are what the fit stores and routes with, so callers see
//!    per-class thresholds exactly as [`super::threshold::fit_per_class`]
//!    returns them.
//!
//! # Why it is valid (proof sketch)
//! The curves are a function of the non-audit labels only. Conditional on
//! them, the map item ↦ `a` is fixed, so the family of accepted sets
//! `{a ≥ λ}` is a nested family indexed by one number, fixed before any
//! audit label is read, exactly like the global threshold's family
//! `{s ≥ λ}`. The audit items are a uniform sample of the items the
//! thresholds apply to, so, for each candidate, the audit items above it are
//! a uniform sample of the population above it and the binomial p-value is
//! valid; testing the candidates in their fixed order (strict to loose,
//! stopping at the first failure) controls the family-wise error at δ with
//! no multiplicity penalty (Learn-then-Test, fixed sequence). Hence
//! P(precision of the pooled accepted set ≥ target) ≥ 1 − δ, the same
//! statement as the global threshold — pooled precision over all classes,
//! not per class (per-class precision is what `per-class` buys with δ / K).
//!
//! Unchanged assumptions: uniform audit sample (one rate for every class;
//! [`super::threshold::uniform_subsample`] thins unequal rates), scores and
//! curves not fitted on the audit labels, no drift.
//!
//! # What it buys
//! - No Bonferroni split: the test runs at δ, not δ / K.
//! - No class waits for its own audit labels: a class with three audit items
//!   is accepted above the pooled curve's threshold; only its *curve*, from
//!   review labels, can move its threshold up or down.
//! - When the curves agree (few non-audit labels, or classes that behave
//!   alike) the order is the calibrated score's and the result is the global
//!   threshold's, item for item.

use super::threshold::{fit_global, AuditSample, Method, ThresholdFit, ThresholdOptions};
use super::CalibrateError;

/// Precision of the Gaussian prior that shrinks each class's curve toward
/// the pooled one: about as strong as this many labeled rows at the
/// boundary. Chosen before looking at any figure; the guarantee does not
/// depend on it (only the order of the candidates does).
pub const SHRINK: f64 = 20.0;

/// Scores are clamped to `[EPS, 1 − EPS]` before the logit.
const EPS: f64 = 1e-12;

/// One class's correctness curve `σ(alpha + gamma · logit s)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    pub alpha: f64,
    pub gamma: f64,
}

impl Curve {
    /// The identity on scores: `σ(logit s) = s`.
    pub const IDENTITY: Curve = Curve {
        alpha: 0.0,
        gamma: 1.0,
    };

    pub fn adjust(&self, score: f64) -> f64 {
        sigmoid(self.alpha + self.gamma * logit(score))
    }

    /// The smallest score in [0, 1] whose adjusted score is ≥ `lambda`
    /// (bisection to adjacent doubles); `None` if even 1 falls short.
    pub fn inverse(&self, lambda: f64) -> Option<f64> {
        if self.adjust(1.0) < lambda {
            return None;
        }
        if self.adjust(0.0) >= lambda {
            return Some(0.0);
        }
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..2000 {
            let mid = lo + (hi - lo) / 2.0;
            if mid <= lo || mid >= hi {
                break;
            }
            if self.adjust(mid) >= lambda {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

/// The curves of every predicted class and the pooled one they shrink to.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    pub pooled: Curve,
    pub classes: Vec<Curve>,
    /// Non-audit rows each curve saw, per class.
    pub rows: Vec<usize>,
}

impl Curves {
    /// Every class on the identity: the calibrated score's own order.
    pub fn identity(num_classes: usize) -> Curves {
        Curves {
            pooled: Curve::IDENTITY,
            classes: vec![Curve::IDENTITY; num_classes],
            rows: vec![0; num_classes],
        }
    }

    pub fn adjust(&self, predicted: usize, score: f64) -> f64 {
        self.classes
            .get(predicted)
            .map_or(f64::NAN, |c| c.adjust(score))
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn logit(s: f64) -> f64 {
    let s = s.clamp(EPS, 1.0 - EPS);
    (s / (1.0 - s)).ln()
}

/// Penalised logistic regression of `correct` on `logit(score)` by Newton's
/// method: minimises the negative log-likelihood plus
/// `prior_weight / 2 · ‖(α, γ) − prior‖²`.
fn fit_curve(rows: &[(f64, bool)], prior: Curve, prior_weight: f64) -> Curve {
    let (mut a, mut g) = (prior.alpha, prior.gamma);
    for _ in 0..100 {
        let (mut ga, mut gg) = (
            prior_weight * (a - prior.alpha),
            prior_weight * (g - prior.gamma),
        );
        let (mut haa, mut hag, mut hgg) = (prior_weight, 0.0, prior_weight);
        for &(s, y) in rows {
            let x = logit(s);
            let p = sigmoid(a + g * x);
            let r = p - f64::from(u8::from(y));
            let w = (p * (1.0 - p)).max(1e-12);
            ga += r;
            gg += r * x;
            haa += w;
            hag += w * x;
            hgg += w * x * x;
        }
        let det = haa * hgg - hag * hag;
        if !(det.is_finite() && det > 0.0) {
            break;
        }
        let da = (hgg * ga - hag * gg) / det;
        let dg = (haa * gg - hag * ga) / det;
        // Damped: logit scores of confident models reach ±27.
        let scale = 1.0_f64.min(5.0 / (da.abs() + dg.abs()).max(1e-300));
        a -= scale * da;
        g -= scale * dg;
        if (da.abs() + dg.abs()) * scale < 1e-10 {
            break;
        }
    }
    if a.is_finite() && g.is_finite() {
        Curve { alpha: a, gamma: g }
    } else {
        prior
    }
}

/// Smallest slope a curve may have: the order within a class stays the
/// score's (a curve must increase for `a ≥ λ` to be `s ≥ t_c`).
const MIN_GAMMA: f64 = 0.05;

/// Fits the class curves on non-audit rows `(predicted, score, correct)`.
///
/// The pooled curve is fitted with a weak prior at the identity (weight 1),
/// so that a handful of rows cannot make it flat; each class's curve is
/// shrunk to the pooled one with weight [`SHRINK`]. Rows with a NaN score or
/// an unknown class are skipped (they carry no evidence). Without any row,
/// every curve is the identity.
pub fn fit_curves(rows: &[(usize, f64, bool)], num_classes: usize) -> Curves {
    let usable: Vec<(usize, f64, bool)> = rows
        .iter()
        .copied()
        .filter(|&(c, s, _)| c < num_classes && s.is_finite())
        .collect();
    if usable.is_empty() {
        return Curves::identity(num_classes);
    }
    let all: Vec<(f64, bool)> = usable.iter().map(|&(_, s, y)| (s, y)).collect();
    let mut pooled = fit_curve(&all, Curve::IDENTITY, 1.0);
    pooled.gamma = pooled.gamma.max(MIN_GAMMA);
    let mut classes = Vec::with_capacity(num_classes);
    let mut counts = Vec::with_capacity(num_classes);
    for c in 0..num_classes {
        let mine: Vec<(f64, bool)> = usable
            .iter()
            .filter(|r| r.0 == c)
            .map(|&(_, s, y)| (s, y))
            .collect();
        counts.push(mine.len());
        let mut curve = if mine.is_empty() {
            pooled
        } else {
            fit_curve(&mine, pooled, SHRINK)
        };
        curve.gamma = curve.gamma.max(MIN_GAMMA);
        classes.push(curve);
    }
    Curves {
        pooled,
        classes,
        rows: counts,
    }
}

/// The pooled fit: one fixed-sequence scan at δ over the adjusted scores,
/// mapped back to one calibrated-score threshold per class. `samples` carry
/// calibrated scores; the returned fit's thresholds, counts and coverage are
/// on calibrated scores too (so [`ThresholdFit::accepts`] routes directly).
pub fn fit_pooled(
    samples: &[AuditSample],
    num_classes: usize,
    curves: &Curves,
    opts: &ThresholdOptions,
) -> Result<ThresholdFit, CalibrateError> {
    if curves.classes.len() != num_classes {
        return Err(CalibrateError::LengthMismatch {
            what: "curves vs classes",
            left: curves.classes.len(),
            right: num_classes,
        });
    }
    let adjusted: Vec<AuditSample> = samples
        .iter()
        .map(|s| AuditSample {
            score: if s.score.is_finite() && s.predicted < num_classes {
                curves.adjust(s.predicted, s.score)
            } else {
                s.score
            },
            ..*s
        })
        .collect();
    // Validation (NaN scores, unknown classes, target, δ) happens here.
    let on_adjusted = fit_global(&adjusted, num_classes, opts)?;
    let lambda = on_adjusted.threshold(0);
    let thresholds: Vec<Option<f64>> = curves
        .classes
        .iter()
        .map(|c| lambda.and_then(|l| c.inverse(l)))
        .collect();
    let mut fit =
        super::threshold::assemble_for(Method::Pooled, samples, &thresholds, opts, opts.delta)?;
    // Counts by the adjusted-score rule itself (identical up to the
    // inverse's last bit; this keeps the reported figures exactly the
    // tested ones).
    fit.accepted = on_adjusted.accepted;
    fit.correct = on_adjusted.correct;
    fit.coverage = on_adjusted.coverage;
    fit.precision = on_adjusted.precision;
    fit.lower_bound = on_adjusted.lower_bound;
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_the_smallest_passing_score() {
        let c = Curve {
            alpha: -1.0,
            gamma: 0.7,
        };
        let l = 0.9;
        let t = c.inverse(l).unwrap();
        assert!(c.adjust(t) >= l);
        let below = t - 1e-12;
        assert!(c.adjust(below) < l);
        assert_eq!(
            Curve::IDENTITY.inverse(0.5).map(|t| (t * 1e9).round()),
            Some(5e8)
        );
        assert_eq!(
            Curve {
                alpha: -30.0,
                gamma: 0.05
            }
            .inverse(0.99),
            None
        );
    }

    #[test]
    fn curves_shrink_toward_the_pool_and_learn_from_data() {
        // Class 0: right 99% at score 0.9; class 1: right 70% at 0.9.
        let mut rows = Vec::new();
        let mut rng = crate::select::rng::Rng::new(3);
        for c in 0..2 {
            for _ in 0..400 {
                let s = 0.6 + 0.4 * rng.unit();
                let p_right = if c == 0 { 0.99 } else { 0.7 };
                rows.push((c, s, rng.unit() < p_right));
            }
        }
        // Class 2: three rows only.
        rows.push((2, 0.9, true));
        rows.push((2, 0.95, true));
        rows.push((2, 0.8, false));
        let k = fit_curves(&rows, 3);
        assert!(k.adjust(0, 0.9) > 0.95, "{k:?}");
        assert!(k.adjust(1, 0.9) < 0.85, "{k:?}");
        assert!(k.adjust(0, 0.9) > k.adjust(1, 0.9) + 0.1, "{k:?}");
        // The small class stays near the pool.
        let pool = k.pooled.adjust(0.9);
        assert!((k.adjust(2, 0.9) - pool).abs() < 0.1, "{k:?}");
        assert_eq!(k.rows, vec![400, 400, 3]);
        assert_eq!(fit_curves(&[], 2), Curves::identity(2));
        // NaN and unknown classes are skipped, not errors.
        let odd = fit_curves(&[(0, f64::NAN, true), (9, 0.5, true)], 2);
        assert_eq!(odd, Curves::identity(2));
    }

    #[test]
    fn identity_curves_give_the_global_threshold() {
        let mut rng = crate::select::rng::Rng::new(1);
        let v: Vec<AuditSample> = (0..600)
            .map(|_| {
                let s = rng.unit();
                AuditSample {
                    score: s,
                    predicted: rng.below(3),
                    correct: rng.unit() < s.powf(0.05),
                }
            })
            .collect();
        let o = ThresholdOptions::default();
        let g = fit_global(&v, 3, &o).unwrap();
        let p = fit_pooled(&v, 3, &Curves::identity(3), &o).unwrap();
        assert_eq!(p.method, Method::Pooled);
        assert_eq!(p.accepted, g.accepted);
        for c in 0..3 {
            let (a, b) = (p.threshold(c).unwrap(), g.threshold(c).unwrap());
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn mismatched_curves_are_an_error() {
        let o = ThresholdOptions::default();
        assert!(fit_pooled(&[], 3, &Curves::identity(2), &o).is_err());
    }
}
