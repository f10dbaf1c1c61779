//! Audit where the decision is made: audit items drawn with known,
//! unequal selection probabilities, and an anytime-valid precision test by
//! **betting** on inverse-probability-weighted (Horvitz–Thompson) terms.
//!
//! # The design ([`design`])
//! Draws are sequential and **with replacement** from the *eligible* items
//! (not labeled by review or seed; already audited items stay eligible: a
//! repeat draw reuses the label and costs no human). Draw `t` picks item `i`
//! with probability
//!
//! `q_t(i) = u / |S_t| + (1 − u) · 1{i ∈ D_t} / |D_t|`
//!
//! where `S_t` is the eligible set, `u ∈ [0, 1]` the uniform share (a project
//! setting) and `D_t` the **decision region**: the items whose current score
//! could put them above a candidate threshold, i.e. every eligible item at or
//! above the loosest cut whose items' mean score (the model's own precision
//! estimate) is still ≥ target − [`REGION_MARGIN`]. `q_t` is fixed from the
//! scores before the draw and stored with it (`p`, and `p_min = min_i q_t(i)`);
//! every eligible item keeps `q_t(i) ≥ u / |S_t|`, so no region goes unseen.
//!
//! # The estimator ([`fit_ipw`])
//! Let `N` be a fixed population constant (the pool size), `τ` the target,
//! `a` the fit-time score (class-aware, [`super::pooled`]) and, for a
//! candidate λ,
//!
//! `f_λ(i) = 1{a_i ≥ λ} · (1{machine label of i wrong} − (1 − τ))`.
//!
//! Precision of `{a ≥ λ}` is ≥ τ exactly when `R(λ) = Σ_i f_λ(i) / N ≤ 0`
//! (sum over the population the thresholds are applied to). Each draw gives
//! `Z_t = f_λ(I_t) / (N q_t(I_t))`, whose conditional mean given the past is
//! `R(λ)` (Horvitz–Thompson, one draw). H0(λ): `R(λ) ≥ 0` is tested with the
//! betting e-process `K_t = Π_{s ≤ t} (1 − β_s Z_s)` (Waudby-Smith & Ramdas,
//! JRSS-B 2024), `β_s ≥ 0` predictable (aGRAPA: the running mean and variance
//! of the earlier Z's, with one pseudo-observation) and capped at
//! `c / Z_max,s(λ)` with `Z_max,s(λ) = τ / (N · min{q_s(i) : a_i ≥ λ})`
//! (`p_min`, or the larger floor of the region when every item above λ was
//! in it at draw s), so every factor stays ≥ 1 − c > 0. Under H0, `E[1 − β_s Z_s | past] = 1 − β_s R ≤ 1`: `K` is a
//! nonnegative supermartingale and, by Ville's inequality,
//! `P(sup_t K_t ≥ 1/δ) ≤ δ`. H0(λ) is rejected when `K_t ≥ 1/δ` at **any**
//! draw so far — anytime valid: the fit may be repeated after every draw,
//! and may stop whenever it likes, without inflating δ.
//!
//! Candidates are thresholds at fixed shares of the eligible items, audited
//! ones included (by fit-time score: label-free, and not moved by which items
//! the audit happened to draw), tested strict to loose from a label-free
//! start, stopping at the first non-rejection (fixed sequence): FWER ≤ δ, so
//! P(precision of the accepted set ≥ τ) ≥ 1 − δ.
//!
//! # Assumptions and scope
//! - The fit-time scores `a` (head, temperature, curves) are not functions
//!   of the audit labels, and are treated as fixed given the review
//!   history (conditioning argument). The head may be **retrained between
//!   draws**: each draw's `q_t` is whatever the model in force made it, fixed
//!   and stored at draw time, which is all the martingale argument needs.
//!   Strictly, review selection must not consult the audit draws; the product
//!   skips audited and auto-accepted items in review, a weak dependence that
//!   `tests/trust.rs` measures against the truth over many seeds.
//! - **Anytime validity is per score function**: for one model version the
//!   e-process may be checked after every draw. Each new model version is a
//!   new family of tests at level δ (the same per-version statement as the
//!   binomial scan); a simultaneous statement over all versions would need an
//!   alpha-spending plan over versions, which is not made.
//! - Inclusion probabilities of 0, NaN or above 1 never reach the estimator:
//!   they are a [`CalibrateError`] naming the draw.

