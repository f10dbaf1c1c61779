//! Active-learning selection: which unlabeled items people should label next.
//!
//! Pure Rust over borrowed slices: class distributions, embeddings and committee
//! outputs come in, pool indices come out. Every strategy is deterministic for a
//! given seed (see [`Rng`]), and malformed input yields fewer items or a
//! [`SelectError`], never a panic.
//!
//! - uncertainty sampling (least confidence, margin, entropy; Settles 2009);
//! - query by committee (vote entropy, mean KL to the consensus);
//! - k-center greedy core-sets (Sener & Savarese, ICLR 2018);
//! - cluster-margin (Citovsky et al., NeurIPS 2021, simplified).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::uncertainty::Uncertainty;

/// An active-learning selection strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Uniformly random items (a baseline; needs nothing).
    Random,
    /// Lowest top-class probability first.
    LeastConfidence,
    /// Smallest gap between the two most likely classes first.
    Margin,
    /// Highest predictive entropy first.
    Entropy,
    /// Committee members disagreeing most in their votes first.
    VoteEntropy,
    /// Committee members furthest (KL) from their consensus first.
    MeanKl,
    /// Greedy k-center core-set over embeddings: the most diverse items.
    KCenter,
    /// Uncertain items spread over clusters of their embeddings.
    ClusterMargin,
}

impl Strategy {
    /// Every strategy, in declaration order.
    pub const ALL: [Strategy; 8] = [
        Strategy::Random,
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::VoteEntropy,
        Strategy::MeanKl,
        Strategy::KCenter,
        Strategy::ClusterMargin,
    ];

    /// The strategy named by its kebab-case name (as in [`Strategy::as_str`]).
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The kebab-case name, the same as the serde representation.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::LeastConfidence => "least-confidence",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::VoteEntropy => "vote-entropy",
            Strategy::MeanKl => "mean-kl",
            Strategy::KCenter => "k-center",
            Strategy::ClusterMargin => "cluster-margin",
        }
    }

    /// Whether [`select`] needs `pool.embeddings` for this strategy.
    pub fn needs_embeddings(self) -> bool {
        matches!(self, Strategy::KCenter | Strategy::ClusterMargin)
    }

    /// The stored measure a review list of this strategy is ordered by, for
    /// the strategies that are one index scan; `None` for those that choose
    /// in memory (random, k-center, cluster-margin).
    pub fn stored_measure(self) -> Option<super::Measure> {
        use super::Measure;
        match self {
            Strategy::LeastConfidence => Some(Measure::LeastConfidence),
            Strategy::Margin => Some(Measure::Margin),
            Strategy::Entropy => Some(Measure::Entropy),
            Strategy::VoteEntropy => Some(Measure::VoteEntropy),
            Strategy::MeanKl => Some(Measure::MeanKl),
            Strategy::Random | Strategy::KCenter | Strategy::ClusterMargin => None,
        }
    }

    /// Whether [`select`] needs `pool.committee` (two or more members).
    pub fn needs_committee(self) -> bool {
        matches!(self, Strategy::VoteEntropy | Strategy::MeanKl)
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`select`] could not run a strategy on a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("this strategy needs item embeddings, and the pool has none")]
    MissingEmbeddings,
    #[error("this strategy needs a committee of at least two models, and the pool has fewer")]
    MissingCommittee,
    #[error("{what}: expected {expected}, got {got}")]
    DimMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

/// The unlabeled pool, borrowed. `probs[i]` is item i's class distribution (may be empty
/// slices when no model/head exists yet). `embeddings` is row-major n×dim (empty if none).
/// `committee[m][i]` is member m's distribution for item i (empty if no committee).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pool<'a> {
    pub probs: &'a [Vec<f32>],
    pub embeddings: &'a [f32],
    pub dim: usize,
    pub committee: &'a [Vec<Vec<f32>>],
}

impl Pool<'_> {
    /// Number of items: `probs.len()` when there are distributions, else the
    /// number of embedding rows, else the first committee member's length.
    pub fn len(&self) -> usize {
        if !self.probs.is_empty() {
            self.probs.len()
        } else if self.dim > 0 && !self.embeddings.is_empty() {
            self.embeddings.len() / self.dim
        } else {
            self.committee.first().map_or(0, Vec::len)
        }
    }

    /// Whether the pool has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Choose up to `batch` distinct pool indices to label next, most useful first.
