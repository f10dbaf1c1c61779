//! Temperature scaling (Guo, Pleiss, Sun & Weinberger, *On Calibration of
//! Modern Neural Networks*, 2017): one scalar T > 0, calibrated
//! probabilities `softmax(ln p / T)`, with T minimising the negative
//! log-likelihood of human labels.
//!
//! Why one scalar: it cannot change the arg-max, so accuracy and rankings
//! are untouched and only the confidence moves; and one parameter fitted on
//! a few hundred labels cannot overfit the way per-class or binned methods
//! can. The logits are recovered as log-probabilities (softmax is invariant
//! to a per-row shift, so `ln p` is as good as the model's own logits).
//!
//! Optimisation: the NLL is convex in β = 1/T (a log-sum-exp of linear
//! functions minus a linear term), hence unimodal in ln T, so golden-section
//! search on ln T ∈ [ln 0.01, ln 100] finds the minimum without derivatives,
//! step-size tuning, or any way to diverge. When the labels are perfectly
//! separated the NLL keeps falling as T → 0 and the fit stops at the bracket
//! edge (T = 0.01), which is reported as such, not as an error.

use super::CalibrateError;

/// Bracket of the search, in T.
pub const T_MIN: f64 = 0.01;
pub const T_MAX: f64 = 100.0;

/// Smallest probability taken in logs: keeps `ln 0` finite, so a model
/// that was certain and wrong costs a large but finite NLL.
const P_FLOOR: f64 = 1e-300;

/// A fitted temperature with the figures to show beside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureFit {
    pub temperature: f64,
    pub nll_before: f64,
    pub nll_after: f64,
    /// ECE with 15 equal-width bins, before and after.
    pub ece_before: f64,
    pub ece_after: f64,
}

fn validate(
    probs: &[f64],
    num_classes: usize,
    labels: Option<&[usize]>,
) -> Result<usize, CalibrateError> {
    if num_classes == 0 {
        return Err(CalibrateError::Empty("classes"));
    }
    if probs.is_empty() {
        return Err(CalibrateError::Empty("probabilities"));
    }
    if !probs.len().is_multiple_of(num_classes) {
        return Err(CalibrateError::LengthMismatch {
            what: "probs.len() is not a multiple of num_classes",
            left: probs.len(),
            right: num_classes,
        });
    }
    for (i, &p) in probs.iter().enumerate() {
        if !p.is_finite() {
            return Err(CalibrateError::NonFinite {
                what: "probs",
                index: i,
            });
        }
        if p < 0.0 {
            return Err(CalibrateError::OutOfRange {
                name: "probs",
                value: p,
                domain: "[0, ∞)",
            });
        }
    }
    let rows = probs.len() / num_classes;
    if let Some(labels) = labels {
        if labels.len() != rows {
            return Err(CalibrateError::LengthMismatch {
                what: "rows of probs vs labels",
                left: rows,
                right: labels.len(),
            });
        }
        for (i, &l) in labels.iter().enumerate() {
            if l >= num_classes {
                return Err(CalibrateError::ClassOutOfRange {
                    what: "labels",
                    index: i,
                    class: l,
                    num_classes,
                });
            }
        }
    }
    for (r, row) in probs.chunks_exact(num_classes).enumerate() {
        if row.iter().all(|&p| p == 0.0) {
            return Err(CalibrateError::OutOfRange {
                name: "probs row sum",
                value: r as f64,
                domain: "a row with at least one positive probability",
            });
        }
    }
    Ok(rows)
}

/// `ln p` of a row, floored.
fn logits(row: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(row.iter().map(|&p| p.max(P_FLOOR).ln()));
}

