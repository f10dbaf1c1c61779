//! Calibration: when the machine may be trusted, with a stated guarantee.
//!
//! Pure math, like [`crate::select`] and [`crate::learn`]: slices in, numbers
//! out, deterministic, no ONNX, no HTTP, no SQL, and no panics on bad input
//! (every entry point validates and returns [`CalibrateError`]).
//!
//! - [`binomial`]: exact (Clopper–Pearson) one-sided bounds on a proportion,
//!   on a hand-written regularized incomplete beta function and its inverse.
//! - [`boxes`]: thresholds for detected boxes with the image as the unit
//!   (per-image false-discovery proportion by Learn-then-Test) and a bound
//!   on the miss rate.
//! - [`threshold`]: auto-accept thresholds chosen by Learn-then-Test with
//!   fixed-sequence testing, per predicted class (Bonferroni over classes)
//!   or one global threshold, so that P(precision ≥ target) ≥ 1 − δ.
//! - [`temperature`]: temperature scaling (one T fitted by NLL), ECE.
//! - [`drift`]: a one-sided Bernoulli CUSUM on the audit outcomes of
//!   auto-accepted items, with a stated false-alarm bound.
//! - [`label_errors`]: confident learning (Northcutt et al., 2021) on
//!   out-of-sample probabilities: suspected human label errors, ranked.
//! - [`agreement`]: Cohen's κ and Krippendorff's α (nominal); box and
//!   character-level line agreement between annotators.
//! - [`fit`]: the one calibration fit (temperature, then thresholds on the
//!   held-out audit rows) that the service and `simulate` both call.
//!
//! # Wiring it into the loop (for the service)
//! 1. **Temperature**: on human labels that will *not* test thresholds
//!    (review and seed labels, or one half of the audit labels),
//!    [`fit_temperature`] on the raw probabilities; store T with the model
//!    (and head) version; [`apply_temperature`] before storing, showing or
//!    exporting scores (keep the raw ones). Report `ece_before`/`ece_after`.
//! 2. **Thresholds**: from the audit labels only (uniform sample, held out
//!    from step 1 and from head training), one [`AuditSample`] per audited
//!    machine label: calibrated top score, predicted class, `correct =
//!    human label == predicted`. If audit rates differ by class, use
//!    [`uniform_subsample`] for [`fit_global`]. [`fit_global`] is the
//!    default recommendation on calibrated scores; [`fit_per_class`] is
//!    per-class-valid and pays δ/K (see `tests/calibrate.rs` for the cost);
//!    [`fit_point_estimate`] is the no-guarantee baseline. Route with
//!    [`ThresholdFit::accepts`]; the fit's fields are what
//!    `/calibration` shows per class and overall.
//! 3. **Drift**: a [`DriftDetector`] per calibration version, fed the audit
//!    outcomes of items that version auto-accepted, in arrival order; on
//!    alarm stop auto-accepting until a refit passes, then `reset`.
//! 4. **Label errors**: [`find_label_errors`] on out-of-sample
//!    (cross-fitted) probabilities of human-labeled items; `suspects` is the
//!    `strategy=suspect` review order.
//! 5. **Agreement**: [`cohen_kappa`] per annotator pair on the items both
//!    labeled; [`krippendorff_alpha_nominal`] on the annotator × item matrix.

pub mod agreement;
pub mod binomial;
pub mod boxes;
pub mod drift;
pub mod fit;
pub mod ipw;
pub mod label_errors;
pub mod matching;
pub mod plan;
pub mod pooled;
pub mod temperature;
pub mod threshold;

pub use agreement::{
    char_agreement, cohen_kappa, krippendorff_alpha_nominal, levenshtein, match_box_sets,
    match_lines, BoxAgreementCounts, LinePair,
};
pub use binomial::{beta_quantile, lower_bound, p_value_at_least, reg_inc_beta, upper_bound};
pub use boxes::{
    fit_boxes, miss_bound, risk_p_value, risk_upper_bound, AuditBox, AuditImage, BoxClass,
    BoxDesign, BoxFit, BoxOptions, MissBound, RiskBound,
};
pub use drift::{DriftDetector, DriftState};
pub use fit::{fit, reliability, Bin, Decision, FitOptions, Fitted, LabeledRows};
pub use ipw::{design as ipw_design, fit_ipw, review_design, DrawKind, IpwDraw, IpwFit, Labeled};
pub use label_errors::{find_label_errors, LabelErrors, Suspect};
pub use pooled::{fit_curves, fit_pooled, Curve, Curves};
pub use temperature::{apply_temperature, ece, fit_temperature, nll, TemperatureFit};
pub use threshold::{
    fit_global, fit_per_class, fit_point_estimate, uniform_subsample, AuditSample, ClassThreshold,
    Method, ThresholdFit, ThresholdOptions,
};

/// Why a calibration computation refused its input.
///
/// Every variant names what was wrong, so that the service can turn it into
/// a 422 naming the field without guessing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrateError {
    /// A parameter is outside its domain (`name`, the value, the domain).
    #[error("{name} = {value} is outside {domain}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        domain: &'static str,
    },
    /// More successes than trials.
    #[error("{successes} successes out of {trials} trials")]
    SuccessesExceedTrials { successes: u64, trials: u64 },
    /// No data where some is needed.
    #[error("no {0}")]
    Empty(&'static str),
    /// Two inputs that must have matching lengths do not.
    #[error("{what}: {left} vs {right}")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    /// A NaN or infinite value at `index` of `what`.
    #[error("{what}[{index}] is NaN or infinite")]
    NonFinite { what: &'static str, index: usize },
    /// A class index outside `0..num_classes`.
    #[error("{what}[{index}] = {class} is not below num_classes = {num_classes}")]
    ClassOutOfRange {
        what: &'static str,
        index: usize,
        class: usize,
        num_classes: usize,
    },
    /// The statistic is undefined on this input (e.g. κ when both
    /// annotators use one and the same label: 0/0).
    #[error("undefined: {0}")]
    Undefined(&'static str),
}

/// Checks `0 < x < 1` (a target precision, a confidence level).
/// A guarantee's failure probability δ: in (0, 0.5], as every bound here takes it.
pub(crate) fn risk_level(delta: f64) -> Result<(), CalibrateError> {
    if delta.is_finite() && delta > 0.0 && delta <= 0.5 {
        Ok(())
    } else {
        Err(CalibrateError::OutOfRange {
            name: "delta",
            value: delta,
            domain: "(0, 0.5]",
        })
    }
}

pub(crate) fn open_unit(name: &'static str, x: f64) -> Result<(), CalibrateError> {
    if x.is_finite() && x > 0.0 && x < 1.0 {
        Ok(())
    } else {
        Err(CalibrateError::OutOfRange {
            name,
            value: x,
            domain: "(0, 1)",
        })
    }
}