/// `labeled_embeddings` (row-major, dim) are the items already labeled: k-center treats them as existing centres.
///
/// An empty pool or `batch == 0` gives an empty list; `batch > n` gives all `n`
/// items. Items with empty distributions rank last under the uncertainty strategies.
pub fn select(
    strategy: Strategy,
    pool: &Pool,
    labeled_embeddings: &[f32],
    batch: usize,
    seed: u64,
) -> Result<Vec<usize>, SelectError> {
    let n = pool.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if strategy.needs_embeddings() {
        check_embeddings(pool, n, labeled_embeddings)?;
    }
    if strategy.needs_committee() {
        check_committee(pool, n)?;
    }
    if batch == 0 {
        return Ok(Vec::new());
    }
    let uncertainty = |field: fn(&Uncertainty) -> f32| -> Vec<f32> {
        (0..n)
            .map(|i| match pool.probs.get(i) {
                Some(p) if !p.is_empty() => field(&Uncertainty::from_distribution(p)),
                _ => f32::NEG_INFINITY,
            })
            .collect()
    };
    let selected = match strategy {
        Strategy::Random => random_indices(n, batch, seed),
        Strategy::LeastConfidence => top_by_score(&uncertainty(|u| u.least_confidence), batch),
        Strategy::Margin => top_by_score(&uncertainty(|u| u.margin), batch),
        Strategy::Entropy => top_by_score(&uncertainty(|u| u.entropy), batch),
        Strategy::VoteEntropy => top_by_score(&committee_scores(pool, n, vote_entropy), batch),
        Strategy::MeanKl => top_by_score(&committee_scores(pool, n, mean_kl), batch),
        Strategy::KCenter => {
            k_center_greedy(pool.embeddings, pool.dim, labeled_embeddings, batch, seed)
        }
        Strategy::ClusterMargin => {
            let margins = uncertainty(|u| u.margin);
            cluster_margin(pool.embeddings, pool.dim, &margins, batch, seed)
        }
    };
    Ok(selected)
}

fn check_embeddings(pool: &Pool, n: usize, labeled: &[f32]) -> Result<(), SelectError> {
    if pool.dim == 0 || pool.embeddings.is_empty() {
        return Err(SelectError::MissingEmbeddings);
    }
    let expected = n.saturating_mul(pool.dim);
    if pool.embeddings.len() != expected {
        return Err(SelectError::DimMismatch {
            what: "pool embeddings (items × dim)",
            expected,
            got: pool.embeddings.len(),
        });
    }
    if !labeled.len().is_multiple_of(pool.dim) {
        return Err(SelectError::DimMismatch {
            what: "labeled embeddings length modulo dim",
            expected: 0,
            got: labeled.len() % pool.dim,
        });
    }
    Ok(())
}

fn check_committee(pool: &Pool, n: usize) -> Result<(), SelectError> {
    if pool.committee.len() < 2 {
        return Err(SelectError::MissingCommittee);
    }
    match pool.committee.iter().find(|member| member.len() != n) {
        Some(member) => Err(SelectError::DimMismatch {
            what: "committee member distributions (items)",
            expected: n,
            got: member.len(),
        }),
        None => Ok(()),
    }
}

fn committee_scores(pool: &Pool, n: usize, score: fn(&[&[f32]]) -> f32) -> Vec<f32> {
    let mut members: Vec<&[f32]> = Vec::with_capacity(pool.committee.len());
    (0..n)
        .map(|i| {
            members.clear();
            members.extend(
                pool.committee
                    .iter()
                    .map(|member| member.get(i).map_or(&[][..], Vec::as_slice)),
            );
            score(&members)
        })
        .collect()
}

/// `batch` distinct indices of `0..n` from a seeded shuffle.
fn random_indices(n: usize, batch: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut all);
    all.truncate(batch);
    all
}

/// NaN ranks last and -0.0 ties with 0.0, so `total_cmp` gives a sensible order.
fn rank_key(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score + 0.0
    }
}

/// Indices of the `batch` highest scores, highest first, ties by index ascending.
fn top_by_score(scores: &[f32], batch: usize) -> Vec<usize> {
    let k = batch.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    let mut order: Vec<(f32, usize)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (rank_key(s), i))
        .collect();
    let cmp = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    order.into_iter().map(|(_, i)| i).collect()
}

/// Index of the largest entry (first one on ties); `None` for an empty slice.
fn argmax(p: &[f32]) -> Option<usize> {
    if p.is_empty() {
        return None;
    }
    let mut best = 0;
    for (i, &x) in p.iter().enumerate().skip(1) {
        if x > p[best] {
            best = i;
        }
    }
    Some(best)
}

/// Entropy of the members' argmax votes, normalised by ln(min(members, classes)) to [0, 1].
/// Members with an empty distribution do not vote; fewer than two votes (or
/// fewer than two classes) give 0.
pub fn vote_entropy(member_probs: &[&[f32]]) -> f32 {
    let mut votes: Vec<usize> = member_probs.iter().filter_map(|p| argmax(p)).collect();
    let classes = member_probs.iter().map(|p| p.len()).max().unwrap_or(0);
    let voters = votes.len();
    let norm = voters.min(classes);
    if norm < 2 {
        return 0.0;
    }
    votes.sort_unstable();
    let mut h = 0.0f64;
    for run in votes.chunk_by(|a, b| a == b) {
        let q = run.len() as f64 / voters as f64;
        h -= q * q.ln();
    }
    ((h / (norm as f64).ln()) as f32).clamp(0.0, 1.0)
}

