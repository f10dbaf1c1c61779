//! The region model: one shape for what a model predicts and what a person
//! annotates, whatever the task.
//!
//! A classification names one label for the whole item; a detection draws
//! boxes; OCR (later) reads lines of text inside quadrilaterals; speech
//! cuts a recording into time spans ([`Span`]). All four are a list of
//! [`Region`]s: a [`Geometry`], a label, optionally a text, a score and an
//! uncertainty. A classification is a single [`Geometry::Whole`] region, so
//! the classify path keeps its meaning unchanged.
//!
//! # One canonical box, converters only at the edges
//! Inside labelloop a box is a [`BoxPx`]: corners `[x0, y0, x1, y1]` in
//! pixels of the original image with its EXIF orientation applied, as
//! `f64`, never rounded or truncated (truncating to integers is a known
//! cause of shifted boxes in other tools). The exchange formats are
//! converted at the edges by small pure function pairs, exact up to float
//! rounding (the property tests hold them to 1e-9 of the image side):
//! - Label Studio `rectanglelabels`: [`BoxPx::to_label_studio`] /
//!   [`BoxPx::from_label_studio`] (top-left and size in percent of
//!   `original_width` / `original_height`);
//! - COCO `[x, y, w, h]` in absolute pixels: [`BoxPx::to_coco`] /
//!   [`BoxPx::from_coco`];
//! - YOLO `[cx, cy, w, h]` normalised by the image size: [`BoxPx::to_yolo`] /
//!   [`BoxPx::from_yolo`].
//!
//! Pure: no ONNX, HTTP or SQL here, and no panics on bad input.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A box in absolute pixels of the original image (EXIF orientation
/// applied): `x0, y0` the top-left corner, `x1, y1` the bottom-right one,
/// `x0 < x1` and `y0 < y1` once [`BoxPx::check`]ed.
///
/// Floats, so that a box converted from percent or normalised coordinates
/// and back lands where it started. In JSON a box is the array
/// `[x0, y0, x1, y1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 4]", into = "[f64; 4]")]
pub struct BoxPx {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl From<[f64; 4]> for BoxPx {
    fn from([x0, y0, x1, y1]: [f64; 4]) -> Self {
        BoxPx { x0, y0, x1, y1 }
    }
}

impl From<BoxPx> for [f64; 4] {
    fn from(b: BoxPx) -> Self {
        [b.x0, b.y0, b.x1, b.y1]
    }
}

impl fmt::Display for BoxPx {
    /// `[x0, y0, x1, y1]`, as the box reads in JSON, so that an error
    /// message names the box the way the user sent it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.x0, self.y0, self.x1, self.y1)
    }
}

/// A Label Studio `rectanglelabels` value: top-left corner and size in
/// **percent** of the original image (`original_width`,
/// `original_height`), and the rotation in degrees around the top-left
/// corner. Field names are Label Studio's, so it (de)serializes as the
/// geometry part of a result's `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelStudioRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// Label Studio omits it for unrotated rectangles; 0 then.
    #[serde(default)]
    pub rotation: f64,
}

/// Why a box or an image size was refused. Each message names the box (as
/// `[x0, y0, x1, y1]`) and, where it matters, the image size, and says what
/// to do, so that the service can answer 422 with it as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegionError {
    #[error(
        "box {bbox} has a coordinate that is not a finite number: send [x0, y0, x1, y1] \
         as numbers, in pixels of the original image"
    )]
    NonFinite { bbox: BoxPx },
    #[error(
        "box {bbox} is empty or inverted (x1 <= x0 or y1 <= y0): send [x0, y0, x1, y1] with \
         the top-left corner first and the bottom-right corner second, in pixels"
    )]
    Inverted { bbox: BoxPx },
    #[error(
        "box {bbox} lies outside the {width} x {height} image: coordinates are pixels of the \
         original image (EXIF orientation applied), 0 <= x <= {width}, 0 <= y <= {height}; \
         clip the box to the image, and check it is not in percent or normalised units"
    )]
    OutsideImage {
        bbox: BoxPx,
        width: u32,
        height: u32,
    },
    #[error(
        "the image is {width} x {height} pixels: a box needs an image of at least 1 x 1 \
         (send the original image's width and height)"
    )]
    EmptyImage { width: u32, height: u32 },
    #[error(
        "Label Studio rectangle {rect:?} is rotated by {rotation} degrees: only unrotated \
         rectangles (rotation 0) can be read as boxes; straighten it in Label Studio"
    )]
    Rotated {
        rect: LabelStudioRect,
        rotation: f64,
    },
}

