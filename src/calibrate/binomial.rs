//! Exact one-sided bounds on a binomial proportion (Clopper–Pearson), on a
//! hand-written regularized incomplete beta function.
//!
//! Why hand-written: the bound decides what ships unreviewed, so its digits
//! must be checkable; the implementation here is ~100 lines, has no
//! dependency, and is tested against `scipy.stats.beta.ppf` to 1e-9
//! (`tests/fixtures/calibration_reference.json`).
//!
//! Method: `ln Γ` by the Lanczos approximation (g = 7, 9 terms, ~1e-15
//! relative); `I_x(a, b)` by the continued fraction of Numerical Recipes
//! §6.4 evaluated with the modified Lentz algorithm, using the symmetry
//! `I_x(a, b) = 1 − I_{1−x}(b, a)` on the side where the fraction converges
//! fast; the quantile by bisection on `[0, 1]` down to adjacent doubles
//! (monotone, so it cannot diverge, and exact to the last bit the CDF allows).

use super::CalibrateError;

const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let s = (std::f64::consts::PI * x).sin();
        return std::f64::consts::PI.ln() - s.abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = LANCZOS[0];
    let t = x + 7.5;
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        acc += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

/// Keeps a Lentz denominator away from zero.
fn nonzero(v: f64) -> f64 {
    const TINY: f64 = 1e-300;
    if v.abs() < TINY {
        TINY
    } else {
        v
    }
}

/// One modified-Lentz step with partial numerator `aa`: updates `c` and `d`
/// and returns the factor that multiplies the running value.
fn lentz_step(c: &mut f64, d: &mut f64, aa: f64) -> f64 {
    *d = 1.0 / nonzero(1.0 + aa * *d);
    *c = nonzero(1.0 + aa / *c);
    *d * *c
}

/// Continued fraction for `I_x(a, b)` (modified Lentz). Converges quickly
/// for `x < (a + 1) / (a + b + 2)`; the caller picks the side.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-16;
    // O(sqrt(max(a, b))) iterations are needed; this cap covers a, b ~ 1e9.
    const MAX_ITER: usize = 200_000;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even and odd terms of the fraction.
        h *= lentz_step(&mut c, &mut d, m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = lentz_step(
            &mut c,
            &mut d,
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        );
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function `I_x(a, b)`, the CDF of
/// Beta(a, b) at `x`. Needs `a > 0`, `b > 0`; `x` is clamped to `[0, 1]`.
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> Result<f64, CalibrateError> {
    for (name, v) in [("a", a), ("b", b)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(CalibrateError::OutOfRange {
                name,
                value: v,
                domain: "(0, ∞)",
            });
        }
    }
    if x.is_nan() {
        return Err(CalibrateError::OutOfRange {
            name: "x",
            value: x,
            domain: "[0, 1]",
        });
    }
    Ok(inc_beta_unchecked(a, b, x))
}

