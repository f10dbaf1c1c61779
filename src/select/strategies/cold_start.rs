//! Cold start: choosing the first items to label when no model scores them yet.

use super::*;

/// Items a cold-start seed set is drawn from, at most.
pub const COLD_START_SAMPLE: i64 = 4000;

/// Cold start: no labels yet; a seed set that is both diverse and
/// representative. k-center greedy alone picks outliers first (in SMS spam,
/// odd long messages that are all ham), so the seed set is instead the item
/// nearest each centre of a k-means clustering (k = batch) of up to 4,000
/// sampled items. Without usable embeddings it is a seeded random sample.
///
/// The embeddings are used only when they hold exactly `n` rows of `dim`.
pub fn cold_start(embeddings: &[f32], dim: usize, n: usize, batch: usize, seed: u64) -> Vec<usize> {
    if dim == 0 || n == 0 || n.checked_mul(dim) != Some(embeddings.len()) {
        return random_indices(n, batch, seed);
    }
    let k = batch.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    let mut sample: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut sample);
    sample.truncate((COLD_START_SAMPLE as usize).max(k));
    sample.sort_unstable();
    let mut points = Vec::with_capacity(sample.len() * dim);
    for &i in &sample {
        points.extend_from_slice(&embeddings[i * dim..(i + 1) * dim]);
    }
    let assignment = k_means(&points, dim, k, &mut rng);
    let mut sums = vec![0f32; k * dim];
    let mut counts = vec![0usize; k];
    for (j, &c) in assignment.iter().enumerate() {
        counts[c] += 1;
        for (s, x) in sums[c * dim..(c + 1) * dim]
            .iter_mut()
            .zip(&points[j * dim..(j + 1) * dim])
        {
            *s += x;
        }
    }
    for (c, &count) in counts.iter().enumerate() {
        if count > 0 {
            sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .for_each(|s| *s /= count as f32);
        }
    }
    let means = sums;
    let mut best: Vec<Option<(f32, usize)>> = vec![None; k];
    for (j, &c) in assignment.iter().enumerate() {
        let d = sq_dist(
            &points[j * dim..(j + 1) * dim],
            &means[c * dim..(c + 1) * dim],
        );
        if best[c].is_none_or(|(bd, _)| d < bd) {
            best[c] = Some((d, sample[j]));
        }
    }
    let mut picks: Vec<usize> = best.into_iter().flatten().map(|(_, i)| i).collect();
    if picks.len() < k {
        // Coinciding rows left clusters empty: top up with k-center around the picks.
        let mut centres = Vec::with_capacity(picks.len() * dim);
        for &i in &picks {
            centres.extend_from_slice(&embeddings[i * dim..(i + 1) * dim]);
        }
        for i in k_center_greedy(embeddings, dim, &centres, k - picks.len(), seed) {
            if !picks.contains(&i) {
                picks.push(i);
            }
        }
    }
    picks
}