/// Float noise allowed past the image border by [`BoxPx::check`], as a
/// share of the image side: a box converted from percent or normalised
/// coordinates can land a few ulps outside an edge it was drawn on.
pub const EDGE_TOLERANCE: f64 = 1e-6;

impl BoxPx {
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        BoxPx { x0, y0, x1, y1 }
    }

    /// `x1 − x0`, or 0 for an inverted box (it covers nothing).
    pub fn width(&self) -> f64 {
        (self.x1 - self.x0).max(0.0)
    }

    /// `y1 − y0`, or 0 for an inverted box.
    pub fn height(&self) -> f64 {
        (self.y1 - self.y0).max(0.0)
    }

    pub fn area(&self) -> f64 {
        self.width() * self.height()
    }

    /// Intersection over union, in `[0, 1]`; 0 when the boxes do not
    /// overlap or both are empty (0/0 is taken as "no match", never NaN
    /// unless a coordinate is NaN).
    pub fn iou(&self, other: &BoxPx) -> f64 {
        let inter = BoxPx {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// The part of the box inside a `width` × `height` image (each
    /// coordinate clamped to the image). A box entirely outside becomes
    /// empty (zero width or height), which [`BoxPx::check`] then refuses.
    pub fn clip_to(&self, width: u32, height: u32) -> BoxPx {
        let (w, h) = (f64::from(width), f64::from(height));
        BoxPx {
            x0: self.x0.clamp(0.0, w),
            y0: self.y0.clamp(0.0, h),
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
        }
    }

    /// Checks a box that comes from a user (an annotation, an import)
    /// against its image: finite, non-empty (`x0 < x1`, `y0 < y1`) and
    /// inside `[0, width] × [0, height]`, with [`EDGE_TOLERANCE`] × side of
    /// slack for float noise. Refusing here, with the box named, is
    /// cheaper than a calibration silently computed on impossible boxes.
    pub fn check(&self, width: u32, height: u32) -> Result<(), RegionError> {
        check_image_size(width, height)?;
        let corners = [self.x0, self.y0, self.x1, self.y1];
        if corners.iter().any(|v| !v.is_finite()) {
            return Err(RegionError::NonFinite { bbox: *self });
        }
        if self.x1 <= self.x0 || self.y1 <= self.y0 {
            return Err(RegionError::Inverted { bbox: *self });
        }
        let inside = |lo: f64, hi: f64, side: u32| {
            let side = f64::from(side);
            let slack = EDGE_TOLERANCE * side;
            lo >= -slack && hi <= side + slack
        };
        if inside(self.x0, self.x1, width) && inside(self.y0, self.y1, height) {
            Ok(())
        } else {
            Err(RegionError::OutsideImage {
                bbox: *self,
                width,
                height,
            })
        }
    }

    /// COCO `[x, y, w, h]`: top-left corner and size, absolute pixels.
    pub fn to_coco(&self) -> [f64; 4] {
        [self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0]
    }

    /// From COCO `[x, y, w, h]`. Not checked: a negative size gives an
    /// inverted box that [`BoxPx::check`] refuses.
    pub fn from_coco([x, y, w, h]: [f64; 4]) -> BoxPx {
        BoxPx {
            x0: x,
            y0: y,
            x1: x + w,
            y1: y + h,
        }
    }

    /// YOLO `[cx, cy, w, h]`: centre and size divided by the image's width
    /// (x) and height (y).
    pub fn to_yolo(&self, width: u32, height: u32) -> Result<[f64; 4], RegionError> {
        check_image_size(width, height)?;
        let (w, h) = (f64::from(width), f64::from(height));
        Ok([
            (self.x0 + self.x1) / 2.0 / w,
            (self.y0 + self.y1) / 2.0 / h,
            (self.x1 - self.x0) / w,
            (self.y1 - self.y0) / h,
        ])
    }

    /// From YOLO `[cx, cy, w, h]` on a `width` × `height` image.
    pub fn from_yolo(
        [cx, cy, bw, bh]: [f64; 4],
        width: u32,
        height: u32,
    ) -> Result<BoxPx, RegionError> {
        check_image_size(width, height)?;
        let (w, h) = (f64::from(width), f64::from(height));
        Ok(BoxPx {
            x0: (cx - bw / 2.0) * w,
            y0: (cy - bh / 2.0) * h,
            x1: (cx + bw / 2.0) * w,
            y1: (cy + bh / 2.0) * h,
        })
    }

    /// Label Studio `rectanglelabels` geometry on an image of
    /// `original_width` × `original_height`: percent, top-left, rotation 0.
    pub fn to_label_studio(&self, width: u32, height: u32) -> Result<LabelStudioRect, RegionError> {
        check_image_size(width, height)?;
        let (w, h) = (f64::from(width), f64::from(height));
        Ok(LabelStudioRect {
            x: self.x0 / w * 100.0,
            y: self.y0 / h * 100.0,
            width: (self.x1 - self.x0) / w * 100.0,
            height: (self.y1 - self.y0) / h * 100.0,
            rotation: 0.0,
        })
    }

    /// From a Label Studio rectangle on an image of `original_width` ×
    /// `original_height`. A rotated rectangle is refused: it is not an
    /// axis-aligned box, and its bounding box would silently grow it.
    pub fn from_label_studio(
        rect: &LabelStudioRect,
        width: u32,
        height: u32,
    ) -> Result<BoxPx, RegionError> {
        check_image_size(width, height)?;
        // Label Studio writes 360 for a full turn as readily as 0.
        if rect.rotation.rem_euclid(360.0) != 0.0 {
            return Err(RegionError::Rotated {
                rect: *rect,
                rotation: rect.rotation,
            });
        }
        let (w, h) = (f64::from(width), f64::from(height));
        Ok(BoxPx {
            x0: rect.x * w / 100.0,
            y0: rect.y * h / 100.0,
            x1: (rect.x + rect.width) * w / 100.0,
            y1: (rect.y + rect.height) * h / 100.0,
        })
    }
}

/// Percent and normalised coordinates divide by the image size: a 0-pixel
/// side has no box.
fn check_image_size(width: u32, height: u32) -> Result<(), RegionError> {
    if width == 0 || height == 0 {
        Err(RegionError::EmptyImage { width, height })
    } else {
        Ok(())
    }
}

/// A stretch of a recording: `start` and `end` in seconds from its start,
/// `0 <= start < end <= duration` once [`Span::check`]ed. In JSON the array
/// `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

impl From<[f64; 2]> for Span {
    fn from([start, end]: [f64; 2]) -> Self {
        Span { start, end }
    }
}

impl From<Span> for [f64; 2] {
    fn from(s: Span) -> Self {
        [s.start, s.end]
    }
}

impl fmt::Display for Span {
    /// `[start, end]`, as the segment reads in JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// Why a segment was refused; each message names the segment and the
/// recording's length, so the service can answer 422 with it as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanError {
    #[error(
        "segment {span} has a time that is not a finite number: send [start, end] as numbers \
         of seconds from the recording's start"
    )]
    NonFinite { span: Span },
    #[error(
        "segment {span} is empty or inverted (end <= start): send [start, end] with the start \
         first, in seconds"
    )]
    Inverted { span: Span },
    #[error(
        "segment {span} lies outside the recording of {duration} s: times are seconds from its \
         start, 0 <= start < end <= {duration}; check they are not milliseconds or samples"
    )]
    OutsideRecording { span: Span, duration: f64 },
}

