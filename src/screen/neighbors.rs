//! Nearest neighbours, shared by every screen: one trait, and an exact
//! blocked brute-force search with a top-k heap per query.
//!
//! Distances are Euclidean. Squared distances come from
//! `|q|² + |p|² − 2 q·p`, with the dot products computed for a block of
//! queries against a block of points at a time so both stay in cache; each
//! query keeps its k best in a max-heap, so a point costs one comparison
//! once the heap is full. Query blocks run on all cores (rayon).
//!
//! No approximate index yet: exact search over 60,000 × 64-d points is well
//! inside the speed target here (see README), and an exact answer keeps the
//! conformal outlier test's guarantee exact. An HNSW index behind the same
//! trait is the way past a few hundred thousand items.

use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::ScreenError;

/// One neighbour: its index in the searched set and its Euclidean distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub index: u32,
    pub distance: f32,
}

/// A searchable set of vectors.
pub trait NeighborIndex: Sync {
    /// Dimension of every vector.
    fn dim(&self) -> usize;
    /// Number of vectors.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `k` nearest vectors of each query (row-major, `dim` columns),
    /// nearest first. With `skip_self`, query `i` is taken to be point `i` of
    /// this set and never returned as its own neighbour (leave-one-out).
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        skip_self: bool,
    ) -> Result<Vec<Vec<Neighbor>>, ScreenError>;
}

/// Exact search: every query against every point.
pub struct BruteForce {
    data: Vec<f32>,
    norms: Vec<f32>,
    dim: usize,
}

const QUERY_BLOCK: usize = 8;
const POINT_BLOCK: usize = 512;

impl BruteForce {
    /// Build from row-major data with `dim` columns.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self, ScreenError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(ScreenError::Shape(format!(
                "{} values do not split into rows of {dim}",
                data.len()
            )));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ScreenError::Shape("a vector holds NaN or infinity".into()));
        }
        let norms = data.chunks_exact(dim).map(|r| dot(r, r)).collect();
        Ok(BruteForce { data, norms, dim })
    }

    /// Search this set against itself, leaving each point out of its own list.
    pub fn self_knn(&self, k: usize) -> Result<Vec<Vec<Neighbor>>, ScreenError> {
        self.search(&self.data, k, true)
    }

    /// The row-major data.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators: the compiler vectorises this.
    let mut acc = [0f32; 8];
    let (ca, ra) = a.split_at(a.len() - a.len() % 8);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// A max-heap entry ordered by squared distance, ties by index.
#[derive(PartialEq)]
struct Entry(f32, u32);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl NeighborIndex for BruteForce {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.norms.len()
    }

    fn search(
        &self,
        queries: &[f32],
        k: usize,
        skip_self: bool,
    ) -> Result<Vec<Vec<Neighbor>>, ScreenError> {
        let dim = self.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(ScreenError::Shape(format!(
                "queries of {} values do not split into rows of {dim}",
                queries.len()
            )));
        }
        let nq = queries.len() / dim;
        if skip_self && nq != self.len() {
            return Err(ScreenError::Shape(
                "a leave-one-out search needs the set itself as its queries".into(),
            ));
        }
        let avail = self.len() - usize::from(skip_self);
        let k = k.min(avail);
        if k == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let n = self.len();
        let blocks: Vec<Vec<Vec<Neighbor>>> = queries
            .par_chunks(dim * QUERY_BLOCK)
            .enumerate()
            .map(|(b, qblock)| {
                let q0 = b * QUERY_BLOCK;
                let qn = qblock.len() / dim;
                let qnorm: Vec<f32> = qblock.chunks_exact(dim).map(|r| dot(r, r)).collect();
                let mut heaps: Vec<BinaryHeap<Entry>> =
                    (0..qn).map(|_| BinaryHeap::with_capacity(k + 1)).collect();
                let mut dots = vec![0f32; POINT_BLOCK];
                for p0 in (0..n).step_by(POINT_BLOCK) {
                    let p1 = (p0 + POINT_BLOCK).min(n);
                    let pts = &self.data[p0 * dim..p1 * dim];
                    for (qi, q) in qblock.chunks_exact(dim).enumerate() {
                        for (d, p) in dots.iter_mut().zip(pts.chunks_exact(dim)) {
                            *d = dot(q, p);
                        }
                        let heap = &mut heaps[qi];
                        let me = q0 + qi;
                        for (j, &qp) in dots[..p1 - p0].iter().enumerate() {
                            let pi = p0 + j;
                            if skip_self && pi == me {
                                continue;
                            }
                            let d2 = (qnorm[qi] + self.norms[pi] - 2.0 * qp).max(0.0);
                            if heap.len() < k {
                                heap.push(Entry(d2, pi as u32));
                            } else if let Some(top) = heap.peek() {
                                if d2 < top.0 {
                                    heap.pop();
                                    heap.push(Entry(d2, pi as u32));
                                }
                            }
                        }
                    }
                }
                heaps
                    .into_iter()
                    .map(|h| {
                        h.into_sorted_vec()
                            .into_iter()
                            .map(|Entry(d2, i)| Neighbor {
                                index: i,
                                distance: d2.sqrt(),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Ok(blocks.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[f32], dim: usize, q: &[f32], k: usize, skip: Option<usize>) -> Vec<u32> {
        let mut d: Vec<(f32, u32)> = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, p)| {
                let s: f32 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                (s, i as u32)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().take(k).map(|x| x.1).collect()
    }

    #[test]
    fn brute_force_matches_a_naive_sort() {
        let mut rng = crate::select::rng::Rng::new(7);
        let (n, dim) = (700, 13);
        let data: Vec<f32> = (0..n * dim).map(|_| rng.unit() as f32).collect();
        let index = BruteForce::new(data.clone(), dim).unwrap();
        let knn = index.self_knn(5).unwrap();
        for i in [0, 1, 7, 8, 511, 512, 699] {
            let want = naive(&data, dim, &data[i * dim..(i + 1) * dim], 5, Some(i));
            let got: Vec<u32> = knn[i].iter().map(|n| n.index).collect();
            assert_eq!(got, want, "row {i}");
            assert!(knn[i].windows(2).all(|w| w[0].distance <= w[1].distance));
        }
    }

    #[test]
    fn k_larger_than_the_set_and_bad_shapes() {
        let index = BruteForce::new(vec![0.0, 0.0, 3.0, 4.0], 2).unwrap();
        let knn = index.self_knn(10).unwrap();
        assert_eq!(knn[0].len(), 1);
        assert!((knn[0][0].distance - 5.0).abs() < 1e-5);
        assert!(BruteForce::new(vec![1.0; 5], 2).is_err());
        assert!(BruteForce::new(vec![f32::NAN, 1.0], 2).is_err());
        assert!(index.search(&[1.0; 3], 1, false).is_err());
    }
}
