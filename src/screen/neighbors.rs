//! Nearest neighbours, shared by every screen: one trait, and an exact
//! blocked brute-force search with a top-k list per query.
//!
//! Distances are Euclidean. Squared distances come from
//! `|q|² + |p|² − 2 q·p`, norms computed once. The dot products are a
//! matrix product done like a GEMM: the points are packed once into panels
//! of 8 (dimension-major, so one load brings a coordinate of 8 points), the
//! queries of a block into groups of 4 the same way, and a 4 × 8 tile of dot
//! products stays in registers while it runs down the dimension (AVX2 + FMA
//! when the CPU has them, checked at run time; plain code otherwise). A
//! block of queries runs against a block of points sized to stay in cache.
//! Each query keeps its k best in a sorted array; once full, a point costs
//! one comparison with the worst. Query blocks run on all cores (rayon); the
//! search allocates per block, never per point.
//!
//! No approximate index yet: exact search over 60,000 × 64-d points is well
//! inside the speed target here (see README), and an exact answer keeps the
//! conformal outlier test's guarantee exact. An HNSW index behind the same
//! trait is the way past a few hundred thousand items.

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
    /// nearest first, ties by index. With `skip_self`, query `i` is taken to
    /// be point `i` of this set and never returned as its own neighbour
    /// (leave-one-out).
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        skip_self: bool,
    ) -> Result<Vec<Vec<Neighbor>>, ScreenError>;
}

/// Points per packed panel (one 256-bit register of f32).
const LANES: usize = 8;
/// Queries per register tile.
const ROWS: usize = 4;
/// Queries per block (one rayon task).
const QUERY_BLOCK: usize = 64;
/// Bytes of points per cache block (about half of a 256 KiB L2).
const POINT_BLOCK_BYTES: usize = 128 * 1024;

/// Exact search: every query against every point.
pub struct BruteForce {
    data: Vec<f32>,
    norms: Vec<f32>,
    /// The points packed in panels of LANES: panel `p`, coordinate `d`, lane
    /// `l` at `p·dim·LANES + d·LANES + l` (zeros past the last point).
    panels: Vec<f32>,
    dim: usize,
}

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
        let panels = pack(&data, dim, LANES);
        Ok(BruteForce {
            data,
            norms,
            panels,
            dim,
        })
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

/// Rows of `data` (`dim` columns) packed dimension-major in groups of `width`
/// rows, the last group padded with zeros.
fn pack(data: &[f32], dim: usize, width: usize) -> Vec<f32> {
    let rows = data.len() / dim;
    let groups = rows.div_ceil(width);
    let mut out = vec![0f32; groups * dim * width];
    for (r, row) in data.chunks_exact(dim).enumerate() {
        let base = (r / width) * dim * width + r % width;
        for (d, &v) in row.iter().enumerate() {
            out[base + d * width] = v;
        }
    }
    out
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

/// The k best of one query so far: squared distances ascending, ties by index.
struct TopK<'a> {
    d2: &'a mut [f32],
    idx: &'a mut [u32],
    len: usize,
}

impl TopK<'_> {
    #[inline]
    fn worst(&self) -> f32 {
        if self.len < self.d2.len() {
            f32::INFINITY
        } else {
            self.d2[self.len - 1]
        }
    }

    /// Insert a point seen after every point already held (indices rise),
    /// so an equal distance goes behind the equals: order by (d², index).
    #[inline]
    fn push(&mut self, d2: f32, i: u32) {
        let k = self.d2.len();
        let mut pos = if self.len < k {
            self.len += 1;
            self.len - 1
        } else {
            k - 1
        };
        while pos > 0 && self.d2[pos - 1] > d2 {
            self.d2[pos] = self.d2[pos - 1];
            self.idx[pos] = self.idx[pos - 1];
            pos -= 1;
        }
        self.d2[pos] = d2;
        self.idx[pos] = i;
    }
}

/// Dot products of ROWS packed queries (`dim × ROWS`) with one panel
/// (`dim × LANES`).
#[inline(always)]
fn tile<const FMA: bool>(queries: &[f32], panel: &[f32]) -> [[f32; LANES]; ROWS] {
    let mut acc = [[0f32; LANES]; ROWS];
    for (p, q) in panel.chunks_exact(LANES).zip(queries.chunks_exact(ROWS)) {
        for r in 0..ROWS {
            let qv = q[r];
            for l in 0..LANES {
                acc[r][l] = if FMA {
                    qv.mul_add(p[l], acc[r][l])
                } else {
                    acc[r][l] + qv * p[l]
                };
            }
        }
    }
    acc
}

/// What one query block needs to know of the search.
struct Block<'a> {
    /// Packed queries: groups of ROWS, `dim × ROWS` each.
    packed: &'a [f32],
    qnorms: &'a [f32],
    /// Index of the block's first query (for leave-one-out).
    first: usize,
    skip_self: bool,
}

