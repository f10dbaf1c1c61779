//! The classifier head that learns from corrections (`calibrate::Head`):
//! synthetic checks, then SMS spam against the scikit-learn reference made by
//! `scripts/head_reference.py`.

mod common;

use std::time::Instant;

use labelloop::learn::{Head, HeadError, TrainOptions};
use labelloop::model::pipeline::{label_all, PipelineOptions};
use labelloop::model::Input;

/// SplitMix64 with Box-Muller normals; enough for test data.
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

fn labels(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("class-{c}")).collect()
}

/// `n` rows of `k` isotropic Gaussian blobs in `dim` dimensions, centres
/// `spread` apart along random directions, classes interleaved.
fn blobs(n: usize, dim: usize, k: usize, spread: f64, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut centres = Rng(42);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            let v: Vec<f64> = (0..dim).map(|_| centres.normal()).collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter().map(|a| a / norm * spread).collect()
        })
        .collect();
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % k;
        x.extend(centres[c].iter().map(|m| (m + rng.normal()) as f32));
        y.push(c);
    }
    (x, y)
}

/// The objective, independently in f64: Σ -log softmax(W x + b)[y] + ||W||² / (2C),
/// and its gradient (weights then biases).
fn objective(head: &Head, x: &[f32], y: &[usize], c: f64) -> (f64, Vec<f64>) {
    let (d, k) = (head.dim, head.labels.len());
    let mut loss = 0.0;
    let mut grad = vec![0.0; k * d + k];
    for (xi, &yi) in x.chunks_exact(d).zip(y) {
        let z: Vec<f64> = (0..k)
            .map(|c| {
                let w = &head.weights[c * d..(c + 1) * d];
                let dot: f64 = xi.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum();
                dot + head.bias[c] as f64
            })
            .collect();
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        loss += max + sum.ln() - z[yi];
        for c in 0..k {
            let r = (z[c] - max).exp() / sum - if c == yi { 1.0 } else { 0.0 };
            for (g, &a) in grad[c * d..(c + 1) * d].iter_mut().zip(xi) {
                *g += r * a as f64;
            }
            grad[k * d + c] += r;
        }
    }
    let sq: f64 = head.weights.iter().map(|&w| w as f64 * w as f64).sum();
    for (g, &w) in grad.iter_mut().zip(&head.weights) {
        *g += w as f64 / c;
    }
    (loss + sq / (2.0 * c), grad)
}

#[test]
fn separable_blobs_are_learned_perfectly() {
    let (dim, k) = (16, 3);
    let (x, y) = blobs(300, dim, k, 12.0, 1);
    let head = Head::train(&x, dim, &y, labels(k), TrainOptions::default()).unwrap();
    assert_eq!(head.weights.len(), k * dim);
    assert_eq!(head.bias.len(), k);
    assert_eq!(head.accuracy(&x, &y).unwrap(), 1.0);
    let (xt, yt) = blobs(300, dim, k, 12.0, 2);
    assert_eq!(head.accuracy(&xt, &yt).unwrap(), 1.0);
    let p = head.predict_proba(&xt[..dim]).unwrap();
    assert!(p[yt[0]] > 0.9, "{p:?}");
}

#[test]
fn the_solution_is_a_stationary_point_of_sklearns_objective() {
    // Overlapping classes, so the optimum is interior and the penalty matters.
    for (c, k) in [(1.0, 2), (0.1, 4), (10.0, 3)] {
        let dim = 24;
        let n = 600;
        let (x, y) = blobs(n, dim, k, 2.0, 7);
        let opts = TrainOptions {
            c,
            max_iter: 1000,
            tol: 1e-7,
        };
        let head = Head::train(&x, dim, &y, labels(k), opts).unwrap();
        let (loss, grad) = objective(&head, &x, &y, c);
        let grad_max = grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) / n as f64;
        assert!(grad_max < 1e-5, "C={c} k={k}: |grad|/n = {grad_max:e}");
        // Nudging any weight or bias does not lower the objective.
        let at = |h: &Head| objective(h, &x, &y, c).0;
        for i in [0, 5, dim * k - 1, dim * k] {
            for delta in [1e-2f32, -1e-2] {
                let mut h = head.clone();
                if i < dim * k {
                    h.weights[i] += delta;
                } else {
                    h.bias[i - dim * k] += delta;
                }
                assert!(at(&h) >= loss - 1e-6 * loss, "C={c} k={k} i={i}");
            }
        }
        // Softmax rows are only defined up to a shift: the penalty makes the
        // weight columns sum to zero; zero-initialised biases stay centred.
        for j in 0..dim {
            let s: f32 = (0..k).map(|c| head.weights[c * dim + j]).sum();
            assert!(s.abs() < 1e-3, "column {j} sums to {s}");
        }
        let b: f32 = head.bias.iter().sum();
        assert!(b.abs() < 1e-3, "biases sum to {b}");
    }
}