/// Mean KL(member || consensus), consensus = mean distribution; clamp probabilities with eps.
/// Members with an empty distribution are left out; a shorter distribution
/// counts its missing classes as 0. Fewer than two members give 0.
pub fn mean_kl(member_probs: &[&[f32]]) -> f32 {
    const EPS: f64 = 1e-10;
    let members = member_probs.iter().filter(|p| !p.is_empty()).count();
    if members < 2 {
        return 0.0;
    }
    let classes = member_probs.iter().map(|p| p.len()).max().unwrap_or(0);
    let prob = |p: &[f32], c: usize| -> f64 {
        // `max` also maps NaN to EPS.
        p.get(c).map_or(0.0, |&x| f64::from(x)).max(EPS)
    };
    let mut total = 0.0f64;
    for c in 0..classes {
        let present = || member_probs.iter().filter(|p| !p.is_empty());
        let consensus = present().map(|p| prob(p, c)).sum::<f64>() / members as f64;
        for p in present() {
            let q = prob(p, c);
            total += q * (q / consensus).ln();
        }
    }
    // Jensen makes the true value >= 0; rounding can dip just below.
    ((total / members as f64) as f32).max(0.0)
}

/// Squared Euclidean distance. Sixteen independent f32 accumulators let the
/// compiler keep the loop in SIMD registers without reassociating floats, so the
/// result is bit-identical whether or not it vectorises.
#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_tail.iter().zip(b_tail) {
        let d = x - y;
        tail += d * d;
    }
    // Fixed pairwise reduction order.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// Marks a point already chosen in the k-center min-distance table; real
/// squared distances are never negative.
const PICKED: f32 = -1.0;

/// The k-center centres so far: the labeled rows first, then the picked pool rows.
struct Centres<'a> {
    labeled: &'a [f32],
    pool: &'a [f32],
    picks: &'a [usize],
    dim: usize,
}

impl<'a> Centres<'a> {
    fn new(labeled: &'a [f32], pool: &'a [f32], picks: &'a [usize], dim: usize) -> Self {
        Centres {
            labeled,
            pool,
            picks,
            dim,
        }
    }

    fn len(&self) -> usize {
        self.labeled.len() / self.dim + self.picks.len()
    }

    fn row(&self, k: usize) -> &[f32] {
        let dim = self.dim;
        let labeled = self.labeled.len() / dim;
        if k < labeled {
            &self.labeled[k * dim..(k + 1) * dim]
        } else {
            let i = self.picks[k - labeled];
            &self.pool[i * dim..(i + 1) * dim]
        }
    }
}

/// `min_d` lowered by the distances from `row` to centres `from..`.
/// NaN never lowers it: a broken row stays "far" instead of poisoning others.
#[inline]
fn refresh(row: &[f32], centres: &Centres, from: usize, min_d: f32) -> f32 {
    let mut m = min_d;
    for k in from..centres.len() {
        let d = sq_dist(row, centres.row(k));
        if d < m {
            m = d;
        }
    }
    m
}

/// Brings every unpicked row of a chunk up to date with all centres.
fn catch_up_chunk(
    rows: &[f32],
    dim: usize,
    centres: &Centres,
    min_d: &mut [f32],
    seen: &mut [usize],
) {
    let total = centres.len();
    for ((row, m), s) in rows
        .chunks_exact(dim)
        .zip(min_d.iter_mut())
        .zip(seen.iter_mut())
    {
        if *m != PICKED && *s < total {
            *m = refresh(row, centres, *s, *m);
            *s = total;
        }
    }
}

/// [`catch_up_chunk`] over `threads` contiguous chunks, in parallel.
fn catch_up(
    rows: &[f32],
    dim: usize,
    centres: &Centres,
    min_d: &mut [f32],
    seen: &mut [usize],
    threads: usize,
) {
    let n = min_d.len();
    let per_chunk = n.div_ceil(threads.clamp(1, n.max(1))).max(1);
    if per_chunk >= n {
        catch_up_chunk(rows, dim, centres, min_d, seen);
        return;
    }
    std::thread::scope(|scope| {
        let mut parts = rows
            .chunks(per_chunk * dim)
            .zip(min_d.chunks_mut(per_chunk))
            .zip(seen.chunks_mut(per_chunk));
        let own = parts.next();
        for ((rows, min_d), seen) in parts {
            scope.spawn(move || catch_up_chunk(rows, dim, centres, min_d, seen));
        }
        if let Some(((rows, min_d), seen)) = own {
            catch_up_chunk(rows, dim, centres, min_d, seen);
        }
    });
}

/// Heap key of a min distance: for non-negative floats the bit pattern orders
/// like the value (INFINITY included).
fn heap_key(d: f32) -> u32 {
    if d > 0.0 {
        d.to_bits()
    } else {
        0
    }
}

/// Max-heap of (distance bound, index): largest bound first, lower index on ties.
type FarthestHeap = BinaryHeap<(u32, Reverse<usize>)>;

/// Refills `heap` with every unpicked point, without reallocating.
fn rebuild_heap(heap: &mut FarthestHeap, min_d: &[f32]) {
    let mut entries = std::mem::take(heap).into_vec();
    entries.clear();
    entries.extend(
        min_d
            .iter()
            .enumerate()
            .filter(|&(_, &m)| m != PICKED)
            .map(|(i, &m)| (heap_key(m), Reverse(i))),
    );
    *heap = BinaryHeap::from(entries);
}