use super::CalibrateError;

/// The decision region reaches down to where the model's own precision
/// estimate is this far below the target.
pub const REGION_MARGIN: f64 = 0.02;

/// Share of the worst-case factor a bet may risk (every factor ≥ 1 − BET_CAP).
pub const BET_CAP: f64 = 0.75;

/// A uniform share of 0 is read as this: with none, items outside the
/// region could never be drawn and their weights would be undefined.
pub const MIN_UNIFORM_SHARE: f64 = 0.01;

/// Candidate shares of the population: 1%, 2%, …, 100%.
pub const GRID_STEP: f64 = 0.01;

/// How a draw was made, which fixes the set it was drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawKind {
    /// An audit draw: with replacement, from every item not labeled by seed
    /// or review before it (audited items stay eligible).
    Audit,
    /// A review draw of the randomised review rule: without replacement,
    /// from every item no person had labeled before it.
    Review,
}

/// A human-labeled item (audited or reviewed, by any rule): it leaves the
/// population the statement is about, and its label is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labeled {
    /// Its fit-time score (out of sample: cross-fitted when a head trained on it).
    pub score: f64,
    pub correct: bool,
    /// When it left: its first audit draw, or its review.
    pub at: u64,
    /// `Audit`: audited; `Review`: labeled in review.
    pub kind: DrawKind,
}

/// One draw of the audit, in draw order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpwDraw {
    /// The item's fit-time score (class-aware), and its predicted class.
    pub score: f64,
    pub predicted: usize,
    /// Whether the human confirmed the machine's label.
    pub correct: bool,
    /// The probability the draw picked this item (stored at draw time).
    pub p: f64,
    /// The smallest probability any eligible item had at this draw.
    pub p_min: f64,
    /// Every eligible item of this draw whose **fit-time** score is above
    /// `above` had probability ≥ `p_min_above` (`above = +∞`: nothing known
    /// beyond `p_min`). Known when the draw-time region maps onto the
    /// fit-time scores (same model version, or the simulation, which keeps
    /// the draw-time regions); it lets the bets on candidates inside the
    /// region be as large as a uniform audit's.
    pub above: f64,
    pub p_min_above: f64,
    /// The event clock at the draw (labels and draws share one clock).
    pub at: u64,
    pub kind: DrawKind,
}

impl IpwDraw {
    /// The smallest probability an item at or above `lambda` had at this draw.
    fn floor_at(&self, lambda: f64) -> f64 {
        if lambda > self.above {
            self.p_min_above.max(self.p_min)
        } else {
            self.p_min
        }
    }
}

/// The selection probabilities of one draw over the eligible items.
///
/// `scores[i]` is the current (calibrated, class-aware) top score of
/// eligible item i. Returns `q` with `Σ q = 1` and
/// `q_i ≥ max(u, MIN_UNIFORM_SHARE) / n`.
pub fn design(scores: &[f64], uniform_share: f64, target: f64) -> Result<Vec<f64>, CalibrateError> {
    uniform_share_check(uniform_share)?;
    super::open_unit("target", target)?;
    let n = scores.len();
    if n == 0 {
        return Err(CalibrateError::Empty("eligible items"));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(CalibrateError::NonFinite {
            what: "scores",
            index: i,
        });
    }
    let cut = region_cut(scores, target - REGION_MARGIN);
    let region = scores
        .iter()
        .filter(|&&s| cut.is_some_and(|c| s >= c))
        .count();
    let u = if region == 0 {
        1.0
    } else {
        uniform_share.max(MIN_UNIFORM_SHARE)
    };
    Ok(scores
        .iter()
        .map(|&s| {
            let inside = cut.is_some_and(|c| s >= c);
            u / n as f64
                + if inside {
                    (1.0 - u) / region as f64
                } else {
                    0.0
                }
        })
        .collect())
}

