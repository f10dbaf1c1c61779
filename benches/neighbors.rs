//! Exact nearest-neighbour search (`labelloop::screen::neighbors`).
//! `cargo bench --bench neighbors`.
//! - `self_knn_10k_x64_k10`: every point of 10,000 random 64-d vectors
//!   against all others, 10 neighbours each (the size of Fashion-MNIST test
//!   with the CNN's embeddings);
//! - `query_1k_vs_60k_x64_k10`: 1,000 queries against 60,000 points.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use labelloop::screen::neighbors::{BruteForce, NeighborIndex};
use labelloop::select::Rng;

const DIM: usize = 64;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * DIM).map(|_| rng.unit() as f32).collect()
}

fn self_knn(c: &mut Criterion) {
    let index = BruteForce::new(random(10_000, 1), DIM).expect("valid shape");
    c.bench_function("self_knn_10k_x64_k10", |b| {
        b.iter(|| {
            let knn = index.self_knn(black_box(10)).expect("search");
            assert_eq!(knn.len(), 10_000);
            knn
        })
    });
}

fn query(c: &mut Criterion) {
    let index = BruteForce::new(random(60_000, 2), DIM).expect("valid shape");
    let queries = random(1_000, 3);
    c.bench_function("query_1k_vs_60k_x64_k10", |b| {
        b.iter(|| {
            let knn = index
                .search(black_box(&queries), 10, false)
                .expect("search");
            assert_eq!(knn.len(), 1_000);
            knn
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(10));
    targets = self_knn, query
}
criterion_main!(benches);
