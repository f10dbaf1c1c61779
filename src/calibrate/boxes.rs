//! Auto-accept thresholds for **boxes**, with the **image** as the unit.
//!
//! Boxes in one image are not independent (one blurred page gets many of
//! its boxes wrong at once), so a binomial bound over boxes — what
//! [`super::threshold`] does for whole items — would claim far more than
//! the audit shows. Here the exchangeable unit is the image: audit images
//! are drawn uniformly at random from the images the thresholds are applied
//! to and every one of their boxes is annotated by a person.
//!
//! # The risk controlled
//! For thresholds `t` (one per class), an image's **false-discovery
//! proportion** is `FDP(t) = wrong accepted boxes / accepted boxes` (0 when
//! it has none accepted): a loss in [0, 1] per image. A box is wrong when
//! [`super::matching::match_image`] does not match it to a human box of the
//! same class at IoU ≥ τ. The guarantee is
//!
//! **P( E[FDP(t̂)] ≤ 1 − target ) ≥ 1 − δ,**
//!
//! the expectation over a new image drawn like the audit images (among
//! images with at least one proposal: an image without proposals has
//! nothing to accept and leaves the average). It is a per-image average, not
//! the pooled precision `Σ correct / Σ accepted` over boxes; the two differ
//! when errors crowd into pages with many accepted boxes. Why not the
//! pooled one: its loss `wrong − α·accepted` is bounded only by the largest
//! number of boxes an image can hold (the model's max detections, 100), and
//! every finite-sample bound for a bounded mean pays for that range — at
//! ~10 accepted boxes a page it needs hundreds of error-free audit pages.
//! `simulate` reports the realised pooled precision beside it.
//!
//! # The test (Learn-then-Test, fixed sequence)
//! Candidate thresholds are the audit boxes' distinct scores, tested strict
//! to loose; the scan **stops at the first failure** and keeps the loosest
//! passing candidate (Angelopoulos et al., *Learn then Test*, 2021). Each
//! candidate tests H0: E[FDP] > α with a valid p-value on the n per-image
//! losses `L_i ∈ [0, 1]` (i.i.d. under uniform image sampling):
//! - [`RiskBound::Betting`] (default): the e-value `E = Π (1 + λ(α − L_i))`
//!   for a fixed `λ ∈ (0, 1/(1 − α))` chosen before the data. Under H0 each
//!   factor has mean `1 + λ(α − E L) ≤ 1`, they are independent and
//!   non-negative, so `E[E] ≤ 1` and `p = min(1, 1/E)` is valid (Markov).
//!   It pays for each image's actual loss, not for the worst case: an image
//!   with one wrong box among ten costs about what it should, where
//!   Hoeffding–Bentkus prices every image as if it were all-or-nothing.
//!   λ defaults to 0.9 / (1 − α): an error-free image multiplies E by
//!   1 + 0.9α/(1 − α), an all-wrong image by 0.1.
//! - [`RiskBound::HoeffdingBentkus`]: the LTT paper's p-value for bounded
//!   losses, `min(exp(−n·KL(min(R̂, α) ‖ α)), e·P(Bin(n, α) ≤ ⌈nR̂⌉))`.
//!
//! # Designs (which thresholds one scan chooses)
//! - [`BoxDesign::Shared`] (default): one fixed sequence at the full δ over
//!   one score threshold shared by all classes; the loss is the image's FDP
//!   over all its accepted boxes. The statement is about every accepted box
//!   together. No multiplicity penalty.
//! - [`BoxDesign::PerClass`]: one scan per class at δ / K (Bonferroni over
//!   the K = `num_classes` classes, fixed in advance), on the images that
//!   hold at least one proposal of that class, with the loss the FDP of that
//!   class's accepted boxes. Each class's statement holds, all together with
//!   probability ≥ 1 − δ. A class on few audit images cannot pass at δ / K
//!   and accepts nothing (its images go to review).
//!
//! # Assumptions
//! - Audit images are a uniform random sample of the images the thresholds
//!   are applied to, fully annotated; which images have proposals is decided
//!   by the model alone (no label), so conditioning on it keeps them i.i.d.
//! - Scores were not fitted on the audit images; no drift.
//! - The human boxes are the truth (annotator errors count as model errors).
//!
//! # Misses
//! A reviewer can only fix what is shown, and a threshold never adds a box.
//! [`miss_bound`] bounds the expected per-image **miss proportion** (true
//! boxes no proposal matches, over the image's true boxes; images without
//! true boxes leave the average) at the proposal threshold (the model's
//! `score_threshold`): an upper confidence bound at level 1 − δ (the same
//! p-values, inverted by bisection; no selection happens, so it needs no
//! scan), and the conformal-risk-control bound on the next image's expected
//! miss proportion, `(n·R̂ + 1)/(n + 1)` (Angelopoulos et al. 2022, B = 1).

