//! Near-duplicate images: candidates from the k nearest neighbours on the
//! model's embeddings and on downscaled pixels, each verified by an
//! alignment-tolerant pixel score: the largest normalised cross-correlation
//! (Pearson's r over the overlapping pixels) over shifts of up to ±2 pixels.
//!
//! Embeddings find copies the pixels hide (a shifted copy is far in pixel
//! space); pixels find copies an embedding blurs; the verification keeps
//! look-alikes out, since two different garments seldom agree pixel for
//! pixel once aligned.

use rayon::prelude::*;

use super::neighbors::{BruteForce, Neighbor, NeighborIndex};
use super::ScreenError;

/// Side of the square grey thumbnails compared here.
pub const THUMB: usize = 28;

/// Settings of the image near-duplicate screen.
#[derive(Debug, Clone, Copy)]
pub struct ImageNearOptions {
    /// Neighbours taken as candidates from each space.
    pub k: usize,
    /// Largest shift tried, in thumbnail pixels, each way.
    pub max_shift: usize,
    /// Correlation at or above which two images are near duplicates.
    pub threshold: f64,
}

impl Default for ImageNearOptions {
    fn default() -> Self {
        ImageNearOptions {
            k: 5,
            max_shift: 2,
            // Measured on Fashion-MNIST test: natural pixel-space
            // neighbours reach 0.95 often (771 of 15,000 neighbour pairs
            // among 3,000 images), 0.985 four times; planted JPEG (q 75)
            // and noise (σ 8) copies stay above 0.985 in 99 of 100.
            threshold: 0.985,
        }
    }
}

impl ImageNearOptions {
    fn check(&self) -> Result<(), ScreenError> {
        if self.k == 0 || self.max_shift >= THUMB / 2 {
            return Err(ScreenError::Setting(format!(
                "k must be at least 1 and the shift below {}",
                THUMB / 2
            )));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ScreenError::Setting(format!(
                "the image correlation threshold must lie in (0, 1], got {}",
                self.threshold
            )));
        }
        Ok(())
    }
}

/// A grey image reduced to THUMB × THUMB by area averaging (values 0..=255).
pub fn thumbnail(grey: &[u8], width: usize, height: usize) -> Vec<f32> {
    if width == THUMB && height == THUMB && grey.len() == THUMB * THUMB {
        return grey.iter().map(|&v| v as f32).collect();
    }
    let mut out = vec![0f32; THUMB * THUMB];
    if width == 0 || height == 0 || grey.len() < width * height {
        return out;
    }
    for (ty, row) in out.chunks_exact_mut(THUMB).enumerate() {
        let y0 = ty * height / THUMB;
        let y1 = ((ty + 1) * height / THUMB).max(y0 + 1).min(height);
        for (tx, v) in row.iter_mut().enumerate() {
            let x0 = tx * width / THUMB;
            let x1 = ((tx + 1) * width / THUMB).max(x0 + 1).min(width);
            let mut s = 0u64;
            for y in y0..y1 {
                s += grey[y * width + x0..y * width + x1]
                    .iter()
                    .map(|&p| p as u64)
                    .sum::<u64>();
            }
            *v = s as f32 / ((y1 - y0) * (x1 - x0)) as f32;
        }
    }
    out
}

/// A thumbnail as a search vector: pooled 2 × 2 to 14 × 14 (a quarter of
/// the search cost; the verification sees full thumbnails), mean removed,
/// unit length (zero for a constant image), so brightness and contrast
/// changes stay close.
pub fn pixel_vector(thumb: &[f32]) -> Vec<f32> {
    let h = THUMB / 2;
    let mut v = vec![0f32; h * h];
    for (i, x) in v.iter_mut().enumerate() {
        let (y, xx) = (2 * (i / h), 2 * (i % h));
        *x = thumb[y * THUMB + xx]
            + thumb[y * THUMB + xx + 1]
            + thumb[(y + 1) * THUMB + xx]
            + thumb[(y + 1) * THUMB + xx + 1];
    }
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    v.iter_mut().for_each(|x| *x -= mean);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-6 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
    v
}

