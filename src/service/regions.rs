//! Regions: the use cases of detection and speech projects, written once
//! for every adapter (issues 22 and 24). Turning a detection or a
//! recording's speech segments into routed machine regions, reading an
//! item's regions, and recording a reviewer's full set of boxes or segments.
//!
//! The routing rules are [`route_boxes`] and [`route_segments`]; the review
//! rule (which machine region a reviewer kept, moved, relabeled or deleted)
//! is [`plan`]. All are pure; the store applies a plan in one transaction.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use super::review::Annotator;
use crate::model::Prediction;
use crate::region::{BoxPx, Geometry, Span};
use crate::select::Uncertainty;
use crate::store::{
    HumanRegion, ItemRecord, MachineBox, MachineRegions, MachineSegments, MachineSpan, Outcome,
    Project, RegionItem, RegionRecord, RegionReview, StoredPrediction,
};

/// The task of a project whose model detects objects.
pub const DETECT: &str = "detect";
/// The task of a project whose model (or head) classifies whole items.
pub const CLASSIFY: &str = "classify";
/// The task of a project whose model cuts recordings into speech segments.
pub const SEGMENTS: &str = "segments";
/// The task of a project whose model reads pages into text lines (OCR).
pub const LINES: &str = "lines";

/// Whether a project of `task` keeps its labels as regions (boxes,
/// segments or text lines) rather than one whole-item label.
pub fn has_regions(task: &str) -> bool {
    task == DETECT || task == SEGMENTS || task == LINES
}

/// Longest text a reviewer may give one line, in characters.
pub const MAX_LINE_TEXT: usize = 10_000;

/// A frame the model could not decide on: speech probability in this range.
pub const UNDECIDED: (f32, f32) = (0.3, 0.7);

/// A recording goes to review when the model stayed undecided
/// ([`UNDECIDED`]) for this long without a break: about 16 frames of 32 ms,
/// longer than the passage through the band at a segment's edges (2 or 3
/// frames) and than the shortest speech segment (250 ms).
pub const UNDECIDED_STRETCH_SECONDS: f64 = 0.5;

/// Most boxes a reviewer may send for one image.
pub const MAX_REGIONS: usize = 10_000;

/// How many times a review is planned again when another review of the
/// same item landed in between.
const REVIEW_ATTEMPTS: usize = 8;

/// Per-class score thresholds for auto-accepting boxes, and the
/// calibration they come from ([`super::box_calibration::thresholds`]).
/// Empty before a project's first box calibration: then no class is
/// calibrated and every box goes to review.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoxThresholds {
    pub per_class: HashMap<String, f64>,
    pub calibration_version: Option<i64>,
}

/// How one image's boxes are routed: which boxes are auto-accepted, and
/// whether the image goes to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// Per box, in order: auto-accepted or left for review.
    pub accepted: Vec<bool>,
    /// True when a person must look at the image.
    pub needs_review: bool,
}

/// How useful a person's look at one region would be: the margin of its
/// score against its complement, as for a two-class item (0 = certain).
fn region_uncertainty(score: f32) -> f64 {
    f64::from(Uncertainty::from_distribution(&[score, 1.0 - score]).margin)
}

/// **The routing rule for boxes.** A box is auto-accepted when its class
/// has a calibrated threshold and its score is at least that threshold;
/// otherwise it is left for review. The image goes to review when any box
/// is left for review, and also when it has **no box at all**: the model
/// proposing nothing is not evidence that nothing is there, so a person
/// confirms it (a miss is the error a reviewer cannot see otherwise).
///
/// `boxes` are `(class, score)`; `thresholds` are per class. Until box
/// calibration fills `thresholds`, every image goes to review with its
/// machine boxes drawn.
pub fn route_boxes(boxes: &[(&str, f64)], thresholds: &BoxThresholds) -> Routed {
    let accepted: Vec<bool> = boxes
        .iter()
        .map(|(class, score)| {
            thresholds
                .per_class
                .get(*class)
                .is_some_and(|t| score.is_finite() && *score >= *t)
        })
        .collect();
    let needs_review = accepted.is_empty() || accepted.iter().any(|a| !a);
    Routed {
        accepted,
        needs_review,
    }
}