/// Slack allowed past a recording's end by [`Span::check`], in seconds: a
/// millisecond, for an end a client rounded to three decimals (a
/// millisecond is 8 samples at 8 kHz).
pub const END_TOLERANCE: f64 = 1e-3;

impl Span {
    pub fn new(start: f64, end: f64) -> Self {
        Span { start, end }
    }

    /// `end − start`, or 0 for an inverted span.
    pub fn length(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }

    /// The span as a box of unit height, `[start, 0, end, 1]`. Two such
    /// boxes have exactly the spans' IoU (their intersection and union are
    /// the spans' times one), so the box matching, calibration and
    /// simulation serve segments unchanged: one code path, not a copy per
    /// geometry.
    pub fn as_box(&self) -> BoxPx {
        BoxPx::new(self.start, 0.0, self.end, 1.0)
    }

    /// Intersection over union of two spans, in `[0, 1]`; 0 when they do
    /// not overlap.
    pub fn iou(&self, other: &Span) -> f64 {
        let inter = (self.end.min(other.end) - self.start.max(other.start)).max(0.0);
        let union = self.length() + other.length() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Checks a segment that comes from a user against its recording of
    /// `duration` seconds: finite, `start < end`, `0 <= start` and `end <=
    /// duration` (with [`END_TOLERANCE`] of slack).
    pub fn check(&self, duration: f64) -> Result<(), SpanError> {
        if !self.start.is_finite() || !self.end.is_finite() {
            return Err(SpanError::NonFinite { span: *self });
        }
        if self.end <= self.start {
            return Err(SpanError::Inverted { span: *self });
        }
        if self.start < 0.0 || self.end > duration + END_TOLERANCE {
            return Err(SpanError::OutsideRecording {
                span: *self,
                duration,
            });
        }
        Ok(())
    }
}

/// Where a region is. Externally tagged, so alone it reads `"whole"` or
/// `{"box": [x0, y0, x1, y1]}`; inside a [`Region`] it is flattened (no key
/// for a whole-item region, `"box": [...]` for a box).
///
/// A speech segment is `{"segment": [start, end]}` in seconds. Room is left
/// for OCR as a further variant (its own JSON key, so old readers refuse it
/// instead of misreading it): `Quad([[f64; 2]; 4])`, a text line's
/// quadrilateral in pixels (clockwise from the top-left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Geometry {
    /// The whole item: a classification.
    Whole,
    /// An axis-aligned box in pixels of the original image.
    Box(BoxPx),
    /// A stretch of a recording, in seconds.
    #[serde(rename = "segment")]
    Span(Span),
}

