//! Which boxes a detection project exports, and its Label Studio tasks.
//!
//! One rule for COCO and YOLO ([`exported`], [`image_exported`]): an image
//! exports its **final** boxes, those a person settled (the reviewer's
//! kept, corrected and added boxes) or, where no person looked, those the
//! machine auto-accepted. An image still awaiting review (or pending, or
//! failed) has no final boxes yet and is left out, counted in the export's
//! summary: a COCO or YOLO file lists an image as fully annotated, so an
//! image with half its boxes, or none yet, would teach a detector that its
//! unlabelled objects are background. `boxes=machine` exports instead
//! every box the model proposed on every pre-labeled image, with its
//! score, to evaluate the model.

use serde_json::{json, Value};

use crate::service::labelstudio::predict::RectangleResult;
use crate::store::{ItemRecord, RegionRecord, Status};

/// The `from_name` and `to_name` of exported Label Studio box results: a
/// `<RectangleLabels name="label" toName="image">` on an `<Image name="image">`.
pub const LS_FROM_NAME: &str = "label";
pub const LS_TO_NAME: &str = "image";

/// Which boxes a COCO or YOLO export holds (`boxes=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxSet {
    /// Each settled image's final boxes (the default).
    Final,
    /// Every machine box of every pre-labeled image, with its score.
    Machine,
}

impl BoxSet {
    pub fn parse(s: &str) -> Option<BoxSet> {
        match s {
            "final" => Some(BoxSet::Final),
            "machine" => Some(BoxSet::Machine),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BoxSet::Final => "final",
            BoxSet::Machine => "machine",
        }
    }
}

/// The image's size when it is exported under `set`: a pre-labeled image
/// (its size is known) whose boxes are final (`labeled`: a person
/// reviewed it; `auto_accepted`: the machine's boxes stand), or any
/// pre-labeled image for [`BoxSet::Machine`].
pub fn image_exported(item: &ItemRecord, set: BoxSet) -> Option<(u32, u32)> {
    let width = u32::try_from(item.width?).ok().filter(|w| *w > 0)?;
    let height = u32::try_from(item.height?).ok().filter(|h| *h > 0)?;
    let settled =
        item.status == Status::Labeled.as_str() || item.status == Status::AutoAccepted.as_str();
    (set == BoxSet::Machine || settled).then_some((width, height))
}

/// **The boxes an exported image holds**, in region order: under
/// [`BoxSet::Final`] the person's boxes (`human`: added or corrected) and
/// the machine's `accepted` ones (confirmed by the reviewer, or
/// auto-accepted where no one reviewed); a machine box a reviewer
/// corrected or deleted, or one still awaiting review, is not final.
/// Under [`BoxSet::Machine`], every machine box whatever became of it.
pub fn exported(regions: &[RegionRecord], set: BoxSet) -> impl Iterator<Item = &RegionRecord> {
    final_regions(regions, set).filter(|r| r.kind == "box" && r.bbox.is_some())
}

/// The rule of [`exported`] whatever the kind (boxes, speech segments):
/// under [`BoxSet::Final`] human regions and `accepted` machine ones; under
/// [`BoxSet::Machine`] every machine region.
pub fn final_regions(regions: &[RegionRecord], set: BoxSet) -> impl Iterator<Item = &RegionRecord> {
    regions.iter().filter(move |r| match set {
        BoxSet::Final => r.source == "human" || (r.source == "machine" && r.status == "accepted"),
        BoxSet::Machine => r.source == "machine",
    })
}

/// The provenance kept with each exported box (COCO's per-annotation
/// `labelloop` object): who drew it, how sure the model was, under which
/// model and calibration versions, and who settled it.
pub fn provenance(r: &RegionRecord) -> Value {
    json!({
        "region_id": r.id,
        "source": r.source,
        "status": r.status,
        "score": r.score,
        "model_version": r.model_version,
        "calibration_version": r.calibration_version,
        "annotator": r.annotator,
        "replaces": r.replaces,
    })
}

/// A detection item as a Label Studio task: the machine's boxes as one
/// prediction (`rectanglelabels` with each box's `score`, the model
/// version, and the task's score: its weakest box), and, once a person
/// reviewed the image, their boxes as one annotation (the boxes they kept,
/// corrected and added; an empty one when they found nothing there).
/// Boxes are converted by [`RectangleResult::new`], the conversion
/// `/predict` uses; result ids are `m<region>` (machine) and `h<region>`
/// (human), as Label Studio's webhook sends them back.
pub fn labelstudio_task(item: &ItemRecord) -> Value {
    let size = match (item.width, item.height) {
        (Some(w), Some(h)) => u32::try_from(w).ok().zip(u32::try_from(h).ok()),
        _ => None,
    };
    let rect = |r: &RegionRecord, id: String, score: Option<f64>| {
        let (w, h) = size?;
        RectangleResult::new(
            id,
            LS_FROM_NAME,
            LS_TO_NAME,
            &r.label,
            r.bbox.as_ref()?,
            w,
            h,
            score,
        )
        .and_then(|res| serde_json::to_value(res).ok())
    };
    region_task(
        item,
        "box",
        rect,
        json!({"width": item.width, "height": item.height}),
    )
}

/// The `from_name` of exported OCR transcriptions: a `<TextArea
/// name="transcription" toName="image" perRegion="true">` beside the
/// `<RectangleLabels name="label">` of [`LS_FROM_NAME`].
pub const LS_TEXT_NAME: &str = "transcription";