use super::binomial::p_value_at_least;
use super::CalibrateError;

/// One proposed box on an audit image: class, score, and whether it
/// matched a human box of its class at IoU ≥ τ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditBox {
    pub class: usize,
    pub score: f64,
    pub correct: bool,
}

/// One fully annotated audit image: the model's proposals (all of them, at
/// the model's own score threshold) and the counts of true boxes and of
/// true boxes no proposal matched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditImage {
    pub boxes: Vec<AuditBox>,
    pub truths: usize,
    pub missed: usize,
}

/// Which thresholds one scan chooses (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoxDesign {
    Shared,
    PerClass,
}

impl BoxDesign {
    pub fn parse(s: &str) -> Option<BoxDesign> {
        match s {
            "shared" => Some(BoxDesign::Shared),
            "per-class" => Some(BoxDesign::PerClass),
            _ => None,
        }
    }
}

/// The p-value each candidate is tested with (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskBound {
    /// `λ` as a share of its ceiling `1 / (1 − α)`, in (0, 1).
    Betting {
        lambda_share: f64,
    },
    HoeffdingBentkus,
}

impl RiskBound {
    pub const DEFAULT_LAMBDA_SHARE: f64 = 0.9;

    pub fn parse(s: &str) -> Option<RiskBound> {
        match s {
            "betting" => Some(RiskBound::Betting {
                lambda_share: Self::DEFAULT_LAMBDA_SHARE,
            }),
            "hoeffding-bentkus" => Some(RiskBound::HoeffdingBentkus),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxOptions {
    /// Precision the accepted boxes must reach: α = 1 − target.
    pub target: f64,
    pub delta: f64,
    pub design: BoxDesign,
    pub bound: RiskBound,
}

impl Default for BoxOptions {
    fn default() -> Self {
        BoxOptions {
            target: 0.95,
            delta: 0.05,
            design: BoxDesign::Shared,
            bound: RiskBound::Betting {
                lambda_share: RiskBound::DEFAULT_LAMBDA_SHARE,
            },
        }
    }
}

/// What one class gets, with the audit figures at its threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoxClass {
    /// Accept boxes of this class with score ≥ threshold; `None`: none.
    pub threshold: Option<f64>,
    /// Audit images holding at least one proposal of this class.
    pub images: usize,
    /// Audit proposals of this class.
    pub boxes: usize,
    /// Of those, accepted at the threshold, and correct among them.
    pub accepted: usize,
    pub correct: usize,
}

/// The fitted thresholds and the audit figures behind them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoxFit {
    pub design: BoxDesign,
    pub bound: RiskBound,
    pub target: f64,
    pub delta: f64,
    /// δ given to each scan: δ for [`BoxDesign::Shared`], δ / K per class.
    pub test_delta: f64,
    pub classes: Vec<BoxClass>,
    pub audit_images: usize,
    /// Audit images with at least one proposal (the n of the shared test).
    pub images_with_proposals: usize,
    pub accepted: usize,
    pub correct: usize,
    /// Mean per-image FDP of the audit images at the chosen thresholds
    /// (over images with proposals; descriptive, it was selected on them).
    pub audit_mean_fdp: f64,
    /// p-value of the loosest passing candidate (`None`: none passed).
    pub p_value: Option<f64>,
}

impl BoxFit {
    /// Whether a box of `class` with `score` is auto-accepted. Unknown
    /// classes, uncalibrated classes and NaN scores are not.
    pub fn accepts(&self, class: usize, score: f64) -> bool {
        self.threshold(class).is_some_and(|t| score >= t)
    }

    pub fn threshold(&self, class: usize) -> Option<f64> {
        self.classes.get(class).and_then(|c| c.threshold)
    }
}

/// The miss-rate figures of a set of annotated images.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissBound {
    /// Images with at least one true box (the n of the bound).
    pub images: usize,
    pub truths: usize,
    pub missed: usize,
    /// Pooled `missed / truths`.
    pub pooled: Option<f64>,
    /// Mean per-image miss proportion.
    pub mean: Option<f64>,
    /// Upper confidence bound on the expected per-image miss proportion at
    /// level 1 − δ (1 with no images).
    pub upper: f64,
    /// Conformal risk control: E[miss proportion of the next image] ≤ this.
    pub crc: f64,
}

