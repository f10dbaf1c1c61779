//! `models/<name>/model.toml`: what a model folder declares about itself.
//!
//! The manifest is the contract that lets users bring a model without code.
//! [`crate::model::graph`] checks it against the ONNX graph at load time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ModelError;

/// File name of the manifest inside a model folder.
pub const MANIFEST_FILE: &str = "model.toml";
/// Default ONNX file name inside a model folder.
pub const DEFAULT_ONNX_FILE: &str = "model.onnx";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
    /// Path of the ONNX file, relative to the model folder.
    #[serde(default = "default_onnx")]
    pub onnx: PathBuf,
    /// Class names, in output order. Empty for a pure embedding model.
    #[serde(default)]
    pub labels: Vec<String>,
    pub input: InputSpec,
    pub outputs: Vec<OutputSpec>,
}

fn default_onnx() -> PathBuf {
    PathBuf::from(DEFAULT_ONNX_FILE)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    ImageClassification,
    TextClassification,
    TextEmbedding,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::ImageClassification => "image-classification",
            Task::TextClassification => "text-classification",
            Task::TextEmbedding => "text-embedding",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputSpec {
    Image(ImageInput),
    Text(TextInput),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorType {
    Float32,
    Float16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    #[serde(alias = "nchw")]
    NCHW,
    #[serde(alias = "nhwc")]
    NHWC,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    Nearest,
    #[serde(alias = "bilinear")]
    Triangle,
    Hamming,
    CatmullRom,
    Mitchell,
    Gaussian,
    Lanczos3,
    /// Lanczos with an 8-tap window, OpenCV's `INTER_LANCZOS4`.
    Lanczos4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Stretch to exactly width × height.
    Stretch,
    /// Scale the shorter side to `resize_short`, then cut the centre
    /// width × height (the ImageNet evaluation recipe).
    ShortSideCenterCrop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelOrder {
    RGB,
    BGR,
}

/// What to do when an image's channel count differs from the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelPolicy {
    /// Convert (RGB to grey by luminance, grey to RGB by repetition, drop alpha).
    Convert,
    /// Refuse the item with a clear error.
    Strict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    pub name: String,
    #[serde(default = "default_dtype")]
    pub dtype: TensorType,
    pub width: u32,
    pub height: u32,
    /// 1 (grey) or 3 (colour).
    pub channels: u32,
    #[serde(default = "default_layout")]
    pub layout: Layout,
    #[serde(default = "default_filter")]
    pub resize_filter: ResizeFilter,
    /// Widen the filter by the shrink factor when downscaling (PIL's and
    /// `image`'s behaviour). `false` keeps the kernel at its nominal size, as
    /// OpenCV's `cv2.resize` does; models trained on OpenCV pipelines expect
    /// that, and it is cheaper: a 620-pixel side shrunk to 256 reads 9 source
    /// pixels per output pixel instead of 17.
    #[serde(default = "default_true")]
    pub resize_antialias: bool,
    #[serde(default = "default_resize_mode")]
    pub resize_mode: ResizeMode,
    /// Shorter side before the centre crop (`short-side-center-crop` only).
    #[serde(default)]
    pub resize_short: Option<u32>,
    #[serde(default = "default_order")]
    pub channel_order: ChannelOrder,
    #[serde(default = "default_channel_policy")]
    pub channel_policy: ChannelPolicy,
    /// value = (pixel * scale - mean[c]) / std[c]
    #[serde(default = "default_scale")]
    pub scale: f32,
    #[serde(default)]
    pub mean: Vec<f32>,
    #[serde(default)]
    pub std: Vec<f32>,
}

fn default_dtype() -> TensorType {
    TensorType::Float32
}
fn default_layout() -> Layout {
    Layout::NCHW
}
fn default_filter() -> ResizeFilter {
    ResizeFilter::Triangle
}
fn default_true() -> bool {
    true
}
fn default_resize_mode() -> ResizeMode {
    ResizeMode::Stretch
}
fn default_order() -> ChannelOrder {
    ChannelOrder::RGB
}
fn default_channel_policy() -> ChannelPolicy {
    ChannelPolicy::Convert
}
fn default_scale() -> f32 {
    1.0 / 255.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    /// Path of `tokenizer.json`, relative to the model folder.
    pub tokenizer: PathBuf,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default = "default_input_ids")]
    pub input_ids: String,
    #[serde(default = "default_attention_mask")]
    pub attention_mask: Option<String>,
    #[serde(default)]
    pub token_type_ids: Option<String>,
}

