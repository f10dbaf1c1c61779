//! Box annotations from Label Studio on a detection project (issue 22), and
//! segment annotations on a speech project (issue 24, `segments`). Such an
//! annotation is the annotator's full set of boxes (segments), recorded as
//! the item's human regions through `regions::put` (see `webhook`); the set
//! is also kept with its Label Studio id, so that deleting the annotation
//! in Label Studio withdraws exactly what it recorded:
//!
//! - the item's human regions are still that annotation's set: the latest
//!   remaining box annotation of the item takes its place (Label Studio
//!   still shows that person's boxes), or with none left the review is
//!   undone: human regions removed, machine regions routed again (as the
//!   pre-label routed them, no reviewer), the image back to review (a
//!   recording: see [`unreviewed_segments`]);
//! - they are someone else's (a later annotation, the review page): they
//!   stay, and the deleted annotation is only forgotten.
//!
//! Applying a deletion again finds the set no longer current and changes
//! nothing, so a retry after a crash at any point, or a redelivery, leaves
//! the same state.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::region::{BoxPx, Span};
use crate::service::app::App;
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::regions::{self, BoxIn, BoxThresholds, Frame, RegionsIn};
use crate::service::review::Annotator;
use crate::store::{LsAnnotation, Project, RegionRecord};

/// How many times undoing a review is tried when another review of the
/// same item lands in between.
const SETTLE_ATTEMPTS: usize = 8;

/// The set a box annotation recorded, as kept with its Label Studio id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RecordedSet {
    /// `ls:<e-mail>`, who the regions were recorded for.
    pub annotator: String,
    pub boxes: Vec<RecordedBox>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RecordedBox {
    /// The machine region the box keeps or corrects; none for an added box.
    #[serde(default)]
    pub id: Option<i64>,
    pub label: String,
    /// A box annotation's box (every set kept before segments has one).
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoxPx>,
    /// A segment annotation's segment, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Span>,
    /// A line annotation's transcription (with its `box`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl RecordedSet {
    pub fn of(annotator: &str, boxes: &[BoxIn]) -> RecordedSet {
        RecordedSet {
            annotator: annotator.to_string(),
            boxes: boxes
                .iter()
                .filter(|b| b.bbox.is_some() || b.segment.is_some())
                .map(|b| RecordedBox {
                    id: b.id,
                    label: b.label.clone(),
                    bbox: b.bbox,
                    segment: b.segment,
                    text: b.text.clone(),
                })
                .collect(),
        }
    }

    fn boxes_in(&self) -> Vec<BoxIn> {
        self.boxes
            .iter()
            .map(|b| BoxIn {
                id: b.id,
                label: b.label.clone(),
                bbox: b.bbox,
                segment: b.segment,
                text: b.text.clone(),
            })
            .collect()
    }

    /// Whether the item's regions are this set, recorded for its annotator.
    fn holds(&self, current: &[RegionRecord], project: &Project, frame: Frame) -> bool {
        regions::plan(current, &self.boxes_in(), &project.labels, frame)
            .is_ok_and(|plan| regions::unchanged(current, &plan, &self.annotator))
    }
}

/// Keep the set a box annotation recorded, under its Label Studio id (an
/// update replaces it).
pub(super) async fn remember(
    app: &App,
    project_id: i64,
    annotation: &LsAnnotation,
    set: &RecordedSet,
) -> ServiceResult<()> {
    let json = serde_json::to_string(set)
        .map_err(|_| ServiceError::internal("a box annotation could not be recorded"))?;
    app.store
        .ls_record_box_annotation(project_id, annotation, &json)
        .await?;
    Ok(())
}

