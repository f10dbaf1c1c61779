//! Screening: exact and near duplicates, outliers, leaks between splits,
//! bad items and personal data, found before anyone labels.
//!
//! Pure math: no ONNX, HTTP or SQL. Items arrive as embeddings, decoded
//! pixels or texts; answers are indices, groups and scores. The nearest
//! neighbour search ([`neighbors`]) is shared by every screen that needs it.

pub mod exact;
pub mod image_near;
pub mod leaks;
pub mod neighbors;
pub mod outliers;
pub mod pii;
pub mod quality;
pub mod report;
pub mod text_near;

/// What a screen refuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScreenError {
    /// Vectors that do not fit together (dimension, row count, NaN).
    #[error("bad shape: {0}")]
    Shape(String),
    /// The outlier test's α must lie in (0, 0.5].
    #[error("alpha must lie in (0, 0.5], got {0}")]
    Alpha(f64),
    /// A setting outside its range.
    #[error("{0}")]
    Setting(String),
}

/// Groups of indices from pairs: connected components (union-find).
/// Only components with at least two members are returned; members sorted,
/// groups ordered by their smallest member.
pub fn components(n: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (a, b) in pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            parent[hi] = lo;
        }
    }
    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        by_root.entry(r).or_default().push(i);
    }
    by_root.into_values().filter(|g| g.len() > 1).collect()
}

/// The `q`-quantile (0..=1) of sorted values, linear interpolation (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_join_chains_and_drop_singletons() {
        let g = components(6, [(4, 1), (1, 2), (5, 5)]);
        assert_eq!(g, vec![vec![1, 2, 4]]);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert_eq!(quantile_sorted(&v, 0.75), 3.25);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
    }
}