/// `u` must be in [0, 1].
pub fn uniform_share_check(u: f64) -> Result<(), CalibrateError> {
    if u.is_finite() && (0.0..=1.0).contains(&u) {
        Ok(())
    } else {
        Err(CalibrateError::OutOfRange {
            name: "uniform_share",
            value: u,
            domain: "[0, 1]",
        })
    }
}

/// The randomised review rule (`review_sampling = "proportional"`): one
/// draw picks item i of the candidates (every item no person labeled) with
/// probability `r(i) = u / n + (1 − u) · w_i / Σ w`, where
/// `w_i = 1 − scores[i]` (the model's own chance of being wrong, clamped to
/// [0, 1]) for an item waiting for review (`open[i]`) and 0 for one the
/// calibration in force accepts, and `u` is the uniform share (0 read as
/// [`MIN_UNIFORM_SHARE`]): every candidate keeps `r(i) ≥ u / n > 0`, the
/// accepted ones too, which is what lets the labels count. All `w` zero:
/// uniform.
pub fn review_design(
    scores: &[f64],
    open: &[bool],
    uniform_share: f64,
) -> Result<Vec<f64>, CalibrateError> {
    uniform_share_check(uniform_share)?;
    let n = scores.len();
    if n == 0 {
        return Err(CalibrateError::Empty("review candidates"));
    }
    if open.len() != n {
        return Err(CalibrateError::LengthMismatch {
            what: "scores vs open flags",
            left: n,
            right: open.len(),
        });
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(CalibrateError::NonFinite {
            what: "scores",
            index: i,
        });
    }
    let w: Vec<f64> = scores
        .iter()
        .zip(open)
        .map(|(s, &o)| if o { (1.0 - s).clamp(0.0, 1.0) } else { 0.0 })
        .collect();
    let total: f64 = w.iter().sum();
    let u = if total > 0.0 {
        uniform_share.max(MIN_UNIFORM_SHARE)
    } else {
        1.0
    };
    Ok(w.iter()
        .map(|&wi| {
            u / n as f64
                + if total > 0.0 {
                    (1.0 - u) * wi / total
                } else {
                    0.0
                }
        })
        .collect())
}

/// The loosest score cut whose items' mean score is ≥ `level` (scores read
/// as the model's own estimate of being right); `None` if even the top item
/// falls short.
fn region_cut(scores: &[f64], level: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut sum, mut best) = (0.0, None);
    for (i, &s) in sorted.iter().enumerate() {
        sum += s;
        let boundary = sorted.get(i + 1).is_none_or(|&next| next < s);
        if boundary && sum >= level * (i + 1) as f64 {
            best = Some(s);
        }
    }
    best
}

/// Draws one index from `q` with a uniform `r ∈ [0, 1)`.
pub fn draw(q: &[f64], r: f64) -> usize {
    let total: f64 = q.iter().sum();
    let mut acc = 0.0;
    let target = r * total;
    for (i, &p) in q.iter().enumerate() {
        acc += p;
        if target < acc {
            return i;
        }
    }
    q.len().saturating_sub(1)
}

/// What [`fit_ipw`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct IpwFit {
    /// The threshold on the fit-time score, `None`: accept nothing.
    pub threshold: Option<f64>,
    /// Share of the population (the unlabeled items) at or above it (label-free).
    pub coverage: f64,
    /// Horvitz–Thompson estimate of its precision (`None` without draws above it).
    pub precision: Option<f64>,
    /// Draws (with repeats) and distinct audited items.
    pub draws: usize,
    /// The largest e-value reached by the chosen candidate (≥ 1/δ if any).
    pub e_value: Option<f64>,
    /// Candidates tested before the first failure, the failure included.
    pub tested: usize,
    /// The share the scan started from.
    pub start_share: f64,
}