/// Largest Pearson correlation between two THUMB × THUMB thumbnails over
/// shifts of `b` by up to `max_shift` pixels each way (overlap only).
/// 0 when either is constant on the overlap.
pub fn shifted_ncc(a: &[f32], b: &[f32], max_shift: usize) -> f64 {
    let s = max_shift as isize;
    let n = THUMB as isize;
    let mut best = f64::NEG_INFINITY;
    for dy in -s..=s {
        for dx in -s..=s {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
            let mut count = 0f64;
            let (y0, y1) = ((-dy).max(0), (n - dy).min(n));
            let (x0, x1) = ((-dx).max(0), (n - dx).min(n));
            for y in y0..y1 {
                let ra = &a[(y * n + x0) as usize..(y * n + x1) as usize];
                let yb = y + dy;
                let rb = &b[(yb * n + x0 + dx) as usize..(yb * n + x1 + dx) as usize];
                let (mut pa, mut pb, mut paa, mut pbb, mut pab) = (0f32, 0f32, 0f32, 0f32, 0f32);
                for (&u, &v) in ra.iter().zip(rb) {
                    pa += u;
                    pb += v;
                    paa += u * u;
                    pbb += v * v;
                    pab += u * v;
                }
                sa += pa as f64;
                sb += pb as f64;
                saa += paa as f64;
                sbb += pbb as f64;
                sab += pab as f64;
                count += ra.len() as f64;
            }
            let va = saa - sa * sa / count;
            let vb = sbb - sb * sb / count;
            if va <= 1e-9 || vb <= 1e-9 {
                continue;
            }
            let r = (sab - sa * sb / count) / (va * vb).sqrt();
            best = best.max(r);
        }
    }
    if best.is_finite() {
        best
    } else {
        0.0
    }
}

/// Two images and their verified correlation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePair {
    pub a: usize,
    pub b: usize,
    pub score: f64,
}

/// The images to screen: thumbnails and (optionally) the model's embeddings.
pub struct ImageSet<'a> {
    pub thumbs: &'a [Vec<f32>],
    /// Row-major embeddings, one row per thumbnail, or none.
    pub embeddings: Option<(&'a [f32], usize)>,
}

impl ImageSet<'_> {
    fn check(&self) -> Result<(), ScreenError> {
        if self.thumbs.iter().any(|t| t.len() != THUMB * THUMB) {
            return Err(ScreenError::Shape(format!(
                "thumbnails must be {THUMB}×{THUMB}"
            )));
        }
        if let Some((e, dim)) = self.embeddings {
            if dim == 0 || e.len() != dim * self.thumbs.len() {
                return Err(ScreenError::Shape(format!(
                    "{} embedding values for {} images of dimension {dim}",
                    e.len(),
                    self.thumbs.len()
                )));
            }
        }
        Ok(())
    }
    fn pixel_matrix(&self) -> Vec<f32> {
        self.thumbs
            .par_iter()
            .flat_map_iter(|t| pixel_vector(t))
            .collect()
    }
}

fn candidates(
    queries: &ImageSet,
    reference: Option<&ImageSet>,
    k: usize,
    emb_knn: Option<&[Vec<Neighbor>]>,
) -> Result<Vec<(u32, u32)>, ScreenError> {
    let mut out = Vec::new();
    let within = reference.is_none();
    let reference = reference.unwrap_or(queries);
    // Pixels.
    let index = BruteForce::new(reference.pixel_matrix(), (THUMB / 2) * (THUMB / 2))?;
    let qm = if within {
        None
    } else {
        Some(queries.pixel_matrix())
    };
    let knn = index.search(qm.as_deref().unwrap_or(index.data()), k, within)?;
    for (i, ns) in knn.iter().enumerate() {
        out.extend(ns.iter().map(|n| (i as u32, n.index)));
    }
    // Embeddings: a leave-one-out search done already, or one here.
    if let Some(knn) = emb_knn.filter(|knn| within && knn.len() == queries.thumbs.len()) {
        for (i, ns) in knn.iter().enumerate() {
            out.extend(ns.iter().take(k).map(|n| (i as u32, n.index)));
        }
    } else if let (Some((qe, qd)), Some((re, rd))) = (queries.embeddings, reference.embeddings) {
        if qd != rd {
            return Err(ScreenError::Shape(format!(
                "embeddings of dimension {qd} against {rd}"
            )));
        }
        let index = BruteForce::new(re.to_vec(), rd)?;
        let knn = index.search(qe, k, within)?;
        for (i, ns) in knn.iter().enumerate() {
            out.extend(ns.iter().map(|n| (i as u32, n.index)));
        }
    }
    if within {
        for p in out.iter_mut() {
            if p.0 > p.1 {
                *p = (p.1, p.0);
            }
        }
    }
    out.par_sort_unstable();
    out.dedup();
    Ok(out)
}

