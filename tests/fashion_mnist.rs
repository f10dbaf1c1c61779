//! The Fashion-MNIST CNN on the real 10,000 test images, through the same
//! PNG decoding and batching path the CLI uses.

mod common;

use labelloop::model::pipeline::{self, PipelineOptions};
use labelloop::model::{Input, Prediction};

fn label_test_set(model: &labelloop::model::Model) -> (Vec<Prediction>, Vec<String>) {
    let data = common::fashion_mnist_test();
    assert_eq!(data.len(), 10_000);
    let inputs = data
        .iter()
        .map(|(_, p, _)| Ok(Input::ImagePath(p.clone())))
        .collect();
    let mut preds = Vec::with_capacity(data.len());
    let mut order = Vec::new();
    pipeline::label_all(model, inputs, PipelineOptions::default(), |i, r| {
        order.push(i);
        preds.push(r.expect("every test image labels"));
    });
    assert_eq!(
        order,
        (0..10_000).collect::<Vec<_>>(),
        "results come in input order"
    );
    (preds, data.into_iter().map(|(_, _, l)| l).collect())
}

fn accuracy(model: &labelloop::model::Model, preds: &[Prediction], truth: &[String]) -> f64 {
    let labels = model.labels();
    let correct = preds
        .iter()
        .zip(truth)
        .filter(|(p, t)| &labels[p.class.as_ref().unwrap().index] == *t)
        .count();
    correct as f64 / truth.len() as f64
}

#[test]
fn cnn_reaches_088_on_the_real_test_set() {
    let model = common::load("fashion-mnist-cnn");
    let (preds, truth) = label_test_set(&model);
    let acc = accuracy(&model, &preds, &truth);
    eprintln!("fashion-mnist-cnn accuracy on 10,000 test images: {acc:.4}");
    assert!(acc >= 0.88, "accuracy {acc}");
    // Every prediction carries a distribution, uncertainty in [0,1] and the 64-d embedding.
    for p in &preds {
        let c = p.class.as_ref().unwrap();
        assert!((c.probs.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        for u in [
            c.uncertainty.least_confidence,
            c.uncertainty.margin,
            c.uncertainty.entropy,
        ] {
            assert!((0.0..=1.0).contains(&u));
        }
        assert_eq!(p.embedding.as_ref().unwrap().len(), 64);
    }
    // Uncertainty means something: the most uncertain tenth is far less accurate
    // than the most certain tenth.
    let mut idx: Vec<usize> = (0..preds.len()).collect();
    idx.sort_by(|&a, &b| {
        let ua = preds[a].class.as_ref().unwrap().uncertainty.margin;
        let ub = preds[b].class.as_ref().unwrap().uncertainty.margin;
        ua.total_cmp(&ub)
    });
    let acc_of = |ids: &[usize]| {
        ids.iter()
            .filter(|&&i| model.labels()[preds[i].class.as_ref().unwrap().index] == truth[i])
            .count() as f64
            / ids.len() as f64
    };
    let certain = acc_of(&idx[..1000]);
    let unsure = acc_of(&idx[9000..]);
    assert!(
        certain > 0.99 && unsure < 0.7,
        "certain {certain}, unsure {unsure}"
    );
}

#[test]
fn fp16_model_agrees_with_fp32() {
    let fp32 = common::shared("fashion-mnist-cnn");
    let fp16 = common::load("fashion-mnist-cnn-fp16");
    let (p16, truth) = label_test_set(&fp16);
    let acc = accuracy(&fp16, &p16, &truth);
    assert!(acc >= 0.88, "fp16 accuracy {acc}");
    let sample: Vec<Input> = common::fashion_mnist_test()[..256]
        .iter()
        .map(|(_, p, _)| Input::ImagePath(p.clone()))
        .collect();
    let p32 = fp32.predict(&sample);
    let same = p32
        .iter()
        .zip(&p16)
        .filter(|(a, b)| {
            a.as_ref().unwrap().class.as_ref().unwrap().index == b.class.as_ref().unwrap().index
        })
        .count();
    assert!(same >= 254, "fp16 and fp32 agree on {same}/256");
    for (a, b) in p32.iter().zip(&p16) {
        let (a, b) = (
            a.as_ref().unwrap().class.as_ref().unwrap(),
            b.class.as_ref().unwrap(),
        );
        assert!((a.score - b.score).abs() < 0.02);
    }
}

/// Two sessions, each run by a thread that stages its own blocks (the CLI's
/// default): the same predictions as one session, still in input order.
#[test]
fn runners_on_two_sessions_match_one_session() {
    let dir = common::model_dir("fashion-mnist-cnn");
    let two = labelloop::model::Model::load(
        &dir,
        labelloop::model::LoadOptions {
            session: labelloop::runtime::SessionOptions {
                intra_threads: 1,
                spinning: false,
            },
            sessions: 2,
            embeddings: true,
            ..Default::default()
        },
    )
    .unwrap();
    let data = &common::fashion_mnist_test()[..2_000];
    let run = |model: &labelloop::model::Model, runners: usize| {
        let inputs = data
            .iter()
            .map(|(_, p, _)| Ok(Input::ImagePath(p.clone())))
            .collect();
        let mut out = Vec::new();
        let opts = PipelineOptions {
            batch_size: 64,
            runners,
            ..PipelineOptions::default()
        };
        pipeline::label_all(model, inputs, opts, |i, r| {
            out.push((i, r.expect("every test image labels")));
        });
        out
    };
    let many = run(&two, 2);
    let one = run(&common::load("fashion-mnist-cnn"), 1);
    assert_eq!(many.len(), data.len());
    for ((i, a), (j, b)) in many.iter().zip(&one) {
        assert_eq!(i, j, "results come in input order");
        let (a, b) = (a.class.as_ref().unwrap(), b.class.as_ref().unwrap());
        assert_eq!(a.index, b.index);
        assert!((a.score - b.score).abs() < 1e-5);
    }
}
