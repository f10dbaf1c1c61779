//! Shared helpers for the integration tests. The tests run on the real models
//! and data that `scripts/setup.sh` installs; a missing file is a setup error,
//! not a reason to skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use labelloop::model::{LoadOptions, Model};
use labelloop::runtime::SessionOptions;

pub mod audio;
pub mod detect;
pub mod server;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn model_dir(name: &str) -> PathBuf {
    root().join("models").join(name)
}

pub fn require(path: &Path) -> &Path {
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh first",
        path.display()
    );
    path
}

pub fn load(name: &str) -> Model {
    let dir = model_dir(name);
    require(&dir.join("model.onnx"));
    Model::load(
        &dir,
        LoadOptions {
            session: SessionOptions {
                intra_threads: 2,
                spinning: true,
            },
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// One loaded model per name for the whole test binary.
pub fn shared(name: &'static str) -> Arc<Model> {
    type Loaded = std::sync::Mutex<Vec<(&'static str, Arc<Model>)>>;
    static MODELS: OnceLock<Loaded> = OnceLock::new();
    let mut models = MODELS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, m)) = models.iter().find(|(n, _)| *n == name) {
        return m.clone();
    }
    let m = Arc::new(load(name));
    models.push((name, m.clone()));
    m
}

/// The first `n` Fashion-MNIST test images as inputs, with the class the
/// shared CNN gives each when run directly (no batcher): what a batching
/// path must give back, in the same order.
pub fn fashion_inputs_and_classes(
    n: usize,
) -> (Arc<Model>, Vec<labelloop::model::Input>, Vec<usize>) {
    let model = shared("fashion-mnist-cnn");
    let inputs: Vec<labelloop::model::Input> = fashion_mnist_test()[..n]
        .iter()
        .map(|(_, p, _)| labelloop::model::Input::Image(std::fs::read(p).unwrap()))
        .collect();
    let classes = model
        .predict(&inputs)
        .into_iter()
        .map(|r| r.unwrap().class.unwrap().index)
        .collect();
    (model, inputs, classes)
}

/// `(id, png path, true label)` for the 10,000 Fashion-MNIST test images.
pub fn fashion_mnist_test() -> Vec<(String, PathBuf, String)> {
    let dir = root().join("data/fashion-mnist");
    let index = std::fs::read_to_string(require(&dir.join("test.jsonl"))).unwrap();
    index
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                dir.join(v["image"].as_str().unwrap()),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
