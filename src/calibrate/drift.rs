//! A sequential drift alarm on the audit outcomes of auto-accepted items:
//! a one-sided Bernoulli CUSUM (Page, 1954; Reynolds & Stoumbos, 1999).
//!
//! It tests precision = `target` (in control) against precision =
//! `target − margin` (drifted). Each audit outcome adds its log-likelihood
//! ratio, `ln(q1/q0)` for a wrong label and `ln((1−q1)/(1−q0))` for a
//! correct one, with error rates q0 = 1 − target and q1 = q0 + margin; the
//! statistic is `S = max(0, S + llr)` and the alarm fires when `S ≥ h`.
//! The alarm latches until [`DriftDetector::reset`] (after a refit passes):
//! a drift that was seen is not forgotten because a few labels came out right.
//!
//! # False-alarm rate
//! The CUSUM alarms by time n only if one of the SPRTs started at times
//! 1..n crosses `h`; under precision ≥ target each crosses with probability
//! ≤ e^(−h) (Wald's likelihood-ratio inequality, Ville's inequality for the
//! nonnegative supermartingale e^(Σ llr)). Hence
//! **P(false alarm within n audit labels) ≤ n · e^(−h)**, and also the
//! average run length to a false alarm is ≥ e^h (Lorden, 1971).
//! [`DriftDetector::for_horizon`] sets h = ln(n / α) to make the first
//! bound α. The bound is conservative; a simulation in the tests measures it.
//! When the true precision is above the target (the usual case, the
//! thresholds being conservative) false alarms are rarer still.
//!
//! Detection delay: after a drift to error rate q, S climbs by
//! E(llr) = q·ln(q1/q0) + (1−q)·ln((1−q1)/(1−q0)) per label, so an alarm
//! comes after roughly h / E(llr) labels (Wald's approximation).

use super::CalibrateError;

/// A snapshot to show in `/calibration`, `/metrics` and the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftState {
    /// The CUSUM statistic S (≥ 0).
    pub statistic: f64,
    /// The alarm level h.
    pub threshold: f64,
    /// Outcomes seen since the last reset, and the wrong ones among them.
    pub observations: u64,
    pub wrong: u64,
    /// Whether the alarm has fired (latched).
    pub alarm: bool,
    /// The observation (1-based, since the last reset) at which it fired.
    pub alarm_at: Option<u64>,
}

/// Bernoulli CUSUM on correct / wrong audit outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftDetector {
    llr_wrong: f64,
    llr_correct: f64,
    h: f64,
    statistic: f64,
    observations: u64,
    wrong: u64,
    alarm_at: Option<u64>,
}

impl DriftDetector {
    /// A detector for precision `target` against `target − margin`, alarm
    /// level `h > 0`. Needs 0 < target − margin < target < 1.
    pub fn new(target: f64, margin: f64, h: f64) -> Result<DriftDetector, CalibrateError> {
        super::open_unit("target", target)?;
        if !(margin.is_finite() && margin > 0.0 && margin < target) {
            return Err(CalibrateError::OutOfRange {
                name: "margin",
                value: margin,
                domain: "(0, target)",
            });
        }
        if !(h.is_finite() && h > 0.0) {
            return Err(CalibrateError::OutOfRange {
                name: "h",
                value: h,
                domain: "(0, ∞)",
            });
        }
        let q0 = 1.0 - target;
        let q1 = q0 + margin;
        Ok(DriftDetector {
            llr_wrong: (q1 / q0).ln(),
            llr_correct: ((1.0 - q1) / (1.0 - q0)).ln(),
            h,
            statistic: 0.0,
            observations: 0,
            wrong: 0,
            alarm_at: None,
        })
    }

    /// h = ln(horizon / alpha): P(false alarm within `horizon` labels) ≤ alpha.
    pub fn h_for_horizon(horizon: u64, alpha: f64) -> Result<f64, CalibrateError> {
        super::open_unit("alpha", alpha)?;
        if horizon == 0 {
            return Err(CalibrateError::OutOfRange {
                name: "horizon",
                value: 0.0,
                domain: "[1, ∞)",
            });
        }
        Ok((horizon as f64 / alpha).ln())
    }