/// Below this many rows per thread, a parallel pass costs more in thread
/// start-up than it saves.
const MIN_ROWS_PER_THREAD: usize = 2048;

/// Greedy k-center (Sener & Savarese 2018): repeatedly pick the pool point
/// farthest from its nearest centre. `centres` (row-major, `dim`) are the
/// already-labeled items; without them the first pick is a seeded random point.
///
/// Returns up to `batch` distinct indices of `embeddings` rows (at most the
/// number of rows), in pick order. Ties go to the lower index. A trailing
/// partial row is ignored; `dim == 0` gives nothing. Rows containing NaN count
/// as infinitely far and are picked early rather than poisoning other distances.
///
/// The result is exactly that of the textbook algorithm (update every point's
/// min distance after each pick, take the farthest), computed lazily: a
/// point's min distance only ever decreases, so a stale value is an upper
/// bound. The farthest candidate is popped from a max-heap of bounds and
/// brought up to date with the centres added since its last visit; if it is
/// still on top it is the true farthest point. On 100k random 384-d points,
/// 100 picks cost about a sixth of the distance evaluations of the eager
/// update. Full passes (the first centre or the labeled centres, and a
/// catch-up whenever one pick needs more than n/4 refreshes) run over
/// contiguous chunks on `available_parallelism()` threads.
pub fn k_center_greedy(
    embeddings: &[f32],
    dim: usize,
    centres: &[f32],
    batch: usize,
    seed: u64,
) -> Vec<usize> {
    let n = embeddings.len().checked_div(dim).unwrap_or(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n / MIN_ROWS_PER_THREAD)
        .max(1);
    k_center_with(
        embeddings,
        dim,
        centres,
        batch,
        seed,
        threads,
        (n / 4).max(1),
    )
}

/// [`k_center_greedy`] with explicit parallelism and catch-up threshold (the
/// number of lazy refreshes within one pick after which every point is brought
/// up to date in parallel). Neither changes the result: every distance is
/// computed the same way, and the farthest point is chosen in a total order.
fn k_center_with(
    embeddings: &[f32],
    dim: usize,
    labeled: &[f32],
    batch: usize,
    seed: u64,
    threads: usize,
    catch_up_after: usize,
) -> Vec<usize> {
    if dim == 0 {
        return Vec::new();
    }
    let n = embeddings.len() / dim;
    let batch = batch.min(n);
    if batch == 0 {
        return Vec::new();
    }
    let pool = &embeddings[..n * dim];
    let labeled = &labeled[..labeled.len() / dim * dim];
    let labeled_rows = labeled.len() / dim;
    let row = |i: usize| &pool[i * dim..(i + 1) * dim];

    let mut picks = Vec::with_capacity(batch);
    let mut min_d = vec![f32::INFINITY; n];
    // How many centres each point's `min_d` accounts for.
    let mut seen = vec![0usize; n];
    if labeled_rows == 0 {
        let first = Rng::new(seed).below(n);
        picks.push(first);
        min_d[first] = PICKED;
        if batch == 1 {
            return picks;
        }
    }
    catch_up(
        pool,
        dim,
        &Centres::new(labeled, pool, &picks, dim),
        &mut min_d,
        &mut seen,
        threads,
    );
    let mut heap = FarthestHeap::new();
    rebuild_heap(&mut heap, &min_d);

    let mut refreshed = 0;
    while picks.len() < batch {
        let Some((_, Reverse(i))) = heap.pop() else {
            break;
        };
        let total = labeled_rows + picks.len();
        if seen[i] >= total {
            // Up to date and no other bound beats it: the farthest point.
            picks.push(i);
            min_d[i] = PICKED;
            refreshed = 0;
            continue;
        }
        min_d[i] = refresh(
            row(i),
            &Centres::new(labeled, pool, &picks, dim),
            seen[i],
            min_d[i],
        );
        seen[i] = total;
        heap.push((heap_key(min_d[i]), Reverse(i)));
        refreshed += 1;
        if refreshed >= catch_up_after {
            catch_up(
                pool,
                dim,
                &Centres::new(labeled, pool, &picks, dim),
                &mut min_d,
                &mut seen,
                threads,
            );
            rebuild_heap(&mut heap, &min_d);
            refreshed = 0;
        }
    }
    picks
}

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
    sample.truncate(4000.max(k));
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