/// Withdraw what the box annotations among `ls_ids` recorded (see the
/// module), then forget them. Returns how many of `ls_ids` were box
/// annotations recorded here.
pub(super) async fn withdraw(app: &App, project: &Project, ls_ids: &[i64]) -> ServiceResult<usize> {
    let found = app.store.ls_box_annotations(project.id, ls_ids).await?;
    if found.is_empty() {
        return Ok(0);
    }
    let mut by_item: BTreeMap<i64, Vec<(i64, RecordedSet)>> = BTreeMap::new();
    for (ls_id, item_id, json) in found {
        let set: RecordedSet = serde_json::from_str(&json)
            .map_err(|_| ServiceError::internal("a recorded box annotation does not read back"))?;
        by_item.entry(item_id).or_default().push((ls_id, set));
    }
    for (item_id, deleted) in &by_item {
        // The deleted annotations' own sets leave the agreement figures
        // (a remaining set put back below is recorded again).
        for (_, set) in deleted {
            app.store
                .forget_region_set(*item_id, &set.annotator)
                .await?;
        }
        settle(app, project, *item_id, deleted).await?;
    }
    let n = app
        .store
        .ls_forget_box_annotations(project.id, ls_ids)
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Leave the item as it should be once `deleted` are gone.
async fn settle(
    app: &App,
    project: &Project,
    item_id: i64,
    deleted: &[(i64, RecordedSet)],
) -> ServiceResult<()> {
    let gone: HashSet<i64> = deleted.iter().map(|(id, _)| *id).collect();
    for _ in 0..SETTLE_ATTEMPTS {
        let item = app.store.region_item(item_id).await?;
        let speech = project.task == regions::SEGMENTS;
        let page = project.task == regions::LINES;
        let frame = match (speech, item.width, item.height, item.duration) {
            (false, Some(width), Some(height), _) if page => Frame::Page { width, height },
            (false, Some(width), Some(height), _) => Frame::Image { width, height },
            (true, _, _, Some(duration)) => Frame::Recording { duration },
            _ => return Ok(()),
        };
        let current = app.store.item_regions(item_id).await?;
        if !deleted
            .iter()
            .any(|(_, set)| set.holds(&current, project, frame))
        {
            // Someone else's set is the item's now: it stays.
            return Ok(());
        }
        let remaining = app
            .store
            .ls_box_annotations_of_item(project.id, item_id)
            .await?;
        let latest = remaining
            .into_iter()
            .rev()
            .filter(|(id, _)| !gone.contains(id))
            .find_map(|(_, json)| serde_json::from_str::<RecordedSet>(&json).ok());
        if let Some(set) = latest {
            let annotator = Annotator {
                name: set.annotator.clone(),
                on_behalf_by: None,
            };
            let req = RegionsIn {
                regions: set.boxes_in(),
            };
            match regions::put(app, project.id, item_id, &req, &annotator).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == Code::Conflict => return Err(e),
                // The set no longer fits the item (a machine region it
                // named was replaced): the review is undone instead.
                Err(e) => tracing::warn!(item = item_id, error = %e.message,
                    "a remaining Label Studio box annotation no longer fits its item"),
            }
        }
        let thresholds = crate::service::box_calibration::thresholds(&app.store, project).await?;
        let (machine, needs_review) = if speech {
            let run = app.store.get_item(item_id).await?.undecided_run;
            let (threshold, _) =
                crate::service::box_calibration::segment_threshold(&thresholds, project);
            unreviewed_segments(&current, threshold, run)
        } else if page {
            let audit = app.store.get_item(item_id).await?.audit;
            let (threshold, _) =
                crate::service::box_calibration::segment_threshold(&thresholds, project);
            unreviewed_lines(&current, threshold, audit)
        } else {
            unreviewed(&current, &thresholds)
        };
        let status = if needs_review {
            "needs_review"
        } else {
            "auto_accepted"
        };
        if app
            .store
            .reopen_region_review(item_id, item.rev, &machine, status)
            .await?
        {
            return Ok(());
        }
    }
    Err(ServiceError::new(
        Code::Conflict,
        format!("item {item_id} is being reviewed by others right now; the deletion is retried"),
    ))
}

