//! Regions: the use cases of detection projects, written once for every
//! adapter (issue 22). Turning a detection into routed machine regions,
//! reading an item's regions, and recording a reviewer's full set of boxes.
//!
//! The routing rule is [`route_boxes`]; the review rule (which machine box
//! a reviewer kept, moved, relabeled or deleted) is [`plan_review`]. Both
//! are pure; the store applies a plan in one transaction.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use super::review::Annotator;
use crate::model::Prediction;
use crate::region::BoxPx;
use crate::select::Uncertainty;
use crate::store::{
    HumanRegion, ItemRecord, MachineBox, MachineRegions, Outcome, Project, RegionItem,
    RegionRecord, RegionReview, StoredPrediction,
};

/// The task of a project whose model detects objects.
pub const DETECT: &str = "detect";
/// The task of a project whose model (or head) classifies whole items.
pub const CLASSIFY: &str = "classify";

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
            uncertainty: Some(f64::from(
                Uncertainty::from_distribution(&[b.score, 1.0 - b.score]).margin,
            )),
            accepted,
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

/// An item's regions with the image size they are in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemRegions {
    pub project_id: i64,
    pub item_id: i64,
    /// The item's status (`needs_review`, `auto_accepted`, `labeled`, …).
    pub status: String,
    /// The image's size in pixels (EXIF orientation applied); null until
    /// the item is pre-labeled.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Machine and human regions, oldest first, with provenance.
    pub regions: Vec<RegionRecord>,
}

/// One box of a reviewer's set.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoxIn {
    /// The region this box is (a machine region, or a human region read
    /// back from `GET`), kept, moved or relabeled; omitted: a new box.
    pub id: Option<i64>,
    /// One of the project's labels.
    pub label: String,
    /// `[x0, y0, x1, y1]` in pixels of the original image: x0 < x1,
    /// y0 < y1, inside the image (checked against the item's size).
    #[serde(rename = "box")]
    #[schema(value_type = Vec<f64>, min_items = 4, max_items = 4)]
    pub bbox: BoxPx,
}

/// A reviewer's full set of boxes for one image.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionsIn {
    /// At most 10,000 boxes (`MAX_REGIONS`).
    #[schema(max_items = 10000)]
    pub regions: Vec<BoxIn>,
}

/// A region must belong to a detection project's item.
async fn detection_item(
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
    if project.task != DETECT {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "project {project_id} is a {:?} project: regions belong to detection projects \
                 (label a classification item with POST /v1/items/{{id}}/annotations)",
                project.task
            ),
        ));
    }
    Ok((project, item))
}

/// One item as `GET /v1/items/{id}` answers it; a detection project's
/// item also carries its `regions` (machine and human, with provenance),
/// one more indexed read.
pub async fn item(store: &crate::store::Store, item_id: i64) -> ServiceResult<ItemRecord> {
    let item = store.get_item(item_id).await?;
    if store.get_project(item.project_id).await?.task != DETECT {
        return Ok(item);
    }
    let mut items = [item];
    store.attach_regions(&mut items).await?;
    let [item] = items;
    Ok(item)
}

/// An item's regions, machine and human, with their provenance.
pub async fn get(app: &App, project_id: i64, item_id: i64) -> ServiceResult<ItemRegions> {
    let (_, item) = detection_item(app, project_id, item_id).await?;
    let regions = app.store.item_regions(item_id).await?;
    Ok(ItemRegions {
        project_id,
        item_id,
        status: item.status,
        width: item.width,
        height: item.height,
        regions,
    })
}

/// Record a reviewer's full set of boxes for an image. Every box is checked
/// first (label in the project, box inside the image: 422 naming the box),
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
            format!("at most {MAX_REGIONS} boxes per image"),
        ));
    }
    if let Some(admin) = &annotator.on_behalf_by {
        tracing::info!(item = item_id, annotator = %annotator.name, recorded_by = %admin, "regions recorded on behalf of an annotator");
    }
    let set_json = box_set_json(&req.regions);
    for _ in 0..REVIEW_ATTEMPTS {
        let (project, item) = detection_item(app, project_id, item_id).await?;
        let (Some(width), Some(height)) = (item.width, item.height) else {
            return Err(ServiceError::new(
                Code::Conflict,
                format!(
                    "item {item_id} has no image size yet: its pre-labeling job has not recorded it; \
                     wait for the job (GET /v1/jobs/{{id}})"
                ),
            ));
        };
        let current = app.store.item_regions(item_id).await?;
        let plan = plan_review(&current, &req.regions, &project.labels, width, height)?;
        if item.status == "labeled" && unchanged(&current, &plan, &annotator.name) {
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

/// A reviewer's set as `region_sets` keeps it: `[[label, x0, y0, x1, y1], …]`.
fn box_set_json(boxes: &[BoxIn]) -> String {
    let set: Vec<(&str, f64, f64, f64, f64)> = boxes
        .iter()
        .map(|b| (b.label.as_str(), b.bbox.x0, b.bbox.y0, b.bbox.x1, b.bbox.y1))
        .collect();
    serde_json::to_string(&set).unwrap_or_else(|_| "[]".into())
}

/// Parse a set written by [`box_set_json`]; `None` when unreadable.
pub fn parse_box_set(json: &str) -> Option<Vec<(String, BoxPx)>> {
    let set: Vec<(String, f64, f64, f64, f64)> = serde_json::from_str(json).ok()?;
    Some(
        set.into_iter()
            .map(|(l, x0, y0, x1, y1)| (l, BoxPx::new(x0, y0, x1, y1)))
            .collect(),
    )
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
    let key = |label: &str, b: &BoxPx, status: &str, replaces: Option<i64>| {
        (
            label.to_string(),
            [b.x0, b.y0, b.x1, b.y1].map(f64::to_bits),
            status.to_string(),
            replaces,
        )
    };
    let mut now: Vec<_> = current
        .iter()
        .filter(|r| r.source == "human")
        .filter_map(|r| {
            r.bbox
                .as_ref()
                .map(|b| key(&r.label, b, &r.status, r.replaces))
        })
        .collect();
    let mut want: Vec<_> = plan
        .human
        .iter()
        .map(|h| key(&h.label, &h.bbox, h.status, h.replaces))
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
    let w = u32::try_from(width).unwrap_or(0);
    let h = u32::try_from(height).unwrap_or(0);
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
        b.bbox
            .check(w, h)
            .map_err(|e| ServiceError::invalid(&format!("regions[{i}].box"), e))?;
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
                bbox: b.bbox,
                status: "added",
                replaces: None,
            }),
            Some(m) => {
                if !claimed.insert(m.id) {
                    return Err(ServiceError::invalid(
                        &format!("regions[{i}].id"),
                        format!("region {} is named by two boxes; send each box once", m.id),
                    ));
                }
                if m.label == b.label && m.bbox == Some(b.bbox) {
                    machine_named.insert(m.id, "accepted");
                } else {
                    machine_named.insert(m.id, "corrected");
                    human.push(HumanRegion {
                        label: b.label.clone(),
                        bbox: b.bbox,
                        status: "corrected",
                        replaces: Some(m.id),
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
        }
    }

    fn bx(id: Option<i64>, label: &str, b: [f64; 4]) -> BoxIn {
        BoxIn {
            id,
            label: label.into(),
            bbox: BoxPx::from(b),
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