fn validate(
    images: &[AuditImage],
    num_classes: usize,
    opts: &BoxOptions,
) -> Result<(), CalibrateError> {
    super::open_unit("target", opts.target)?;
    super::risk_level(opts.delta)?;
    if let RiskBound::Betting { lambda_share } = opts.bound {
        super::open_unit("lambda_share", lambda_share)?;
    }
    if num_classes == 0 {
        return Err(CalibrateError::Empty("classes"));
    }
    for (index, image) in images.iter().enumerate() {
        if image.missed > image.truths {
            return Err(CalibrateError::SuccessesExceedTrials {
                successes: image.missed as u64,
                trials: image.truths as u64,
            });
        }
        for b in &image.boxes {
            if !b.score.is_finite() {
                return Err(CalibrateError::NonFinite {
                    what: "images.boxes.score",
                    index,
                });
            }
            if b.class >= num_classes {
                return Err(CalibrateError::ClassOutOfRange {
                    what: "images.boxes.class",
                    index,
                    class: b.class,
                    num_classes,
                });
            }
        }
    }
    Ok(())
}

/// A valid p-value for H0: E[L] > `alpha`, from i.i.d. losses in [0, 1].
pub fn risk_p_value(losses: &[f64], alpha: f64, bound: RiskBound) -> Result<f64, CalibrateError> {
    super::open_unit("alpha", alpha)?;
    for (index, &l) in losses.iter().enumerate() {
        if !(l.is_finite() && (0.0..=1.0).contains(&l)) {
            return Err(CalibrateError::NonFinite {
                what: "losses (must be finite, in [0, 1])",
                index,
            });
        }
    }
    if losses.is_empty() {
        return Ok(1.0);
    }
    match bound {
        RiskBound::Betting { lambda_share } => {
            super::open_unit("lambda_share", lambda_share)?;
            let lambda = lambda_share / (1.0 - alpha);
            // ln E, summed in logs; every factor is ≥ 1 − λ(1 − α) > 0.
            let ln_e: f64 = losses.iter().map(|l| (lambda * (alpha - l)).ln_1p()).sum();
            Ok((-ln_e).exp().min(1.0))
        }
        RiskBound::HoeffdingBentkus => {
            let n = losses.len();
            let mean = losses.iter().sum::<f64>() / n as f64;
            let hoeffding = (-(n as f64) * kl_bernoulli(mean.min(alpha), alpha)).exp();
            // P(Bin(n, α) ≤ k) = 1 − P(X ≥ k + 1).
            let k = (n as f64 * mean).ceil() as u64;
            let cdf = if k >= n as u64 {
                1.0
            } else {
                1.0 - p_value_at_least(k + 1, n as u64, alpha)?
            };
            let bentkus = std::f64::consts::E * cdf;
            Ok(hoeffding.min(bentkus).min(1.0))
        }
    }
}