fn default_max_length() -> usize {
    256
}
fn default_input_ids() -> String {
    "input_ids".into()
}
fn default_attention_mask() -> Option<String> {
    Some("attention_mask".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// Raw scores; `activation` turns them into probabilities.
    Logits,
    /// Already a distribution over `labels`.
    Probabilities,
    /// A vector per item (or per token, with `pooling`).
    Embedding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Softmax,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The output is already one vector per item.
    None,
    /// Mean over tokens, weighted by the attention mask.
    Mean,
    /// The first token.
    Cls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
    #[serde(default)]
    pub activation: Option<Activation>,
    #[serde(default)]
    pub pooling: Option<Pooling>,
    #[serde(default)]
    pub normalize: bool,
}

impl Manifest {
    /// Read and check `dir/model.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        if !dir.is_dir() {
            return Err(ModelError::NotAModel {
                dir: dir.to_path_buf(),
                why: "no such folder".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::NotAModel {
            dir: dir.to_path_buf(),
            why: format!("cannot read {}: {e}", path.display()),
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        manifest
            .check()
            .map_err(|message| ModelError::Manifest { path, message })?;
        Ok(manifest)
    }

    /// Consistency rules that need no graph.
    fn check(&self) -> Result<(), String> {
        if self.outputs.is_empty() {
            return Err("declare at least one [[outputs]]".into());
        }
        let classifiers = self
            .outputs
            .iter()
            .filter(|o| o.kind != OutputKind::Embedding)
            .count();
        let embeddings = self.outputs.len() - classifiers;
        if classifiers > 1 || embeddings > 1 {
            return Err(
                "declare at most one class output (logits/probabilities) and one embedding output"
                    .into(),
            );
        }
        match self.task {
            Task::ImageClassification | Task::TextClassification => {
                if classifiers == 0 {
                    return Err(format!(
                        "task {} needs an output of kind \"logits\" or \"probabilities\"",
                        self.task.as_str()
                    ));
                }
                if self.labels.len() < 2 {
                    return Err("a classifier needs at least two labels".into());
                }
            }
            Task::TextEmbedding => {
                if embeddings == 0 {
                    return Err("task text-embedding needs an output of kind \"embedding\"".into());
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for label in &self.labels {
            if !seen.insert(label) {
                return Err(format!("label {label:?} appears twice"));
            }
        }
        match (&self.task, &self.input) {
            (Task::ImageClassification, InputSpec::Image(img)) => img.check()?,
            (Task::TextClassification | Task::TextEmbedding, InputSpec::Text(t)) => {
                if t.max_length == 0 {
                    return Err("max_length must be positive".into());
                }
            }
            (task, _) => {
                return Err(format!(
                    "task {} does not take this [input] kind",
                    task.as_str()
                ))
            }
        }
        for out in &self.outputs {
            if out.kind == OutputKind::Logits && out.activation.is_none() {
                return Err(format!(
                    "output {:?} is logits: set activation = \"softmax\" or \"sigmoid\"",
                    out.name
                ));
            }
        }
        Ok(())
    }

    pub fn onnx_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.onnx)
    }
}

impl ImageInput {
    fn check(&self) -> Result<(), String> {
        if self.channels != 1 && self.channels != 3 {
            return Err(format!("channels must be 1 or 3, not {}", self.channels));
        }
        if self.width == 0 || self.height == 0 {
            return Err("width and height must be positive".into());
        }
        let c = self.channels as usize;
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if !v.is_empty() && v.len() != 1 && v.len() != c {
                return Err(format!(
                    "{what} has {} values; give 1 or {c} (one per channel)",
                    v.len()
                ));
            }
        }
        if self.std.contains(&0.0) {
            return Err("std must not contain 0".into());
        }
        if self.resize_mode == ResizeMode::ShortSideCenterCrop {
            match self.resize_short {
                Some(s) if s >= self.width.min(self.height) => {}
                _ => {
                    return Err(
                        "resize_mode short-side-center-crop needs resize_short >= width and height"
                            .into(),
                    )
                }
            }
        }
        Ok(())
    }

    /// Per-channel (mean, std), broadcasting a single value.
    pub fn channel_norm(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32], default: f32| match v.len() {
            0 => default,
            1 => v[0],
            _ => v[c],
        };
        (pick(&self.mean, 0.0), pick(&self.std, 1.0))
    }
}
