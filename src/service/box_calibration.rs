//! Calibration for boxes (issue 22): the use case around
//! [`crate::calibrate::fit_boxes`], written once for every adapter.
//!
//! A detection project's audit sample is a uniform draw of **images** (the
//! exchangeable unit; see `calibrate::boxes`). Once people have reviewed
//! audit images, a fit matches each image's machine proposals to the boxes
//! people left (IoU ≥ τ, same class), picks per-class score thresholds by
//! Learn-then-Test, bounds what the proposals miss, and stores a version
//! that re-routes every machine box not yet seen by a person, in one
//! transaction. New images are routed by the version in force
//! ([`thresholds`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::calibration::Calibrator;
use super::error::{ServiceError, ServiceResult};
use super::regions::BoxThresholds;
use crate::calibrate::matching::{match_image, Prediction, Truth};
use crate::calibrate::{
    self, fit_boxes, miss_bound, AuditBox, AuditImage, BoxDesign, BoxFit, BoxOptions, RiskBound,
};
use crate::store::{
    BoxCoverage, Project, ProjectSettings, RegionRecord, Store, StoreError, DEFAULT_AUDIT_RATE,
    DEFAULT_DELTA,
};

/// IoU at which a machine box counts as matching a person's (τ), unless
/// the project sets `iou_threshold`.
pub const DEFAULT_IOU: f64 = 0.5;

/// The values of [`BoxStored::kind`]: a detection project's version, a
/// speech project's, an OCR project's.
const KIND: &str = "boxes";
const KIND_SEGMENTS: &str = "segments";
const KIND_LINES: &str = "lines";

/// One box calibration version as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BoxStored {
    /// `boxes` (a detection project's version), `segments` (a speech
    /// project's: the same fit with recordings for images and segments,
    /// as unit-height boxes, for boxes; see `Span::as_box`) or `lines` (an
    /// OCR project's: pages for images, and a line is correct only when its
    /// text is also the person's, see `text_match`).
    pub kind: String,
    /// `lines` only: how a line's text was compared with the person's,
    /// `exact` (after Unicode NFC) or `relaxed` (also case and white space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_match: Option<String>,
    /// The scoring function the fit tested: `<model>@<version>`.
    pub model_version: String,
    /// `shared` (one score threshold for every class, at the full δ) or
    /// `per-class` (one per class, Bonferroni over the classes).
    pub method: String,
    /// The p-value every candidate was tested with: `betting` or `hoeffding-bentkus`.
    pub bound: String,
    pub target: f64,
    pub delta: f64,
    /// τ: a machine box is correct when it matches a person's box of its
    /// class at IoU ≥ this.
    pub iou_threshold: f64,
    pub classes: Vec<BoxClassView>,
    /// Reviewed audit images the thresholds were tested on, and how many of
    /// them hold at least one proposal.
    pub audit_images: usize,
    pub images_with_proposals: usize,
    /// Reviewed audit images when the fit ran (the refit counter starts here).
    pub audit_spent_at_fit: i64,
    /// Audit proposals accepted at the chosen thresholds, and correct among them.
    pub accepted: usize,
    pub correct: usize,
    /// `correct / accepted` on the audit images (descriptive).
    pub precision: Option<f64>,
    /// Upper confidence bound (1 − δ) on the expected per-image
    /// false-discovery proportion of accepted boxes at these thresholds
    /// (descriptive: the thresholds were chosen on the same images; the
    /// guarantee is the fit's test).
    pub fdp_upper: Option<f64>,
    /// p-value of the loosest passing candidate; null: none passed, no box
    /// is auto-accepted.
    pub p_value: Option<f64>,
    /// What the proposals miss on the audit images.
    pub miss: MissView,
    /// Share of machine boxes (outside the audit sample and people's
    /// reviews) auto-accepted under this version.
    pub coverage: f64,
}

/// Per class: its threshold, what the audit says at it, and its misses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BoxClassView {
    pub label: String,
    /// Auto-accept boxes of this class with score ≥ this; null: none.
    pub threshold: Option<f64>,
    /// Audit images holding a proposal of this class, and those proposals.
    pub audit_images: usize,
    pub audit_boxes: usize,
    /// Of those, accepted at the threshold, and correct among them.
    pub accepted: usize,
    pub correct: usize,
    pub precision: Option<f64>,
    /// Upper confidence bound (1 − δ) on the expected per-image
    /// false-discovery proportion of this class's accepted boxes, over
    /// images holding a proposal of the class (descriptive).
    pub fdp_upper: Option<f64>,
    /// People's boxes of this class on the audit images, and those no
    /// proposal matched.
    pub truths: usize,
    pub missed: usize,
    pub miss_rate: Option<f64>,
    /// Share of this class's machine boxes auto-accepted under this version.
    pub coverage: f64,
}