/// What the store records for a detection model's answer on one item: its
/// boxes as machine regions routed by [`route_boxes`], the image size, and
/// the image's uncertainty ([`Uncertainty::of_boxes`]: its most uncertain
/// box, the boxes left for review, its total score entropy; an image with
/// no box counts as fully uncertain) so the review strategies rank
/// detection items too. No whole-item label is set.
///
/// `audit` is the image's audit draw `(drawn, probability)`: an audit image
/// waits for a person with every box left for review, whatever the
/// thresholds say, so that its review is a full annotation.
pub fn detection_outcome(
    pred: &Prediction,
    model_labels: &[String],
    model_version: &str,
    thresholds: &BoxThresholds,
    audit: (bool, f64),
) -> Outcome {
    let Some(d) = &pred.detections else {
        return Outcome::Failed("the detection model gave no boxes for this item".into());
    };
    let mut boxes = Vec::with_capacity(d.boxes.len());
    for b in &d.boxes {
        let Some(label) = model_labels.get(b.class) else {
            return Outcome::Failed(format!(
                "the model proposed class {} and has {} labels",
                b.class,
                model_labels.len()
            ));
        };
        boxes.push((label.as_str(), f64::from(b.score), b));
    }
    let pairs: Vec<(&str, f64)> = boxes.iter().map(|(l, s, _)| (*l, *s)).collect();
    let mut routed = route_boxes(&pairs, thresholds);
    if audit.0 {
        routed.accepted.iter_mut().for_each(|a| *a = false);
        routed.needs_review = true;
    }
    let scores: Vec<f32> = d.boxes.iter().map(|b| b.score).collect();
    let in_review: Vec<bool> = routed.accepted.iter().map(|a| !a).collect();
    let uncertainty = Uncertainty::of_boxes(&scores, &in_review);
    // What the diversity strategies see of the image: where which blocks are.
    let embedding = crate::select::layout_embedding(
        d.boxes.iter().map(|b| (b.class, b.score, b.bbox)),
        d.width,
        d.height,
        model_labels.len(),
    );
    let machine: Vec<MachineBox> = boxes
        .into_iter()
        .zip(&routed.accepted)
        .map(|((label, score, b), &accepted)| MachineBox {
            label: label.to_string(),
            bbox: BoxPx::from(b.bbox),
            score,
            uncertainty: Some(region_uncertainty(b.score)),
            accepted,
            text: None,
            char_scores: None,
        })
        .collect();
    Outcome::Predicted(StoredPrediction {
        uncertainty: Some(uncertainty),
        model_version: model_version.to_string(),
        auto_accept: !routed.needs_review,
        embedding: Some(embedding),
        audit: audit.0,
        audit_p: Some(audit.1),
        calibration_version: thresholds.calibration_version,
        regions: Some(Box::new(MachineRegions {
            width: d.width,
            height: d.height,
            boxes: machine,
        })),
        ..StoredPrediction::default()
    })
}

/// How one recording's segments are routed.
///
/// **The routing rule for segments.** A segment is auto-accepted when the
/// project has a threshold (its recording calibration's, else its fixed
/// `threshold`) and the segment's score, the mean speech probability over
/// it, is at least that. The recording goes to review when any segment
/// is left for review, or when the model stayed undecided for a stretch
/// (`longest_undecided` seconds ≥ [`UNDECIDED_STRETCH_SECONDS`]): speech it
/// may have missed is the error a reviewer cannot see otherwise. A
/// recording with no segment and no undecided stretch is settled as silence
/// (unlike an image with no box, the frame probabilities are evidence: the
/// model said "no speech" at every window).
pub fn route_segments(scores: &[f64], threshold: Option<f64>, longest_undecided: f64) -> Routed {
    let accepted: Vec<bool> = scores
        .iter()
        .map(|s| threshold.is_some_and(|t| s.is_finite() && *s >= t))
        .collect();
    let needs_review =
        accepted.iter().any(|a| !a) || longest_undecided >= UNDECIDED_STRETCH_SECONDS;
    Routed {
        accepted,
        needs_review,
    }
}