fn check_draws(draws: &[IpwDraw]) -> Result<(), CalibrateError> {
    for (i, d) in draws.iter().enumerate() {
        if !d.score.is_finite() {
            return Err(CalibrateError::NonFinite {
                what: "draws.score",
                index: i,
            });
        }
        if d.above.is_nan() {
            return Err(CalibrateError::NonFinite {
                what: "draws.above",
                index: i,
            });
        }
        for (name, v) in [
            ("draws.p", d.p),
            ("draws.p_min", d.p_min),
            ("draws.p_min_above", d.p_min_above),
        ] {
            if !v.is_finite() {
                return Err(CalibrateError::NonFinite {
                    what: name,
                    index: i,
                });
            }
            if !(v > 0.0 && v <= 1.0) {
                return Err(CalibrateError::OutOfRange {
                    name: "inclusion probability",
                    value: v,
                    domain: "(0, 1]",
                });
            }
        }
        if d.p_min > d.p * (1.0 + 1e-9) {
            return Err(CalibrateError::OutOfRange {
                name: "inclusion probability (p_min above the draw's p)",
                value: d.p_min,
                domain: "(0, p]",
            });
        }
    }
    Ok(())
}

/// What the labeled items above `lambda` owe each draw: for draw s, the
/// sum of `f_λ` over the labeled items that were in the set s was drawn
/// from (they are not in the population the statement is about).
fn offsets(draws: &[IpwDraw], labeled: &[Labeled], lambda: f64, target: f64) -> Vec<f64> {
    let slack = 1.0 - target;
    let f = |l: &Labeled| {
        if l.score >= lambda {
            f64::from(u8::from(!l.correct)) - slack
        } else {
            0.0
        }
    };
    let mut by_time: Vec<(u64, f64, bool)> = labeled
        .iter()
        .map(|l| (l.at, f(l), l.kind == DrawKind::Review))
        .collect();
    by_time.sort_by_key(|e| e.0);
    // Suffix sums from position j: all labeled, reviewed only.
    let m = by_time.len();
    let (mut all, mut rev) = (vec![0.0; m + 1], vec![0.0; m + 1]);
    for j in (0..m).rev() {
        all[j] = all[j + 1] + by_time[j].1;
        rev[j] = rev[j + 1] + if by_time[j].2 { by_time[j].1 } else { 0.0 };
    }
    let audited = all[0] - rev[0];
    draws
        .iter()
        .map(|d| match d.kind {
            // Every audited item, and the items reviewed after the draw.
            DrawKind::Audit => audited + rev[by_time.partition_point(|e| e.0 <= d.at)],
            // Every item labeled at or after the draw (the drawn one too).
            DrawKind::Review => all[by_time.partition_point(|e| e.0 < d.at)],
        })
        .collect()
}

/// The largest value of the betting e-process for H0 "precision of the
/// unlabeled items with `score ≥ lambda` < target" over the draws, in draw
/// order; `labeled`: every human-labeled item that left the population.
pub fn e_value(
    draws: &[IpwDraw],
    labeled: &[Labeled],
    lambda: f64,
    population: usize,
    target: f64,
) -> f64 {
    let n = population.max(1) as f64;
    let slack = 1.0 - target;
    let offset = offsets(draws, labeled, lambda, target);
    // One pseudo-observation: a mean of −slack/2 and the variance of a
    // Bernoulli term at the target, so the first bets are modest.
    let (mut sum, mut sum_sq, mut count) = (-slack / 2.0, target * slack, 1.0_f64);
    let (mut ln_k, mut best) = (0.0_f64, 0.0_f64);
    for (d, c) in draws.iter().zip(offset) {
        let mean = sum / count;
        let var = (sum_sq / count - mean * mean).max(1e-12);
        // The largest centred term: Z ≤ τ / (N q), and the mean it is
        // centred on is ≥ −slack.
        let z_max = target / (n * d.floor_at(lambda)) + slack;
        let cap = BET_CAP / z_max;
        // Bets read only earlier raw terms (predictable).
        let beta = (-mean / (var + mean * mean)).clamp(0.0, cap);
        let f = if d.score >= lambda {
            f64::from(u8::from(!d.correct)) - slack
        } else {
            0.0
        };
        let z = f / (n * d.p);
        let factor = 1.0 - beta * (z - c / n);
        if factor <= 0.0 {
            // The process is at 0 from here on; what it reached stands.
            break;
        }
        ln_k += factor.ln();
        best = best.max(ln_k);
        sum += z;
        sum_sq += z * z;
        count += 1.0;
    }
    best.exp()
}