/// The miss figures of the audit images (see `calibrate::miss_bound`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MissView {
    /// Audit images with at least one true box.
    pub images: usize,
    pub truths: usize,
    pub missed: usize,
    /// Pooled `missed / truths`.
    pub rate: Option<f64>,
    /// Mean per-image miss proportion, its upper confidence bound at
    /// 1 − δ, and the conformal bound on the next image's expected one.
    pub mean: Option<f64>,
    pub upper: f64,
    pub crc: f64,
}

/// Parse a stored version as a box or segment calibration; `None` when it
/// is a classification one.
pub fn parse(body: &str) -> Option<BoxStored> {
    serde_json::from_str::<BoxStored>(body)
        .ok()
        .filter(|s| s.kind == KIND || s.kind == KIND_SEGMENTS || s.kind == KIND_LINES)
}

/// The box thresholds in force for a detection project: none before its
/// first box calibration (every image then goes to review).
pub async fn thresholds(store: &Store, project: &Project) -> Result<BoxThresholds, StoreError> {
    if project.calibration_version.is_none() {
        return Ok(BoxThresholds::default());
    }
    let Some(row) = store.current_calibration(project.id).await? else {
        return Ok(BoxThresholds::default());
    };
    let Some(s) = parse(&row.body) else {
        tracing::error!(
            project = project.id,
            version = row.version,
            "the calibration in force is not a box calibration; auto-accepting no box"
        );
        return Ok(BoxThresholds {
            per_class: HashMap::new(),
            calibration_version: Some(row.version),
        });
    };
    Ok(BoxThresholds {
        per_class: s
            .classes
            .iter()
            .filter_map(|c| c.threshold.map(|t| (c.label.clone(), t)))
            .collect(),
        calibration_version: Some(row.version),
    })
}

/// The segment threshold in force for a speech project, and the
/// calibration version it comes from: its recording calibration's once it
/// has one (none for its label: no segment is auto-accepted), else its
/// fixed `threshold`, without a guarantee.
pub fn segment_threshold(
    thresholds: &BoxThresholds,
    project: &Project,
) -> (Option<f64>, Option<i64>) {
    match thresholds.calibration_version {
        Some(v) => (
            project
                .labels
                .first()
                .and_then(|l| thresholds.per_class.get(l))
                .copied(),
            Some(v),
        ),
        None => (project.threshold, None),
    }
}

/// Whether image `item_id` of a detection project is drawn into the audit
/// sample, and with which probability: a uniform draw at the project's
/// `audit_rate`, so that audit images are a uniform sample of all images.
pub fn audit_draw(settings: &ProjectSettings, project_id: i64, item_id: i64) -> (bool, f64) {
    let rate = settings
        .audit_rate
        .unwrap_or(DEFAULT_AUDIT_RATE)
        .clamp(0.0, 1.0);
    (
        super::calibration::audit_uniform(project_id, item_id) < rate,
        rate,
    )
}

/// The τ of a project.
pub fn iou_threshold(settings: &ProjectSettings) -> f64 {
    settings.iou_threshold.unwrap_or(DEFAULT_IOU)
}

/// One reviewed audit image, matched: its [`AuditImage`] and per class the
/// people's boxes and those no proposal matched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchedImage {
    pub image: AuditImage,
    pub truths_by_class: Vec<usize>,
    pub missed_by_class: Vec<usize>,
}

/// The text rule of an OCR project's calibration (`settings.text_match`),
/// `None` for projects whose regions carry no text.
pub fn text_rule(project: &Project) -> Option<calibrate::matching::TextMatch> {
    (project.task == super::regions::LINES).then(|| {
        project
            .settings
            .text_match
            .as_deref()
            .and_then(calibrate::matching::TextMatch::parse)
            .unwrap_or_default()
    })
}

