//! BADGE (Ash et al., ICLR 2020): k-means++ seeding over gradient
//! embeddings, so a batch is both uncertain and diverse.

use super::*;

/// BADGE over a linear softmax head `softmax(W x + b)`: item i's gradient
/// embedding is the gradient of the cross-entropy at its predicted label ŷ
/// with respect to the head's weights and intercepts,
/// `g_i = (p_i − e_ŷ) ⊗ [x_i, 1]`. Its norm grows with the uncertainty and
/// its direction carries both the item and the classes it is torn between.
/// The batch is k-means++ seeding over the `g_i`: the largest norm first,
/// then each next item drawn with probability proportional to its squared
/// distance to the nearest chosen one.
///
/// The `k × (dim + 1)` gradient is never formed:
/// `⟨g_i, g_j⟩ = ⟨a_i, a_j⟩ (⟨x_i, x_j⟩ + 1)` with `a = p − e_ŷ`, so each
/// distance costs `dim + k`.
///
/// `n` is the number of embedding rows. Items with a missing, empty or
/// non-finite distribution, or a non-finite embedding, have a zero
/// gradient and come last (in index order), as do all items once every
/// remaining distance is zero (a confident pool: the rest by norm, then index).
pub fn badge(
    probs: &[Vec<f32>],
    embeddings: &[f32],
    dim: usize,
    batch: usize,
    seed: u64,
) -> Vec<usize> {
    if dim == 0 {
        return Vec::new();
    }
    let n = embeddings.len() / dim;
    let k = batch.min(n);
    if k == 0 {
        return Vec::new();
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    // a_i = p_i − e_ŷ, and |x̃_i|² = |x_i|² + 1; a zero `a` for unusable items.
    let width = probs.iter().take(n).map(Vec::len).max().unwrap_or(0);
    let mut a = vec![0f32; n * width];
    let mut xsq = vec![0f32; n];
    let mut usable = vec![false; n];
    for i in 0..n {
        let p = probs.get(i).map_or(&[][..], Vec::as_slice);
        let x = row(i);
        usable[i] =
            !p.is_empty() && p.iter().all(|v| v.is_finite()) && x.iter().all(|v| v.is_finite());
        if !usable[i] {
            continue;
        }
        let ai = &mut a[i * width..i * width + p.len()];
        ai.copy_from_slice(p);
        if let Some(top) = argmax(p) {
            ai[top] -= 1.0;
        }
        xsq[i] = x.iter().map(|v| v * v).sum::<f32>() + 1.0;
    }
    let arow = |i: usize| &a[i * width..(i + 1) * width];
    let dot = |u: &[f32], v: &[f32]| u.iter().zip(v).map(|(x, y)| x * y).sum::<f32>();
    let norm2: Vec<f64> = (0..n)
        .map(|i| f64::from(dot(arow(i), arow(i)) * xsq[i]))
        .collect();
    let dist2 = |i: usize, c: usize| -> f64 {
        let cross = f64::from(dot(arow(i), arow(c))) * f64::from(dot(row(i), row(c)) + 1.0);
        (norm2[i] + norm2[c] - 2.0 * cross).max(0.0)
    };

    let mut chosen = Vec::with_capacity(k);
    // Unusable items are never sampled: they come last.
    let mut taken: Vec<bool> = usable.iter().map(|u| !u).collect();
    // The largest gradient first (lowest index on ties).
    let first_scores: Vec<f32> = (0..n)
        .map(|i| {
            if usable[i] {
                norm2[i] as f32
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let first = top_by_score(&first_scores, 1)[0];
    if usable[first] {
        chosen.push(first);
        taken[first] = true;
        let mut d2: Vec<f64> = (0..n).map(|i| dist2(i, first)).collect();
        let mut rng = Rng::new(seed);
        while chosen.len() < k {
            let total: f64 = (0..n).filter(|&i| !taken[i]).map(|i| d2[i]).sum();
            if !(total > 0.0 && total.is_finite()) {
                break;
            }
            let mut target = rng.unit() * total;
            let mut pick = None;
            let mut last_positive = None;
            for i in (0..n).filter(|&i| !taken[i] && d2[i] > 0.0) {
                last_positive = Some(i);
                if target < d2[i] {
                    pick = Some(i);
                    break;
                }
                target -= d2[i];
            }
            // Rounding can leave `target` just past the end.
            let Some(c) = pick.or(last_positive) else {
                break;
            };
            chosen.push(c);
            taken[c] = true;
            for (i, d) in d2.iter_mut().enumerate() {
                if !taken[i] {
                    *d = d.min(dist2(i, c));
                }
            }
        }
    }
    if chosen.len() < k {
        // Nothing usable left at a positive distance: the rest by gradient
        // norm, then the unusable items, by index.
        let mut rest: Vec<f32> = (0..n)
            .map(|i| if usable[i] { norm2[i] as f32 } else { -1.0 })
            .collect();
        for &c in &chosen {
            rest[c] = f32::NEG_INFINITY;
        }
        chosen.extend(top_by_score(&rest, k - chosen.len()));
    }
    chosen
}