/// The fixed-sequence scan over score shares.
///
/// `grid_scores`: the fit-time scores the candidates are read from (label
/// free, and **not a function of the audit draws**: every item no seed or
/// review label took out, audited ones included — reading them from the
/// unaudited items alone would let the draws move the candidates they are
/// then tested on); `population_scores`: the fit-time scores of every item
/// the thresholds apply to, i.e. no person labeled it (the coverage);
/// `population`: the constant N of the weights; `draws` in draw order
/// (audit and counted review draws); `labeled`: every item a person labeled
/// after the seed set (audit and review, counted or not).
pub fn fit_ipw(
    draws: &[IpwDraw],
    labeled: &[Labeled],
    grid_scores: &[f64],
    population_scores: &[f64],
    population: usize,
    target: f64,
    delta: f64,
) -> Result<IpwFit, CalibrateError> {
    super::open_unit("target", target)?;
    super::risk_level(delta)?;
    check_draws(draws)?;
    if let Some(i) = labeled.iter().position(|l| !l.score.is_finite()) {
        return Err(CalibrateError::NonFinite {
            what: "labeled.score",
            index: i,
        });
    }
    for (what, v) in [
        ("grid_scores", grid_scores),
        ("population_scores", population_scores),
    ] {
        if let Some(i) = v.iter().position(|s| !s.is_finite()) {
            return Err(CalibrateError::NonFinite { what, index: i });
        }
    }
    let mut sorted = grid_scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let m = sorted.len();
    let nothing = IpwFit {
        threshold: None,
        coverage: 0.0,
        precision: None,
        draws: draws.len(),
        e_value: None,
        tested: 0,
        start_share: 0.0,
    };
    if m == 0 || population_scores.is_empty() || draws.is_empty() {
        return Ok(nothing);
    }
    let cut_at = |share: f64| -> f64 {
        let k = ((share * m as f64).ceil() as usize).clamp(1, m);
        sorted[k - 1]
    };
    let start = start_share(&sorted, target);
    let steps = ((1.0 - start) / GRID_STEP).round() as usize;
    let mut best: Option<(f64, f64)> = None;
    let mut tested = 0;
    let mut last = f64::INFINITY;
    for j in 0..=steps {
        let share = (start + j as f64 * GRID_STEP).min(1.0);
        let lambda = cut_at(share);
        if lambda >= last {
            continue; // a tie block already tested
        }
        last = lambda;
        tested += 1;
        let e = e_value(draws, labeled, lambda, population, target);
        if e < 1.0 / delta {
            break;
        }
        best = Some((lambda, e));
    }
    let Some((lambda, e)) = best else {
        return Ok(IpwFit {
            tested,
            start_share: start,
            ..nothing
        });
    };
    let coverage = population_scores.iter().filter(|&&s| s >= lambda).count() as f64
        / population_scores.len() as f64;
    let n = population.max(1) as f64;
    let (mut right, mut all) = (0.0, 0.0);
    for d in draws.iter().filter(|d| d.score >= lambda) {
        let w = 1.0 / (n * d.p);
        all += w;
        right += w * f64::from(u8::from(d.correct));
    }
    Ok(IpwFit {
        threshold: Some(lambda),
        coverage,
        precision: (all > 0.0).then(|| right / all),
        draws: draws.len(),
        e_value: Some(e),
        tested,
        start_share: start,
    })
}