    /// [`DriftDetector::new`] with h from [`DriftDetector::h_for_horizon`].
    pub fn for_horizon(
        target: f64,
        margin: f64,
        horizon: u64,
        alpha: f64,
    ) -> Result<DriftDetector, CalibrateError> {
        DriftDetector::new(
            target,
            margin,
            DriftDetector::h_for_horizon(horizon, alpha)?,
        )
    }

    /// Adds one audit outcome; returns whether the alarm is (now or
    /// already) raised.
    pub fn push(&mut self, correct: bool) -> bool {
        self.observations += 1;
        if correct {
            self.statistic = (self.statistic + self.llr_correct).max(0.0);
        } else {
            self.wrong += 1;
            self.statistic += self.llr_wrong;
        }
        if self.alarm_at.is_none() && self.statistic >= self.h {
            self.alarm_at = Some(self.observations);
        }
        self.alarm_at.is_some()
    }

    /// The current state.
    pub fn state(&self) -> DriftState {
        DriftState {
            statistic: self.statistic,
            threshold: self.h,
            observations: self.observations,
            wrong: self.wrong,
            alarm: self.alarm_at.is_some(),
            alarm_at: self.alarm_at,
        }
    }

    /// Clears the statistic and the alarm (after a refit passes again).
    pub fn reset(&mut self) {
        self.statistic = 0.0;
        self.observations = 0;
        self.wrong = 0;
        self.alarm_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Rng;

    fn run(det: &mut DriftDetector, rng: &mut Rng, precision: f64, n: u64) -> Option<u64> {
        for _ in 0..n {
            if det.push(rng.unit() < precision) {
                return det.state().alarm_at;
            }
        }
        None
    }

    #[test]
    fn false_alarm_rate_is_below_the_bound() {
        // In control at exactly the target over a 1,000-label horizon with
        // α = 0.05: the bound says ≤ 5% of runs alarm.
        let runs = 1000;
        let mut rng = Rng::new(11);
        let mut alarms = 0;
        for _ in 0..runs {
            let mut d = DriftDetector::for_horizon(0.95, 0.05, 1000, 0.05).unwrap();
            alarms += usize::from(run(&mut d, &mut rng, 0.95, 1000).is_some());
        }
        // Binomial slack: 3 standard deviations of 1000 · 0.05.
        assert!(alarms <= 50 + 21, "{alarms} false alarms in {runs} runs");
    }

    #[test]
    fn drift_is_caught_quickly() {
        // Precision falls from 0.95 to 0.80: E(llr) ≈ 0.095 per label, so
        // h ≈ 9.9 is crossed after ~100 labels.
        let mut rng = Rng::new(5);
        let mut delays = Vec::new();
        for _ in 0..200 {
            let mut d = DriftDetector::for_horizon(0.95, 0.05, 1000, 0.05).unwrap();
            delays.push(run(&mut d, &mut rng, 0.80, 300));
        }
        let caught = delays.iter().filter(|d| d.is_some()).count();
        assert!(caught >= 195, "caught {caught} of 200 within 300 labels");
    }

    #[test]
    fn alarm_latches_and_resets() {
        let mut d = DriftDetector::new(0.95, 0.05, 2.0).unwrap();
        assert!(!d.push(true));
        assert!(!d.push(false)); // ln 2 ≈ 0.69
        assert!(!d.push(false));
        assert!(d.push(false)); // 3 ln 2 − 0.05 ≥ 2
        let s = d.state();
        assert_eq!((s.alarm_at, s.observations, s.wrong), (Some(4), 4, 3));
        for _ in 0..100 {
            assert!(d.push(true));
        }
        assert_eq!(d.state().statistic, 0.0);
        d.reset();
        assert_eq!(d.state().alarm_at, None);
        assert!(!d.push(true));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(DriftDetector::new(1.0, 0.05, 5.0).is_err());
        assert!(DriftDetector::new(0.95, 0.0, 5.0).is_err());
        assert!(DriftDetector::new(0.95, 0.96, 5.0).is_err());
        assert!(DriftDetector::new(0.95, 0.05, 0.0).is_err());
        assert!(DriftDetector::new(0.95, 0.05, f64::INFINITY).is_err());
        assert!(DriftDetector::h_for_horizon(0, 0.05).is_err());
        assert!(DriftDetector::for_horizon(0.95, 0.05, 100, 1.5).is_err());
    }
}
