//! Greedy k-center core-sets (Sener & Savarese, ICLR 2018): the most
//! diverse items, each the farthest from everything chosen or labeled.

use super::*;

/// Squared Euclidean distance. Sixteen independent f32 accumulators let the
/// compiler keep the loop in SIMD registers without reassociating floats, so the
/// result is bit-identical whether or not it vectorises.
#[inline]
pub(super) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
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
pub(super) const PICKED: f32 = -1.0;

/// The k-center centres so far: the labeled rows first, then the picked pool rows.
pub(super) struct Centres<'a> {
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
pub(super) fn refresh(row: &[f32], centres: &Centres, from: usize, min_d: f32) -> f32 {
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
pub(super) fn catch_up_chunk(
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
pub(super) fn catch_up(
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
pub(super) fn heap_key(d: f32) -> u32 {
    if d > 0.0 {
        d.to_bits()
    } else {
        0
    }
}

/// Max-heap of (distance bound, index): largest bound first, lower index on ties.
pub(super) type FarthestHeap = BinaryHeap<(u32, Reverse<usize>)>;

/// Refills `heap` with every unpicked point, without reallocating.
pub(super) fn rebuild_heap(heap: &mut FarthestHeap, min_d: &[f32]) {
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
pub(super) const MIN_ROWS_PER_THREAD: usize = 2048;

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
pub(super) fn k_center_with(
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
