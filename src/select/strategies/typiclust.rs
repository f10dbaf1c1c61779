//! TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): for small budgets,
//! the most typical item of each of the largest clusters no label covers.

use super::*;

/// Clusters TypiClust makes at most (the paper's cap is 500; fewer keep a
/// round within a second on two cores).
pub const TYPICLUST_MAX_CLUSTERS: usize = 300;
/// Items its k-means sees at most (a seeded sample; every item is then
/// assigned to its nearest centre).
pub const TYPICLUST_SAMPLE: usize = 4000;
/// Neighbours the typicality is measured over (the paper's 20).
pub const TYPICLUST_NEIGHBOURS: usize = 20;

/// TypiClust: k-means (k = labeled + batch, at most
/// [`TYPICLUST_MAX_CLUSTERS`]) over the pool and the labeled items
/// together; then, `batch` times, the largest cluster with the fewest labels
/// gives its most typical unlabeled item, typicality being the inverse mean
/// distance to its [`TYPICLUST_NEIGHBOURS`] nearest neighbours in the
/// cluster (a dense spot, not an outlier). It ignores the model's scores:
/// it is meant for the cold start, where they are not to be trusted.
///
/// `embeddings` are the pool's `n` rows of `dim`; `labeled` the labeled
/// items' rows. Rows with a non-finite value are never chosen.
pub fn typiclust(
    embeddings: &[f32],
    dim: usize,
    labeled: &[f32],
    batch: usize,
    seed: u64,
) -> Vec<usize> {
    if dim == 0 {
        return Vec::new();
    }
    let n = embeddings.len() / dim;
    let nl = labeled.len() / dim;
    let k_batch = batch.min(n);
    if k_batch == 0 {
        return Vec::new();
    }
    let row = |i: usize| -> &[f32] {
        if i < n {
            &embeddings[i * dim..(i + 1) * dim]
        } else {
            &labeled[(i - n) * dim..(i - n + 1) * dim]
        }
    };
    let finite: Vec<bool> = (0..n + nl)
        .map(|i| row(i).iter().all(|v| v.is_finite()))
        .collect();
    let usable: Vec<usize> = (0..n + nl).filter(|&i| finite[i]).collect();
    if usable.iter().all(|&i| i >= n) {
        return Vec::new();
    }
    let k = (nl + k_batch)
        .min(TYPICLUST_MAX_CLUSTERS)
        .min(usable.len())
        .max(1);
    let mut rng = Rng::new(seed);
    let mut sample = usable.clone();
    rng.shuffle(&mut sample);
    sample.truncate(TYPICLUST_SAMPLE.max(k));
    sample.sort_unstable();
    let mut points = Vec::with_capacity(sample.len() * dim);
    for &i in &sample {
        points.extend_from_slice(row(i));
    }
    let assignment = k_means(&points, dim, k, &mut rng);
    // Centres of the sampled clusters; every usable row joins its nearest.
    let mut centres = vec![0f32; k * dim];
    let mut counts = vec![0usize; k];
    for (j, &c) in assignment.iter().enumerate() {
        counts[c] += 1;
        for (s, x) in centres[c * dim..(c + 1) * dim]
            .iter_mut()
            .zip(&points[j * dim..(j + 1) * dim])
        {
            *s += x;
        }
    }
    for (c, &count) in counts.iter().enumerate() {
        if count > 0 {
            centres[c * dim..(c + 1) * dim]
                .iter_mut()
                .for_each(|s| *s /= count as f32);
        }
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut covered = vec![0usize; k];
    for &i in &usable {
        let c = nearest(row(i), &centres, dim);
        if i < n {
            members[c].push(i);
        } else {
            covered[c] += 1;
        }
    }
    let size: Vec<usize> = members.iter().map(Vec::len).collect();
    let mut chosen = Vec::with_capacity(k_batch);
    let mut taken = vec![false; n];
    while chosen.len() < k_batch {
        // The least covered cluster, then the largest, then the lowest index.
        let best = (0..k)
            .filter(|&c| members[c].iter().any(|&i| !taken[i]))
            .min_by_key(|&c| (covered[c], Reverse(size[c]), c));
        let Some(c) = best else { break };
        let free: Vec<usize> = members[c].iter().copied().filter(|&i| !taken[i]).collect();
        let pick = most_typical(&stride(&free), &stride(&members[c]), &row);
        chosen.push(pick);
        taken[pick] = true;
        covered[c] += 1;
    }
    chosen
}

/// Items of a cluster the typicality looks at, at most (an even stride
/// over larger clusters keeps a pick quadratic in this, not in the pool).
const TYPICALITY_SAMPLE: usize = 1000;

/// At most [`TYPICALITY_SAMPLE`] of `items`, evenly spaced.
fn stride(items: &[usize]) -> Vec<usize> {
    let step = items.len().div_ceil(TYPICALITY_SAMPLE).max(1);
    items.iter().copied().step_by(step).collect()
}

/// The item of `free` with the smallest mean distance to its nearest
/// neighbours among `cluster` (the first on ties).
fn most_typical<'a>(free: &[usize], cluster: &[usize], row: &impl Fn(usize) -> &'a [f32]) -> usize {
    let m = TYPICLUST_NEIGHBOURS.min(cluster.len().saturating_sub(1));
    let mut best = (f32::INFINITY, free[0]);
    let mut d: Vec<f32> = Vec::with_capacity(cluster.len());
    for &i in free {
        d.clear();
        d.extend(
            cluster
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| sq_dist(row(i), row(j)).sqrt()),
        );
        let mean = if m == 0 {
            0.0
        } else {
            d.select_nth_unstable_by(m - 1, f32::total_cmp);
            d[..m].iter().sum::<f32>() / m as f32
        };
        if mean < best.0 {
            best = (mean, i);
        }
    }
    best.1
}