/// **Match one reviewed image** (or recording, or page), pure. Proposals
/// are every machine region as the model proposed it (whatever the
/// reviewer did with it); the truth is what the reviewer left: machine
/// regions kept (`accepted`) and the people's regions (`added`,
/// `corrected`). A segment is matched as its unit-height box, whose IoU is
/// the segments' own. Regions of a label outside `labels`, or without a
/// geometry or a score, take no part.
///
/// With a `text` rule (OCR pages), matching is by geometry as for boxes,
/// and a matched line is **correct** only when its text is also the
/// person's under the rule; a person's line no machine line overlaps at
/// IoU ≥ τ is a line **missed by detection** (the miss figures), while a
/// line found but misread is a wrong acceptance, not a miss.
pub fn match_reviewed(
    regions: &[RegionRecord],
    labels: &[String],
    iou: f64,
    text: Option<calibrate::matching::TextMatch>,
) -> Result<MatchedImage, calibrate::CalibrateError> {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut preds: Vec<Prediction> = Vec::new();
    let mut truth: Vec<Truth> = Vec::new();
    // Each prediction's and truth's text, in step with them.
    let mut pred_text: Vec<&str> = Vec::new();
    let mut truth_text: Vec<&str> = Vec::new();
    for r in regions {
        let geometry = r.bbox.or_else(|| r.segment.map(|s| s.as_box()));
        let (Some(b), Some(&class)) = (geometry, index.get(r.label.as_str())) else {
            continue;
        };
        let t = r.text.as_deref().unwrap_or("");
        if r.source == "machine" {
            if let Some(score) = r.score.filter(|s| s.is_finite()) {
                preds.push((b, class, score));
                pred_text.push(t);
            }
            if r.status == "accepted" {
                truth.push((b, class));
                truth_text.push(t);
            }
        } else {
            truth.push((b, class));
            truth_text.push(t);
        }
    }
    let m = match_image(&preds, &truth, iou)?;
    let correct = |i: usize, t: &Option<usize>| match (t, text) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(g), Some(rule)) => rule.same(pred_text[i], truth_text[*g]),
    };
    let mut truths_by_class = vec![0usize; labels.len()];
    let mut missed_by_class = vec![0usize; labels.len()];
    for (_, class) in &truth {
        truths_by_class[*class] += 1;
    }
    for &g in &m.missed {
        missed_by_class[truth[g].1] += 1;
    }
    Ok(MatchedImage {
        image: AuditImage {
            boxes: preds
                .iter()
                .zip(&m.truth_of)
                .enumerate()
                .map(|(i, ((_, class, score), t))| AuditBox {
                    class: *class,
                    score: *score,
                    correct: correct(i, t),
                })
                .collect(),
            truths: truth.len(),
            missed: m.missed.len(),
        },
        truths_by_class,
        missed_by_class,
    })
}

/// The options of a project's box fit: its target, δ and design (the
/// project's `threshold_method`: `per-class`, else shared).
pub fn options(project: &Project) -> BoxOptions {
    let design = match project.settings.threshold_method.as_deref() {
        Some("per-class") => BoxDesign::PerClass,
        _ => BoxDesign::Shared,
    };
    BoxOptions {
        target: project.precision_target,
        delta: project.settings.delta.unwrap_or(DEFAULT_DELTA),
        design,
        ..BoxOptions::default()
    }
}