/// The label-free first candidate: the population share `c` maximising
/// `c · (p̂(c) − target)²`, where `p̂(c)` is the mean score of the top `c`
/// (the model's own precision estimate): roughly where a betting test
/// gathers evidence fastest. At least [`GRID_STEP`].
fn start_share(sorted_desc: &[f64], target: f64) -> f64 {
    let m = sorted_desc.len();
    let (mut sum, mut best, mut at) = (0.0, f64::NEG_INFINITY, GRID_STEP);
    for (i, &s) in sorted_desc.iter().enumerate() {
        sum += s.clamp(0.0, 1.0);
        let k = i + 1;
        let share = k as f64 / m as f64;
        let slack = sum / k as f64 - target;
        if slack <= 0.0 {
            continue;
        }
        let v = share * slack * slack;
        if v > best {
            best = v;
            at = share;
        }
    }
    // On the grid, rounded down (a stricter start is the safe side).
    ((at / GRID_STEP).floor() * GRID_STEP).max(GRID_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::rng::Rng;

    /// A population of `n` items: score s (mostly near 1), wrong with
    /// probability `over · (1 − s)` (over > 1: overconfident).
    fn population(n: usize, seed: u64, over: f64) -> (Vec<f64>, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let x = 1.0 - 0.5 * rng.unit().powi(3);
            s.push(x);
            y.push(rng.unit() >= (over * (1.0 - x)).clamp(0.0, 1.0));
        }
        (s, y)
    }

    /// An ipw audit of `n_draws` draws (with replacement): the draws, the
    /// audited items (labeled, out of the population) and the unlabeled mask.
    fn audit(
        s: &[f64],
        y: &[bool],
        n_draws: usize,
        u: f64,
        seed: u64,
    ) -> (Vec<IpwDraw>, Vec<Labeled>, Vec<bool>) {
        let q = design(s, u, 0.95).unwrap();
        let p_min = q.iter().copied().fold(1.0, f64::min);
        // Same scores at draw and fit time: items above the region's lowest
        // score had the region's probability.
        let p_top = q.iter().copied().fold(0.0, f64::max);
        let above = s
            .iter()
            .zip(&q)
            .filter(|(_, &p)| p < p_top)
            .map(|(&x, _)| x)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut rng = Rng::new(seed ^ 0xABCD);
        let mut free = vec![true; s.len()];
        let mut labeled = Vec::new();
        let draws = (0..n_draws)
            .map(|t| {
                let i = draw(&q, rng.unit());
                if free[i] {
                    free[i] = false;
                    labeled.push(Labeled {
                        score: s[i],
                        correct: y[i],
                        at: t as u64,
                        kind: DrawKind::Audit,
                    });
                }
                IpwDraw {
                    score: s[i],
                    predicted: 0,
                    correct: y[i],
                    p: q[i],
                    p_min,
                    above,
                    p_min_above: p_top,
                    at: t as u64,
                    kind: DrawKind::Audit,
                }
            })
            .collect();
        (draws, labeled, free)
    }

    /// Realised precision of the unlabeled items at or above `t`.
    fn realised(s: &[f64], y: &[bool], free: &[bool], t: f64) -> f64 {
        let (mut a, mut r) = (0, 0);
        for ((&x, &c), &f) in s.iter().zip(y).zip(free) {
            if f && x >= t {
                a += 1;
                r += usize::from(c);
            }
        }
        r as f64 / a.max(1) as f64
    }

    fn unlabeled(s: &[f64], free: &[bool]) -> Vec<f64> {
        s.iter().zip(free).filter(|p| *p.1).map(|p| *p.0).collect()
    }

    #[test]
    fn design_favours_the_region_and_keeps_the_floor() {
        let (s, _) = population(2000, 1, 1.0);
        let q = design(&s, 0.2, 0.95).unwrap();
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let floor = 0.2 / 2000.0;
        assert!(q.iter().all(|&p| p >= floor * (1.0 - 1e-12)));
        let top = s
            .iter()
            .zip(&q)
            .filter(|(x, _)| **x > 0.99)
            .map(|p| *p.1)
            .fold(1.0, f64::min);
        let low = s
            .iter()
            .zip(&q)
            .filter(|(x, _)| **x < 0.55)
            .map(|p| *p.1)
            .fold(0.0, f64::max);
        assert!(top > 2.0 * low, "top {top} low {low}");
        // u = 1 is uniform.
        let q1 = design(&s, 1.0, 0.95).unwrap();
        assert!(q1.iter().all(|&p| (p - 1.0 / 2000.0).abs() < 1e-15));
    }

    #[test]
    fn the_guarantee_holds_when_the_scores_are_overconfident() {
        // Scores understate the error rate by a third: the naive cut is wrong.
        let mut bad = 0;
        let mut coverage = 0.0;
        let runs = 200;
        for seed in 0..runs {
            let (s, y) = population(5000, seed, 1.5);
            let (d, l, free) = audit(&s, &y, 600, 0.3, seed);
            let fit = fit_ipw(&d, &l, &s, &unlabeled(&s, &free), s.len(), 0.95, 0.05).unwrap();
            if let Some(t) = fit.threshold {
                coverage += fit.coverage;
                if realised(&s, &y, &free, t) < 0.95 {
                    bad += 1;
                }
            }
        }
        eprintln!(
            "ipw unit: {bad}/{runs} below, coverage {}",
            coverage / runs as f64
        );
        assert!(bad <= 20, "{bad}/{runs} runs missed the target");
        assert!(coverage / runs as f64 > 0.1, "coverage {coverage}");
    }

    /// The null case: every top share of the pool is exactly at (or just
    /// below) the target — one wrong item in every 20 by score, the first
    /// one wrong — so any threshold accepted at a realised precision below
    /// the target is a false rejection. Over many audits the scan may make
    /// one at most δ of the time (here δ = 0.1, so that a rate above δ
    /// shows in 400 runs: the bound allows 40, three standard deviations
    /// above it is 58).
    #[test]
    fn at_the_target_the_scan_rejects_at_most_delta_of_the_time() {
        let (runs, delta) = (400, 0.1);
        let (mut s, _) = population(3000, 7, 1.0);
        s.sort_by(|a, b| b.total_cmp(a));
        let y: Vec<bool> = (0..s.len()).map(|i| i % 20 != 0).collect();
        let (mut false_rejections, mut accepted) = (0, 0);
        for seed in 0..runs {
            let (d, l, free) = audit(&s, &y, 300, 0.2, seed);
            let fit = fit_ipw(&d, &l, &s, &unlabeled(&s, &free), s.len(), 0.95, delta).unwrap();
            if let Some(t) = fit.threshold {
                accepted += 1;
                if realised(&s, &y, &free, t) < 0.95 {
                    false_rejections += 1;
                }
            }
        }
        eprintln!(
            "null: {false_rejections}/{runs} false rejections ({accepted} accepted anything)"
        );
        assert!(
            false_rejections as f64
                <= delta * runs as f64 + 3.0 * (delta * (1.0 - delta) * runs as f64).sqrt(),
            "{false_rejections}/{runs} false rejections at δ = {delta}"
        );
    }

    #[test]
    fn favouring_the_region_beats_uniform_when_the_region_is_small() {
        // Half the items are hopeless (score 0.5–0.6, right 40%).
        let mut cov = [0.0; 2];
        for seed in 0..40 {
            let (mut s, mut y) = population(3000, seed, 1.0);
            let mut rng = Rng::new(seed + 100);
            for _ in 0..3000 {
                s.push(0.5 + 0.1 * rng.unit());
                y.push(rng.unit() < 0.4);
            }
            for (j, u) in [1.0, 0.2].into_iter().enumerate() {
                let (d, l, free) = audit(&s, &y, 300, u, seed);
                cov[j] += fit_ipw(&d, &l, &s, &unlabeled(&s, &free), s.len(), 0.95, 0.05)
                    .unwrap()
                    .coverage;
            }
        }
        assert!(cov[1] > cov[0], "uniform {} vs favoured {}", cov[0], cov[1]);
    }

    #[test]
    fn zero_or_nan_probabilities_never_reach_the_estimator() {
        let ok = IpwDraw {
            score: 0.9,
            predicted: 0,
            correct: true,
            p: 0.01,
            p_min: 0.001,
            above: f64::INFINITY,
            p_min_above: 0.001,
            at: 0,
            kind: DrawKind::Audit,
        };
        for (p, p_min) in [
            (0.0, 0.0),
            (f64::NAN, 0.001),
            (0.01, f64::NAN),
            (1.5, 0.1),
            (0.01, 0.0),
            (0.001, 0.01),
        ] {
            let d = IpwDraw { p, p_min, ..ok };
            assert!(
                fit_ipw(&[ok, d], &[], &[0.9], &[0.9], 100, 0.95, 0.05).is_err(),
                "{p} {p_min}"
            );
        }
        assert!(fit_ipw(&[ok], &[], &[0.9], &[0.9], 100, 0.95, 0.05).is_ok());
        for u in [-0.1, 1.1, f64::NAN] {
            assert!(review_design(&[0.9], &[true], u).is_err());
        }
        for u in [-0.1, 1.1, f64::NAN] {
            assert!(matches!(
                design(&[0.9], u, 0.95),
                Err(CalibrateError::OutOfRange {
                    name: "uniform_share",
                    ..
                })
            ));
        }
        assert!(design(&[], 0.5, 0.95).is_err());
        assert!(design(&[f64::NAN], 0.5, 0.95).is_err());
    }

    /// Review draws of the proportional rule (without replacement, the
    /// labeled items leave the population) counted beside an ipw audit.
    #[test]
    fn review_draws_count_and_the_guarantee_holds_on_the_unlabeled_items() {
        let runs = 200;
        let (mut bad, mut cov_with, mut cov_without) = (0, 0.0, 0.0);
        for seed in 0..runs {
            let (s, y) = population(4000, seed, 1.5);
            let (mut d, mut l, mut free) = audit(&s, &y, 150, 0.3, seed);
            let audit_draws = d.clone();
            let mut rng = Rng::new(seed ^ 0x7777);
            let first = d.len() as u64;
            for at in first..first + 400 {
                let idx: Vec<usize> = (0..s.len()).filter(|&i| free[i]).collect();
                let sc: Vec<f64> = idx.iter().map(|&i| s[i]).collect();
                let open: Vec<bool> = sc.iter().map(|&x| x < 0.97).collect();
                let q = review_design(&sc, &open, 0.3).unwrap();
                let p_min = q.iter().copied().fold(1.0, f64::min);
                let j = draw(&q, rng.unit());
                let i = idx[j];
                free[i] = false;
                d.push(IpwDraw {
                    score: s[i],
                    predicted: 0,
                    correct: y[i],
                    p: q[j],
                    p_min,
                    above: f64::INFINITY,
                    p_min_above: p_min,
                    at,
                    kind: DrawKind::Review,
                });
                l.push(Labeled {
                    score: s[i],
                    correct: y[i],
                    at,
                    kind: DrawKind::Review,
                });
            }
            let fit = fit_ipw(&d, &l, &s, &unlabeled(&s, &free), s.len(), 0.95, 0.05).unwrap();
            if let Some(t) = fit.threshold {
                cov_with += fit.coverage;
                if realised(&s, &y, &free, t) < 0.95 {
                    bad += 1;
                }
            }
            // The same reviewed items not counted: only in the offsets.
            let fit0 = fit_ipw(
                &audit_draws,
                &l,
                &s,
                &unlabeled(&s, &free),
                s.len(),
                0.95,
                0.05,
            )
            .unwrap();
            cov_without += fit0.coverage;
        }
        let n = runs as f64;
        eprintln!(
            "review counted: {bad}/{runs} below, coverage {:.3} vs {:.3} without",
            cov_with / n,
            cov_without / n
        );
        assert!(bad <= 15, "{bad}/{runs} runs missed the target");
        assert!(cov_with > cov_without, "{cov_with} vs {cov_without}");
    }
}