/// One prediction or annotation: where ([`Geometry`]), what (`label`, and
/// later a `text` for OCR), how sure the model is (`score`) and how useful a
/// person's look would be (`uncertainty`).
///
/// JSON: `{"label": "table", "score": 0.93, "box": [x0, y0, x1, y1]}`;
/// a speech segment has `"segment": [start, end]` instead of `"box"`;
/// a whole-item region has neither; `text`, `score` and `uncertainty`
/// are left out when absent. Unknown keys are refused, so that a region of
/// a kind this version cannot read (a `"quad"`, a `"span"`) is not taken
/// for a whole-item one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RegionJson", into = "RegionJson")]
pub struct Region {
    pub geometry: Geometry,
    pub label: String,
    pub text: Option<String>,
    pub score: Option<f32>,
    pub uncertainty: Option<f32>,
}

impl Region {
    /// A whole-item region: what a classification is.
    pub fn whole(label: impl Into<String>, score: Option<f32>) -> Region {
        Region {
            geometry: Geometry::Whole,
            label: label.into(),
            text: None,
            score,
            uncertainty: None,
        }
    }

    /// A labelled box.
    pub fn boxed(bbox: BoxPx, label: impl Into<String>, score: Option<f32>) -> Region {
        Region {
            geometry: Geometry::Box(bbox),
            ..Region::whole(label, score)
        }
    }

    /// A labelled stretch of a recording.
    pub fn span(span: Span, label: impl Into<String>, score: Option<f32>) -> Region {
        Region {
            geometry: Geometry::Span(span),
            ..Region::whole(label, score)
        }
    }
}

/// The wire form of a [`Region`]: the geometry's key sits beside the
/// label instead of nesting, which reads naturally and matches the
/// `labelloop label` output.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionJson {
    label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncertainty: Option<f32>,
    #[serde(default, rename = "box", skip_serializing_if = "Option::is_none")]
    bbox: Option<BoxPx>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment: Option<Span>,
}

impl TryFrom<RegionJson> for Region {
    type Error = &'static str;

    fn try_from(r: RegionJson) -> Result<Self, Self::Error> {
        let geometry = match (r.bbox, r.segment) {
            (None, None) => Geometry::Whole,
            (Some(b), None) => Geometry::Box(b),
            (None, Some(s)) => Geometry::Span(s),
            (Some(_), Some(_)) => return Err("a region is a `box` or a `segment`, not both"),
        };
        Ok(Region {
            geometry,
            label: r.label,
            text: r.text,
            score: r.score,
            uncertainty: r.uncertainty,
        })
    }
}