fn inc_beta_unchecked(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (-x).ln_1p();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The `p`-quantile of Beta(a, b): the `x` with `I_x(a, b) = p`.
pub fn beta_quantile(p: f64, a: f64, b: f64) -> Result<f64, CalibrateError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(CalibrateError::OutOfRange {
            name: "p",
            value: p,
            domain: "[0, 1]",
        });
    }
    reg_inc_beta(a, b, 0.5)?;
    if p == 0.0 {
        return Ok(0.0);
    }
    if p == 1.0 {
        return Ok(1.0);
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    // Each step halves the bracket; 1100 steps reach adjacent doubles even
    // for quantiles in the subnormal range, and the loop ends earlier when
    // the midpoint can no longer move.
    for _ in 0..1100 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if inc_beta_unchecked(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}

fn check_counts(successes: u64, trials: u64, delta: f64) -> Result<(), CalibrateError> {
    super::open_unit("delta", delta)?;
    if successes > trials {
        return Err(CalibrateError::SuccessesExceedTrials { successes, trials });
    }
    Ok(())
}

/// One-sided Clopper–Pearson lower bound at level `1 − delta`: the
/// `delta`-quantile of Beta(k, n − k + 1). With it, P(p ≥ bound) ≥ 1 − δ
/// for every true proportion p. No trials, or no successes, give 0.
pub fn lower_bound(successes: u64, trials: u64, delta: f64) -> Result<f64, CalibrateError> {
    check_counts(successes, trials, delta)?;
    if successes == 0 {
        return Ok(0.0);
    }
    beta_quantile(delta, successes as f64, (trials - successes) as f64 + 1.0)
}

/// One-sided Clopper–Pearson upper bound at level `1 − delta`: the
/// `(1 − delta)`-quantile of Beta(k + 1, n − k); 1 when k = n.
pub fn upper_bound(successes: u64, trials: u64, delta: f64) -> Result<f64, CalibrateError> {
    check_counts(successes, trials, delta)?;
    if successes == trials {
        return Ok(1.0);
    }
    beta_quantile(
        1.0 - delta,
        successes as f64 + 1.0,
        (trials - successes) as f64,
    )
}

/// P(X ≥ k) for X ~ Binomial(n, p): the exact p-value of the one-sided test
/// of H0 "proportion ≤ p" having seen `k` successes. `lower_bound(k, n, δ)
/// ≥ p` exactly when this is ≤ δ, so threshold scans decide with one CDF
/// evaluation instead of a quantile search.
pub fn p_value_at_least(successes: u64, trials: u64, p: f64) -> Result<f64, CalibrateError> {
    super::open_unit("p", p)?;
    if successes > trials {
        return Err(CalibrateError::SuccessesExceedTrials { successes, trials });
    }
    if successes == 0 {
        return Ok(1.0);
    }
    Ok(inc_beta_unchecked(
        successes as f64,
        (trials - successes) as f64 + 1.0,
        p,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0_f64;
        for n in 1..30 {
            f *= n as f64;
            let got = ln_gamma(n as f64 + 1.0);
            assert!((got - f.ln()).abs() < 1e-12 * f.ln().max(1.0), "n={n}");
        }
        // Γ(1/2) = √π.
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
    }

    #[test]
    fn inc_beta_closed_forms() {
        // I_x(1, b) = 1 − (1 − x)^b and I_x(a, 1) = x^a.
        for &x in &[0.01, 0.3, 0.5, 0.77, 0.999] {
            for &e in &[1.0, 2.5, 10.0, 300.0] {
                let a1 = reg_inc_beta(1.0, e, x).unwrap();
                assert!(
                    (a1 - (1.0 - (1.0 - x).powf(e))).abs() < 1e-13,
                    "x={x} b={e}"
                );
                let b1 = reg_inc_beta(e, 1.0, x).unwrap();
                assert!((b1 - x.powf(e)).abs() < 1e-13, "x={x} a={e}");
            }
        }
        // Symmetric case at one half.
        assert!((reg_inc_beta(7.0, 7.0, 0.5).unwrap() - 0.5).abs() < 1e-14);
    }

    #[test]
    fn clopper_pearson_closed_forms() {
        // k = n: lower bound is δ^(1/n).
        for n in [1u64, 5, 59, 1000] {
            let got = lower_bound(n, n, 0.05).unwrap();
            assert!((got - 0.05_f64.powf(1.0 / n as f64)).abs() < 1e-12, "n={n}");
        }
        // k = 0: upper bound is 1 − δ^(1/n).
        let got = upper_bound(0, 20, 0.05).unwrap();
        assert!((got - (1.0 - 0.05_f64.powf(1.0 / 20.0))).abs() < 1e-12);
        assert_eq!(lower_bound(0, 10, 0.05).unwrap(), 0.0);
        assert_eq!(lower_bound(0, 0, 0.05).unwrap(), 0.0);
        assert_eq!(upper_bound(0, 0, 0.05).unwrap(), 1.0);
    }

    #[test]
    fn p_value_agrees_with_bound() {
        for (k, n) in [(95u64, 100u64), (980, 1000), (57, 60), (10, 10)] {
            let lb = lower_bound(k, n, 0.05).unwrap();
            let just_below = p_value_at_least(k, n, lb * (1.0 - 1e-9)).unwrap();
            let just_above = p_value_at_least(k, n, (lb * (1.0 + 1e-9)).min(1.0 - 1e-12)).unwrap();
            assert!(just_below < 0.05 && just_above > 0.05, "k={k} n={n}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(lower_bound(5, 4, 0.05).is_err());
        assert!(lower_bound(1, 4, 0.0).is_err());
        assert!(lower_bound(1, 4, 1.0).is_err());
        assert!(lower_bound(1, 4, f64::NAN).is_err());
        assert!(reg_inc_beta(0.0, 1.0, 0.5).is_err());
        assert!(reg_inc_beta(1.0, 1.0, f64::NAN).is_err());
        assert!(beta_quantile(1.5, 1.0, 1.0).is_err());
        assert!(p_value_at_least(3, 2, 0.5).is_err());
    }
}