/// The item's machine regions as the pre-label routed them, by the routing
/// rule (`regions::route_boxes`) under the thresholds in force, and whether
/// the image then needs a person.
fn unreviewed(
    current: &[RegionRecord],
    thresholds: &BoxThresholds,
) -> (Vec<(i64, &'static str)>, bool) {
    let machine: Vec<&RegionRecord> = current.iter().filter(|r| r.source == "machine").collect();
    let pairs: Vec<(&str, f64)> = machine
        .iter()
        .map(|r| (r.label.as_str(), r.score.unwrap_or(f64::NAN)))
        .collect();
    let routed = regions::route_boxes(&pairs, thresholds);
    let statuses = machine
        .iter()
        .zip(&routed.accepted)
        .map(|(r, &a)| (r.id, if a { "accepted" } else { "review" }))
        .collect();
    (statuses, routed.needs_review)
}

/// A recording's machine segments routed again by the routing rule
/// (`regions::route_segments`) under the segment threshold in force and
/// the recording's longest undecided stretch, as its job routed it.
/// Unknown undecided time (a recording pre-labeled before the stretch was
/// stored) counts as a long stretch: a person listens once more.
fn unreviewed_segments(
    current: &[RegionRecord],
    threshold: Option<f64>,
    undecided_run: Option<f64>,
) -> (Vec<(i64, &'static str)>, bool) {
    let stretch = undecided_run.unwrap_or(f64::INFINITY);
    rerouted(current, |scores| {
        regions::route_segments(scores, threshold, stretch)
    })
}

/// The item's machine regions with the status `route` gives their scores,
/// and whether the item then needs a person.
fn rerouted(
    current: &[RegionRecord],
    route: impl FnOnce(&[f64]) -> regions::Routed,
) -> (Vec<(i64, &'static str)>, bool) {
    let machine: Vec<&RegionRecord> = current.iter().filter(|r| r.source == "machine").collect();
    let scores: Vec<f64> = machine
        .iter()
        .map(|r| r.score.unwrap_or(f64::NAN))
        .collect();
    let routed = route(&scores);
    let statuses = machine
        .iter()
        .zip(&routed.accepted)
        .map(|(r, &a)| (r.id, if a { "accepted" } else { "review" }))
        .collect();
    (statuses, routed.needs_review)
}

/// A page's machine lines routed again by the routing rule
/// (`regions::route_lines`) under the line threshold in force; an audit
/// page leaves every line to a person, as its pre-label did.
fn unreviewed_lines(
    current: &[RegionRecord],
    threshold: Option<f64>,
    audit: bool,
) -> (Vec<(i64, &'static str)>, bool) {
    rerouted(current, |scores| {
        regions::route_lines(scores, threshold.filter(|_| !audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_set_reads_back_as_it_was_written() {
        let set = RecordedSet {
            annotator: "ls:ann@example.com".into(),
            boxes: vec![
                RecordedBox {
                    id: Some(4),
                    label: "text".into(),
                    bbox: Some(BoxPx::new(0.1, 0.2, 10.000000000000002, 20.5)),
                    segment: None,
                    text: None,
                },
                RecordedBox {
                    id: None,
                    label: "footer".into(),
                    bbox: Some(BoxPx::new(1.0, 2.0, 3.0, 4.0)),
                    segment: None,
                    text: None,
                },
                RecordedBox {
                    id: Some(9),
                    label: "Speech".into(),
                    bbox: None,
                    segment: Some(Span::new(0.25, 1.5)),
                    text: None,
                },
            ],
        };
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<RecordedSet>(&json).unwrap(), set);
        // A set kept before segments existed reads as boxes.
        let old = r#"{"annotator":"ls:a","boxes":[{"id":null,"label":"text","box":[1,2,3,4]}]}"#;
        let set: RecordedSet = serde_json::from_str(old).unwrap();
        assert_eq!(set.boxes[0].bbox, Some(BoxPx::new(1.0, 2.0, 3.0, 4.0)));
        assert_eq!(set.boxes[0].segment, None);
    }

    #[test]
    fn a_recording_is_routed_again_by_the_segment_rule() {
        let mut a = crate::store::RegionRecord {
            id: 1,
            source: "machine".into(),
            kind: "span".into(),
            label: "Speech".into(),
            bbox: None,
            segment: Some(Span::new(0.0, 1.0)),
            text: None,
            score: Some(0.9),
            uncertainty: None,
            status: "deleted".into(),
            replaces: None,
            model_version: None,
            calibration_version: None,
            annotator: Some("ls:x".into()),
            created_at: 0,
            updated_at: 0,
            char_scores: None,
        };
        let mut b = a.clone();
        b.id = 2;
        b.score = Some(0.4);
        let (s, review) = unreviewed_segments(&[a.clone(), b], Some(0.5), Some(0.0));
        assert_eq!(s, vec![(1, "accepted"), (2, "review")]);
        assert!(review);
        a.score = Some(0.95);
        let (s, review) = unreviewed_segments(std::slice::from_ref(&a), Some(0.5), Some(0.1));
        assert_eq!(s, vec![(1, "accepted")]);
        assert!(!review);
        // Undecided for long enough in total, or not known: a person listens.
        assert!(unreviewed_segments(std::slice::from_ref(&a), Some(0.5), Some(0.6)).1);
        assert!(unreviewed_segments(std::slice::from_ref(&a), Some(0.5), None).1);
    }
}
