//! Tests of the batch strategies added for issue #26: BADGE, TypiClust and
//! margin with a diversity filter, on synthetic pools.

use super::tests::{blobs, distinct, gaussian};
use super::*;
use std::collections::HashSet;

/// Two-class distributions: the first `torn` items of blob 0 nearly 50/50,
/// the rest fairly confident, with a little seeded spread.
fn torn_in_blob_zero(owner: &[usize], torn: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let mut left = torn;
    owner
        .iter()
        .map(|&b| {
            let p = if b == 0 && left > 0 {
                left -= 1;
                0.5 + 0.02 * rng.unit() as f32
            } else {
                0.7 + 0.2 * rng.unit() as f32
            };
            vec![p, 1.0 - p]
        })
        .collect()
}

/// The textbook BADGE: gradient embeddings formed explicitly, k-means++
/// seeding with the same random draws as [`badge`].
fn badge_reference(
    probs: &[Vec<f32>],
    emb: &[f32],
    dim: usize,
    batch: usize,
    seed: u64,
) -> Vec<usize> {
    let n = emb.len() / dim;
    let grads: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let p = &probs[i];
            let top = argmax(p).expect("non-empty");
            let mut x: Vec<f64> = emb[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            x.push(1.0);
            p.iter()
                .enumerate()
                .flat_map(|(c, &pc)| {
                    let a = f64::from(pc) - if c == top { 1.0 } else { 0.0 };
                    x.iter().map(move |&xv| a * xv).collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    let d = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
    let norms: Vec<f64> = grads
        .iter()
        .map(|g| g.iter().map(|v| v * v).sum())
        .collect();
    let first = (0..n).fold(0, |b, i| if norms[i] > norms[b] { i } else { b });
    let mut chosen = vec![first];
    let mut rng = Rng::new(seed);
    while chosen.len() < batch {
        let d2: Vec<f64> = (0..n)
            .map(|i| {
                if chosen.contains(&i) {
                    0.0
                } else {
                    chosen
                        .iter()
                        .map(|&c| d(&grads[i], &grads[c]))
                        .fold(f64::INFINITY, f64::min)
                }
            })
            .collect();
        let total: f64 = d2.iter().sum();
        let mut target = rng.unit() * total;
        let mut pick = n - 1;
        for (i, &w) in d2.iter().enumerate() {
            if w > 0.0 {
                pick = i;
                if target < w {
                    break;
                }
                target -= w;
            }
        }
        chosen.push(pick);
    }
    chosen
}

#[test]
fn badge_equals_the_explicit_gradient_algorithm() {
    let dim = 6;
    let mut rng = Rng::new(4);
    let n = 60;
    let emb: Vec<f32> = (0..n * dim).map(|_| gaussian(&mut rng)).collect();
    let probs: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let raw: Vec<f32> = (0..3).map(|_| (2.0 * gaussian(&mut rng)).exp()).collect();
            let s: f32 = raw.iter().sum();
            raw.iter().map(|v| v / s).collect()
        })
        .collect();
    for seed in 0..5 {
        let picks = badge(&probs, &emb, dim, 12, seed);
        assert_eq!(
            picks,
            badge_reference(&probs, &emb, dim, 12, seed),
            "seed {seed}"
        );
        assert!(distinct(&picks));
    }
}

#[test]
fn badge_spreads_uncertain_picks_over_blobs() {
    let dim = 8;
    let (emb, owner) = blobs(5, 100, dim, 12);
    let probs = torn_in_blob_zero(&owner, 20, 3);
    let margins: Vec<f32> = probs
        .iter()
        .map(|p| Uncertainty::from_distribution(p).margin)
        .collect();
    // Plain margin spends the whole batch on blob 0.
    assert!(top_by_score(&margins, 5).iter().all(|&i| owner[i] == 0));
    let mut blobs_spanned = 0;
    for seed in 0..10 {
        let picks = badge(&probs, &emb, dim, 5, seed);
        assert_eq!(picks.len(), 5);
        assert!(distinct(&picks));
        // The largest gradient (a torn item) comes first.
        assert_eq!(owner[picks[0]], 0);
        let spanned: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
        assert!(spanned.len() >= 3, "seed {seed}: {spanned:?}");
        blobs_spanned += spanned.len();
    }
    // On average well above margin's single blob.
    assert!(blobs_spanned >= 38, "{blobs_spanned} over 10 seeds");
}

#[test]
fn badge_edges_confident_missing_and_non_finite() {
    let dim = 4;
    let (emb, _) = blobs(4, 10, dim, 1);
    let n = emb.len() / dim;
    // One-hot everywhere: every gradient is zero; still `batch` distinct items.
    let sure: Vec<Vec<f32>> = (0..n).map(|_| vec![1.0, 0.0]).collect();
    let picks = badge(&sure, &emb, dim, 7, 0);
    assert_eq!(picks.len(), 7);
    assert!(distinct(&picks));
    // No distributions at all: no panic, `batch` items.
    assert_eq!(badge(&[], &emb, dim, 5, 0).len(), 5);
    // A NaN distribution or embedding is never preferred to a usable one.
    let mut probs: Vec<Vec<f32>> = (0..n).map(|_| vec![0.8, 0.2]).collect();
    probs[0] = vec![f32::NAN, 0.5];
    let mut bad = emb.clone();
    bad[dim] = f32::NAN;
    probs[1] = vec![0.5, 0.5];
    let picks = badge(&probs, &bad, dim, n - 2, 3);
    assert!(!picks.contains(&0) && !picks.contains(&1), "{picks:?}");
    let all = badge(&probs, &bad, dim, n + 5, 3);
    assert_eq!(all.len(), n);
    assert!(distinct(&all));
    assert!(badge(&probs, &emb, 0, 5, 0).is_empty());
    assert!(badge(&probs, &emb, dim, 0, 0).is_empty());
    // Through select, with its checks.
    let pool = Pool {
        probs: &probs,
        embeddings: &emb,
        dim,
        ..Pool::default()
    };
    assert_eq!(
        select(Strategy::Badge, &pool, &[], 5, 2).expect("select"),
        badge(&probs, &emb, dim, 5, 2)
    );
    let no_emb = Pool {
        probs: &probs,
        ..Pool::default()
    };
    assert_eq!(
        select(Strategy::Badge, &no_emb, &[], 5, 2),
        Err(SelectError::MissingEmbeddings)
    );
}

/// Squared distance from row `i` to the mean of its blob.
fn to_blob_mean(emb: &[f32], owner: &[usize], dim: usize, i: usize) -> f32 {
    let members: Vec<usize> = (0..owner.len()).filter(|&j| owner[j] == owner[i]).collect();
    let mut mean = vec![0f32; dim];
    for &j in &members {
        for (m, x) in mean.iter_mut().zip(&emb[j * dim..(j + 1) * dim]) {
            *m += x / members.len() as f32;
        }
    }
    sq_dist(&emb[i * dim..(i + 1) * dim], &mean)
}

#[test]
fn typiclust_takes_typical_items_of_uncovered_blobs() {
    let dim = 8;
    let (emb, owner) = blobs(5, 40, dim, 9);
    let picks = typiclust(&emb, dim, &[], 5, 1);
    assert_eq!(picks.len(), 5);
    let spanned: HashSet<usize> = picks.iter().map(|&i| owner[i]).collect();
    assert_eq!(spanned.len(), 5, "{picks:?}");
    // Each pick is central: closer to its blob's mean than most of the blob.
    for &i in &picks {
        let mine = to_blob_mean(&emb, &owner, dim, i);
        let closer = (0..owner.len())
            .filter(|&j| owner[j] == owner[i] && to_blob_mean(&emb, &owner, dim, j) < mine)
            .count();
        assert!(closer < 10, "item {i}: {closer} of 40 are more central");
    }
    assert_eq!(typiclust(&emb, dim, &[], 5, 1), picks);

    // Labels in blobs 0, 1 and 2: the next two come from blobs 3 and 4.
    let mut labeled = Vec::new();
    for b in 0..3 {
        let i = (0..owner.len()).find(|&i| owner[i] == b).expect("member");
        labeled.extend_from_slice(&emb[i * dim..(i + 1) * dim]);
    }
    let next = typiclust(&emb, dim, &labeled, 2, 1);
    let spanned: HashSet<usize> = next.iter().map(|&i| owner[i]).collect();
    assert_eq!(spanned, HashSet::from([3, 4]), "{next:?}");
}

#[test]
fn typiclust_edges() {
    let dim = 4;
    let (mut emb, _) = blobs(3, 5, dim, 2);
    let n = emb.len() / dim;
    emb[2 * dim] = f32::NAN;
    let all = typiclust(&emb, dim, &[], n + 3, 0);
    assert_eq!(all.len(), n - 1, "the NaN row is never chosen");
    assert!(distinct(&all) && !all.contains(&2));
    assert!(typiclust(&emb, 0, &[], 3, 0).is_empty());
    assert!(typiclust(&emb, dim, &[], 0, 0).is_empty());
    assert!(typiclust(&[], dim, &[], 3, 0).is_empty());
    // More labels than clusters allowed: still a full batch.
    let many: Vec<f32> = emb.iter().cycle().take(dim * 400).copied().collect();
    assert_eq!(typiclust(&emb, dim, &many, 4, 0).len(), 4);
    let pool = Pool {
        embeddings: &emb,
        dim,
        ..Pool::default()
    };
    assert_eq!(
        select(Strategy::Typiclust, &pool, &[], 3, 5)
            .expect("select")
            .len(),
        3
    );
    assert_eq!(
        select(Strategy::Typiclust, &pool, &[1.0; 3], 3, 5),
        Err(SelectError::DimMismatch {
            what: "labeled embeddings length modulo dim",
            expected: 0,
            got: 3
        })
    );
}

#[test]
fn margin_diverse_skips_near_duplicates() {
    let dim = 8;
    let (base, owner) = blobs(6, 30, dim, 6);
    let n0 = owner.len();
    // One item of each blob has nine near-copies that are a little more
    // uncertain: plain margin fills a batch of six with copies of one.
    let mut margins: Vec<f32> = (0..n0)
        .map(|i| 0.2 + 0.3 * (i as f32 / n0 as f32))
        .collect();
    let originals: Vec<usize> = (0..6)
        .map(|b| (0..n0).find(|&i| owner[i] == b).expect("member"))
        .collect();
    let mut emb = base.clone();
    let mut rng = Rng::new(8);
    for &o in &originals {
        margins[o] = 0.98;
        for _ in 0..9 {
            emb.extend(
                base[o * dim..(o + 1) * dim]
                    .iter()
                    .map(|&x| x + 0.001 * gaussian(&mut rng)),
            );
        }
        margins.extend(std::iter::repeat_n(0.99, 9));
    }
    let family = |i: usize| if i < n0 { i } else { originals[(i - n0) / 9] };
    let plain = top_by_score(&margins, 6);
    let families: HashSet<usize> = plain.iter().map(|&i| family(i)).collect();
    assert_eq!(families.len(), 1);

    let picks = margin_diverse(&emb, dim, &margins, 6);
    assert_eq!(picks.len(), 6);
    let families: HashSet<usize> = picks.iter().map(|&i| family(i)).collect();
    assert_eq!(families, originals.iter().copied().collect(), "{picks:?}");
    // The most uncertain first, as margin orders them.
    assert_eq!(picks[0], plain[0]);
    assert_eq!(
        select(
            Strategy::MarginDiverse,
            &Pool {
                probs: &[],
                embeddings: &emb,
                dim,
                ..Pool::default()
            },
            &[],
            6,
            0
        )
        .expect("select")
        .len(),
        6
    );

    // A batch bigger than the distinct families: the skipped fill it, in margin order.
    let wide = margin_diverse(&emb, dim, &margins, 60);
    assert_eq!(wide.len(), 60);
    assert!(distinct(&wide));
    assert_eq!(
        margin_diverse(&emb, 0, &margins, 3),
        top_by_score(&margins, 3)
    );
    assert!(margin_diverse(&emb, dim, &margins, 0).is_empty());
    assert!(margin_diverse(&[], dim, &[], 3).is_empty());
    // NaN rows and margins do not panic.
    let mut nan = emb.clone();
    nan[0] = f32::NAN;
    margins[1] = f32::NAN;
    assert_eq!(margin_diverse(&nan, dim, &margins, 6).len(), 6);
}
