//! Margin with a diversity filter: the margin ranking, skipping items too
//! close to one already in the batch.

use super::*;

/// Candidates the filter walks, per batch item.
pub const DIVERSE_CANDIDATES_PER_ITEM: usize = 10;
/// Candidates whose pairwise distances set the radius, at most.
const RADIUS_SAMPLE: usize = 200;

/// Margin with a diversity filter: the `min(n, 10·batch)` items with the
/// highest `margins` (higher = more uncertain) are walked in that order,
/// and an item joins the batch unless it lies closer than `r` to one that
/// already did, `r` being half the median distance between two
/// candidates (of at most 200, evenly spaced in margin order): items of
/// the same confusion, near-duplicates first, do not fill a batch, and the
/// radius adapts to the embedding's scale.
/// When the filter leaves the batch short, the skipped items follow in
/// margin order.
///
/// `n` is the smaller of `margins.len()` and the number of embedding rows;
/// with `dim == 0` the result is the plain margin ranking. NaN margins rank
/// last; ties go to the lower index.
pub fn margin_diverse(embeddings: &[f32], dim: usize, margins: &[f32], batch: usize) -> Vec<usize> {
    if dim == 0 {
        return top_by_score(margins, batch);
    }
    let n = margins.len().min(embeddings.len() / dim);
    let candidates = top_by_score(
        &margins[..n],
        batch.saturating_mul(DIVERSE_CANDIDATES_PER_ITEM),
    );
    let k = batch.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    // The radius from the pairwise distances of at most RADIUS_SAMPLE
    // candidates, evenly spaced in margin order.
    let step = candidates.len().div_ceil(RADIUS_SAMPLE).max(1);
    let sample: Vec<usize> = candidates.iter().copied().step_by(step).collect();
    let mut pairs = Vec::with_capacity(sample.len() * sample.len().saturating_sub(1) / 2);
    for (a, &i) in sample.iter().enumerate() {
        for &j in &sample[a + 1..] {
            let d = sq_dist(row(i), row(j));
            if !d.is_nan() {
                pairs.push(d);
            }
        }
    }
    // Squared: half the median distance is a quarter of the median square.
    let radius = if pairs.is_empty() {
        0.0
    } else {
        let mid = pairs.len() / 2;
        *pairs.select_nth_unstable_by(mid, f32::total_cmp).1 * 0.25
    };
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut skipped = Vec::new();
    for &i in &candidates {
        if chosen.len() == k {
            break;
        }
        // Strictly closer than the radius: at r itself an item is kept, so
        // a batch of equidistant points is not emptied.
        if chosen.iter().any(|&c| sq_dist(row(i), row(c)) < radius) {
            skipped.push(i);
        } else {
            chosen.push(i);
        }
    }
    let short = k - chosen.len();
    chosen.extend(skipped.into_iter().take(short));
    chosen
}
