//! Active-learning selection on large pools. `cargo bench --bench select`.
//! - `k_center_100k_x384_batch100`: greedy k-center over 100,000 random
//!   384-d embeddings, no labeled centres, 100 picks (target < 2 s).
//! - `margin_rank_100k`: margin ranking of 100,000 ten-class distributions, 100 picks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use labelloop::select::{k_center_greedy, select, Pool, Rng, Strategy};

const ITEMS: usize = 100_000;
const DIM: usize = 384;
const BATCH: usize = 100;
const CLASSES: usize = 10;

fn k_center(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let embeddings: Vec<f32> = (0..ITEMS * DIM)
        .map(|_| rng.unit() as f32 * 2.0 - 1.0)
        .collect();
    c.bench_function("k_center_100k_x384_batch100", |b| {
        b.iter(|| {
            let picks = k_center_greedy(black_box(&embeddings), DIM, &[], BATCH, 7);
            assert_eq!(picks.len(), BATCH);
            picks
        })
    });
}

fn margin_rank(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let probs: Vec<Vec<f32>> = (0..ITEMS)
        .map(|_| {
            let logits: Vec<f32> = (0..CLASSES).map(|_| 4.0 * rng.unit() as f32).collect();
            let total: f32 = logits.iter().map(|l| l.exp()).sum();
            logits.iter().map(|l| l.exp() / total).collect()
        })
        .collect();
    let pool = Pool {
        probs: &probs,
        ..Pool::default()
    };
    c.bench_function("margin_rank_100k", |b| {
        b.iter(|| select(Strategy::Margin, black_box(&pool), &[], BATCH, 0))
    });
}

criterion_group! {
    name = slow;
    config = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    targets = k_center
}
criterion_group!(fast, margin_rank);
criterion_main!(slow, fast);
