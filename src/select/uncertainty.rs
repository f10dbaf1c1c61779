//! Uncertainty measures over a class distribution, each normalised to [0, 1]
//! so that thresholds mean the same thing whatever the number of classes.

use serde::{Deserialize, Serialize};

/// The three classic measures (Settles, *Active Learning Literature Survey*).
/// 0 means certain, 1 means maximally uncertain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Uncertainty {
    pub least_confidence: f32,
    pub margin: f32,
    pub entropy: f32,
}

impl Uncertainty {
    /// Measures for a probability distribution (`probs` sums to ~1).
    pub fn from_distribution(probs: &[f32]) -> Uncertainty {
        let k = probs.len();
        if k < 2 {
            return Uncertainty {
                least_confidence: 0.0,
                margin: 0.0,
                entropy: 0.0,
            };
        }
        let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        let mut entropy = 0.0f64;
        for &p in probs {
            if p > first {
                second = first;
                first = p;
            } else if p > second {
                second = p;
            }
            if p > 0.0 {
                entropy -= f64::from(p) * f64::from(p).ln();
            }
        }
        let kf = k as f32;
        Uncertainty {
            // 1 - p_max ranges over [0, 1 - 1/k]; rescale to [0, 1].
            least_confidence: clamp01((1.0 - first) * kf / (kf - 1.0)),
            margin: clamp01(1.0 - (first - second)),
            entropy: clamp01((entropy / (k as f64).ln()) as f32),
        }
    }

    /// Measures for independent (sigmoid) scores: each label is a binary
    /// decision, and the item is as uncertain as its most uncertain label.
    pub fn from_independent(scores: &[f32]) -> Uncertainty {
        let mut worst = Uncertainty {
            least_confidence: 0.0,
            margin: 0.0,
            entropy: 0.0,
        };
        for &p in scores {
            let u = Uncertainty::from_distribution(&[p, 1.0 - p]);
            worst.least_confidence = worst.least_confidence.max(u.least_confidence);
            worst.margin = worst.margin.max(u.margin);
            worst.entropy = worst.entropy.max(u.entropy);
        }
        worst
    }

    /// An **image's** uncertainty from its proposed boxes (each score the
    /// model's confidence in one box), for ranking detection images:
    /// - `least_confidence`: the most uncertain box (as [`Self::from_independent`]);
    /// - `margin`: how much is left for a person, counting boxes:
    ///   `1 − exp(−Σ u_i)` over the boxes `in_review`, `u_i` each box's
    ///   binary uncertainty, so two doubtful boxes rank above one;
    /// - `entropy`: the image's total score entropy, `1 − exp(−Σ H(s_i))`
    ///   (binary entropy in bits), which also grows with the count.
    ///
    /// An image without proposals is maximally uncertain on all three: the
    /// model saying nothing is what a person must check most.
    pub fn of_boxes(scores: &[f32], in_review: &[bool]) -> Uncertainty {
        if scores.is_empty() {
            return Uncertainty {
                least_confidence: 1.0,
                margin: 1.0,
                entropy: 1.0,
            };
        }
        let worst = Uncertainty::from_independent(scores);
        let (mut open, mut bits) = (0.0f64, 0.0f64);
        for (i, &p) in scores.iter().enumerate() {
            let p = f64::from(clamp01(p));
            let u = 1.0 - (2.0 * p - 1.0).abs();
            if in_review.get(i).copied().unwrap_or(true) {
                open += u;
            }
            let h = |x: f64| if x > 0.0 { -x * x.log2() } else { 0.0 };
            bits += h(p) + h(1.0 - p);
        }
        Uncertainty {
            least_confidence: worst.least_confidence,
            margin: clamp01((1.0 - (-open).exp()) as f32),
            entropy: clamp01((1.0 - (-bits).exp()) as f32),
        }
    }
}

fn clamp01(x: f32) -> f32 {
    if x.is_nan() {
        1.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_as_uncertain_as_its_boxes_and_their_count() {
        let none = Uncertainty::of_boxes(&[], &[]);
        assert_eq!(none.least_confidence, 1.0);
        assert_eq!(none.margin, 1.0);
        let one = Uncertainty::of_boxes(&[0.6], &[true]);
        let two = Uncertainty::of_boxes(&[0.6, 0.6], &[true, true]);
        assert_eq!(one.least_confidence, two.least_confidence);
        assert!(two.margin > one.margin && two.entropy > one.entropy);
        // Accepted boxes leave nothing for a person in the margin...
        let accepted = Uncertainty::of_boxes(&[0.6, 0.6], &[false, false]);
        assert_eq!(accepted.margin, 0.0);
        // ...and sure boxes carry almost no entropy.
        let sure = Uncertainty::of_boxes(&[0.999; 5], &[true; 5]);
        assert!(sure.entropy < 0.1 && sure.margin < 0.02, "{sure:?}");
        let nan = Uncertainty::of_boxes(&[f32::NAN], &[true]);
        assert!(nan.margin.is_finite() && nan.entropy.is_finite());
    }

    #[test]
    fn certain_and_uniform_are_the_extremes() {
        let certain = Uncertainty::from_distribution(&[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(certain.least_confidence, 0.0);
        assert_eq!(certain.margin, 0.0);
        assert_eq!(certain.entropy, 0.0);
        let uniform = Uncertainty::from_distribution(&[0.25; 4]);
        assert!((uniform.least_confidence - 1.0).abs() < 1e-6);
        assert!((uniform.margin - 1.0).abs() < 1e-6);
        assert!((uniform.entropy - 1.0).abs() < 1e-6);
    }

    #[test]
    fn measures_order_items_sensibly() {
        let sure = Uncertainty::from_distribution(&[0.9, 0.05, 0.05]);
        let torn = Uncertainty::from_distribution(&[0.45, 0.44, 0.11]);
        assert!(torn.margin > sure.margin);
        assert!(torn.least_confidence > sure.least_confidence);
        assert!(torn.entropy > sure.entropy);
        assert!((torn.margin - 0.99).abs() < 1e-5);
    }

    #[test]
    fn independent_scores_take_the_worst_label() {
        let u = Uncertainty::from_independent(&[0.99, 0.5]);
        assert!((u.margin - 1.0).abs() < 1e-6);
        let u = Uncertainty::from_independent(&[0.99, 0.01]);
        assert!(u.margin < 0.05);
    }
}
