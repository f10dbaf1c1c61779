//! Criterion benches for the engine: preprocessing alone, and end-to-end
//! batch labeling (stage + pack + ONNX Runtime + post-processing).
//! Needs `scripts/setup.sh` to have run. `cargo bench --bench engine`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use labelloop::model::{Input, LoadOptions, Model, Staged};
use labelloop::runtime::SessionOptions;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Model {
    Model::load(
        &root().join("models").join(name),
        LoadOptions {
            session: SessionOptions {
                intra_threads: 2,
                spinning: true,
            },
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"))
}

fn fashion_pngs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let p: PathBuf = root().join(format!("data/fashion-mnist/test/{i:05}.png"));
            std::fs::read(&p)
                .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", p.display()))
        })
        .collect()
}

fn page_png() -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures/documents/page-1.png")).unwrap()
}

const SENTENCES: &[&str] = &[
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
    "Ok lar... Joking wif u oni...",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today.",
    "WINNER!! As a valued network customer you have been selected to receive a £900 prize reward!",
    "Nah I don't think he goes to usf, he lives around here though",
    "Even my brother is not like to speak with me. They treat me like aids patent.",
    "As per your request 'Melle Melle (Oru Minnaminunginte Nurungu Vettam)' has been set as your callertune for all Callers.",
    "Had your mobile 11 months or more? U R entitled to Update to the latest colour mobiles with camera for Free!",
];

fn preprocessing(c: &mut Criterion) {
    let mut g = c.benchmark_group("preprocess");
    let fashion = load("fashion-mnist-cnn");
    let pngs = fashion_pngs(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("fashion_png_stage_x64", |b| {
        b.iter(|| {
            for p in &pngs {
                std::hint::black_box(fashion.stage(&Input::Image(p.clone())).unwrap());
            }
        })
    });
    let staged: Vec<Staged> = pngs
        .iter()
        .map(|p| fashion.stage(&Input::Image(p.clone())).unwrap())
        .collect();
    let refs: Vec<&Staged> = staged.iter().collect();
    g.bench_function("fashion_pack_x64", |b| {
        b.iter(|| std::hint::black_box(fashion.pack(&refs)))
    });

    let orientation = load("orientation");
    let page = page_png();
    g.throughput(Throughput::Elements(1));
    g.bench_function("page_620x820_decode_resize_crop", |b| {
        b.iter(|| std::hint::black_box(orientation.stage(&Input::Image(page.clone())).unwrap()))
    });

    let minilm = load("minilm-l6");
    g.throughput(Throughput::Elements(SENTENCES.len() as u64));
    g.bench_function("tokenize_sms_x8", |b| {
        b.iter(|| {
            for s in SENTENCES {
                std::hint::black_box(minilm.stage(&Input::Text((*s).to_string())).unwrap());
            }
        })
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("label_batch");
    g.sample_size(20);
    let fashion = load("fashion-mnist-cnn");
    for batch in [1usize, 64] {
        let inputs: Vec<Input> = fashion_pngs(batch).into_iter().map(Input::Image).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(
            BenchmarkId::new("fashion_mnist_cnn", batch),
            &inputs,
            |b, inputs| b.iter(|| std::hint::black_box(fashion.predict(inputs))),
        );
    }
    let orientation = load("orientation");
    let inputs: Vec<Input> = (0..8).map(|_| Input::Image(page_png())).collect();
    g.throughput(Throughput::Elements(8));
    g.bench_function("orientation_x8", |b| {
        b.iter(|| std::hint::black_box(orientation.predict(&inputs)))
    });

    let minilm = load("minilm-l6");
    let inputs: Vec<Input> = SENTENCES
        .iter()
        .cycle()
        .take(32)
        .map(|s| Input::Text((*s).to_string()))
        .collect();
    g.throughput(Throughput::Elements(32));
    g.bench_function("minilm_x32", |b| {
        b.iter(|| std::hint::black_box(minilm.predict(&inputs)))
    });
    g.finish();
}

criterion_group!(benches, preprocessing, end_to_end);
criterion_main!(benches);