#[test]
fn training_is_deterministic() {
    // Large enough (n·d·k above 2^20) for the threaded path.
    let (dim, k, n) = (384, 2, 1500);
    let (x, y) = blobs(n, dim, k, 1.5, 3);
    let a = Head::train(&x, dim, &y, labels(k), TrainOptions::default()).unwrap();
    let b = Head::train(&x, dim, &y, labels(k), TrainOptions::default()).unwrap();
    assert_eq!(a, b);
    let bits = |h: &Head| -> Vec<u32> {
        h.weights
            .iter()
            .chain(&h.bias)
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    assert!(a.weights.iter().any(|&w| w != 0.0));
}

#[test]
fn probabilities_sum_to_one_and_agree_between_single_and_batch() {
    let (dim, k) = (10, 4);
    let (x, y) = blobs(200, dim, k, 3.0, 4);
    let head = Head::train(&x, dim, &y, labels(k), TrainOptions::default()).unwrap();
    let batch = head.predict_proba_batch(&x).unwrap();
    assert_eq!(batch.len(), 200 * k);
    for (i, (row, xi)) in batch.chunks_exact(k).zip(x.chunks_exact(dim)).enumerate() {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
        assert!(row.iter().all(|p| (0.0..=1.0).contains(p)));
        // Same kernel either way: identical bits.
        assert_eq!(head.predict_proba(xi).unwrap(), row, "row {i}");
    }
    assert_eq!(head.predict_proba_batch(&[]).unwrap(), Vec::<f32>::new());
    // Extreme (finite) inputs stay finite.
    let big = vec![1e30f32; dim];
    let p = head.predict_proba(&big).unwrap();
    assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn zero_iterations_give_the_uniform_head() {
    let (x, y) = blobs(30, 5, 3, 3.0, 5);
    let opts = TrainOptions {
        max_iter: 0,
        ..TrainOptions::default()
    };
    let head = Head::train(&x, 5, &y, labels(3), opts).unwrap();
    assert!(head.weights.iter().chain(&head.bias).all(|&v| v == 0.0));
    for p in head.predict_proba(&x[..5]).unwrap() {
        assert!((p - 1.0 / 3.0).abs() < 1e-6);
    }
}

#[test]
fn a_label_nobody_used_gets_low_probability_not_nan() {
    let (x, y) = blobs(100, 8, 2, 4.0, 6);
    let head = Head::train(&x, 8, &y, labels(3), TrainOptions::default()).unwrap();
    let p = head.predict_proba_batch(&x).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    assert!(p.chunks_exact(3).all(|row| row[2] < 0.01), "{:?}", &p[..6]);
    assert!(head.accuracy(&x, &y).unwrap() > 0.95);
}

#[test]
fn round_trips_through_json() {
    let (x, y) = blobs(60, 6, 2, 3.0, 8);
    let head = Head::train(
        &x,
        6,
        &y,
        vec!["ham".into(), "spam".into()],
        TrainOptions::default(),
    )
    .unwrap();
    let json = serde_json::to_string(&head).unwrap();
    let back: Head = serde_json::from_str(&json).unwrap();
    assert_eq!(back, head);
    assert_eq!(
        back.predict_proba(&x[..6]).unwrap(),
        head.predict_proba(&x[..6]).unwrap()
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let o = TrainOptions::default;
    let two = || labels(2);
    let x = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6];
    assert_eq!(Head::train(&[], 3, &[], two(), o()), Err(HeadError::Empty));
    assert_eq!(
        Head::train(&x, 0, &[0, 1], two(), o()),
        Err(HeadError::ZeroDim)
    );
    assert_eq!(
        Head::train(&x, 4, &[0], two(), o()),
        Err(HeadError::DimMismatch { dim: 4, len: 6 })
    );
    assert_eq!(
        Head::train(&x, 3, &[0], two(), o()),
        Err(HeadError::LengthMismatch { rows: 2, labels: 1 })
    );
    assert_eq!(
        Head::train(&x, 3, &[0, 2], two(), o()),
        Err(HeadError::LabelOutOfRange {
            row: 1,
            index: 2,
            k: 2
        })
    );
    let mut nan = x;
    nan[4] = f32::NAN;
    assert_eq!(
        Head::train(&nan, 3, &[0, 1], two(), o()),
        Err(HeadError::NonFinite { row: 1 })
    );
    let mut inf = x;
    inf[0] = f32::NEG_INFINITY;
    assert_eq!(
        Head::train(&inf, 3, &[0, 1], two(), o()),
        Err(HeadError::NonFinite { row: 0 })
    );
    assert_eq!(
        Head::train(&x, 3, &[0, 0], labels(1), o()),
        Err(HeadError::TooFewLabels(1))
    );
    assert_eq!(
        Head::train(&x, 3, &[0, 1], vec!["a".into(), "a".into()], o()),
        Err(HeadError::DuplicateLabel("a".into()))
    );
    for c in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-320] {
        let r = Head::train(&x, 3, &[0, 1], two(), TrainOptions { c, ..o() });
        assert!(
            matches!(r, Err(HeadError::InvalidOption(_))),
            "c={c}: {r:?}"
        );
    }
    for tol in [-1.0, f64::NAN] {
        let r = Head::train(&x, 3, &[0, 1], two(), TrainOptions { tol, ..o() });
        assert!(
            matches!(r, Err(HeadError::InvalidOption(_))),
            "tol={tol}: {r:?}"
        );
    }

    let head = Head::train(&x, 3, &[0, 1], two(), o()).unwrap();
    assert_eq!(
        head.predict_proba(&x),
        Err(HeadError::DimMismatch { dim: 3, len: 6 })
    );
    assert_eq!(
        head.predict_proba(&[]),
        Err(HeadError::DimMismatch { dim: 3, len: 0 })
    );
    assert_eq!(
        head.predict_proba(&nan[3..]),
        Err(HeadError::NonFinite { row: 0 })
    );
    assert_eq!(
        head.predict_proba_batch(&x[..4]),
        Err(HeadError::DimMismatch { dim: 3, len: 4 })
    );
    assert_eq!(
        head.predict_proba_batch(&nan),
        Err(HeadError::NonFinite { row: 1 })
    );
    assert_eq!(head.accuracy(&[], &[]), Err(HeadError::Empty));
    assert_eq!(
        head.accuracy(&x, &[0]),
        Err(HeadError::LengthMismatch { rows: 2, labels: 1 })
    );
    assert_eq!(
        head.accuracy(&x, &[0, 5]),
        Err(HeadError::LabelOutOfRange {
            row: 1,
            index: 5,
            k: 2
        })
    );
    assert_eq!(
        head.accuracy(&nan, &[0, 1]),
        Err(HeadError::NonFinite { row: 1 })
    );

    // A head from JSON whose fields disagree.
    for broken in [
        r#"{"dim":3,"labels":["a","b"],"weights":[0,0,0],"bias":[0,0]}"#,
        r#"{"dim":3,"labels":["a","b"],"weights":[0,0,0,0,0,0],"bias":[0]}"#,
        r#"{"dim":0,"labels":["a","b"],"weights":[],"bias":[0,0]}"#,
        r#"{"dim":3,"labels":[],"weights":[],"bias":[]}"#,
    ] {
        let h: Head = serde_json::from_str(broken).unwrap();
        for r in [
            h.predict_proba(&x[..3]).map(|_| ()),
            h.predict_proba_batch(&x).map(|_| ()),
            h.accuracy(&x, &[0, 1]).map(|_| ()),
        ] {
            assert!(
                matches!(r, Err(HeadError::Inconsistent(_))),
                "{broken}: {r:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// SMS spam against scikit-learn.

#[test]
fn sms_spam_matches_scikit_learn() {
    let root = common::root();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/head_reference.json")).unwrap(),
    )
    .unwrap();
    let split = &reference["split"];
    let default = &reference["sklearn_default"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap();
    let label_names: Vec<String> = reference["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(label_names, ["ham", "spam"]);

    let data =
        std::fs::read_to_string(common::require(&root.join("data/sms-spam/sms.jsonl"))).unwrap();
    let mut items: Vec<(String, String, usize)> = data
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let label = v["label"].as_str().unwrap();
            let class = label_names.iter().position(|l| l == label).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
                class,
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(items.len() as f64, num(&split["n_items"]));

    // Embed everything with labelloop's own engine.
    let model = common::shared("minilm-l6");
    let t = Instant::now();
    let inputs = items
        .iter()
        .map(|(_, text, _)| Ok(Input::Text(text.clone())))
        .collect();
    let mut embeddings: Vec<Vec<f32>> = vec![Vec::new(); items.len()];
    label_all(&model, inputs, PipelineOptions::default(), |i, r| {
        embeddings[i] = r
            .unwrap_or_else(|e| panic!("item {i}: {e}"))
            .embedding
            .expect("text-embedding model returns embeddings");
    });
    let dim = embeddings[0].len();
    eprintln!(
        "embedded {} messages (dim {dim}) in {:.1} s",
        items.len(),
        t.elapsed().as_secs_f64()
    );

    // Every 5th item by id is test.
    let (mut x_train, mut y_train, mut x_test, mut y_test) = (vec![], vec![], vec![], vec![]);
    for (i, ((_, _, class), e)) in items.iter().zip(&embeddings).enumerate() {
        assert_eq!(e.len(), dim);
        if i % 5 == 0 {
            x_test.extend_from_slice(e);
            y_test.push(*class);
        } else {
            x_train.extend_from_slice(e);
            y_train.push(*class);
        }
    }
    assert_eq!(y_train.len() as f64, num(&split["n_train"]));
    assert_eq!(y_test.len() as f64, num(&split["n_test"]));
    assert_eq!(
        y_train.iter().sum::<usize>() as f64,
        num(&split["train_spam"])
    );
    assert_eq!(
        y_test.iter().sum::<usize>() as f64,
        num(&split["test_spam"])
    );

    let t = Instant::now();
    let head = Head::train(
        &x_train,
        dim,
        &y_train,
        label_names.clone(),
        TrainOptions::default(),
    )
    .unwrap();
    let train_secs = t.elapsed().as_secs_f64();
    let test_acc = head.accuracy(&x_test, &y_test).unwrap();
    let train_acc = head.accuracy(&x_train, &y_train).unwrap();
    eprintln!(
        "head C=1: trained on {} x {dim} in {train_secs:.3} s ({} build); test accuracy {test_acc:.4}, train {train_acc:.4}",
        y_train.len(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    eprintln!(
        "sklearn LogisticRegression(C=1) (binomial, = softmax C=0.5, tol 1e-4): test {}, train {}",
        default["test_accuracy"], default["train_accuracy"]
    );
    // The headline: within one point of scikit-learn's default fit.
    let ref_test = num(&default["test_accuracy"]);
    assert!(
        (test_acc - ref_test).abs() <= 0.01,
        "test accuracy {test_acc} vs sklearn {ref_test}"
    );

    // The optimiser itself, at C=1 and at C=0.5 (sklearn's default model, solved
    // exactly): the same objective value as sklearn's optimum up to the tiny
    // differences between the two engines' embeddings; and on our embeddings,
    // no worse than sklearn's own coefficients.
    for (key, c) in [("optimum_c1", 1.0), ("optimum_c0_5", 0.5)] {
        let optimum = &reference[key];
        assert_eq!(num(&optimum["multinomial_c"]), c);
        let opts = TrainOptions {
            c,
            tol: 1e-7,
            max_iter: 1000,
        };
        let ours = Head::train(&x_train, dim, &y_train, label_names.clone(), opts).unwrap();
        let (obj, grad) = objective(&ours, &x_train, &y_train, c);
        let grad_max = grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) / y_train.len() as f64;
        let w: Vec<f32> = optimum["binary_coef"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(w.len(), dim);
        let b = num(&optimum["binary_intercept"]) as f32;
        let sklearn = Head {
            dim,
            labels: label_names.clone(),
            weights: w
                .iter()
                .map(|v| -v / 2.0)
                .chain(w.iter().map(|v| v / 2.0))
                .collect(),
            bias: vec![-b / 2.0, b / 2.0],
        };
        let (sk_obj, _) = objective(&sklearn, &x_train, &y_train, c);
        let ref_obj = num(&optimum["objective"]);
        let acc = ours.accuracy(&x_test, &y_test).unwrap();
        let sk_acc = sklearn.accuracy(&x_test, &y_test).unwrap();
        let ref_acc = num(&optimum["test_accuracy"]);
        eprintln!(
            "C={c}: objective ours {obj:.6} (|grad|/n {grad_max:.1e}); sklearn's optimum {ref_obj} on its \
             embeddings, {sk_obj:.6} on ours; test accuracy ours {acc:.4}, sklearn's optimum {ref_acc} \
             ({sk_acc:.4} on our embeddings)"
        );
        // (Measured here: both gaps about 1e-6 absolute; the first allows for
        // int8 kernels that differ between CPUs.)
        assert!(
            (obj - ref_obj).abs() <= 1e-4 * ref_obj,
            "C={c}: objective {obj} vs sklearn's optimum {ref_obj}"
        );
        assert!(
            obj <= sk_obj + 1e-6 * sk_obj,
            "C={c}: objective {obj} above sklearn's coefficients on the same embeddings, {sk_obj}"
        );
        assert!(
            (acc - ref_acc).abs() <= 0.0035,
            "C={c}: test accuracy {acc} vs sklearn's optimum {ref_acc}"
        );
    }
}
