//! Training the classifier head (`calibrate::Head`) on 5,000 embeddings of
//! dimension 384, the size of a corrections set for MiniLM. Target: under 1 s.
//!
//! The data are Gaussian classes that overlap (see [`Classes`]), with a shared
//! anisotropic covariance, so the problem is not trivially conditioned.

use criterion::{criterion_group, criterion_main, Criterion};
use labelloop::learn::{Head, TrainOptions};

/// SplitMix64 with Box-Muller normals.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const N: usize = 5000;
const DIM: usize = 384;

/// `k` overlapping Gaussian classes: a shared diagonal covariance with
/// per-dimension scale falling from 1 to about 0.33, and class means at
/// Mahalanobis distance about 2.5 from each other (two classes: about 89%
/// Bayes accuracy). Scaled so rows have norm about 1, like embeddings.
struct Classes {
    scale: Vec<f64>,
    means: Vec<Vec<f64>>,
}

impl Classes {
    fn new(k: usize) -> Classes {
        let mut rng = Rng(0xC1A55 + k as u64);
        let scale: Vec<f64> = (0..DIM)
            .map(|j| 1.0 / (1.0 + j as f64 / 48.0).sqrt())
            .collect();
        let means = (0..k)
            .map(|_| {
                let v: Vec<f64> = (0..DIM).map(|_| rng.normal()).collect();
                let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
                // Unit directions are ~√2 apart; 1.8·√2 ≈ 2.5 standard deviations.
                v.iter()
                    .zip(&scale)
                    .map(|(a, s)| 1.8 * a / norm * s)
                    .collect()
            })
            .collect();
        Classes { scale, means }
    }

    fn sample(&self, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng(seed);
        let k = self.means.len();
        let mut x = Vec::with_capacity(n * DIM);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let c = (rng.next_u64() % k as u64) as usize;
            x.extend(
                self.means[c]
                    .iter()
                    .zip(&self.scale)
                    .map(|(m, s)| ((m + s * rng.normal()) * 0.1) as f32),
            );
            y.push(c);
        }
        (x, y)
    }
}

fn train(c: &mut Criterion) {
    let mut group = c.benchmark_group("head");
    group.sample_size(10);
    for (name, k) in [("train_5000x384_2class", 2), ("train_5000x384_10class", 10)] {
        let classes = Classes::new(k);
        let (x, y) = classes.sample(N, 1);
        let labels: Vec<String> = (0..k).map(|c| format!("class-{c}")).collect();
        let head = Head::train(&x, DIM, &y, labels.clone(), TrainOptions::default()).unwrap();
        let (xt, yt) = classes.sample(N, 2);
        eprintln!(
            "{name}: train accuracy {:.3}, held-out {:.3}",
            head.accuracy(&x, &y).unwrap(),
            head.accuracy(&xt, &yt).unwrap()
        );
        group.bench_function(name, |b| {
            b.iter(|| Head::train(&x, DIM, &y, labels.clone(), TrainOptions::default()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, train);
criterion_main!(benches);