/// **The fit**, pure: thresholds, per-class audit figures and misses from
/// the matched audit images. `coverage` is filled in by the commit.
pub fn fit(
    project: &Project,
    model_version: String,
    matched: &[MatchedImage],
    audit_spent: i64,
) -> Result<BoxStored, calibrate::CalibrateError> {
    let k = project.labels.len();
    let opts = options(project);
    let images: Vec<AuditImage> = matched.iter().map(|m| m.image.clone()).collect();
    let fitted: BoxFit = fit_boxes(&images, k, &opts)?;
    let miss = miss_bound(&images, opts.delta, opts.bound)?;
    let alpha_share =
        |accepted: usize, correct: usize| (accepted > 0).then(|| correct as f64 / accepted as f64);
    // Per-image FDP of the accepted boxes `include`d (0 with none accepted),
    // over images holding a proposal `include`d.
    let fdp_upper =
        |include: &dyn Fn(&AuditBox) -> bool| -> Result<Option<f64>, calibrate::CalibrateError> {
            let losses: Vec<f64> = images
                .iter()
                .filter(|im| im.boxes.iter().any(include))
                .map(|im| {
                    let (mut acc, mut cor) = (0usize, 0usize);
                    for b in im
                        .boxes
                        .iter()
                        .filter(|b| include(b) && fitted.accepts(b.class, b.score))
                    {
                        acc += 1;
                        cor += usize::from(b.correct);
                    }
                    if acc == 0 {
                        0.0
                    } else {
                        (acc - cor) as f64 / acc as f64
                    }
                })
                .collect();
            if losses.is_empty() {
                return Ok(None);
            }
            calibrate::risk_upper_bound(&losses, opts.delta, opts.bound).map(Some)
        };
    let mut classes = Vec::with_capacity(k);
    for (c, fc) in fitted.classes.iter().enumerate() {
        let truths: usize = matched.iter().map(|m| m.truths_by_class[c]).sum();
        let missed: usize = matched.iter().map(|m| m.missed_by_class[c]).sum();
        classes.push(BoxClassView {
            label: project.labels[c].clone(),
            threshold: fc.threshold,
            audit_images: fc.images,
            audit_boxes: fc.boxes,
            accepted: fc.accepted,
            correct: fc.correct,
            precision: alpha_share(fc.accepted, fc.correct),
            fdp_upper: if fc.threshold.is_some() {
                fdp_upper(&|b: &AuditBox| b.class == c)?
            } else {
                None
            },
            truths,
            missed,
            miss_rate: (truths > 0).then(|| missed as f64 / truths as f64),
            coverage: 0.0,
        });
    }
    let any_threshold = fitted.classes.iter().any(|c| c.threshold.is_some());
    Ok(BoxStored {
        kind: match project.task.as_str() {
            super::regions::SEGMENTS => KIND_SEGMENTS,
            super::regions::LINES => KIND_LINES,
            _ => KIND,
        }
        .to_string(),
        text_match: text_rule(project).map(|r| {
            match r {
                calibrate::matching::TextMatch::Exact => "exact",
                calibrate::matching::TextMatch::Relaxed => "relaxed",
            }
            .to_string()
        }),
        model_version,
        method: match opts.design {
            BoxDesign::Shared => "shared",
            BoxDesign::PerClass => "per-class",
        }
        .to_string(),
        bound: match opts.bound {
            RiskBound::Betting { .. } => "betting",
            RiskBound::HoeffdingBentkus => "hoeffding-bentkus",
        }
        .to_string(),
        target: opts.target,
        delta: opts.delta,
        iou_threshold: iou_threshold(&project.settings),
        classes,
        audit_images: fitted.audit_images,
        images_with_proposals: fitted.images_with_proposals,
        audit_spent_at_fit: audit_spent,
        accepted: fitted.accepted,
        correct: fitted.correct,
        precision: alpha_share(fitted.accepted, fitted.correct),
        fdp_upper: if any_threshold {
            fdp_upper(&|_| true)?
        } else {
            None
        },
        p_value: fitted.p_value,
        miss: MissView {
            images: miss.images,
            truths: miss.truths,
            missed: miss.missed,
            rate: miss.pooled,
            mean: miss.mean,
            upper: miss.upper,
            crc: miss.crc,
        },
        coverage: 0.0,
    })
}

/// Fill a fit's coverage from the commit's per-label counts.
fn with_coverage(mut s: BoxStored, counts: &[BoxCoverage]) -> BoxStored {
    let share = |boxes: i64, accepted: i64| {
        if boxes <= 0 {
            0.0
        } else {
            accepted as f64 / boxes as f64
        }
    };
    let (all, accepted) = counts
        .iter()
        .fold((0, 0), |acc, c| (acc.0 + c.boxes, acc.1 + c.accepted));
    s.coverage = share(all, accepted);
    for class in &mut s.classes {
        if let Some(c) = counts.iter().find(|c| c.label == class.label) {
            class.coverage = share(c.boxes, c.accepted);
        }
    }
    s
}