/// The undecided time of a recording from its frame probabilities: total
/// seconds and the longest unbroken stretch, frames in [`UNDECIDED`]. One
/// pass, no allocation.
pub fn undecided_time(frames: &[f32], frame_seconds: f64) -> (f64, f64) {
    let (lo, hi) = UNDECIDED;
    let (mut total, mut run, mut longest) = (0usize, 0usize, 0usize);
    for p in frames {
        if (lo..=hi).contains(p) {
            total += 1;
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (total as f64 * frame_seconds, longest as f64 * frame_seconds)
}

/// What the store records for a voice-activity model's answer on one
/// recording: its segments as machine regions of kind `span` routed by
/// [`route_segments`] (score: the mean speech probability), its length and
/// undecided seconds, and its uncertainty for the review lists: per
/// measure, the larger of the segments' (as boxes: the most uncertain one,
/// the open ones, the score entropy) and the undecided share of the
/// recording. No whole-item label is set.
///
/// `threshold` is the segment threshold in force and the calibration
/// version it comes from (none: the project's fixed threshold); `audit` is
/// the recording's audit draw `(drawn, probability)`: an audit recording
/// waits for a person with every segment left for review, so that its
/// review is a full segmentation (see `box_calibration::audit_draw`).
pub fn segments_outcome(
    pred: &Prediction,
    label: &str,
    model_version: &str,
    threshold: (Option<f64>, Option<i64>),
    audit: (bool, f64),
) -> Outcome {
    let Some(seg) = &pred.segments else {
        return Outcome::Failed(
            "the voice-activity model gave no segments for this recording".into(),
        );
    };
    let (undecided, longest) = undecided_time(&seg.frames, seg.frame_seconds);
    let scores: Vec<f64> = seg.segments.iter().map(|s| f64::from(s.score)).collect();
    let mut routed = route_segments(&scores, threshold.0, longest);
    if audit.0 {
        routed.accepted.iter_mut().for_each(|a| *a = false);
        routed.needs_review = true;
    }
    let share = if seg.duration > 0.0 {
        (undecided / seg.duration).clamp(0.0, 1.0) as f32
    } else {
        0.0
    };
    let uncertainty = if seg.segments.is_empty() {
        Uncertainty {
            least_confidence: share,
            margin: share,
            entropy: share,
        }
    } else {
        let probs: Vec<f32> = seg.segments.iter().map(|s| s.score).collect();
        let in_review: Vec<bool> = routed.accepted.iter().map(|a| !a).collect();
        let u = Uncertainty::of_boxes(&probs, &in_review);
        Uncertainty {
            least_confidence: u.least_confidence.max(share),
            margin: u.margin.max(share),
            entropy: u.entropy.max(share),
        }
    };
    let segments = seg
        .segments
        .iter()
        .zip(&routed.accepted)
        .map(|(s, &accepted)| MachineSpan {
            label: label.to_string(),
            span: Span::new(s.start, s.end),
            score: f64::from(s.score),
            uncertainty: Some(region_uncertainty(s.score)),
            accepted,
        })
        .collect();
    Outcome::Predicted(StoredPrediction {
        uncertainty: Some(uncertainty),
        model_version: model_version.to_string(),
        auto_accept: !routed.needs_review,
        audit: audit.0,
        audit_p: Some(audit.1),
        calibration_version: threshold.1,
        segments: Some(Box::new(MachineSegments {
            duration: seg.duration,
            undecided,
            undecided_run: longest,
            segments,
        })),
        ..StoredPrediction::default()
    })
}

/// **The routing rule for text lines.** A line is auto-accepted when the
/// project has a threshold (its page calibration's, else its fixed
/// `threshold`) and the line's recognition confidence (the mean of its
/// kept characters' probabilities) reaches it. The page goes to review
/// when any line is left for review, and also when it has **no line**: a
/// detector that found nothing may have missed faint text, which only a
/// person sees (as for an image with no box).
pub fn route_lines(scores: &[f64], threshold: Option<f64>) -> Routed {
    let accepted: Vec<bool> = scores
        .iter()
        .map(|s| threshold.is_some_and(|t| s.is_finite() && *s >= t))
        .collect();
    let needs_review = accepted.is_empty() || accepted.iter().any(|a| !a);
    Routed {
        accepted,
        needs_review,
    }
}

/// A line's per-character probabilities as stored: one per character of its
/// text, else none (a dictionary entry of several characters would shift
/// every mark after it, so a mismatch keeps nothing rather than marks on
/// the wrong characters).
fn line_char_scores(text: &str, scores: &[f32]) -> Option<Vec<f32>> {
    (scores.len() == text.chars().count()).then(|| scores.to_vec())
}

/// What the store records for an OCR model's answer on one page: its lines
/// as machine regions of kind `box` with their `text`, `score` (the line's
/// recognition confidence), `char_scores` (each character's probability,
/// for the review page's marks) and `label` (the project's one label), routed by
/// [`route_lines`], the page size, and the page's uncertainty for the
/// review lists ([`Uncertainty::of_boxes`] over the line confidences: the
/// lowest line confidence as `least_confidence`, the lines left for review
/// as `margin`, the total confidence entropy; a page with no line counts as
/// fully uncertain). No whole-item label is set.
///
/// `threshold` is the line threshold in force and the calibration version
/// it comes from (none: the project's fixed threshold); `audit` is the
/// page's audit draw `(drawn, probability)`: an audit page waits for a
/// person with every line left for review, so that its review is a full
/// transcription.
pub fn lines_outcome(
    pred: &Prediction,
    label: &str,
    model_version: &str,
    threshold: (Option<f64>, Option<i64>),
    audit: (bool, f64),
) -> Outcome {
    let Some(page) = &pred.ocr else {
        return Outcome::Failed("the OCR model gave no text lines for this page".into());
    };
    let scores: Vec<f64> = page.lines.iter().map(|l| f64::from(l.score)).collect();
    let mut routed = route_lines(&scores, threshold.0);
    if audit.0 {
        routed.accepted.iter_mut().for_each(|a| *a = false);
        routed.needs_review = true;
    }
    let probs: Vec<f32> = page.lines.iter().map(|l| l.score).collect();
    let in_review: Vec<bool> = routed.accepted.iter().map(|a| !a).collect();
    let uncertainty = Uncertainty::of_boxes(&probs, &in_review);
    let boxes = page
        .lines
        .iter()
        .zip(&routed.accepted)
        .map(|(l, &accepted)| MachineBox {
            label: label.to_string(),
            bbox: BoxPx::from(l.bbox),
            score: f64::from(l.score),
            uncertainty: Some(region_uncertainty(l.score)),
            accepted,
            text: Some(l.text.clone()),
            char_scores: line_char_scores(&l.text, &l.char_scores),
        })
        .collect();
    Outcome::Predicted(StoredPrediction {
        uncertainty: Some(uncertainty),
        model_version: model_version.to_string(),
        auto_accept: !routed.needs_review,
        audit: audit.0,
        audit_p: Some(audit.1),
        calibration_version: threshold.1,
        regions: Some(Box::new(MachineRegions {
            width: page.width,
            height: page.height,
            boxes,
        })),
        ..StoredPrediction::default()
    })
}

/// An item's regions with the image size they are in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemRegions {
    pub project_id: i64,
    pub item_id: i64,
    /// The item's status (`needs_review`, `auto_accepted`, `labeled`, …).
    pub status: String,
    /// The image's size in pixels (EXIF orientation applied); null until
    /// the item is pre-labeled, and for recordings.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// A recording's length in seconds; null until it is pre-labeled, and
    /// for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Machine and human regions, oldest first, with provenance.
    pub regions: Vec<RegionRecord>,
}

/// One box or segment of a reviewer's set: a detection project's regions
/// carry `box`, a speech project's `segment`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoxIn {
    /// The region this is (a machine region, or a human region read back
    /// from `GET`), kept, moved or relabeled; omitted: a new one.
    pub id: Option<i64>,
    /// One of the project's labels.
    pub label: String,
    /// Detection projects: `[x0, y0, x1, y1]` in pixels of the original
    /// image: x0 < x1, y0 < y1, inside the image (checked against the
    /// item's size).
    #[serde(rename = "box", default)]
    #[schema(value_type = Option<Vec<f64>>, min_items = 4, max_items = 4)]
    pub bbox: Option<BoxPx>,
    /// Speech projects: `[start, end]` in seconds from the recording's
    /// start: 0 <= start < end <= its duration.
    #[serde(default)]
    #[schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)]
    pub segment: Option<Span>,
    /// OCR projects: the line's text as the person reads it (required, at
    /// most 10,000 characters; may be empty for a line with nothing legible).
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub text: Option<String>,
}

