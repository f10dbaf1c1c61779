//! The model registry: every folder under a models directory that holds a `model.toml`.

use std::path::{Path, PathBuf};

use super::manifest::{Manifest, MANIFEST_FILE};
use super::ModelError;

/// A model folder found on disk, before loading any weights.
#[derive(Debug)]
pub struct Entry {
    pub dir: PathBuf,
    pub manifest: Result<Manifest, String>,
    pub onnx_present: bool,
}

/// List model folders (sorted by name). A folder with a broken manifest is
/// listed with its error rather than hidden.
pub fn scan(models_dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(models_dir)? {
        let dir = entry?.path();
        if !dir.join(MANIFEST_FILE).is_file() {
            continue;
        }
        let manifest = Manifest::load(&dir).map_err(|e: ModelError| e.to_string());
        let onnx_present = manifest
            .as_ref()
            .map(|m| m.onnx_path(&dir).is_file())
            .unwrap_or(false);
        entries.push(Entry {
            dir,
            manifest,
            onnx_present,
        });
    }
    entries.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(entries)
}

/// Resolve `--model` as a folder path, or as a name under the models directory.
pub fn resolve(model: &str, models_dir: &Path) -> PathBuf {
    let direct = PathBuf::from(model);
    if direct.join(MANIFEST_FILE).is_file() || model.contains('/') {
        return direct;
    }
    models_dir.join(model)
}
