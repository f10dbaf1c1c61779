//! Outliers: items unlike a reference set, by their k-th nearest-neighbour
//! distance.
//!
//! **Conformal test** (a reference exists): each reference item's score is
//! its k-th nearest-neighbour distance among the *other* reference items
//! (leave-one-out). A new item's score is its k-th nearest-neighbour
//! distance to the reference. It is flagged when its score exceeds the
//! ⌈(1 − α)(n + 1)⌉-th smallest reference score. If the new item and the
//! reference items are exchangeable, its score is at most that quantile
//! with probability ≥ 1 − α, so at most a fraction α of in-domain items is
//! flagged (in expectation). The new item is searched among all n reference
//! items while each reference item among n − 1, which only makes new
//! scores smaller: the test stays valid (slightly conservative).
//!
//! **Within the pool** (no reference yet): cleanlab Datalab's rule, mean
//! distance to the k nearest neighbours above Q3 + 1.7·IQR of the pool's own
//! means. No error rate is promised; the output says which rule ran.

use super::neighbors::{BruteForce, Neighbor, NeighborIndex};
use super::{quantile_sorted, ScreenError};

/// Settings of the outlier screen.
#[derive(Debug, Clone, Copy)]
pub struct OutlierOptions {
    /// The k of the k-th (conformal) or k mean (pool) neighbour distance.
    pub k: usize,
    /// False-positive rate of the conformal test, in (0, 0.5].
    pub alpha: f64,
}

impl Default for OutlierOptions {
    fn default() -> Self {
        OutlierOptions { k: 10, alpha: 0.01 }
    }
}

/// Check α: in (0, 0.5].
pub fn check_alpha(alpha: f64) -> Result<(), ScreenError> {
    if alpha > 0.0 && alpha <= 0.5 {
        Ok(())
    } else {
        Err(ScreenError::Alpha(alpha))
    }
}

/// Which rule produced the flags.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutlierMethod {
    /// Conformal k-NN test against a reference of `reference` items.
    Conformal { reference: usize, alpha: f64 },
    /// Datalab's within-pool rule (no reference; no error rate promised).
    WithinPool,
}

/// Scores and flags for every queried item.
#[derive(Debug, Clone)]
pub struct Outliers {
    /// Raw score: the k-th neighbour distance (conformal) or the mean of
    /// the k neighbour distances (pool).
    pub raw: Vec<f64>,
    /// Flag threshold on `raw` (flagged when above).
    pub threshold: f64,
    pub flagged: Vec<bool>,
    /// Conformal p-values (none within the pool).
    pub p_values: Option<Vec<f64>>,
    pub method: OutlierMethod,
}

impl Outliers {
    /// The reported score: raw / threshold, so above 1 means flagged.
    pub fn score(&self, i: usize) -> f64 {
        if self.threshold > 0.0 && self.threshold.is_finite() {
            self.raw[i] / self.threshold
        } else {
            0.0
        }
    }
}

fn kth(ns: &[Neighbor], k: usize) -> f64 {
    ns.get(k.saturating_sub(1))
        .or(ns.last())
        .map_or(0.0, |n| n.distance as f64)
}

/// Leave-one-out k-th neighbour distances of a reference set, sorted: the
/// calibration scores of the conformal test.
pub fn calibration_scores(reference: &BruteForce, k: usize) -> Result<Vec<f64>, ScreenError> {
    let knn = reference.self_knn(k)?;
    let mut s: Vec<f64> = knn.iter().map(|ns| kth(ns, k)).collect();
    s.sort_by(f64::total_cmp);
    Ok(s)
}

/// The conformal test of `queries` (row-major) against `reference`.
pub fn conformal(
    reference: &BruteForce,
    queries: &[f32],
    opts: OutlierOptions,
) -> Result<Outliers, ScreenError> {
    check_alpha(opts.alpha)?;
    if opts.k == 0 {
        return Err(ScreenError::Setting("k must be at least 1".into()));
    }
    if reference.len() <= opts.k {
        return Err(ScreenError::Setting(format!(
            "a reference of {} items is too small for k = {}",
            reference.len(),
            opts.k
        )));
    }
    let cal = calibration_scores(reference, opts.k)?;
    let n = cal.len();
    let rank = ((1.0 - opts.alpha) * (n as f64 + 1.0)).ceil() as usize;
    let threshold = if rank > n {
        f64::INFINITY
    } else {
        cal[rank - 1]
    };
    let raw: Vec<f64> = reference
        .search(queries, opts.k, false)?
        .iter()
        .map(|ns| kth(ns, opts.k))
        .collect();
    let p_values = raw
        .iter()
        .map(|&s| {
            let at_least = n - cal.partition_point(|&c| c < s);
            (1 + at_least) as f64 / (n + 1) as f64
        })
        .collect();
    Ok(Outliers {
        flagged: raw.iter().map(|&s| s > threshold).collect(),
        raw,
        threshold,
        p_values: Some(p_values),
        method: OutlierMethod::Conformal {
            reference: n,
            alpha: opts.alpha,
        },
    })
}