fn verify(
    pairs: Vec<(u32, u32)>,
    qa: &[Vec<f32>],
    rb: &[Vec<f32>],
    opts: ImageNearOptions,
) -> Vec<ImagePair> {
    pairs
        .into_par_iter()
        .filter_map(|(a, b)| {
            let s = shifted_ncc(&qa[a as usize], &rb[b as usize], opts.max_shift);
            (s >= opts.threshold).then_some(ImagePair {
                a: a as usize,
                b: b as usize,
                score: s,
            })
        })
        .collect()
}

/// Near-duplicate pairs within one set (a < b).
pub fn near_pairs(set: &ImageSet, opts: ImageNearOptions) -> Result<Vec<ImagePair>, ScreenError> {
    opts.check()?;
    set.check()?;
    near_pairs_with(set, opts, None)
}

/// [`near_pairs`], the embeddings' leave-one-out neighbours (nearest first,
/// at least `opts.k` each) given by the caller, who needs them anyway for
/// the within-pool outlier score: one search over the embeddings, not two.
pub fn near_pairs_with(
    set: &ImageSet,
    opts: ImageNearOptions,
    emb_knn: Option<&[Vec<Neighbor>]>,
) -> Result<Vec<ImagePair>, ScreenError> {
    opts.check()?;
    set.check()?;
    let cands = candidates(set, None, opts.k, emb_knn)?;
    Ok(verify(cands, set.thumbs, set.thumbs, opts))
}

/// Pairs (query index, reference index) whose images are near duplicates.
pub fn pairs_across(
    queries: &ImageSet,
    reference: &ImageSet,
    opts: ImageNearOptions,
) -> Result<Vec<ImagePair>, ScreenError> {
    opts.check()?;
    queries.check()?;
    reference.check()?;
    let cands = candidates(queries, Some(reference), opts.k, None)?;
    Ok(verify(cands, queries.thumbs, reference.thumbs, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(seed: u64) -> Vec<f32> {
        let mut rng = crate::select::rng::Rng::new(seed);
        let mut t = vec![0f32; THUMB * THUMB];
        for _ in 0..6 {
            let (cx, cy) = (4 + rng.below(20), 4 + rng.below(20));
            let r = 2.0 + 4.0 * rng.unit() as f32;
            for y in 0..THUMB {
                for x in 0..THUMB {
                    let d =
                        ((x as f32 - cx as f32).powi(2) + (y as f32 - cy as f32).powi(2)).sqrt();
                    if d < r {
                        t[y * THUMB + x] = (t[y * THUMB + x] + 120.0).min(255.0);
                    }
                }
            }
        }
        t
    }

    #[test]
    fn shifted_and_brightened_copies_verify_strangers_do_not() {
        let a = blob(1);
        let mut shifted = vec![0f32; THUMB * THUMB];
        for y in 0..THUMB {
            for x in 1..THUMB {
                shifted[y * THUMB + x] = a[y * THUMB + x - 1];
            }
        }
        assert!(shifted_ncc(&a, &shifted, 2) > 0.99);
        let bright: Vec<f32> = a.iter().map(|v| (v + 30.0).min(255.0)).collect();
        assert!(shifted_ncc(&a, &bright, 2) > 0.95);
        assert!(shifted_ncc(&a, &blob(2), 2) < 0.9);
        assert_eq!(shifted_ncc(&a, &[7.0; THUMB * THUMB], 2), 0.0);

        let thumbs = vec![a, blob(2), shifted, blob(3)];
        let pairs = near_pairs(
            &ImageSet {
                thumbs: &thumbs,
                embeddings: None,
            },
            ImageNearOptions::default(),
        )
        .unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].a, pairs[0].b), (0, 2));
    }

    #[test]
    fn thumbnails_average_areas() {
        let big = vec![200u8; 56 * 56];
        let t = thumbnail(&big, 56, 56);
        assert!(t.iter().all(|&v| (v - 200.0).abs() < 1e-4));
    }
}