/// What a reviewer's regions are checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frame {
    /// An image of this size in pixels: regions are boxes.
    Image { width: i64, height: i64 },
    /// A page of this size in pixels: regions are text lines, boxes with
    /// their text.
    Page { width: i64, height: i64 },
    /// A recording of this many seconds: regions are segments.
    Recording { duration: f64 },
}

/// A reviewer's full set of boxes (an image) or segments (a recording).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionsIn {
    /// At most 10,000 boxes or segments (`MAX_REGIONS`).
    #[schema(max_items = 10000)]
    pub regions: Vec<BoxIn>,
}

/// A region must belong to a detection or speech project's item.
async fn region_item(
    app: &App,
    project_id: i64,
    item_id: i64,
) -> ServiceResult<(Project, RegionItem)> {
    let project = app.store.get_project(project_id).await?;
    let item = app.store.region_item(item_id).await?;
    if item.project_id != project_id {
        return Err(ServiceError::not_found(format!(
            "item {item_id} in project {project_id}"
        )));
    }
    if !has_regions(&project.task) {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "project {project_id} is a {:?} project: regions belong to detection and speech \
                 projects (label a classification item with POST /v1/items/{{id}}/annotations)",
                project.task
            ),
        ));
    }
    Ok((project, item))
}

/// One item as `GET /v1/items/{id}` answers it; a detection or speech
/// project's item also carries its `regions` (machine and human, with
/// provenance), one more indexed read.
pub async fn item(store: &crate::store::Store, item_id: i64) -> ServiceResult<ItemRecord> {
    let item = store.get_item(item_id).await?;
    if !has_regions(&store.get_project(item.project_id).await?.task) {
        return Ok(item);
    }
    let mut items = [item];
    store.attach_regions(&mut items).await?;
    let [item] = items;
    Ok(item)
}

/// An item's regions, machine and human, with their provenance.
pub async fn get(app: &App, project_id: i64, item_id: i64) -> ServiceResult<ItemRegions> {
    let (_, item) = region_item(app, project_id, item_id).await?;
    let regions = app.store.item_regions(item_id).await?;
    Ok(ItemRegions {
        project_id,
        item_id,
        status: item.status,
        width: item.width,
        height: item.height,
        duration: item.duration,
        regions,
    })
}