impl From<Region> for RegionJson {
    fn from(r: Region) -> Self {
        let (bbox, segment) = match r.geometry {
            Geometry::Whole => (None, None),
            Geometry::Box(b) => (Some(b), None),
            Geometry::Span(s) => (None, Some(s)),
        };
        RegionJson {
            label: r.label,
            text: r.text,
            score: r.score,
            uncertainty: r.uncertainty,
            bbox,
            segment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `a` equals `b` within 1e-9 of the image side (`side`): the unit in
    /// which a box's position is meaningful. Relative to the coordinate
    /// itself would fail near 0 on rounding that is far below a pixel.
    fn close(a: f64, b: f64, side: u32) -> bool {
        (a - b).abs() <= 1e-9 * f64::from(side)
    }

    fn close_box(a: &BoxPx, b: &BoxPx, w: u32, h: u32) -> bool {
        close(a.x0, b.x0, w) && close(a.x1, b.x1, w) && close(a.y0, b.y0, h) && close(a.y1, b.y1, h)
    }

    /// An image size and a box inside it (corners anywhere in the image,
    /// at least a 1e-6 of a side apart).
    fn image_and_box() -> impl Strategy<Value = (u32, u32, BoxPx)> {
        (1u32..20_000, 1u32..20_000).prop_flat_map(|(w, h)| {
            let (wf, hf) = (f64::from(w), f64::from(h));
            (0.0..1.0f64, 0.0..1.0f64, 0.0..1.0f64, 0.0..1.0f64).prop_map(move |(a, b, c, d)| {
                let (x0, x1) = (
                    a.min(b) * wf,
                    (a.max(b) * wf).max(a.min(b) * wf + 1e-6 * wf),
                );
                let (y0, y1) = (
                    c.min(d) * hf,
                    (c.max(d) * hf).max(c.min(d) * hf + 1e-6 * hf),
                );
                (w, h, BoxPx::new(x0, y0, x1.min(wf), y1.min(hf)))
            })
        })
    }

    /// An image size and a Label Studio rectangle inside it.
    fn image_and_rect() -> impl Strategy<Value = (u32, u32, LabelStudioRect)> {
        (
            1u32..20_000,
            1u32..20_000,
            0.0..100.0f64,
            0.0..100.0f64,
            0.0..1.0f64,
            0.0..1.0f64,
        )
            .prop_map(|(w, h, x, y, fw, fh)| {
                let rect = LabelStudioRect {
                    x,
                    y,
                    width: (100.0 - x) * fw,
                    height: (100.0 - y) * fh,
                    rotation: 0.0,
                };
                (w, h, rect)
            })
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024),
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn pixel_label_studio_pixel((w, h, b) in image_and_box()) {
            let back = BoxPx::from_label_studio(&b.to_label_studio(w, h).unwrap(), w, h).unwrap();
            prop_assert!(close_box(&back, &b, w, h), "{b} -> {back} on {w} x {h}");
        }

        #[test]
        fn pixel_coco_pixel((w, h, b) in image_and_box()) {
            let back = BoxPx::from_coco(b.to_coco());
            prop_assert!(close_box(&back, &b, w, h), "{b} -> {back} on {w} x {h}");
        }

        #[test]
        fn pixel_yolo_pixel((w, h, b) in image_and_box()) {
            let back = BoxPx::from_yolo(b.to_yolo(w, h).unwrap(), w, h).unwrap();
            prop_assert!(close_box(&back, &b, w, h), "{b} -> {back} on {w} x {h}");
        }

        #[test]
        fn label_studio_coco_yolo_pixel((w, h, rect) in image_and_rect()) {
            let direct = BoxPx::from_label_studio(&rect, w, h).unwrap();
            let coco = direct.to_coco();
            let yolo = BoxPx::from_coco(coco).to_yolo(w, h).unwrap();
            let back = BoxPx::from_yolo(yolo, w, h).unwrap();
            prop_assert!(close_box(&back, &direct, w, h), "{rect:?} -> {back} vs {direct}");
            let rect_back = back.to_label_studio(w, h).unwrap();
            for (a, b) in [(rect_back.x, rect.x), (rect_back.y, rect.y),
                           (rect_back.width, rect.width), (rect_back.height, rect.height)] {
                prop_assert!((a - b).abs() <= 1e-9 * 100.0, "{rect:?} -> {rect_back:?}");
            }
        }

        #[test]
        fn boxes_inside_pass_check((w, h, b) in image_and_box()) {
            prop_assert_eq!(b.check(w, h), Ok(()));
            let through_ls = BoxPx::from_label_studio(&b.to_label_studio(w, h).unwrap(), w, h).unwrap();
            prop_assert_eq!(through_ls.check(w, h), Ok(()));
        }
    }

    #[test]
    fn measures() {
        let a = BoxPx::new(0.0, 0.0, 10.0, 10.0);
        let b = BoxPx::new(5.0, 0.0, 15.0, 10.0);
        assert_eq!((a.width(), a.height(), a.area()), (10.0, 10.0, 100.0));
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-15);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BoxPx::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let empty = BoxPx::new(3.0, 3.0, 3.0, 3.0);
        assert_eq!(empty.iou(&empty), 0.0);
        assert_eq!(BoxPx::new(5.0, 5.0, 1.0, 1.0).area(), 0.0);
    }

