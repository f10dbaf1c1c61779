//! K-fold cross-fitting: out-of-sample class probabilities for the rows a
//! head is trained on. Each row is scored by a head trained on the other
//! folds, so the probabilities can fit a temperature or find label errors
//! without the optimism of a head that saw the row's own label.
//!
//! Folds are assigned by position (`row % folds`), which is deterministic
//! and, since callers pass rows in labeling order, independent of content.

use super::head::{Head, TrainOptions};

/// Out-of-sample probabilities of every row of `x` (n×dim, row-major) with
/// labels `y`: `folds` heads, each trained without one fold, score that fold.
/// Returns one entry per row, `None` where the fold's head could not be
/// trained (for instance a fold whose complement has a single class) or
/// when there are fewer than `2 · folds` rows. Rows are `labels.len()` long.
pub fn cross_fit(
    x: &[f32],
    dim: usize,
    y: &[usize],
    labels: &[String],
    opts: TrainOptions,
    folds: usize,
) -> Vec<Option<Vec<f32>>> {
    let n = y.len();
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    let folds = folds.max(2);
    if dim == 0 || x.len() != n * dim || n < 2 * folds {
        return out;
    }
    let k = labels.len();
    for fold in 0..folds {
        let (mut tx, mut ty) = (Vec::new(), Vec::new());
        let mut held = Vec::new();
        for i in 0..n {
            if i % folds == fold {
                held.push(i);
            } else {
                tx.extend_from_slice(&x[i * dim..(i + 1) * dim]);
                ty.push(y[i]);
            }
        }
        let Ok(head) = Head::train(&tx, dim, &ty, labels.to_vec(), opts) else {
            continue;
        };
        let mut hx = Vec::with_capacity(held.len() * dim);
        for &i in &held {
            hx.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        }
        let Ok(p) = head.predict_proba_batch(&hx) else {
            continue;
        };
        for (&i, row) in held.iter().zip(p.chunks_exact(k)) {
            out[i] = Some(row.to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable blobs, with one row whose label is flipped: its
    /// out-of-sample probability of the given label is low, while a head
    /// trained on all rows (the label seen) would score it higher.
    #[test]
    fn out_of_sample_scores_do_not_trust_a_row_s_own_label() {
        let mut rng = crate::select::rng::Rng::new(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let c = i % 2;
            let centre = if c == 0 { -1.0 } else { 1.0 };
            x.push(centre + 0.3 * (rng.unit() as f32 - 0.5));
            x.push(centre + 0.3 * (rng.unit() as f32 - 0.5));
            y.push(c);
        }
        y[7] = 1 - y[7];
        let labels = vec!["a".to_string(), "b".to_string()];
        let opts = TrainOptions {
            c: 10.0,
            ..TrainOptions::default()
        };
        let oof = cross_fit(&x, 2, &y, &labels, opts, 5);
        assert!(oof.iter().all(Option::is_some));
        let given = oof[7].as_ref().unwrap()[y[7]];
        let full = Head::train(&x, 2, &y, labels.clone(), opts).unwrap();
        let seen = full.predict_proba(&x[14..16]).unwrap()[y[7]];
        assert!(given < 0.5, "out-of-sample p(given) = {given}");
        assert!(given < seen, "{given} vs in-sample {seen}");
        // Every other row is classified right out of sample.
        let right = (0..60)
            .filter(|&i| i != 7)
            .filter(|&i| {
                let p = oof[i].as_ref().unwrap();
                (p[1] > p[0]) == (y[i] == 1)
            })
            .count();
        assert_eq!(right, 59);
    }

    #[test]
    fn too_few_rows_or_bad_shapes_give_no_scores() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let opts = TrainOptions::default();
        assert!(cross_fit(&[0.0; 8], 1, &[0; 8], &labels, opts, 5)
            .iter()
            .all(Option::is_none));
        assert!(cross_fit(&[0.0; 3], 2, &[0, 1], &labels, opts, 2)
            .iter()
            .all(Option::is_none));
    }
}