/// Record a reviewer's full set of boxes for an image, or of segments for a
/// recording. Every region is checked first (label in the project, box
/// inside the image or segment inside the recording: 422 naming it),
/// so nothing is half-written; then the store writes the plan in one
/// transaction over the state it was planned from, planning again if
/// another review of the item landed in between. Sending the same set
/// again changes nothing.
pub async fn put(
    app: &App,
    project_id: i64,
    item_id: i64,
    req: &RegionsIn,
    annotator: &Annotator,
) -> ServiceResult<ItemRegions> {
    if req.regions.len() > MAX_REGIONS {
        return Err(ServiceError::invalid(
            "regions",
            format!("at most {MAX_REGIONS} regions per item"),
        ));
    }
    if let Some(admin) = &annotator.on_behalf_by {
        tracing::info!(item = item_id, annotator = %annotator.name, recorded_by = %admin, "regions recorded on behalf of an annotator");
    }
    let set_json = box_set_json(&req.regions);
    for _ in 0..REVIEW_ATTEMPTS {
        let (project, item) = region_item(app, project_id, item_id).await?;
        let frame =
            match (
                project.task == SEGMENTS,
                item.width,
                item.height,
                item.duration,
            ) {
                (false, Some(width), Some(height), _) if project.task == LINES => {
                    Frame::Page { width, height }
                }
                (false, Some(width), Some(height), _) => Frame::Image { width, height },
                (true, _, _, Some(duration)) => Frame::Recording { duration },
                _ => {
                    return Err(ServiceError::new(
                        Code::Conflict,
                        format!(
                        "item {item_id} has no {} yet: its pre-labeling job has not recorded it; \
                         wait for the job (GET /v1/jobs/{{id}})",
                        if project.task == SEGMENTS { "duration" } else { "image size" }
                    ),
                    ))
                }
            };
        let current = app.store.item_regions(item_id).await?;
        let plan = plan(&current, &req.regions, &project.labels, frame)?;
        // A page sent to the top tier (`quality::after_lines_review`)
        // stays there when the same set comes again.
        let reviewed = item.status == "labeled" || item.status == "needs_confirmation";
        if reviewed && unchanged(&current, &plan, &annotator.name) {
            return get(app, project_id, item_id).await;
        }
        if app
            .store
            .apply_region_review(item_id, item.rev, &plan, &annotator.name, &set_json)
            .await?
        {
            // A reviewed audit image may make a refit due (the upkeep task
            // counts; cheap when it is not).
            super::calibration::after_audit_label(&app.calibrator, &project);
            // Two transcriptions of a line that disagree go to the top tier.
            if let Err(e) =
                super::quality::after_lines_review(app, &project, item_id, &annotator.name).await
            {
                tracing::warn!(item = item_id, error = %e.message, "could not check the page's transcriptions for conflicts");
            }
            return get(app, project_id, item_id).await;
        }
    }
    Err(ServiceError::new(
        Code::Conflict,
        format!(
            "item {item_id} is being reviewed by others right now; read its regions and try again"
        ),
    ))
}

/// A reviewer's set as `region_sets` keeps it: `[[label, x0, y0, x1, y1], …]`
/// for boxes, `[[label, x0, y0, x1, y1, text], …]` for text lines,
/// `[[label, start, end], …]` for segments.
fn box_set_json(regions: &[BoxIn]) -> String {
    let set: Vec<serde_json::Value> = regions
        .iter()
        .filter_map(|r| match (r.bbox, r.segment) {
            (Some(b), _) => Some(match &r.text {
                Some(t) => serde_json::json!([r.label, b.x0, b.y0, b.x1, b.y1, t]),
                None => serde_json::json!([r.label, b.x0, b.y0, b.x1, b.y1]),
            }),
            (None, Some(s)) => Some(serde_json::json!([r.label, s.start, s.end])),
            (None, None) => None,
        })
        .collect();
    serde_json::to_string(&set).unwrap_or_else(|_| "[]".into())
}

/// A stored region's geometry: its box or its segment.
pub fn geometry_of(r: &RegionRecord) -> Option<Geometry> {
    match (r.bbox, r.segment) {
        (Some(b), _) => Some(Geometry::Box(b)),
        (None, Some(s)) => Some(Geometry::Span(s)),
        (None, None) => None,
    }
}

/// Parse a set written by [`box_set_json`]; `None` when unreadable.
pub fn parse_box_set(json: &str) -> Option<Vec<(String, BoxPx)>> {
    let set: Vec<Vec<serde_json::Value>> = serde_json::from_str(json).ok()?;
    set.into_iter()
        .map(|row| {
            // A text line's set carries its text after the corners.
            if row.len() != 5 && row.len() != 6 {
                return None;
            }
            let label = row[0].as_str()?.to_string();
            let c = |i: usize| row[i].as_f64();
            Some((label, BoxPx::new(c(1)?, c(2)?, c(3)?, c(4)?)))
        })
        .collect()
}

/// Whether `plan` would leave the item's regions as they are (a repeat):
/// also how a Label Studio deletion tells that the item's regions are
/// still the set the deleted annotation recorded.
pub fn unchanged(current: &[RegionRecord], plan: &RegionReview, annotator: &str) -> bool {
    let machine_same = plan.machine.iter().all(|(id, status)| {
        current.iter().any(|r| {
            r.id == *id && r.status == *status && r.annotator.as_deref() == Some(annotator)
        })
    });
    let key =
        |label: &str, g: &Geometry, status: &str, replaces: Option<i64>, text: Option<&str>| {
            let bits = match g {
                Geometry::Box(b) => vec![b.x0, b.y0, b.x1, b.y1],
                Geometry::Span(s) => vec![s.start, s.end],
                Geometry::Whole => Vec::new(),
            };
            (
                label.to_string(),
                bits.into_iter().map(f64::to_bits).collect::<Vec<u64>>(),
                status.to_string(),
                replaces,
                text.map(str::to_string),
            )
        };
    let mut now: Vec<_> = current
        .iter()
        .filter(|r| r.source == "human")
        .filter_map(|r| {
            geometry_of(r).map(|g| key(&r.label, &g, &r.status, r.replaces, r.text.as_deref()))
        })
        .collect();
    let mut want: Vec<_> = plan
        .human
        .iter()
        .map(|h| {
            key(
                &h.label,
                &h.geometry,
                h.status,
                h.replaces,
                h.text.as_deref(),
            )
        })
        .collect();
    now.sort();
    want.sort();
    machine_same && now == want
}