    #[test]
    fn clip_keeps_the_part_inside() {
        let b = BoxPx::new(-5.5, 10.0, 700.25, 490.0).clip_to(640, 480);
        assert_eq!(b, BoxPx::new(0.0, 10.0, 640.0, 480.0));
        assert_eq!(b.check(640, 480), Ok(()));
        let outside = BoxPx::new(700.0, 10.0, 800.0, 20.0).clip_to(640, 480);
        assert!(matches!(
            outside.check(640, 480),
            Err(RegionError::Inverted { .. })
        ));
    }

    #[test]
    fn check_refuses_bad_boxes_and_names_them() {
        let cases = [
            (BoxPx::new(f64::NAN, 0.0, 1.0, 1.0), "not a finite number"),
            (
                BoxPx::new(0.0, 0.0, f64::INFINITY, 1.0),
                "not a finite number",
            ),
            (BoxPx::new(10.0, 0.0, 5.0, 1.0), "x1 <= x0"),
            (BoxPx::new(0.0, 3.0, 5.0, 3.0), "x1 <= x0 or y1 <= y0"),
            (
                BoxPx::new(-1.0, 0.0, 5.0, 5.0),
                "outside the 640 x 480 image",
            ),
            (
                BoxPx::new(0.0, 0.0, 5.0, 480.01),
                "outside the 640 x 480 image",
            ),
        ];
        for (b, says) in cases {
            let message = b.check(640, 480).unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
            assert!(message.contains(&b.to_string()), "{message}");
        }
        let empty = BoxPx::new(0.0, 0.0, 1.0, 1.0).check(0, 480).unwrap_err();
        assert!(empty.to_string().contains("0 x 480"), "{empty}");
    }

    #[test]
    fn check_forgives_float_noise_at_the_edges() {
        let b = BoxPx::new(-1e-7 * 640.0, 0.0, 640.0 * (1.0 + 1e-7), 480.0);
        assert_eq!(b.check(640, 480), Ok(()));
        let past = BoxPx::new(0.0, 0.0, 640.0 * (1.0 + 1e-5), 480.0);
        assert!(past.check(640, 480).is_err());
    }

    #[test]
    fn label_studio_rotation_is_refused_unless_a_full_turn() {
        let mut rect = LabelStudioRect {
            x: 10.0,
            y: 20.0,
            width: 30.0,
            height: 40.0,
            rotation: 15.0,
        };
        let err = BoxPx::from_label_studio(&rect, 200, 100).unwrap_err();
        assert!(err.to_string().contains("rotated by 15 degrees"), "{err}");
        rect.rotation = 360.0;
        let b = BoxPx::from_label_studio(&rect, 200, 100).unwrap();
        assert_eq!(b, BoxPx::new(20.0, 20.0, 80.0, 60.0));
    }