/// Datalab's within-pool rule on a leave-one-out k-NN graph of the pool.
pub fn within_pool(knn: &[Vec<Neighbor>], k: usize) -> Outliers {
    let raw: Vec<f64> = knn
        .iter()
        .map(|ns| {
            let ns = &ns[..k.min(ns.len())];
            if ns.is_empty() {
                0.0
            } else {
                ns.iter().map(|n| n.distance as f64).sum::<f64>() / ns.len() as f64
            }
        })
        .collect();
    let mut sorted = raw.clone();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (
        quantile_sorted(&sorted, 0.25),
        quantile_sorted(&sorted, 0.75),
    );
    // Datalab: Q3 + (1/0.37 − 1)·IQR.
    let threshold = q3 + (1.0 / 0.37 - 1.0) * (q3 - q1);
    Outliers {
        flagged: raw.iter().map(|&s| s > threshold).collect(),
        raw,
        threshold,
        p_values: None,
        method: OutlierMethod::WithinPool,
    }
}

/// Area under the ROC curve of `scores` for `positive` items (ties count half).
pub fn auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0f64, 0usize);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            if positive[t] {
                rank_sum += mid;
            }
        }
        i = j + 1;
    }
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let n = scores.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::rng::Rng;

    fn gauss(rng: &mut Rng) -> f32 {
        let (u, v) = (rng.unit().max(1e-12), rng.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    #[test]
    fn alpha_outside_the_range_is_refused() {
        let r = BruteForce::new(vec![0.0; 40], 2).unwrap();
        for a in [0.0, -0.1, 0.51, f64::NAN, 1.0] {
            let got = conformal(&r, &[0.0, 0.0], OutlierOptions { k: 3, alpha: a });
            assert!(matches!(got, Err(ScreenError::Alpha(_))), "alpha {a}");
        }
        assert!(check_alpha(0.5).is_ok() && check_alpha(1e-9).is_ok());
    }

    /// Exchangeable in-domain items: the false-positive rate stays near α,
    /// shifted items are flagged.
    #[test]
    fn false_positive_rate_is_at_most_alpha_on_exchangeable_data() {
        let dim = 4;
        let mut fp = 0usize;
        let mut total = 0usize;
        for seed in 0..5 {
            let mut rng = Rng::new(100 + seed);
            let reference: Vec<f32> = (0..2000 * dim).map(|_| gauss(&mut rng)).collect();
            let inliers: Vec<f32> = (0..1000 * dim).map(|_| gauss(&mut rng)).collect();
            let far: Vec<f32> = (0..50 * dim).map(|_| gauss(&mut rng) + 6.0).collect();
            let index = BruteForce::new(reference, dim).unwrap();
            let opts = OutlierOptions { k: 5, alpha: 0.05 };
            let res = conformal(&index, &inliers, opts).unwrap();
            fp += res.flagged.iter().filter(|&&f| f).count();
            total += res.flagged.len();
            let res = conformal(&index, &far, opts).unwrap();
            assert!(res.flagged.iter().all(|&f| f));
            assert!(res.p_values.unwrap().iter().all(|&p| p <= 0.05));
        }
        let rate = fp as f64 / total as f64;
        // 5000 draws: three standard errors above 0.05 is 0.059.
        assert!(rate <= 0.059, "false-positive rate {rate}");
        assert!(
            rate >= 0.02,
            "false-positive rate {rate} is suspiciously low"
        );
    }

    #[test]
    fn auroc_counts_ties_half() {
        assert_eq!(
            auroc(&[0.1, 0.2, 0.3, 0.4], &[false, false, true, true]),
            1.0
        );
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]), 0.5);
    }
}