/// **The review rule**, pure: a reviewer's full set of boxes against the
/// item's current regions. Each box is validated (its label among
/// `labels`, its geometry by [`BoxPx::check`] against the image), naming
/// the box on error. Then, per machine region:
/// - named by a box with the same label and corners: `accepted` (by the reviewer);
/// - named by a box that moved or changed label: `corrected`, and the box
///   becomes a human region `corrected` that `replaces` it;
/// - named by no box: `deleted`.
///
/// A box naming no region is a human region `added`. A box may name a
/// human region read back from an earlier review: it stands for the
/// machine region that one replaced (or is `added` again). The human
/// regions of the plan replace all earlier ones.
pub fn plan_review(
    current: &[RegionRecord],
    boxes: &[BoxIn],
    labels: &[String],
    width: i64,
    height: i64,
) -> ServiceResult<RegionReview> {
    plan(current, boxes, labels, Frame::Image { width, height })
}

/// The region `i` of a reviewer's set as a checked geometry: a box inside
/// the image, or a segment inside the recording, naming the field on error.
fn checked_geometry(i: usize, r: &BoxIn, frame: Frame) -> ServiceResult<Geometry> {
    match frame {
        Frame::Image { width, height } | Frame::Page { width, height } => {
            if r.segment.is_some() {
                return Err(ServiceError::invalid(
                    &format!("regions[{i}].segment"),
                    "this item is an image: send its regions as `box` [x0, y0, x1, y1] in pixels",
                ));
            }
            let b = r.bbox.ok_or_else(|| {
                ServiceError::invalid(
                    &format!("regions[{i}].box"),
                    "required: [x0, y0, x1, y1] in pixels of the original image",
                )
            })?;
            let w = u32::try_from(width).unwrap_or(0);
            let h = u32::try_from(height).unwrap_or(0);
            b.check(w, h)
                .map_err(|e| ServiceError::invalid(&format!("regions[{i}].box"), e))?;
            Ok(Geometry::Box(b))
        }
        Frame::Recording { duration } => {
            if r.bbox.is_some() {
                return Err(ServiceError::invalid(
                    &format!("regions[{i}].box"),
                    "this item is a recording: send its regions as `segment` [start, end] in seconds",
                ));
            }
            let s = r.segment.ok_or_else(|| {
                ServiceError::invalid(
                    &format!("regions[{i}].segment"),
                    "required: [start, end] in seconds from the recording's start",
                )
            })?;
            s.check(duration)
                .map_err(|e| ServiceError::invalid(&format!("regions[{i}].segment"), e))?;
            Ok(Geometry::Span(s))
        }
    }
}

/// The text of region `i` of a reviewer's set: required on a page (at most
/// [`MAX_LINE_TEXT`] characters; a string by the request's shape, so valid
/// UTF-8), refused anywhere else, naming the field on error.
fn checked_text(i: usize, r: &BoxIn, frame: Frame) -> ServiceResult<Option<String>> {
    match (frame, &r.text) {
        (Frame::Page { .. }, None) => Err(ServiceError::invalid(
            &format!("regions[{i}].text"),
            "required: the line's text as a string (empty for a line with nothing legible)",
        )),
        (Frame::Page { .. }, Some(t)) => {
            let n = t.chars().count();
            if n > MAX_LINE_TEXT {
                return Err(ServiceError::invalid(
                    &format!("regions[{i}].text"),
                    format!("{n} characters; a line holds at most {MAX_LINE_TEXT}"),
                ));
            }
            Ok(Some(t.clone()))
        }
        (_, Some(_)) => Err(ServiceError::invalid(
            &format!("regions[{i}].text"),
            "only the lines of an OCR project carry text",
        )),
        (_, None) => Ok(None),
    }
}

