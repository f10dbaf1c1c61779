//! Budget planning: how much coverage more audit labels would likely unlock.
//!
//! A forecast, not a guarantee. The prior on precision is the calibrated
//! scores themselves: an item with calibrated top score `s` is taken to be
//! right with probability `s`. For each budget `n` (audit labels in total),
//! [`SIMULATIONS`] audits of `n` items are drawn uniformly from the current
//! machine-decided items, their correctness drawn from the prior, and the
//! global fixed-sequence scan ([`super::fit_global`], the same test the fit
//! runs) picks a threshold; the forecast is the mean share of those items at
//! or above it, and the share of simulations that accept anything.
//! Deterministic for a seed. Where the scores are over-confident the
//! forecast is optimistic, which the next fit then shows.

use super::threshold::{fit_global, AuditSample, ThresholdOptions};
use super::CalibrateError;
use crate::select::Rng;

/// Simulated audits per budget.
pub const SIMULATIONS: usize = 24;

/// One budget's forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanRow {
    /// Audit labels in total (those given so far plus more).
    pub audit_labels: usize,
    /// Expected share of the machine-decided items auto-accepted.
    pub expected_coverage: f64,
    /// Share of simulated audits that accept anything.
    pub chance_of_any: f64,
}

/// Forecasts for each total in `budgets`, from the calibrated top scores of
/// the items the thresholds would apply to.
pub fn plan(
    scores: &[f64],
    budgets: &[usize],
    target: f64,
    delta: f64,
    seed: u64,
) -> Result<Vec<PlanRow>, CalibrateError> {
    super::open_unit("target", target)?;
    super::risk_level(delta)?;
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(CalibrateError::NonFinite {
            what: "scores",
            index: i,
        });
    }
    let opts = ThresholdOptions {
        target,
        delta,
        ..ThresholdOptions::default()
    };
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(budgets.len());
    for &n in budgets {
        let (mut cov, mut any) = (0.0, 0usize);
        if !sorted.is_empty() && n > 0 {
            for _ in 0..SIMULATIONS {
                let audit: Vec<AuditSample> = (0..n)
                    .map(|_| {
                        let s = sorted[rng.below(sorted.len())];
                        AuditSample {
                            score: s,
                            predicted: 0,
                            correct: rng.unit() < s,
                        }
                    })
                    .collect();
                if let Some(t) = fit_global(&audit, 1, &opts)?.threshold(0) {
                    any += 1;
                    let above = sorted.partition_point(|&s| s >= t);
                    cov += above as f64 / sorted.len() as f64;
                }
            }
        }
        out.push(PlanRow {
            audit_labels: n,
            expected_coverage: cov / SIMULATIONS as f64,
            chance_of_any: any as f64 / SIMULATIONS as f64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_labels_unlock_more_and_calibrated_forecasts_are_close() {
        // 70% of items at 0.995, 30% at 0.7: the oracle accepts the 70%.
        let mut scores = vec![0.995; 700];
        scores.extend(vec![0.7; 300]);
        let rows = plan(&scores, &[20, 100, 400, 1600], 0.95, 0.05, 1).unwrap();
        assert_eq!(rows[0].expected_coverage, 0.0, "{rows:?}");
        assert!(rows[1].chance_of_any > 0.5, "{rows:?}");
        assert!(rows[3].expected_coverage > 0.65, "{rows:?}");
        assert!(rows[3].expected_coverage <= 0.7 + 1e-12, "{rows:?}");
        for w in rows.windows(2) {
            assert!(
                w[1].expected_coverage >= w[0].expected_coverage - 0.05,
                "{rows:?}"
            );
        }
        assert_eq!(
            plan(&scores, &[100], 0.95, 0.05, 1).unwrap(),
            plan(&scores, &[100], 0.95, 0.05, 1).unwrap()
        );
        assert!(plan(&[f64::NAN], &[10], 0.95, 0.05, 1).is_err());
        assert!(plan(&scores, &[10], 1.0, 0.05, 1).is_err());
        assert_eq!(
            plan(&[], &[10], 0.95, 0.05, 1).unwrap()[0].expected_coverage,
            0.0
        );
    }
}
