//! Cluster-margin (Citovsky et al., NeurIPS 2021, simplified): uncertain
//! items spread over k-means clusters of their embeddings.

use super::*;

/// Most Lloyd iterations of the k-means in cluster-margin.
pub(super) const LLOYD_ITERATIONS: usize = 20;

/// Cluster-margin (Citovsky et al. 2021, simplified): the `min(n, 10·batch)`
/// items with the highest `margins` (higher = more uncertain) are clustered with
/// k-means (k = batch, k-means++ seeding, at most 20 Lloyd iterations); clusters
/// are visited smallest first, round-robin, each giving its most uncertain
/// remaining item until `batch` are chosen.
///
/// `n` is the smaller of `margins.len()` and the number of embedding rows.
/// With `dim == 0` there is nothing to cluster and the result is the plain
/// margin ranking. Ties go to the lower index; NaN margins rank last.
pub fn cluster_margin(
    embeddings: &[f32],
    dim: usize,
    margins: &[f32],
    batch: usize,
    seed: u64,
) -> Vec<usize> {
    if dim == 0 {
        return top_by_score(margins, batch);
    }
    let n = margins.len().min(embeddings.len() / dim);
    let candidates = top_by_score(&margins[..n], batch.saturating_mul(10));
    let k = batch.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let mut points = Vec::with_capacity(candidates.len() * dim);
    for &i in &candidates {
        points.extend_from_slice(&embeddings[i * dim..(i + 1) * dim]);
    }
    let assignment = k_means(&points, dim, k, &mut Rng::new(seed));

    // Candidates are in descending margin order, so each cluster's list is too.
    let mut clusters: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (&cluster, &item) in assignment.iter().zip(&candidates) {
        clusters[cluster].push(item);
    }
    // Stable: equal sizes keep cluster order.
    clusters.sort_by_key(Vec::len);

    let mut chosen = Vec::with_capacity(batch.min(candidates.len()));
    let mut depth = 0;
    'rounds: loop {
        let mut took_any = false;
        for cluster in &clusters {
            if let Some(&item) = cluster.get(depth) {
                chosen.push(item);
                took_any = true;
                if chosen.len() == batch {
                    break 'rounds;
                }
            }
        }
        if !took_any {
            break;
        }
        depth += 1;
    }
    chosen
}

/// Index of the centre nearest to `point` (lowest index on ties).
pub(super) fn nearest(point: &[f32], centres: &[f32], dim: usize) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (c, centre) in centres.chunks_exact(dim).enumerate() {
        let d = sq_dist(point, centre);
        if d < best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// k-means over the rows of `points` (`k >= 1`, at least `k` rows): k-means++
/// seeding (Arthur & Vassilvitskii 2007) then Lloyd iterations. Returns each
/// row's cluster in `0..k`; a cluster may end up empty when rows coincide.
pub(super) fn k_means(points: &[f32], dim: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let m = points.len() / dim;
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut centres = Vec::with_capacity(k * dim);
    centres.extend_from_slice(row(rng.below(m)));

    // k-means++: next centre drawn with probability proportional to D(x)².
    let sanitize = |d: f32| if d.is_nan() { 0.0 } else { f64::from(d) };
    let mut d2: Vec<f64> = (0..m)
        .map(|i| sanitize(sq_dist(row(i), &centres)))
        .collect();
    for c in 1..k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 && total.is_finite() {
            let mut target = rng.unit() * total;
            let mut pick = None;
            let mut last_positive = 0;
            for (i, &d) in d2.iter().enumerate() {
                if d > 0.0 {
                    last_positive = i;
                    if target < d {
                        pick = Some(i);
                        break;
                    }
                    target -= d;
                }
            }
            // Rounding can leave `target` just past the end.
            pick.unwrap_or(last_positive)
        } else {
            rng.below(m)
        };
        centres.extend_from_slice(row(pick));
        let new_centre = &centres[c * dim..(c + 1) * dim];
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(sanitize(sq_dist(row(i), new_centre)));
        }
    }

    // Lloyd: assign to the nearest centre, move centres to their means (an
    // empty cluster keeps its centre), stop when no assignment changes.
    let mut assignment = vec![usize::MAX; m];
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for _ in 0..LLOYD_ITERATIONS {
        let mut changed = false;
        for (i, a) in assignment.iter_mut().enumerate() {
            let c = nearest(row(i), &centres, dim);
            if *a != c {
                *a = c;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        sums.fill(0.0);
        counts.fill(0);
        for (i, &a) in assignment.iter().enumerate() {
            counts[a] += 1;
            for (s, &x) in sums[a * dim..(a + 1) * dim].iter_mut().zip(row(i)) {
                *s += f64::from(x);
            }
        }
        for (c, &count) in counts.iter().enumerate() {
            if count > 0 {
                let inv = 1.0 / count as f64;
                for (centre, &s) in centres[c * dim..(c + 1) * dim]
                    .iter_mut()
                    .zip(&sums[c * dim..(c + 1) * dim])
                {
                    *centre = (s * inv) as f32;
                }
            }
        }
    }
    assignment
}
