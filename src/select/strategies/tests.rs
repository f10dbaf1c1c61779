//! Tests of the strategies on synthetic pools.

use super::*;
use std::collections::HashSet;

/// Standard normal by Box–Muller.
pub(super) fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = 1.0 - rng.unit(); // (0, 1]
    let u2 = rng.unit();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `blobs` well-separated Gaussian blobs (centre `10·e_b`, σ = 0.3) of
/// `per_blob` points each, shuffled; returns (embeddings, blob of each row).
pub(super) fn blobs(
    blobs: usize,
    per_blob: usize,
    dim: usize,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
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

pub(super) fn distinct(v: &[usize]) -> bool {
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
    assert_eq!(
        needs_emb,
        [
            Strategy::KCenter,
            Strategy::ClusterMargin,
            Strategy::Badge,
            Strategy::Typiclust,
            Strategy::MarginDiverse
        ]
    );
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
