//! Suspected human label errors by confident learning (Northcutt, Jiang &
//! Chuang, *Confident Learning: Estimating Uncertainty in Dataset Labels*,
//! JAIR 2021), on **out-of-sample** predicted probabilities (cross-fitted
//! heads: a model that saw a label will agree with it).
//!
//! The rule, the one cleanlab calls `filter_by="confident_learning"`, so
//! that it can be checked against cleanlab item for item:
//! 1. per class j, the threshold t_j = mean of p_j over the items labeled j
//!    (a class nobody labeled gets 2, i.e. is never confident);
//! 2. an item is confidently in class j when p_j ≥ t_j − 1e-6; its guessed
//!    true class is that j if only one class is confident, the row's
//!    arg-max if several are, and none if none is;
//! 3. the confident joint C[given][guessed] counts the items with a guess;
//!    its off-diagonal items are the suspects;
//! 4. a suspect whose given label is the model's arg-max after a 1e-6 nudge
//!    toward the given label is dropped (the model does not contradict it);
//! 5. suspects are ranked by self-confidence p_given, ascending: the label
//!    the model finds least plausible comes first.
//!
//! Why this rule rather than cleanlab's default `prune_by_noise_rate`: it has
//! no count-calibration step and no tie-breaking by margin, so each flag is
//! explainable from the item alone ("the model is confident it is j, above
//! what class j usually gets"), and ranking by self-confidence gives the
//! review list its order for free. `tests/calibrate.rs` compares its
//! precision at k with cleanlab's default on the same probabilities.

use super::CalibrateError;

/// Tolerance cleanlab uses for "p ≥ threshold" and for the final nudge.
const EPS: f64 = 1e-6;

/// One suspected label error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suspect {
    /// Row index in the input.
    pub index: usize,
    /// The label the human gave.
    pub given: usize,
    /// The class the model confidently puts it in.
    pub suspected: usize,
    /// p_given: the ranking key (ascending).
    pub self_confidence: f64,
}

/// The whole result: thresholds, confident joint and the ranked suspects.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelErrors {
    /// Per-class thresholds t_j (2.0 for a class with no labels).
    pub thresholds: Vec<f64>,
    /// `confident_joint[given][guessed]`, raw counts (not calibrated).
    pub confident_joint: Vec<Vec<u64>>,
    /// Most suspicious first.
    pub suspects: Vec<Suspect>,
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (j, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = j;
        }
    }
    best
}

/// Confident learning over `probs` (row-major, `num_classes` per row,
/// out-of-sample) and the given `labels`.
pub fn find_label_errors(
    probs: &[f64],
    num_classes: usize,
    labels: &[usize],
) -> Result<LabelErrors, CalibrateError> {
    if num_classes == 0 {
        return Err(CalibrateError::Empty("classes"));
    }
    if labels.is_empty() {
        return Err(CalibrateError::Empty("labels"));
    }
    if probs.len() != labels.len() * num_classes {
        return Err(CalibrateError::LengthMismatch {
            what: "probs.len() vs labels.len() × num_classes",
            left: probs.len(),
            right: labels.len() * num_classes,
        });
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        return Err(CalibrateError::NonFinite {
            what: "probs",
            index: i,
        });
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= num_classes) {
        return Err(CalibrateError::ClassOutOfRange {
            what: "labels",
            index: i,
            class: l,
            num_classes,
        });
    }
    let rows: Vec<&[f64]> = probs.chunks_exact(num_classes).collect();
    let mut sum = vec![0.0; num_classes];
    let mut count = vec![0usize; num_classes];
    for (row, &y) in rows.iter().zip(labels) {
        sum[y] += row[y];
        count[y] += 1;
    }
    let thresholds: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(&s, &c)| if c == 0 { 2.0 } else { s / c as f64 })
        .collect();
    let mut joint = vec![vec![0u64; num_classes]; num_classes];
    let mut suspects = Vec::new();
    let mut nudged = Vec::with_capacity(num_classes);
    for (i, (row, &y)) in rows.iter().zip(labels).enumerate() {
        let mut confident = row
            .iter()
            .zip(&thresholds)
            .enumerate()
            .filter(|(_, (&p, &t))| p >= t - EPS)
            .map(|(j, _)| j);
        let guess = match (confident.next(), confident.next()) {
            (None, _) => continue,
            (Some(j), None) => j,
            (Some(_), Some(_)) => argmax(row),
        };
        joint[y][guess] += 1;
        if guess == y {
            continue;
        }
        nudged.clear();
        nudged.extend_from_slice(row);
        nudged[y] += EPS;
        if argmax(&nudged) == y {
            continue;
        }
        suspects.push(Suspect {
            index: i,
            given: y,
            suspected: guess,
            self_confidence: row[y],
        });
    }
    suspects.sort_by(|a, b| {
        a.self_confidence
            .total_cmp(&b.self_confidence)
            .then(a.index.cmp(&b.index))
    });
    Ok(LabelErrors {
        thresholds,
        confident_joint: joint,
        suspects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_the_confidently_contradicted_label() {
        // Class 0 items get ~0.8 on class 0; row 3 is labeled 0 but the
        // model says 1 at 0.9.
        let probs = [
            0.8, 0.2, //
            0.9, 0.1, //
            0.7, 0.3, //
            0.1, 0.9, //
            0.2, 0.8, //
            0.3, 0.7, //
        ];
        let labels = [0, 0, 0, 0, 1, 1];
        let r = find_label_errors(&probs, 2, &labels).unwrap();
        assert!((r.thresholds[0] - 0.625).abs() < 1e-12);
        assert!((r.thresholds[1] - 0.75).abs() < 1e-12);
        assert_eq!(r.suspects.len(), 1);
        assert_eq!(
            (
                r.suspects[0].index,
                r.suspects[0].given,
                r.suspects[0].suspected
            ),
            (3, 0, 1)
        );
        assert_eq!(r.confident_joint[0][1], 1);
        // Row 5 (0.7 on class 1 < t1 = 0.75, 0.3 < t0) has no guess.
        let counted: u64 = r.confident_joint.iter().flatten().sum();
        assert_eq!(counted, 5);
    }

    #[test]
    fn ranks_by_self_confidence() {
        let probs = [
            0.9, 0.1, 0.9, 0.1, 0.9, 0.1, // three clean 0s
            0.05, 0.95, 0.2, 0.8, // two 0s the model calls 1
            0.2, 0.8, 0.2, 0.8, // clean 1s
        ];
        let labels = [0, 0, 0, 0, 0, 1, 1];
        let r = find_label_errors(&probs, 2, &labels).unwrap();
        let order: Vec<usize> = r.suspects.iter().map(|s| s.index).collect();
        assert_eq!(order, vec![3, 4]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(find_label_errors(&[], 2, &[]).is_err());
        assert!(find_label_errors(&[0.5, 0.5], 0, &[0]).is_err());
        assert!(find_label_errors(&[0.5, 0.5], 2, &[2]).is_err());
        assert!(find_label_errors(&[0.5, 0.5, 0.1], 2, &[0]).is_err());
        assert!(find_label_errors(&[0.5, f64::NAN], 2, &[0]).is_err());
    }
}