/// Softmax of `z / t` into `out`, stable (max subtracted).
fn softmax_scaled(z: &[f64], t: f64, out: &mut [f64]) {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for (o, &v) in out.iter_mut().zip(z) {
        *o = ((v - m) / t).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Mean NLL of softmax(z / t) on precomputed logits.
fn nll_of_logits(z: &[f64], num_classes: usize, labels: &[usize], t: f64) -> f64 {
    let mut total = 0.0;
    for (row, &y) in z.chunks_exact(num_classes).zip(labels) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse: f64 = row.iter().map(|&v| ((v - m) / t).exp()).sum::<f64>().ln();
        total += lse - (row[y] - m) / t;
    }
    total / labels.len() as f64
}

/// Mean negative log-likelihood of the labels under `probs` (row-major,
/// `num_classes` per row). Zero probabilities are floored at 1e-300.
pub fn nll(probs: &[f64], num_classes: usize, labels: &[usize]) -> Result<f64, CalibrateError> {
    validate(probs, num_classes, Some(labels))?;
    let z = all_logits(probs, num_classes);
    Ok(nll_of_logits(&z, num_classes, labels, 1.0))
}

fn all_logits(probs: &[f64], num_classes: usize) -> Vec<f64> {
    let mut z = Vec::with_capacity(probs.len());
    let mut buf = Vec::with_capacity(num_classes);
    for row in probs.chunks_exact(num_classes) {
        logits(row, &mut buf);
        z.extend_from_slice(&buf);
    }
    z
}

/// Fits T on labeled rows of probabilities (row-major, `num_classes` per
/// row) and reports NLL and ECE before and after.
pub fn fit_temperature(
    probs: &[f64],
    num_classes: usize,
    labels: &[usize],
) -> Result<TemperatureFit, CalibrateError> {
    validate(probs, num_classes, Some(labels))?;
    let z = all_logits(probs, num_classes);
    let f = |u: f64| nll_of_logits(&z, num_classes, labels, u.exp());
    // Golden-section search on u = ln T.
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (T_MIN.ln(), T_MAX.ln());
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-10 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = f(d);
        }
    }
    let mut u = 0.5 * (a + b);
    // The bracket edges are candidates too (separable data: T → T_MIN).
    for edge in [T_MIN.ln(), T_MAX.ln()] {
        if f(edge) < f(u) {
            u = edge;
        }
    }
    let temperature = u.exp();
    let after = apply_temperature(probs, num_classes, temperature)?;
    Ok(TemperatureFit {
        temperature,
        nll_before: nll_of_logits(&z, num_classes, labels, 1.0),
        nll_after: f(u),
        ece_before: ece(probs, num_classes, labels, 15)?,
        ece_after: ece(&after, num_classes, labels, 15)?,
    })
}

/// Calibrated probabilities `softmax(ln p / t)`, row by row.
pub fn apply_temperature(
    probs: &[f64],
    num_classes: usize,
    t: f64,
) -> Result<Vec<f64>, CalibrateError> {
    if !(t.is_finite() && t > 0.0) {
        return Err(CalibrateError::OutOfRange {
            name: "temperature",
            value: t,
            domain: "(0, ∞)",
        });
    }
    validate(probs, num_classes, None)?;
    let mut out = vec![0.0; probs.len()];
    let mut z = Vec::with_capacity(num_classes);
    for (row, o) in probs
        .chunks_exact(num_classes)
        .zip(out.chunks_exact_mut(num_classes))
    {
        logits(row, &mut z);
        softmax_scaled(&z, t, o);
    }
    Ok(out)
}