/// Most Lloyd iterations of the k-means in cluster-margin.
const LLOYD_ITERATIONS: usize = 20;

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
fn nearest(point: &[f32], centres: &[f32], dim: usize) -> usize {
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
fn k_means(points: &[f32], dim: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Standard normal by Box–Muller.
    fn gaussian(rng: &mut Rng) -> f32 {
        let u1 = 1.0 - rng.unit(); // (0, 1]
        let u2 = rng.unit();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// `blobs` well-separated Gaussian blobs (centre `10·e_b`, σ = 0.3) of
    /// `per_blob` points each, shuffled; returns (embeddings, blob of each row).
    fn blobs(blobs: usize, per_blob: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        assert!(dim >= blobs);
        let mut rng = Rng::new(seed);
        let mut owner: Vec<usize> = (0..blobs * per_blob).map(|i| i / per_blob).collect();
        rng.shuffle(&mut owner);
        let mut emb = Vec::with_capacity(owner.len() * dim);
        for &b in &owner {
            for d in 0..dim {
                let centre = if d == b { 10.0 } else { 0.0 };
                emb.push(centre + 0.3 * gaussian(&mut rng));
            }
        }
        (emb, owner)
    }

    fn distinct(v: &[usize]) -> bool {
        v.iter().collect::<HashSet<_>>().len() == v.len()
    }

    fn probs_pool(probs: &[Vec<f32>]) -> Pool<'_> {
        Pool {
            probs,
            ..Pool::default()
        }
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            let back: Strategy = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back, s);
        }
        assert_eq!(Strategy::parse("k-center"), Some(Strategy::KCenter));
        assert_eq!(Strategy::parse("mean-kl"), Some(Strategy::MeanKl));
        assert_eq!(Strategy::parse("KCenter"), None);
        assert_eq!(Strategy::parse(""), None);
        let needs_emb: Vec<_> = Strategy::ALL
            .into_iter()
            .filter(|s| s.needs_embeddings())
            .collect();
        assert_eq!(needs_emb, [Strategy::KCenter, Strategy::ClusterMargin]);
        let needs_com: Vec<_> = Strategy::ALL
            .into_iter()
            .filter(|s| s.needs_committee())
            .collect();
        assert_eq!(needs_com, [Strategy::VoteEntropy, Strategy::MeanKl]);
    }

    #[test]
    fn uncertainty_strategies_pick_the_torn_item() {
        let probs = vec![
            vec![0.9, 0.05, 0.05],  // confident
            vec![0.45, 0.44, 0.11], // torn between two
            vec![],                 // no prediction yet
            vec![0.6, 0.3, 0.1],
        ];
        let pool = probs_pool(&probs);
        for s in [
            Strategy::Margin,
            Strategy::LeastConfidence,
            Strategy::Entropy,
        ] {
            let got = select(s, &pool, &[], 4, 0).expect("select");
            assert_eq!(got, vec![1, 3, 0, 2], "{s}");
            assert_eq!(select(s, &pool, &[], 1, 0).expect("select"), vec![1]);
        }
    }

    #[test]
    fn ties_break_by_index() {
        let probs = vec![vec![0.5, 0.5]; 6];
        let got = select(Strategy::Margin, &probs_pool(&probs), &[], 3, 0).expect("select");
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn batch_larger_than_pool_and_empty_pool() {
        let probs = vec![vec![0.7, 0.3], vec![0.5, 0.5], vec![0.9, 0.1]];
        for s in [Strategy::Random, Strategy::Margin, Strategy::Entropy] {
            let got = select(s, &probs_pool(&probs), &[], 10, 1).expect("select");
            assert_eq!(got.len(), 3);
            assert!(distinct(&got));
            assert!(select(s, &probs_pool(&probs), &[], 0, 1)
                .expect("select")
                .is_empty());
        }
        for s in Strategy::ALL {
            assert_eq!(select(s, &Pool::default(), &[], 5, 1), Ok(vec![]), "{s}");
        }
    }

    #[test]
    fn random_is_seeded() {
        let probs = vec![vec![]; 1000];
        let pool = probs_pool(&probs);
        let a = select(Strategy::Random, &pool, &[], 20, 5).expect("select");
        let b = select(Strategy::Random, &pool, &[], 20, 5).expect("select");
        let c = select(Strategy::Random, &pool, &[], 20, 6).expect("select");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 20);
        assert!(distinct(&a));
        assert!(a.iter().all(|&i| i < 1000));
    }

    #[test]
    fn vote_entropy_extremes() {
        let a: &[f32] = &[0.9, 0.1];
        let b: &[f32] = &[0.2, 0.8];
        assert_eq!(vote_entropy(&[a, a, a]), 0.0);
        assert!((vote_entropy(&[a, b]) - 1.0).abs() < 1e-6);
        // 2 members over 3 classes: normalised by ln(min(2, 3)) = ln 2.
        let c: &[f32] = &[0.1, 0.1, 0.8];
        let d: &[f32] = &[0.8, 0.1, 0.1];
        assert!((vote_entropy(&[c, d]) - 1.0).abs() < 1e-6);
        // 3 members, votes 2:1 over 2 classes: H = 0.6365 nats / ln 2.
        let v = vote_entropy(&[a, a, b]);
        assert!((v - 0.918_295_8).abs() < 1e-5, "{v}");
        assert_eq!(vote_entropy(&[]), 0.0);
        assert_eq!(vote_entropy(&[a]), 0.0);
        assert_eq!(vote_entropy(&[a, &[]]), 0.0);
    }

    #[test]
    fn mean_kl_zero_only_for_agreement() {
        let a: &[f32] = &[0.7, 0.2, 0.1];
        let b: &[f32] = &[0.1, 0.2, 0.7];
        assert!(mean_kl(&[a, a, a]) < 1e-6);
        let d = mean_kl(&[a, b]);
        assert!(d > 0.1, "{d}");
        // Hard zeros are clamped, not infinite.
        let h = mean_kl(&[&[1.0, 0.0], &[0.0, 1.0]]);
        assert!(h.is_finite() && h > 0.5, "{h}");
        // Closer members, smaller divergence.
        let c: &[f32] = &[0.6, 0.25, 0.15];
        assert!(mean_kl(&[a, c]) < d);
        assert_eq!(mean_kl(&[a]), 0.0);
        assert_eq!(mean_kl(&[]), 0.0);
    }

    #[test]
    fn committee_strategies_rank_disagreement_first() {
        // Item 0: members agree. Item 1: members split. Item 2: mild disagreement.
        let m1 = vec![vec![0.9, 0.1], vec![0.9, 0.1], vec![0.6, 0.4]];
        let m2 = vec![vec![0.9, 0.1], vec![0.1, 0.9], vec![0.7, 0.3]];
        let committee = vec![m1, m2];
        let probs = vec![vec![0.9, 0.1], vec![0.5, 0.5], vec![0.65, 0.35]];
        let pool = Pool {
            probs: &probs,
            committee: &committee,
            ..Pool::default()
        };
        assert_eq!(
            select(Strategy::MeanKl, &pool, &[], 3, 0),
            Ok(vec![1, 2, 0])
        );
        let votes = select(Strategy::VoteEntropy, &pool, &[], 3, 0).expect("select");
        assert_eq!(votes[0], 1);

        // Without probs the committee alone sizes the pool.
        let pool = Pool {
            committee: &committee,
            ..Pool::default()
        };
        assert_eq!(select(Strategy::MeanKl, &pool, &[], 1, 0), Ok(vec![1]));

        let one = vec![committee[0].clone()];
        let pool = Pool {
            probs: &probs,
            committee: &one,
            ..Pool::default()
        };
        assert_eq!(
            select(Strategy::VoteEntropy, &pool, &[], 3, 0),
            Err(SelectError::MissingCommittee)
        );
        let short = vec![committee[0].clone(), vec![vec![0.5, 0.5]]];
        let pool = Pool {
            probs: &probs,
            committee: &short,
            ..Pool::default()
        };
        assert!(matches!(
            select(Strategy::MeanKl, &pool, &[], 3, 0),
            Err(SelectError::DimMismatch {
                expected: 3,
                got: 1,
                ..
            })
        ));
    }

    #[test]
    fn k_center_covers_every_blob_first() {
        let dim = 8;
        let (emb, owner) = blobs(5, 40, dim, 11);
        for seed in 0..5 {
            let picks = k_center_greedy(&emb, dim, &[], 5, seed);
            let covered: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
            assert_eq!(covered.len(), 5, "seed {seed}: {picks:?}");
        }
    }

    #[test]
    fn k_center_prefers_unlabeled_blobs() {
        let dim = 8;
        let (emb, owner) = blobs(5, 40, dim, 12);
        // Two labeled items sit in blobs 0 and 1.
        let mut labeled = vec![0.0f32; 2 * dim];
        labeled[0] = 10.0;
        labeled[dim + 1] = 10.0;
        let picks = k_center_greedy(&emb, dim, &labeled, 3, 0);
        let blobs: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
        assert_eq!(blobs, HashSet::from([2, 3, 4]), "{picks:?}");

        // Through `select`, with the labeled rows as existing centres.
        let pool = Pool {
            embeddings: &emb,
            dim,
            ..Pool::default()
        };
        let via_select = select(Strategy::KCenter, &pool, &labeled, 3, 0).expect("select");
        assert_eq!(via_select, picks);
    }

    #[test]
    fn k_center_never_repeats_and_handles_edges() {
        let dim = 4;
        // Many exact duplicates: distances hit zero long before the end.
        let mut emb = Vec::new();
        for i in 0..30 {
            let v = (i % 3) as f32;
            emb.extend_from_slice(&[v, v, v, v]);
        }
        let all = k_center_greedy(&emb, dim, &[], 100, 3);
        assert_eq!(all.len(), 30);
        assert!(distinct(&all));
        // The first three picks cover the three distinct values.
        let firsts: HashSet<u32> = all[..3].iter().map(|&i| (i % 3) as u32).collect();
        assert_eq!(firsts.len(), 3);

        assert!(k_center_greedy(&[], dim, &[], 5, 0).is_empty());
        assert!(k_center_greedy(&emb, 0, &[], 5, 0).is_empty());
        assert!(k_center_greedy(&emb, dim, &[], 0, 0).is_empty());
        // A trailing partial row is ignored.
        assert_eq!(
            k_center_greedy(&emb[..4 * dim + 2], dim, &[], 10, 0).len(),
            4
        );
        // Labeled centres with a partial row: whole rows only.
        assert_eq!(k_center_greedy(&emb, dim, &[0.0; 6], 2, 0).len(), 2);
    }

    /// The textbook eager k-center greedy: after each pick, update every
    /// point's min distance, then take the farthest (lower index on ties).
    fn k_center_reference(
        emb: &[f32],
        dim: usize,
        labeled: &[f32],
        batch: usize,
        seed: u64,
    ) -> Vec<usize> {
        let n = emb.len() / dim;
        let row = |i: usize| &emb[i * dim..(i + 1) * dim];
        let mut min_d = vec![f32::INFINITY; n];
        let mut picked = vec![false; n];
        let mut picks = Vec::new();
        for centre in labeled.chunks_exact(dim) {
            for (i, m) in min_d.iter_mut().enumerate() {
                let d = sq_dist(row(i), centre);
                if d < *m {
                    *m = d;
                }
            }
        }
        let mut next = labeled.is_empty().then(|| Rng::new(seed).below(n));
        while picks.len() < batch.min(n) {
            let pick = next.take().unwrap_or_else(|| {
                let mut best = None::<(f32, usize)>;
                for i in (0..n).filter(|&i| !picked[i]) {
                    if best.is_none_or(|(d, _)| min_d[i] > d) {
                        best = Some((min_d[i], i));
                    }
                }
                best.map(|(_, i)| i).expect("an unpicked point")
            });
            picks.push(pick);
            picked[pick] = true;
            for (i, m) in min_d.iter_mut().enumerate() {
                let d = sq_dist(row(i), row(pick));
                if d < *m {
                    *m = d;
                }
            }
        }
        picks
    }

    #[test]
    fn k_center_equals_the_eager_textbook_algorithm() {
        let dim = 19; // not a multiple of the SIMD width
        let mut rng = Rng::new(77);
        let uniform: Vec<f32> = (0..301 * dim).map(|_| rng.unit() as f32).collect();
        let (clustered, _) = blobs(7, 40, dim, 4);
        // Few distinct values: many exact ties and duplicate rows.
        let coarse: Vec<f32> = (0..250 * dim).map(|_| rng.below(2) as f32).collect();
        for (name, emb) in [
            ("uniform", &uniform),
            ("blobs", &clustered),
            ("coarse", &coarse),
        ] {
            let n = emb.len() / dim;
            for labeled in [&[][..], &emb[..3 * dim], &uniform[dim..5 * dim]] {
                for (batch, seed) in [(1, 3), (60, 4), (n, 5)] {
                    let expected = k_center_reference(emb, dim, labeled, batch, seed);
                    assert_eq!(expected.len(), batch.min(n));
                    assert!(distinct(&expected));
                    // Lazy with rare catch-ups, a catch-up after every
                    // refresh, and several thread counts: all the same.
                    for (threads, catch_up_after) in [(1, n), (1, 1), (3, 7), (4, n / 4), (64, 1)] {
                        let got =
                            k_center_with(emb, dim, labeled, batch, seed, threads, catch_up_after);
                        assert_eq!(got, expected, "{name} labeled={} batch={batch} threads={threads} catch_up_after={catch_up_after}", labeled.len() / dim);
                    }
                    assert_eq!(k_center_greedy(emb, dim, labeled, batch, seed), expected);
                }
            }
        }
    }

    #[test]
    fn k_center_is_deterministic_and_seeded() {
        let dim = 19;
        let mut rng = Rng::new(77);
        let emb: Vec<f32> = (0..1001 * dim).map(|_| rng.unit() as f32).collect();
        let one = k_center_greedy(&emb, dim, &[], 50, 4);
        assert_eq!(one.len(), 50);
        assert!(distinct(&one));
        assert_eq!(k_center_greedy(&emb, dim, &[], 50, 4), one);
        assert_ne!(k_center_greedy(&emb, dim, &[], 50, 5), one);
        // With labeled centres the seed does not matter.
        let labeled = &emb[..3 * dim];
        let a = k_center_greedy(&emb, dim, labeled, 40, 0);
        assert_eq!(k_center_greedy(&emb, dim, labeled, 40, 9), a);
        // The labeled rows are also pool rows: at distance 0, never chosen early.
        assert!(a.iter().all(|&i| i > 2), "{a:?}");
        // All points, with parallel catch-ups: each exactly once.
        let everything = k_center_with(&emb, dim, &[], 2000, 1, 3, 5);
        assert_eq!(everything.len(), 1001);
        assert!(distinct(&everything));
    }

    #[test]
    fn k_center_select_errors() {
        let probs = vec![vec![0.5, 0.5]; 3];
        let pool = probs_pool(&probs);
        for s in [Strategy::KCenter, Strategy::ClusterMargin] {
            assert_eq!(
                select(s, &pool, &[], 2, 0),
                Err(SelectError::MissingEmbeddings)
            );
        }
        let emb = vec![0.0f32; 8];
        let pool = Pool {
            probs: &probs,
            embeddings: &emb,
            dim: 4,
            ..Pool::default()
        };
        assert_eq!(
            select(Strategy::KCenter, &pool, &[], 2, 0),
            Err(SelectError::DimMismatch {
                what: "pool embeddings (items × dim)",
                expected: 12,
                got: 8
            })
        );
        let emb = vec![0.0f32; 12];
        let pool = Pool {
            probs: &probs,
            embeddings: &emb,
            dim: 4,
            ..Pool::default()
        };
        assert!(matches!(
            select(Strategy::KCenter, &pool, &[1.0; 5], 2, 0),
            Err(SelectError::DimMismatch { .. })
        ));
        assert_eq!(
            select(Strategy::KCenter, &pool, &[1.0; 4], 5, 0).map(|v| v.len()),
            Ok(3)
        );
    }

    #[test]
    fn nan_rows_do_not_break_k_center() {
        let dim = 2;
        let emb = vec![0.0, 0.0, f32::NAN, 1.0, 5.0, 5.0, 0.1, 0.1, 5.1, 5.0];
        let picks = k_center_greedy(&emb, dim, &[0.0, 0.0], 5, 0);
        assert_eq!(picks.len(), 5);
        assert!(distinct(&picks));
    }

    #[test]
    fn cluster_margin_spreads_uncertain_picks_over_clusters() {
        let dim = 8;
        let batch = 5;
        let (emb, owner) = blobs(5, 200, dim, 21);
        let n = owner.len();
        // Twenty items of blob 0 are far more uncertain than anything else:
        // plain margin would take all five picks from them. The rest of the
        // top 50 candidates come from every blob.
        let mut rng = Rng::new(3);
        let mut torn_left = 20;
        let margins: Vec<f32> = owner
            .iter()
            .map(|&b| {
                if b == 0 && torn_left > 0 {
                    torn_left -= 1;
                    0.95 + 0.04 * rng.unit() as f32
                } else {
                    0.5 + 0.4 * rng.unit() as f32
                }
            })
            .collect();
        let plain = top_by_score(&margins, batch);
        assert!(plain.iter().all(|&i| owner[i] == 0));

        let picks = cluster_margin(&emb, dim, &margins, batch, 7);
        assert_eq!(picks.len(), batch);
        assert!(distinct(&picks));
        let candidates: HashSet<usize> = top_by_score(&margins, batch * 10).into_iter().collect();
        assert!(picks.iter().all(|i| candidates.contains(i)), "{picks:?}");
        let spanned: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
        assert_eq!(spanned.len(), 5, "{picks:?} spans {spanned:?}");

        let wide = cluster_margin(&emb, dim, &margins, 30, 7);
        assert_eq!(wide.len(), 30);
        assert!(distinct(&wide));
        let spanned: HashSet<usize> = wide.iter().map(|&i| owner[i]).collect();
        assert_eq!(spanned.len(), 5, "{spanned:?}");

        // Deterministic, and bounded by the pool.
        assert_eq!(cluster_margin(&emb, dim, &margins, batch, 7), picks);
        let all = cluster_margin(&emb, dim, &margins, n + 10, 7);
        assert_eq!(all.len(), n);
        assert!(distinct(&all));
        assert!(cluster_margin(&[], dim, &[], 5, 0).is_empty());
        assert!(cluster_margin(&emb, dim, &margins, 0, 0).is_empty());
    }

    #[test]
    fn cluster_margin_through_select() {
        let dim = 8;
        let (emb, owner) = blobs(4, 50, dim, 5);
        // Item i's torn-ness grows with i; every blob has some torn items.
        let probs: Vec<Vec<f32>> = (0..owner.len())
            .map(|i| {
                let p = 0.5 + 0.5 * (1.0 - i as f32 / owner.len() as f32);
                vec![p, 1.0 - p]
            })
            .collect();
        let pool = Pool {
            probs: &probs,
            embeddings: &emb,
            dim,
            ..Pool::default()
        };
        let picks = select(Strategy::ClusterMargin, &pool, &[], 4, 1).expect("select");
        assert_eq!(picks.len(), 4);
        assert!(distinct(&picks));
        assert!(picks.iter().all(|&i| i >= owner.len() - 40));
        let spanned: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
        assert_eq!(spanned.len(), 4, "{spanned:?}");
    }

    #[test]
    fn cold_start_is_diverse_with_embeddings_and_random_without() {
        let dim = 8;
        let (emb, owner) = blobs(5, 20, dim, 8);
        let picks = cold_start(&emb, dim, 100, 5, 2);
        let covered: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
        assert_eq!(covered.len(), 5);
        assert_eq!(cold_start(&emb, dim, 100, 5, 2), picks);

        let random = cold_start(&[], 0, 100, 10, 2);
        assert_eq!(random.len(), 10);
        assert!(distinct(&random));
        assert_eq!(cold_start(&[], 0, 100, 10, 2), random);
        assert_ne!(cold_start(&[], 0, 100, 10, 3), random);
        // Mismatched embeddings are ignored rather than misread.
        assert_eq!(cold_start(&emb[..50], dim, 100, 10, 2), random);
        assert_eq!(cold_start(&[], 0, 3, 10, 2).len(), 3);
        assert!(cold_start(&emb, dim, 0, 10, 2).is_empty());
    }

    #[test]
    fn sq_dist_matches_naive_sum() {
        let mut rng = Rng::new(1);
        for len in [0, 1, 7, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..len).map(|_| rng.unit() as f32).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.unit() as f32).collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum();
            assert!((f64::from(sq_dist(&a, &b)) - naive).abs() < 1e-4 * (1.0 + naive));
        }
    }
}