/// Run one block of queries against every point, filling `d2`/`idx`
/// (`k` per query) and `lens`.
#[inline(always)]
fn run_block<const FMA: bool>(
    index: &BruteForce,
    b: &Block,
    d2: &mut [f32],
    idx: &mut [u32],
    lens: &mut [usize],
) {
    let dim = index.dim;
    let n = index.norms.len();
    let k = d2.len() / lens.len();
    let nq = lens.len();
    let panel_len = dim * LANES;
    let panels_per_block = (POINT_BLOCK_BYTES / (4 * panel_len)).max(1);
    let npanels = n.div_ceil(LANES);
    for pb in (0..npanels).step_by(panels_per_block) {
        let pe = (pb + panels_per_block).min(npanels);
        for (g, q) in b.packed.chunks_exact(dim * ROWS).enumerate() {
            let q0 = g * ROWS;
            let rows = ROWS.min(nq - q0);
            for p in pb..pe {
                let panel = &index.panels[p * panel_len..(p + 1) * panel_len];
                let acc = tile::<FMA>(q, panel);
                let p0 = p * LANES;
                let lanes = LANES.min(n - p0);
                for (r, row) in acc.iter().enumerate().take(rows) {
                    let qi = q0 + r;
                    let mut top = TopK {
                        d2: &mut d2[qi * k..(qi + 1) * k],
                        idx: &mut idx[qi * k..(qi + 1) * k],
                        len: lens[qi],
                    };
                    let mut worst = top.worst();
                    let qn = b.qnorms[qi];
                    for (l, &dp) in row.iter().enumerate().take(lanes) {
                        let pi = p0 + l;
                        let dist = (qn + index.norms[pi] - 2.0 * dp).max(0.0);
                        if dist < worst {
                            if b.skip_self && pi == b.first + qi {
                                continue;
                            }
                            top.push(dist, pi as u32);
                            worst = top.worst();
                        }
                    }
                    lens[qi] = top.len;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_block_avx2(
    index: &BruteForce,
    b: &Block,
    d2: &mut [f32],
    idx: &mut [u32],
    lens: &mut [usize],
) {
    run_block::<true>(index, b, d2, idx, lens)
}

fn run_block_any(
    index: &BruteForce,
    b: &Block,
    d2: &mut [f32],
    idx: &mut [u32],
    lens: &mut [usize],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { run_block_avx2(index, b, d2, idx, lens) };
        return;
    }
    run_block::<false>(index, b, d2, idx, lens)
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
        let blocks: Vec<Vec<Vec<Neighbor>>> = queries
            .par_chunks(dim * QUERY_BLOCK)
            .enumerate()
            .map(|(bi, qblock)| {
                let qn = qblock.len() / dim;
                let qnorms: Vec<f32> = qblock.chunks_exact(dim).map(|r| dot(r, r)).collect();
                let packed = pack(qblock, dim, ROWS);
                let mut d2 = vec![0f32; qn * k];
                let mut idx = vec![0u32; qn * k];
                let mut lens = vec![0usize; qn];
                let block = Block {
                    packed: &packed,
                    qnorms: &qnorms,
                    first: bi * QUERY_BLOCK,
                    skip_self,
                };
                run_block_any(self, &block, &mut d2, &mut idx, &mut lens);
                (0..qn)
                    .map(|q| {
                        (0..lens[q])
                            .map(|j| Neighbor {
                                index: idx[q * k + j],
                                distance: d2[q * k + j].sqrt(),
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

    /// The blocked search against a naive O(n²) scan on random data: the
    /// same neighbours in the same order (a swap allowed only between two
    /// distances equal to rounding), the same distances, for sizes that fill
    /// no panel, query group or block exactly, with and without leave-one-out.
    #[test]
    fn blocked_search_is_exact_against_a_naive_scan() {
        let mut rng = crate::select::rng::Rng::new(11);
        for &(n, nq, dim, k) in &[
            (1_037, 133, 64, 10),
            (613, 70, 196, 5),
            (9, 5, 3, 4),
            (300, 300, 1, 7),
        ] {
            let data: Vec<f32> = (0..n * dim).map(|_| rng.unit() as f32 - 0.5).collect();
            let queries: Vec<f32> = (0..nq * dim).map(|_| rng.unit() as f32 - 0.5).collect();
            let index = BruteForce::new(data.clone(), dim).unwrap();
            // Squared distances come from norms, so they carry a rounding
            // error of a few ulps of the norms (at most dim / 4 here).
            let tol = 1e-5 * dim as f32;
            let d2 = |i: u32, q: &[f32]| -> f32 {
                data[i as usize * dim..(i as usize + 1) * dim]
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            };
            let check = |got: &[Neighbor], q: &[f32], skip: Option<usize>| {
                let want = naive(&data, dim, q, k, skip);
                assert_eq!(got.len(), want.len());
                for (j, (g, &w)) in got.iter().zip(&want).enumerate() {
                    let wd = d2(w, q);
                    let gd = g.distance * g.distance;
                    assert!(
                        (gd - wd).abs() <= tol,
                        "n {n} dim {dim} rank {j}: {gd} vs {wd}"
                    );
                    if g.index != w {
                        assert!(
                            (d2(g.index, q) - wd).abs() <= tol,
                            "n {n} dim {dim} rank {j}: {} for {w}",
                            g.index
                        );
                    }
                }
                assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
            };
            let across = index.search(&queries, k, false).unwrap();
            assert_eq!(across.len(), nq);
            for (i, got) in across.iter().enumerate() {
                check(got, &queries[i * dim..(i + 1) * dim], None);
            }
            let own = index.self_knn(k).unwrap();
            assert_eq!(own.len(), n);
            for (i, got) in own.iter().enumerate() {
                assert!(got.iter().all(|g| g.index as usize != i));
                check(got, &data[i * dim..(i + 1) * dim], Some(i));
            }
        }
    }

    #[test]
    fn exact_copies_are_at_distance_zero() {
        let mut rng = crate::select::rng::Rng::new(5);
        let dim = 64;
        let mut data: Vec<f32> = (0..200 * dim).map(|_| rng.unit() as f32).collect();
        let copy = data[17 * dim..18 * dim].to_vec();
        data[150 * dim..151 * dim].copy_from_slice(&copy);
        let knn = BruteForce::new(data, dim).unwrap().self_knn(3).unwrap();
        assert_eq!(knn[17][0].index, 150);
        assert_eq!(knn[150][0].index, 17);
        assert!(knn[17][0].distance < 1e-2);
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