/// An OCR page as a Label Studio task: per line **two results sharing one
/// region `id`**, a `rectanglelabels` (the box, percent coordinates with
/// `original_width/height`, by [`RectangleResult::new`]) and a `textarea`
/// with the same geometry and the line's text, so that Label Studio shows
/// one region carrying its transcription; the machine's lines (each with
/// its `score`) as the prediction, the final ones a person settled as the
/// annotation ([`region_task`]).
pub fn lines_task(item: &ItemRecord) -> Value {
    let size = match (item.width, item.height) {
        (Some(w), Some(h)) => u32::try_from(w).ok().zip(u32::try_from(h).ok()),
        _ => None,
    };
    let line = |r: &RegionRecord, id: String, score: Option<f64>| {
        let (w, h) = size?;
        let rect = RectangleResult::new(
            id,
            LS_FROM_NAME,
            LS_TO_NAME,
            &r.label,
            r.bbox.as_ref()?,
            w,
            h,
            score,
        )?;
        let rect = serde_json::to_value(rect).ok()?;
        let mut text = rect.clone();
        text["from_name"] = json!(LS_TEXT_NAME);
        text["type"] = json!("textarea");
        if let Some(v) = text["value"].as_object_mut() {
            v.remove("rectanglelabels");
            v.insert("text".into(), json!([r.text.as_deref().unwrap_or("")]));
        }
        Some(json!([rect, text]))
    };
    region_task(
        item,
        "box",
        line,
        json!({"width": item.width, "height": item.height}),
    )
}

/// A detection, speech or OCR item as a Label Studio task, the regions of
/// `kind` made results by `result(region, id, score)` (one result, or an
/// array of results sharing the region's id): the machine's as a
/// prediction, the final ones a person settled as an annotation. `meta`
/// is added to the task's `meta`.
pub fn region_task(
    item: &ItemRecord,
    kind: &str,
    result: impl Fn(&RegionRecord, String, Option<f64>) -> Option<Value>,
    meta: Value,
) -> Value {
    let regions = item.regions.as_deref().unwrap_or_default();
    let machine: Vec<&RegionRecord> = regions
        .iter()
        .filter(|r| r.source == "machine" && r.kind == kind)
        .collect();
    let mut predictions = Vec::new();
    if let Some(first) = machine.first() {
        let weakest = machine.iter().filter_map(|r| r.score).reduce(f64::min);
        let results: Vec<Value> = machine
            .iter()
            .filter_map(|r| result(r, format!("m{}", r.id), Some(r.score.unwrap_or(0.0))))
            .flat_map(flatten)
            .collect();
        predictions.push(json!({
            "model_version": first.model_version,
            "score": weakest.unwrap_or(0.0),
            "result": results,
        }));
    }
    let reviewer = regions
        .iter()
        .filter(|r| r.source == "human")
        .chain(regions.iter())
        .find_map(|r| r.annotator.as_deref());
    let mut annotations = Vec::new();
    if item.status == Status::Labeled.as_str() || reviewer.is_some() {
        let results: Vec<Value> = final_regions(regions, BoxSet::Final)
            .filter(|r| r.kind == kind)
            .filter(|r| r.source == "human" || r.annotator.is_some())
            .filter_map(|r| {
                let prefix = if r.source == "human" { "h" } else { "m" };
                result(r, format!("{prefix}{}", r.id), None)
            })
            .flat_map(flatten)
            .collect();
        annotations.push(json!({"completed_by": reviewer, "result": results}));
    }
    let mut task_meta = json!({"status": item.status, "final_source": item.final_source,
             "calibration_version": item.calibration_version, "audit": item.audit,
             "guarantee": item.guarantee});
    if let (Some(m), Some(extra)) = (task_meta.as_object_mut(), meta.as_object()) {
        m.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    json!({
        "id": item.id,
        "data": {"id": item.client_id},
        "meta": task_meta,
        "predictions": predictions,
        "annotations": annotations,
    })
}

/// A result, or the results of one region given as an array.
fn flatten(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        one => vec![one],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::BoxPx;

    fn region(id: i64, source: &str, status: &str, annotator: Option<&str>) -> RegionRecord {
        RegionRecord {
            id,
            source: source.into(),
            kind: "box".into(),
            label: "table".into(),
            bbox: Some(BoxPx::new(1.0, 2.0, 3.0, 4.0)),
            segment: None,
            text: None,
            score: (source == "machine").then_some(0.75),
            uncertainty: None,
            status: status.into(),
            replaces: None,
            model_version: (source == "machine").then(|| "1.2.1".into()),
            calibration_version: None,
            annotator: annotator.map(str::to_string),
            created_at: 0,
            updated_at: 0,
            char_scores: None,
        }
    }

    #[test]
    fn final_boxes_are_the_settled_ones() {
        let regions = [
            region(1, "machine", "accepted", Some("alice")),
            region(2, "machine", "corrected", Some("alice")),
            region(3, "machine", "deleted", Some("alice")),
            region(4, "machine", "review", None),
            region(5, "machine", "accepted", None),
            region(6, "human", "corrected", Some("alice")),
            region(7, "human", "added", Some("alice")),
        ];
        let ids = |set| exported(&regions, set).map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(BoxSet::Final), [1, 5, 6, 7]);
        assert_eq!(ids(BoxSet::Machine), [1, 2, 3, 4, 5]);
    }
}