/// Expected calibration error on the top-class confidence, `bins`
/// equal-width bins over [0, 1], bin i = (i/B, (i+1)/B] (a confidence of
/// exactly 0 goes to the first): Σ_bins (n_bin / n) · |accuracy − mean
/// confidence|. The top class is the first arg-max.
pub fn ece(
    probs: &[f64],
    num_classes: usize,
    labels: &[usize],
    bins: usize,
) -> Result<f64, CalibrateError> {
    if bins == 0 {
        return Err(CalibrateError::OutOfRange {
            name: "bins",
            value: 0.0,
            domain: "[1, ∞)",
        });
    }
    let rows = validate(probs, num_classes, Some(labels))?;
    let mut count = vec![0usize; bins];
    let mut conf_sum = vec![0.0; bins];
    let mut correct = vec![0usize; bins];
    for (row, &y) in probs.chunks_exact(num_classes).zip(labels) {
        let (mut arg, mut top) = (0, row[0]);
        for (j, &p) in row.iter().enumerate().skip(1) {
            if p > top {
                arg = j;
                top = p;
            }
        }
        let conf = top.clamp(0.0, 1.0);
        let b = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        conf_sum[b] += conf;
        correct[b] += usize::from(arg == y);
    }
    let n = rows as f64;
    Ok((0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let c = count[b] as f64;
            (c / n) * (correct[b] as f64 / c - conf_sum[b] / c).abs()
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Rng;

    /// Overconfident synthetic model: true probabilities sharpened by 1/T0.
    fn overconfident(n: usize, k: usize, t0: f64, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let mut probs = Vec::with_capacity(n * k);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let z: Vec<f64> = (0..k).map(|_| 2.0 * rng.unit()).collect();
            let mut p = vec![0.0; k];
            softmax_scaled(&z, 1.0, &mut p);
            // Draw the label from the true p, then sharpen what is reported.
            let u = rng.unit();
            let mut acc = 0.0;
            let mut y = k - 1;
            for (j, &pj) in p.iter().enumerate() {
                acc += pj;
                if u < acc {
                    y = j;
                    break;
                }
            }
            labels.push(y);
            let mut q = vec![0.0; k];
            softmax_scaled(&z, t0, &mut q);
            probs.extend_from_slice(&q);
        }
        (probs, labels)
    }

    #[test]
    fn recovers_a_known_temperature() {
        // Reported = softmax(z / 0.5): the right T is 1 / 0.5 = 2.
        let (probs, labels) = overconfident(4000, 4, 0.5, 7);
        let fit = fit_temperature(&probs, 4, &labels).unwrap();
        assert!(
            (fit.temperature - 2.0).abs() < 0.25,
            "T = {}",
            fit.temperature
        );
        assert!(fit.nll_after < fit.nll_before);
        assert!(fit.ece_after < fit.ece_before);
        assert!(fit.ece_after < 0.03, "ece after {}", fit.ece_after);
    }

    #[test]
    fn minimum_is_a_minimum() {
        let (probs, labels) = overconfident(500, 3, 0.7, 3);
        let fit = fit_temperature(&probs, 3, &labels).unwrap();
        let at = |t: f64| nll(&apply_temperature(&probs, 3, t).unwrap(), 3, &labels).unwrap();
        assert!((at(fit.temperature) - fit.nll_after).abs() < 1e-9);
        assert!(at(fit.temperature * 1.01) > fit.nll_after);
        assert!(at(fit.temperature / 1.01) > fit.nll_after);
    }

    #[test]
    fn apply_keeps_argmax_and_sums_to_one() {
        let probs = [0.7, 0.2, 0.1, 0.0, 0.5, 0.5];
        for t in [0.3, 1.0, 4.0] {
            let q = apply_temperature(&probs, 3, t).unwrap();
            for row in q.chunks(3) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
            assert!(q[0] > q[1] && q[1] > q[2]);
        }
        let same = apply_temperature(&probs, 3, 1.0).unwrap();
        assert!((same[0] - 0.7).abs() < 1e-12);
    }

    #[test]
    fn ece_by_hand() {
        // Two rows at 0.9 (one right), one at 0.6 (right):
        // bins (0.8667, 0.9333]: |0.5 − 0.9| · 2/3; (0.5333, 0.6]: |1 − 0.6| · 1/3.
        let probs = [0.9, 0.1, 0.9, 0.1, 0.6, 0.4];
        let got = ece(&probs, 2, &[0, 1, 0], 15).unwrap();
        let want = (2.0 / 3.0) * 0.4 + (1.0 / 3.0) * 0.4;
        assert!((got - want).abs() < 1e-12, "{got}");
        // Perfectly confident and right: zero.
        assert_eq!(ece(&[1.0, 0.0], 2, &[0], 15).unwrap(), 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(fit_temperature(&[], 2, &[]).is_err());
        assert!(fit_temperature(&[0.5, 0.5, 0.1], 2, &[0]).is_err());
        assert!(fit_temperature(&[0.5, 0.5], 2, &[2]).is_err());
        assert!(fit_temperature(&[0.5, f64::NAN], 2, &[0]).is_err());
        assert!(fit_temperature(&[0.0, 0.0], 2, &[0]).is_err());
        assert!(fit_temperature(&[1.5, -0.5], 2, &[0]).is_err());
        assert!(apply_temperature(&[0.5, 0.5], 2, 0.0).is_err());
        assert!(ece(&[0.5, 0.5], 2, &[0], 0).is_err());
        assert!(ece(&[0.5, 0.5], 0, &[0], 15).is_err());
    }
}
