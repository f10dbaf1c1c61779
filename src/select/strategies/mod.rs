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
//! - cluster-margin (Citovsky et al., NeurIPS 2021, simplified);
//! - BADGE, k-means++ over gradient embeddings (Ash et al., ICLR 2020);
//! - TypiClust, typical items of uncovered clusters (Hacohen et al., ICML 2022);
//! - margin with a diversity filter (near-duplicates skipped).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::uncertainty::Uncertainty;

mod badge;
mod cluster;
mod cold_start;
mod committee;
mod diverse;
mod kcenter;
mod typiclust;

pub use badge::badge;
pub use cluster::cluster_margin;
use cluster::{k_means, nearest};
pub use cold_start::{cold_start, COLD_START_SAMPLE};
pub use committee::{mean_kl, vote_entropy};
pub use diverse::{margin_diverse, DIVERSE_CANDIDATES_PER_ITEM};
pub use kcenter::k_center_greedy;
#[cfg(test)]
use kcenter::k_center_with;
use kcenter::sq_dist;
pub use typiclust::{typiclust, TYPICLUST_MAX_CLUSTERS, TYPICLUST_NEIGHBOURS, TYPICLUST_SAMPLE};

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
    /// k-means++ over gradient embeddings: uncertain and diverse.
    Badge,
    /// The most typical item of each largest uncovered cluster (cold start).
    Typiclust,
    /// Margin order, skipping items close to one already in the batch.
    MarginDiverse,
}

impl Strategy {
    /// The strategy review lists use when none is named (README "Active
    /// learning" compares them all with `scripts/al_compare.sh`).
    pub const DEFAULT: Strategy = Strategy::Margin;

    /// Every strategy, in declaration order.
    pub const ALL: [Strategy; 11] = [
        Strategy::Random,
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::VoteEntropy,
        Strategy::MeanKl,
        Strategy::KCenter,
        Strategy::ClusterMargin,
        Strategy::Badge,
        Strategy::Typiclust,
        Strategy::MarginDiverse,
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
            Strategy::Badge => "badge",
            Strategy::Typiclust => "typiclust",
            Strategy::MarginDiverse => "margin-diverse",
        }
    }

    /// Whether [`select`] needs `pool.embeddings` for this strategy.
    pub fn needs_embeddings(self) -> bool {
        matches!(
            self,
            Strategy::KCenter
                | Strategy::ClusterMargin
                | Strategy::Badge
                | Strategy::Typiclust
                | Strategy::MarginDiverse
        )
    }

    /// The stored measure a review list of this strategy is ordered by, for
    /// the strategies that are one index scan; `None` for those that choose
    /// in memory (random and the embedding strategies).
    pub fn stored_measure(self) -> Option<super::Measure> {
        use super::Measure;
        match self {
            Strategy::LeastConfidence => Some(Measure::LeastConfidence),
            Strategy::Margin => Some(Measure::Margin),
            Strategy::Entropy => Some(Measure::Entropy),
            Strategy::VoteEntropy => Some(Measure::VoteEntropy),
            Strategy::MeanKl => Some(Measure::MeanKl),
            Strategy::Random
            | Strategy::KCenter
            | Strategy::ClusterMargin
            | Strategy::Badge
            | Strategy::Typiclust
            | Strategy::MarginDiverse => None,
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
        Strategy::Badge => badge(pool.probs, pool.embeddings, pool.dim, batch, seed),
        Strategy::Typiclust => {
            typiclust(pool.embeddings, pool.dim, labeled_embeddings, batch, seed)
        }
        Strategy::MarginDiverse => {
            margin_diverse(pool.embeddings, pool.dim, &uncertainty(|u| u.margin), batch)
        }
    };
    Ok(selected)
}

pub(super) fn check_embeddings(pool: &Pool, n: usize, labeled: &[f32]) -> Result<(), SelectError> {
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

pub(super) fn check_committee(pool: &Pool, n: usize) -> Result<(), SelectError> {
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

pub(super) fn committee_scores(pool: &Pool, n: usize, score: fn(&[&[f32]]) -> f32) -> Vec<f32> {
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
pub(super) fn random_indices(n: usize, batch: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut all);
    all.truncate(batch);
    all
}

/// NaN ranks last and -0.0 ties with 0.0, so `total_cmp` gives a sensible order.
pub(super) fn rank_key(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score + 0.0
    }
}

/// Indices of the `batch` highest scores, highest first, ties by index ascending.
pub(super) fn top_by_score(scores: &[f32], batch: usize) -> Vec<usize> {
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
pub(super) fn argmax(p: &[f32]) -> Option<usize> {
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