/// KL(Bernoulli(q) ‖ Bernoulli(p)), with 0·ln 0 = 0.
fn kl_bernoulli(q: f64, p: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// FDP of the boxes `include`d and accepted at `threshold_of`; 0 when none.
fn image_fdp(
    image: &AuditImage,
    include: impl Fn(&AuditBox) -> bool,
    threshold: f64,
) -> (f64, usize, usize) {
    let (mut accepted, mut correct) = (0usize, 0usize);
    for b in image
        .boxes
        .iter()
        .filter(|b| include(b) && b.score >= threshold)
    {
        accepted += 1;
        correct += usize::from(b.correct);
    }
    let fdp = if accepted == 0 {
        0.0
    } else {
        (accepted - correct) as f64 / accepted as f64
    };
    (fdp, accepted, correct)
}

/// Fixed-sequence scan over the distinct scores of the included boxes,
/// strict to loose: the loosest passing threshold and its p-value.
fn scan(
    images: &[&AuditImage],
    include: impl Fn(&AuditBox) -> bool + Copy,
    alpha: f64,
    test_delta: f64,
    bound: RiskBound,
) -> Result<(Option<f64>, Option<f64>), CalibrateError> {
    let mut scores: Vec<f64> = images
        .iter()
        .flat_map(|im| im.boxes.iter().filter(|b| include(b)).map(|b| b.score))
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    scores.dedup();
    let mut best = (None, None);
    let mut losses = Vec::with_capacity(images.len());
    for &t in &scores {
        losses.clear();
        losses.extend(images.iter().map(|im| image_fdp(im, include, t).0));
        let p = risk_p_value(&losses, alpha, bound)?;
        if p > test_delta {
            break;
        }
        best = (Some(t), Some(p));
    }
    Ok(best)
}

/// Per-class thresholds from fully annotated audit images (see the module
/// doc for the design, the risk and the assumptions). No images is not an
/// error: nothing is accepted.
pub fn fit_boxes(
    images: &[AuditImage],
    num_classes: usize,
    opts: &BoxOptions,
) -> Result<BoxFit, CalibrateError> {
    validate(images, num_classes, opts)?;
    let alpha = 1.0 - opts.target;
    let with_proposals: Vec<&AuditImage> =
        images.iter().filter(|im| !im.boxes.is_empty()).collect();
    let (thresholds, test_delta, p_value) = match opts.design {
        BoxDesign::Shared => {
            let (t, p) = scan(&with_proposals, |_| true, alpha, opts.delta, opts.bound)?;
            (vec![t; num_classes], opts.delta, p)
        }
        BoxDesign::PerClass => {
            let test_delta = opts.delta / num_classes as f64;
            let mut ts = Vec::with_capacity(num_classes);
            let mut p_max: Option<f64> = None;
            for c in 0..num_classes {
                let of_class: Vec<&AuditImage> = with_proposals
                    .iter()
                    .copied()
                    .filter(|im| im.boxes.iter().any(|b| b.class == c))
                    .collect();
                let (t, p) = scan(&of_class, |b| b.class == c, alpha, test_delta, opts.bound)?;
                if let Some(p) = p {
                    p_max = Some(p_max.map_or(p, |m: f64| m.max(p)));
                }
                ts.push(t);
            }
            (ts, test_delta, p_max)
        }
    };
    let mut classes: Vec<BoxClass> = thresholds
        .iter()
        .map(|&threshold| BoxClass {
            threshold,
            images: 0,
            boxes: 0,
            accepted: 0,
            correct: 0,
        })
        .collect();
    let mut fdp_sum = 0.0;
    for im in &with_proposals {
        let (mut acc, mut cor) = (0usize, 0usize);
        let mut seen = vec![false; num_classes];
        for b in &im.boxes {
            let c = &mut classes[b.class];
            c.boxes += 1;
            if !seen[b.class] {
                seen[b.class] = true;
                c.images += 1;
            }
            if c.threshold.is_some_and(|t| b.score >= t) {
                c.accepted += 1;
                c.correct += usize::from(b.correct);
                acc += 1;
                cor += usize::from(b.correct);
            }
        }
        if acc > 0 {
            fdp_sum += (acc - cor) as f64 / acc as f64;
        }
    }
    let accepted = classes.iter().map(|c| c.accepted).sum();
    let correct = classes.iter().map(|c| c.correct).sum();
    Ok(BoxFit {
        design: opts.design,
        bound: opts.bound,
        target: opts.target,
        delta: opts.delta,
        test_delta,
        classes,
        audit_images: images.len(),
        images_with_proposals: with_proposals.len(),
        accepted,
        correct,
        audit_mean_fdp: if with_proposals.is_empty() {
            0.0
        } else {
            fdp_sum / with_proposals.len() as f64
        },
        p_value,
    })
}

/// Upper confidence bound at level 1 − `delta` on the expected loss of
/// i.i.d. losses in [0, 1] (1 with no losses): the smallest m at which the
/// test of H0: E[L] ≥ m rejects at δ. The p-value falls as m grows, so
/// bisect. No selection happens here: a bound for one fixed rule.
pub fn risk_upper_bound(
    losses: &[f64],
    delta: f64,
    bound: RiskBound,
) -> Result<f64, CalibrateError> {
    super::risk_level(delta)?;
    if losses.is_empty() {
        return Ok(1.0);
    }
    let rejects = |m: f64| risk_p_value(losses, m, bound).map(|p| p <= delta);
    if !rejects(1.0 - 1e-12)? {
        return Ok(1.0);
    }
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    let (mut lo, mut hi) = (mean.max(1e-12), 1.0 - 1e-12);
    if rejects(lo)? {
        hi = lo;
    }
    for _ in 0..100 {
        if hi - lo < 1e-12 {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if rejects(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Miss figures of annotated images and the bounds on the expected
/// per-image miss proportion (see the module doc).
pub fn miss_bound(
    images: &[AuditImage],
    delta: f64,
    bound: RiskBound,
) -> Result<MissBound, CalibrateError> {
    super::risk_level(delta)?;
    let mut losses = Vec::new();
    let (mut truths, mut missed) = (0usize, 0usize);
    for im in images {
        if im.missed > im.truths {
            return Err(CalibrateError::SuccessesExceedTrials {
                successes: im.missed as u64,
                trials: im.truths as u64,
            });
        }
        if im.truths > 0 {
            truths += im.truths;
            missed += im.missed;
            losses.push(im.missed as f64 / im.truths as f64);
        }
    }
    let n = losses.len();
    let mean = (n > 0).then(|| losses.iter().sum::<f64>() / n as f64);
    let upper = risk_upper_bound(&losses, delta, bound)?;
    Ok(MissBound {
        images: n,
        truths,
        missed,
        pooled: (truths > 0).then(|| missed as f64 / truths as f64),
        mean,
        upper,
        crc: (losses.iter().sum::<f64>() + 1.0) / (n as f64 + 1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::rng::Rng;

    fn bx(class: usize, score: f64, correct: bool) -> AuditBox {
        AuditBox {
            class,
            score,
            correct,
        }
    }

    /// Pages of `per_page` boxes; a box with score s is correct with
    /// probability `p(s)`; a "bad" page (probability `bad`) gets every box
    /// below 0.9 wrong — errors that cluster by image.
    fn pages(n: usize, per_page: usize, bad: f64, seed: u64) -> Vec<AuditImage> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let page_bad = rng.unit() < bad;
                let boxes: Vec<AuditBox> = (0..per_page)
                    .map(|j| {
                        let s = 0.5 + 0.5 * rng.unit();
                        let ok = if page_bad && s < 0.9 {
                            false
                        } else {
                            rng.unit() < s.powi(3) + 0.02
                        };
                        bx(j % 3, s, ok)
                    })
                    .collect();
                let truths = per_page;
                let missed = usize::from(rng.unit() < 0.3);
                AuditImage {
                    boxes,
                    truths,
                    missed,
                }
            })
            .collect()
    }

    /// The true mean per-image FDP of a threshold, from a big sample.
    fn true_risk(population: &[AuditImage], fit: &BoxFit) -> f64 {
        let with: Vec<&AuditImage> = population
            .iter()
            .filter(|im| !im.boxes.is_empty())
            .collect();
        with.iter()
            .map(|im| {
                let (mut a, mut c) = (0, 0);
                for b in &im.boxes {
                    if fit.accepts(b.class, b.score) {
                        a += 1;
                        c += usize::from(b.correct);
                    }
                }
                if a == 0 {
                    0.0
                } else {
                    (a - c) as f64 / a as f64
                }
            })
            .sum::<f64>()
            / with.len() as f64
    }

    #[test]
    fn betting_p_value_matches_its_closed_form() {
        // All-zero losses: p = (1 + λα)^(−n).
        let bound = RiskBound::Betting { lambda_share: 0.9 };
        let lambda = 0.9 / 0.95;
        let p = risk_p_value(&[0.0; 60], 0.05, bound).unwrap();
        assert!((p - (1.0 + lambda * 0.05_f64).powi(-60)).abs() < 1e-12);
        // A loss at α leaves E at 1; above α it can only raise p.
        assert_eq!(risk_p_value(&[0.05; 10], 0.05, bound).unwrap(), 1.0);
        assert_eq!(risk_p_value(&[0.5; 3], 0.05, bound).unwrap(), 1.0);
        assert_eq!(risk_p_value(&[], 0.05, bound).unwrap(), 1.0);
    }

    #[test]
    fn hoeffding_bentkus_matches_its_closed_form() {
        // All-zero losses: min((1 − α)^n, e·(1 − α)^n) = (1 − α)^n.
        let p = risk_p_value(&[0.0; 59], 0.05, RiskBound::HoeffdingBentkus).unwrap();
        assert!((p - 0.95_f64.powi(59)).abs() < 1e-12);
        // Mean 0.01 over 120: Hoeffding exp(−120·KL(0.01‖0.05)).
        let mut l = vec![0.0; 120];
        l[0] = 1.0;
        l[1] = 0.2;
        let got = risk_p_value(&l, 0.05, RiskBound::HoeffdingBentkus).unwrap();
        let want = (-120.0 * kl_bernoulli(0.01, 0.05)).exp();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn betting_rewards_small_losses_more_than_hoeffding_bentkus() {
        // 108 clean pages and 12 with one wrong box of ten (FDP 0.1): mean
        // 0.01. Betting passes at 0.05; Hoeffding–Bentkus does not.
        let mut l = vec![0.0; 108];
        l.extend([0.1; 12]);
        let bet = risk_p_value(&l, 0.05, RiskBound::Betting { lambda_share: 0.9 }).unwrap();
        let hb = risk_p_value(&l, 0.05, RiskBound::HoeffdingBentkus).unwrap();
        assert!(bet < 0.05 && hb > 0.05, "betting {bet}, HB {hb}");
    }

    #[test]
    fn p_values_are_valid_under_the_null() {
        // Losses with mean exactly α (the boundary of H0): P(p ≤ δ) ≤ δ.
        let mut rng = Rng::new(5);
        for bound in [
            RiskBound::Betting { lambda_share: 0.9 },
            RiskBound::HoeffdingBentkus,
        ] {
            let trials = 2000;
            let mut rejected = 0;
            for _ in 0..trials {
                // Mixture: 0 w.p. 0.9, else uniform on [0, 1] (mean 0.05).
                let l: Vec<f64> = (0..150)
                    .map(|_| if rng.unit() < 0.9 { 0.0 } else { rng.unit() })
                    .collect();
                if risk_p_value(&l, 0.05, bound).unwrap() <= 0.05 {
                    rejected += 1;
                }
            }
            assert!(
                rejected as f64 / trials as f64 <= 0.05,
                "{bound:?}: {rejected}/{trials}"
            );
        }
    }

    #[test]
    fn the_guarantee_holds_on_clustered_errors() {
        // 300 draws of 150 audit pages from a population with page-level
        // error clusters: the true mean FDP at the chosen threshold exceeds
        // 1 − target in at most δ of them (with slack for 300 draws), and
        // the fit accepts something.
        let population = pages(20_000, 10, 0.08, 1);
        for design in [BoxDesign::Shared, BoxDesign::PerClass] {
            let opts = BoxOptions {
                design,
                ..BoxOptions::default()
            };
            let (mut violations, mut accepting) = (0, 0);
            for draw in 0..300u64 {
                let audit = pages(150, 10, 0.08, 1000 + draw);
                let fit = fit_boxes(&audit, 3, &opts).unwrap();
                if fit.accepted > 0 {
                    accepting += 1;
                }
                if true_risk(&population, &fit) > 0.05 {
                    violations += 1;
                }
            }
            assert!(
                violations <= 15 + 10,
                "{design:?}: {violations}/300 violations"
            );
            assert!(
                accepting >= 250,
                "{design:?}: accepted in only {accepting}/300"
            );
        }
    }

    #[test]
    fn scan_stops_at_the_first_failure() {
        // 80 clean pages at scores ≥ 0.9, then every page has a wrong box at
        // 0.8, then more correct boxes at 0.7: the threshold stays above 0.8.
        let images: Vec<AuditImage> = (0..80)
            .map(|i| AuditImage {
                boxes: vec![
                    bx(0, 0.9 + i as f64 * 1e-4, true),
                    bx(0, 0.8, false),
                    bx(0, 0.7, true),
                    bx(0, 0.7, true),
                    bx(0, 0.7, true),
                ],
                truths: 4,
                missed: 0,
            })
            .collect();
        let fit = fit_boxes(&images, 1, &BoxOptions::default()).unwrap();
        let t = fit.threshold(0).unwrap();
        assert!(t >= 0.9, "{t}");
        assert_eq!(fit.accepted, 80);
        assert_eq!(fit.correct, 80);
        assert_eq!(fit.audit_mean_fdp, 0.0);
        assert!(fit.accepts(0, 0.95) && !fit.accepts(0, 0.85) && !fit.accepts(1, 0.99));
    }

    #[test]
    fn per_class_pays_bonferroni_and_skips_rare_classes() {
        // Class 0 on all 120 pages, class 1 on 20: class 1 cannot pass at δ/2.
        let images: Vec<AuditImage> = (0..120)
            .map(|i| {
                let mut boxes = vec![bx(0, 0.95, true)];
                if i < 20 {
                    boxes.push(bx(1, 0.99, true));
                }
                AuditImage {
                    boxes,
                    truths: 1 + usize::from(i < 20),
                    missed: 0,
                }
            })
            .collect();
        let per = fit_boxes(
            &images,
            2,
            &BoxOptions {
                design: BoxDesign::PerClass,
                ..BoxOptions::default()
            },
        )
        .unwrap();
        assert_eq!(per.test_delta, 0.025);
        assert_eq!(per.threshold(0), Some(0.95));
        assert_eq!(per.threshold(1), None);
        assert_eq!(per.classes[1].images, 20);
        let shared = fit_boxes(&images, 2, &BoxOptions::default()).unwrap();
        assert_eq!(shared.threshold(1), Some(0.95));
        assert_eq!(shared.accepted, 140);
    }

    #[test]
    fn no_images_accept_nothing() {
        let fit = fit_boxes(&[], 3, &BoxOptions::default()).unwrap();
        assert!(fit.classes.iter().all(|c| c.threshold.is_none()));
        assert_eq!(fit.p_value, None);
        let m = miss_bound(&[], 0.05, BoxOptions::default().bound).unwrap();
        assert_eq!(m.upper, 1.0);
        assert_eq!(m.mean, None);
    }

    #[test]
    fn miss_bound_covers_the_true_miss_rate() {
        // Each page misses one of its 4 boxes with probability 0.3: true
        // mean miss proportion 0.075. The UCB at δ = 0.05 covers it in at
        // least ~95% of 300 draws, and CRC's bound is ≥ the sample mean.
        let mut covered = 0;
        for draw in 0..300u64 {
            let mut rng = Rng::new(draw);
            let images: Vec<AuditImage> = (0..120)
                .map(|_| AuditImage {
                    boxes: vec![],
                    truths: 4,
                    missed: usize::from(rng.unit() < 0.3),
                })
                .collect();
            let m = miss_bound(&images, 0.05, RiskBound::Betting { lambda_share: 0.5 }).unwrap();
            let mean = m.mean.unwrap();
            assert!(m.upper >= mean && m.crc >= mean && m.upper <= 1.0);
            if m.upper >= 0.075 {
                covered += 1;
            }
        }
        assert!(covered >= 280, "covered {covered}/300");
        // Hoeffding–Bentkus too, on one sample.
        let images = vec![
            AuditImage {
                boxes: vec![],
                truths: 2,
                missed: 1,
            };
            50
        ];
        let m = miss_bound(&images, 0.05, RiskBound::HoeffdingBentkus).unwrap();
        assert!(m.upper > 0.5 && m.upper < 0.75, "{}", m.upper);
        assert_eq!(m.pooled, Some(0.5));
    }

    #[test]
    fn bad_input_is_an_error() {
        let ok = AuditImage {
            boxes: vec![bx(0, 0.9, true)],
            truths: 1,
            missed: 0,
        };
        let o = BoxOptions::default();
        assert!(fit_boxes(std::slice::from_ref(&ok), 0, &o).is_err());
        let nan = AuditImage {
            boxes: vec![bx(0, f64::NAN, true)],
            ..ok.clone()
        };
        assert!(fit_boxes(&[nan], 1, &o).is_err());
        let class = AuditImage {
            boxes: vec![bx(4, 0.9, true)],
            ..ok.clone()
        };
        assert!(fit_boxes(&[class], 2, &o).is_err());
        let missed = AuditImage {
            missed: 2,
            ..ok.clone()
        };
        assert!(fit_boxes(std::slice::from_ref(&missed), 1, &o).is_err());
        assert!(miss_bound(&[missed], 0.05, o.bound).is_err());
        for (target, delta) in [(1.0, 0.05), (0.9, 0.0), (0.9, 0.7)] {
            let o = BoxOptions { target, delta, ..o };
            assert!(fit_boxes(std::slice::from_ref(&ok), 1, &o).is_err());
        }
        let o = BoxOptions {
            bound: RiskBound::Betting { lambda_share: 1.0 },
            ..o
        };
        assert!(fit_boxes(&[ok], 1, &o).is_err());
        assert!(risk_p_value(&[1.5], 0.05, RiskBound::HoeffdingBentkus).is_err());
        assert!(risk_p_value(&[0.1], 1.0, RiskBound::HoeffdingBentkus).is_err());
    }
}