/// Fit a new box calibration version for detection project `project` (or
/// segment calibration for a speech project) and re-route its machine
/// regions under it. Returns the new version.
pub async fn run(cal: &Calibrator, project: &Project) -> ServiceResult<i64> {
    let reviewed = cal.store.audit_image_regions(project.id).await?;
    let spent = cal.store.audit_counts(project.id).await?.spent;
    let model_version = cal
        .hub
        .get(&project.model)
        .map(|m| format!("{}@{}", project.model, m.model.version()))
        .unwrap_or_default();
    let iou = iou_threshold(&project.settings);
    let text = text_rule(project);
    let p = project.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let matched = reviewed
            .iter()
            .map(|(_, regions)| match_reviewed(regions, &p.labels, iou, text))
            .collect::<Result<Vec<_>, _>>()?;
        fit(&p, model_version, &matched, spent)
    })
    .await
    .map_err(|e| ServiceError::internal(e.to_string()))?
    .map_err(|e| ServiceError::internal(format!("box calibration: {e}")))?;
    let thresholds: Vec<(String, f64)> = stored
        .classes
        .iter()
        .filter_map(|c| c.threshold.map(|t| (c.label.clone(), t)))
        .collect();
    let audit_images = stored.audit_images as i64;
    // A recording is held for a person whatever its segments' scores when
    // the model stayed undecided for a stretch, as the job routed it.
    let held = (project.task == super::regions::SEGMENTS)
        .then_some(super::regions::UNDECIDED_STRETCH_SECONDS);
    let mut kept: Option<BoxStored> = None;
    let committed = cal
        .store
        .commit_box_calibration(project.id, audit_images, &thresholds, held, |counts| {
            let s = with_coverage(stored, counts);
            let json = serde_json::to_string(&s).unwrap_or_else(|_| "{}".into());
            kept = Some(s);
            json
        })
        .await?;
    if let Some(s) = kept {
        tracing::info!(
            project = project.id,
            version = committed.version,
            audit_images = s.audit_images,
            classes_calibrated = thresholds.len(),
            coverage = s.coverage,
            miss_rate = ?s.miss.rate,
            rerouted_images = committed.images,
            "box calibration version stored; images re-routed"
        );
    }
    Ok(committed.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::BoxPx;

    fn region(
        source: &str,
        status: &str,
        label: &str,
        b: [f64; 4],
        score: Option<f64>,
    ) -> RegionRecord {
        RegionRecord {
            id: 0,
            source: source.into(),
            kind: "box".into(),
            label: label.into(),
            bbox: Some(BoxPx::new(b[0], b[1], b[2], b[3])),
            segment: None,
            text: None,
            score,
            uncertainty: None,
            status: status.into(),
            replaces: None,
            model_version: None,
            calibration_version: None,
            annotator: Some("ann".into()),
            created_at: 0,
            updated_at: 0,
            char_scores: None,
        }
    }

    #[test]
    fn a_review_is_matched_against_what_the_reviewer_left() {
        let labels = vec!["text".to_string(), "title".to_string()];
        let regions = vec![
            // kept: correct, and a truth
            region(
                "machine",
                "accepted",
                "text",
                [0.0, 0.0, 100.0, 100.0],
                Some(0.9),
            ),
            // moved far: wrong; the corrected human box is a truth it misses
            region(
                "machine",
                "corrected",
                "title",
                [200.0, 0.0, 300.0, 50.0],
                Some(0.8),
            ),
            region(
                "human",
                "corrected",
                "title",
                [200.0, 400.0, 300.0, 450.0],
                None,
            ),
            // deleted: wrong, no truth
            region(
                "machine",
                "deleted",
                "text",
                [0.0, 500.0, 50.0, 550.0],
                Some(0.4),
            ),
            // added by a person: a miss
            region("human", "added", "text", [600.0, 600.0, 700.0, 700.0], None),
            // a label the project does not have takes no part
            region("human", "added", "stamp", [0.0, 0.0, 1.0, 1.0], None),
        ];
        let m = match_reviewed(&regions, &labels, 0.5, None).expect("valid");
        let correct: Vec<bool> = m.image.boxes.iter().map(|b| b.correct).collect();
        assert_eq!(correct, vec![true, false, false]);
        assert_eq!(m.image.truths, 3);
        assert_eq!(m.image.missed, 2);
        assert_eq!(m.truths_by_class, vec![2, 1]);
        assert_eq!(m.missed_by_class, vec![1, 1]);
    }

    #[test]
    fn a_line_is_correct_when_its_box_matches_and_its_text_is_the_persons() {
        use crate::calibrate::matching::TextMatch;
        let labels = vec!["Text".to_string()];
        let line = |source: &str, status: &str, y: f64, text: &str, score: Option<f64>| {
            let mut r = region(source, status, "Text", [0.0, y, 300.0, y + 20.0], score);
            r.text = Some(text.into());
            r
        };
        let regions = vec![
            // kept as read: correct
            line("machine", "accepted", 0.0, "caf\u{e9} au lait", Some(0.99)),
            // text corrected in place: the machine line is wrong, not missed
            line("machine", "corrected", 40.0, "He1lo", Some(0.9)),
            line("human", "corrected", 40.0, "Hello", None),
            // the same text, composed differently: NFC makes it correct
            line("machine", "corrected", 80.0, "cafe\u{301}", Some(0.95)),
            line("human", "corrected", 80.0, "caf\u{e9}", None),
            // a line detection missed
            line("human", "added", 120.0, "missed", None),
        ];
        let m = match_reviewed(&regions, &labels, 0.5, Some(TextMatch::Exact)).expect("valid");
        let correct: Vec<bool> = m.image.boxes.iter().map(|b| b.correct).collect();
        assert_eq!(correct, vec![true, false, true]);
        assert_eq!((m.image.truths, m.image.missed), (4, 1));
        // Without the text rule (boxes) the misread line would count as right.
        let m = match_reviewed(&regions, &labels, 0.5, None).expect("valid");
        assert!(m.image.boxes.iter().all(|b| b.correct));
    }

    #[test]
    fn a_classification_version_is_not_a_box_one() {
        assert!(parse(r#"{"model_version":"m","method":"global"}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