/// [`plan_review`] for an image, a page or a recording (`frame`): the same
/// rule, boxes, text lines or segments. On a page a kept line must also
/// keep its text: a line whose text changed is `corrected`.
pub fn plan(
    current: &[RegionRecord],
    boxes: &[BoxIn],
    labels: &[String],
    frame: Frame,
) -> ServiceResult<RegionReview> {
    let by_id: HashMap<i64, &RegionRecord> = current.iter().map(|r| (r.id, r)).collect();
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut machine_named: HashMap<i64, &'static str> = HashMap::new();
    let mut human = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        if !labels.contains(&b.label) {
            return Err(ServiceError::new(
                Code::UnknownLabel,
                format!(
                    "field `regions[{i}].label`: {:?} is not in the project's label set {labels:?}",
                    b.label
                ),
            ));
        }
        let geometry = checked_geometry(i, b, frame)?;
        let text = checked_text(i, b, frame)?;
        // The machine region this box stands for, if any.
        let machine = match b.id {
            None => None,
            Some(id) => match by_id.get(&id) {
                Some(r) if r.source == "machine" => Some(*r),
                Some(r) => r
                    .replaces
                    .and_then(|m| by_id.get(&m).copied())
                    .filter(|m| m.source == "machine"),
                None => {
                    return Err(ServiceError::invalid(
                        &format!("regions[{i}].id"),
                        format!(
                            "{id} is not a region of this item; omit `id` for a new box, or read \
                             the item's regions again"
                        ),
                    ))
                }
            },
        };
        match machine {
            None => human.push(HumanRegion {
                label: b.label.clone(),
                geometry,
                status: "added",
                replaces: None,
                text,
            }),
            Some(m) => {
                if !claimed.insert(m.id) {
                    return Err(ServiceError::invalid(
                        &format!("regions[{i}].id"),
                        format!("region {} is named by two boxes; send each box once", m.id),
                    ));
                }
                if m.label == b.label && geometry_of(m) == Some(geometry) && m.text == text {
                    machine_named.insert(m.id, "accepted");
                } else {
                    machine_named.insert(m.id, "corrected");
                    human.push(HumanRegion {
                        label: b.label.clone(),
                        geometry,
                        status: "corrected",
                        replaces: Some(m.id),
                        text,
                    });
                }
            }
        }
    }
    let machine = current
        .iter()
        .filter(|r| r.source == "machine")
        .map(|r| (r.id, machine_named.get(&r.id).copied().unwrap_or("deleted")))
        .collect();
    Ok(RegionReview { machine, human })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(pairs: &[(&str, f64)]) -> BoxThresholds {
        BoxThresholds {
            per_class: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            calibration_version: Some(1),
        }
    }

    #[test]
    fn uncalibrated_classes_send_every_image_to_review() {
        let r = route_boxes(&[("text", 0.99), ("title", 0.6)], &BoxThresholds::default());
        assert_eq!(r.accepted, vec![false, false]);
        assert!(r.needs_review);
    }

    #[test]
    fn an_image_with_no_box_goes_to_review() {
        let r = route_boxes(&[], &thresholds(&[("text", 0.5)]));
        assert!(r.accepted.is_empty());
        assert!(r.needs_review);
    }

    #[test]
    fn boxes_at_or_above_their_class_threshold_are_accepted() {
        let t = thresholds(&[("text", 0.8), ("title", 0.9)]);
        let r = route_boxes(&[("text", 0.8), ("title", 0.95)], &t);
        assert_eq!(r.accepted, vec![true, true]);
        assert!(!r.needs_review);
        // One box below, or of an uncalibrated class: the image goes to review.
        let r = route_boxes(&[("text", 0.8), ("title", 0.89)], &t);
        assert_eq!(r.accepted, vec![true, false]);
        assert!(r.needs_review);
        let r = route_boxes(&[("text", 0.99), ("table", 0.99)], &t);
        assert_eq!(r.accepted, vec![true, false]);
        let r = route_boxes(&[("text", f64::NAN)], &t);
        assert_eq!(r.accepted, vec![false]);
    }

    #[test]
    fn segments_route_by_the_threshold_and_undecided_stretches() {
        let r = route_segments(&[0.9, 0.6], Some(0.8), 0.0);
        assert_eq!(r.accepted, vec![true, false]);
        assert!(r.needs_review);
        let r = route_segments(&[0.9, 0.85], Some(0.8), 0.1);
        assert_eq!(r.accepted, vec![true, true]);
        assert!(!r.needs_review);
        // A long undecided stretch sends even an all-accepted recording.
        assert!(route_segments(&[0.9], Some(0.8), UNDECIDED_STRETCH_SECONDS).needs_review);
        // Silence with no doubt is settled; no threshold accepts nothing.
        assert!(!route_segments(&[], Some(0.8), 0.0).needs_review);
        let r = route_segments(&[0.99, f64::NAN], None, 0.0);
        assert_eq!(r.accepted, vec![false, false]);
        assert!(r.needs_review);
    }

    #[test]
    fn undecided_time_counts_the_band_and_its_longest_run() {
        let frames = [0.1, 0.4, 0.5, 0.9, 0.3, 0.7, 0.69, 0.2];
        let (total, longest) = undecided_time(&frames, 0.032);
        assert!((total - 5.0 * 0.032).abs() < 1e-12, "{total}");
        assert!((longest - 3.0 * 0.032).abs() < 1e-12, "{longest}");
        assert_eq!(undecided_time(&[], 0.032), (0.0, 0.0));
    }

    #[test]
    fn segments_are_checked_against_the_recording() {
        let labels = vec!["Speech".to_string()];
        let seg = |id: Option<i64>, a: f64, b: f64| BoxIn {
            id,
            label: "Speech".into(),
            bbox: None,
            segment: Some(Span::new(a, b)),
            text: None,
        };
        let frame = Frame::Recording { duration: 10.0 };
        let mut current = vec![region(1, "machine", "Speech", [0.0; 4], None)];
        current[0].kind = "span".into();
        current[0].bbox = None;
        current[0].segment = Some(Span::new(1.0, 2.0));
        let plan = plan(
            &current,
            &[seg(Some(1), 1.0, 2.0), seg(None, 5.0, 6.5)],
            &labels,
            frame,
        )
        .unwrap();
        assert_eq!(plan.machine, vec![(1, "accepted")]);
        assert_eq!(plan.human[0].geometry, Geometry::Span(Span::new(5.0, 6.5)));
        let moved = super::plan(&current, &[seg(Some(1), 1.1, 2.0)], &labels, frame).unwrap();
        assert_eq!(moved.machine, vec![(1, "corrected")]);
        for (bad, says) in [
            (vec![seg(None, 2.0, 1.0)], "regions[0].segment"),
            (
                vec![seg(None, 0.0, 1.0), seg(None, 9.0, 10.5)],
                "regions[1].segment",
            ),
            (
                vec![bx(None, "Speech", [0.0, 0.0, 1.0, 1.0])],
                "regions[0].box",
            ),
        ] {
            let e = super::plan(&current, &bad, &labels, frame).unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
        // A segment on an image is named too.
        let e = super::plan(
            &[],
            &[seg(None, 0.0, 1.0)],
            &labels,
            Frame::Image {
                width: 10,
                height: 10,
            },
        )
        .unwrap_err();
        assert!(e.message.contains("regions[0].segment"), "{}", e.message);
    }

    fn region(
        id: i64,
        source: &str,
        label: &str,
        b: [f64; 4],
        replaces: Option<i64>,
    ) -> RegionRecord {
        RegionRecord {
            id,
            source: source.into(),
            kind: "box".into(),
            label: label.into(),
            bbox: Some(BoxPx::from(b)),
            segment: None,
            text: None,
            score: None,
            uncertainty: None,
            status: if source == "machine" {
                "review"
            } else {
                "corrected"
            }
            .into(),
            replaces,
            model_version: None,
            calibration_version: None,
            annotator: None,
            created_at: 0,
            updated_at: 0,
            char_scores: None,
        }
    }

    fn bx(id: Option<i64>, label: &str, b: [f64; 4]) -> BoxIn {
        BoxIn {
            id,
            label: label.into(),
            bbox: Some(BoxPx::from(b)),
            segment: None,
            text: None,
        }
    }

    #[test]
    fn a_review_keeps_moves_relabels_deletes_and_adds() {
        let labels: Vec<String> = ["text", "title", "table"].map(String::from).to_vec();
        let current = vec![
            region(1, "machine", "text", [0.0, 0.0, 10.0, 10.0], None),
            region(2, "machine", "text", [20.0, 0.0, 30.0, 10.0], None),
            region(3, "machine", "title", [40.0, 0.0, 50.0, 10.0], None),
            region(4, "machine", "table", [60.0, 0.0, 70.0, 10.0], None),
        ];
        let plan = plan_review(
            &current,
            &[
                bx(Some(1), "text", [0.0, 0.0, 10.0, 10.0]),
                bx(Some(2), "text", [21.5, 0.0, 30.0, 10.0]),
                bx(Some(3), "table", [40.0, 0.0, 50.0, 10.0]),
                bx(None, "title", [80.0, 80.0, 90.0, 99.0]),
            ],
            &labels,
            100,
            100,
        )
        .unwrap();
        assert_eq!(
            plan.machine,
            vec![
                (1, "accepted"),
                (2, "corrected"),
                (3, "corrected"),
                (4, "deleted")
            ]
        );
        let statuses: Vec<(&str, Option<i64>)> =
            plan.human.iter().map(|h| (h.status, h.replaces)).collect();
        assert_eq!(
            statuses,
            vec![
                ("corrected", Some(2)),
                ("corrected", Some(3)),
                ("added", None)
            ]
        );
        // A human region read back stands for the machine region it replaced.
        let mut after = current.clone();
        after.push(region(9, "human", "text", [21.5, 0.0, 30.0, 10.0], Some(2)));
        let again = plan_review(
            &after,
            &[bx(Some(9), "text", [21.5, 0.0, 30.0, 10.0])],
            &labels,
            100,
            100,
        )
        .unwrap();
        assert_eq!(again.human[0].replaces, Some(2));
    }

    #[test]
    fn bad_boxes_are_named() {
        let labels = vec!["text".to_string()];
        let e = plan_review(
            &[],
            &[bx(None, "text", [0.0, 0.0, 101.0, 5.0])],
            &labels,
            100,
            100,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidField);
        assert!(e.message.contains("regions[0].box"), "{}", e.message);
        let e = plan_review(
            &[],
            &[
                bx(None, "text", [0.0, 0.0, 1.0, 1.0]),
                bx(None, "text", [5.0, 0.0, 1.0, 5.0]),
            ],
            &labels,
            100,
            100,
        )
        .unwrap_err();
        assert!(e.message.contains("regions[1].box"), "{}", e.message);
        let e = plan_review(
            &[],
            &[bx(None, "figure", [0.0, 0.0, 1.0, 1.0])],
            &labels,
            100,
            100,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::UnknownLabel);
        assert!(e.message.contains("regions[0].label"), "{}", e.message);
        let e = plan_review(
            &[],
            &[bx(Some(77), "text", [0.0, 0.0, 1.0, 1.0])],
            &labels,
            100,
            100,
        )
        .unwrap_err();
        assert!(e.message.contains("regions[0].id"), "{}", e.message);
    }
}