    #[test]
    fn label_studio_value_without_rotation_reads() {
        let rect: LabelStudioRect =
            serde_json::from_str(r#"{"x": 50, "y": 25, "width": 10, "height": 50}"#).unwrap();
        let b = BoxPx::from_label_studio(&rect, 640, 480).unwrap();
        assert_eq!(b, BoxPx::new(320.0, 120.0, 384.0, 360.0));
    }

    #[test]
    fn zero_sized_images_are_refused_by_converters() {
        let b = BoxPx::new(0.0, 0.0, 1.0, 1.0);
        assert!(b.to_yolo(0, 10).is_err());
        assert!(b.to_label_studio(10, 0).is_err());
        assert!(BoxPx::from_yolo([0.5; 4], 0, 0).is_err());
    }

    #[test]
    fn coco_and_yolo_by_hand() {
        let b = BoxPx::new(100.0, 50.0, 300.0, 150.0);
        assert_eq!(b.to_coco(), [100.0, 50.0, 200.0, 100.0]);
        assert_eq!(b.to_yolo(400, 200).unwrap(), [0.5, 0.5, 0.5, 0.5]);
        let ls = b.to_label_studio(400, 200).unwrap();
        assert_eq!((ls.x, ls.y, ls.width, ls.height), (25.0, 25.0, 50.0, 50.0));
    }

    #[test]
    fn region_json_reads_naturally() {
        let boxed = Region::boxed(BoxPx::new(1.5, 2.0, 30.0, 40.25), "table", Some(0.93));
        let json = serde_json::to_string(&boxed).unwrap();
        assert_eq!(
            json,
            r#"{"label":"table","score":0.93,"box":[1.5,2.0,30.0,40.25]}"#
        );
        assert_eq!(serde_json::from_str::<Region>(&json).unwrap(), boxed);

        let whole = Region::whole("cat", None);
        let json = serde_json::to_string(&whole).unwrap();
        assert_eq!(json, r#"{"label":"cat"}"#);
        assert_eq!(serde_json::from_str::<Region>(&json).unwrap(), whole);

        let full = Region {
            text: Some("Total".into()),
            uncertainty: Some(0.25),
            ..boxed
        };
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Region>(&json).unwrap(), full);
    }

    #[test]
    fn region_json_refuses_what_it_cannot_read() {
        for bad in [
            r#"{"label":"x","quad":[[0,0],[1,0],[1,1],[0,1]]}"#,
            r#"{"label":"x","box":[1,2,3]}"#,
            r#"{"label":"x","box":[1,2,3,"4"]}"#,
            r#"{"score":0.5,"box":[1,2,3,4]}"#,
        ] {
            assert!(serde_json::from_str::<Region>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_read_and_check() {
        let seg = Region::span(Span::new(1.25, 3.5), "Speech", Some(0.9));
        let json = serde_json::to_string(&seg).unwrap();
        assert_eq!(
            json,
            r#"{"label":"Speech","score":0.9,"segment":[1.25,3.5]}"#
        );
        assert_eq!(serde_json::from_str::<Region>(&json).unwrap(), seg);
        assert!(
            serde_json::from_str::<Region>(r#"{"label":"x","box":[0,0,1,1],"segment":[0,1]}"#)
                .is_err()
        );
        assert_eq!(
            serde_json::to_string(&Geometry::Span(Span::new(0.0, 1.5))).unwrap(),
            r#"{"segment":[0.0,1.5]}"#
        );
        assert_eq!(Span::new(0.5, 2.0).check(2.0), Ok(()));
        for (s, says) in [
            (Span::new(f64::NAN, 1.0), "not a finite number"),
            (Span::new(2.0, 1.0), "end <= start"),
            (Span::new(1.0, 1.0), "end <= start"),
            (Span::new(-0.5, 1.0), "outside the recording of 2 s"),
            (Span::new(0.0, 2.5), "outside the recording of 2 s"),
        ] {
            let message = s.check(2.0).unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
            assert!(message.contains(&s.to_string()), "{message}");
        }
        assert!((Span::new(0.0, 2.0).iou(&Span::new(1.0, 3.0)) - 1.0 / 3.0).abs() < 1e-15);
        for (a, b) in [
            ((0.0, 2.0), (1.0, 3.0)),
            ((0.3, 0.9), (0.1, 5.0)),
            ((0.0, 1.0), (2.0, 3.0)),
        ] {
            let (a, b) = (Span::new(a.0, a.1), Span::new(b.0, b.1));
            assert!((a.as_box().iou(&b.as_box()) - a.iou(&b)).abs() < 1e-12);
        }
        assert_eq!(Span::new(0.0, 1.0).iou(&Span::new(2.0, 3.0)), 0.0);
    }

    #[test]
    fn geometry_alone_is_tagged() {
        assert_eq!(
            serde_json::to_string(&Geometry::Whole).unwrap(),
            r#""whole""#
        );
        let g = Geometry::Box(BoxPx::new(0.0, 1.0, 2.0, 3.0));
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"box":[0.0,1.0,2.0,3.0]}"#
        );
        assert_eq!(
            serde_json::from_str::<Geometry>(r#"{"box":[0,1,2,3]}"#).unwrap(),
            g
        );
    }
}
