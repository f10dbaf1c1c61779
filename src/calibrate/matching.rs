//! Matching predicted boxes to people's boxes, and COCO's mAP.
//!
//! Calibration for boxes needs one question answered per predicted box: is
//! it right? A box is right when it matches a human box of the **same
//! class** at IoU ≥ τ, and each human box can make only one predicted box
//! right (a duplicate detection of the same object is a false positive).
//! The human boxes that nothing matches are the misses, the other half of
//! what a reviewer is told. [`match_image`] answers both for one image.
//!
//! The assignment is COCO's greedy one (pycocotools `COCOeval.evaluateImg`),
//! so that "correct" in calibration and "true positive" in the mAP that
//! `simulate` reports are the same thing: predictions in descending score
//! order, ties kept in input order (pycocotools sorts with
//! `np.argsort(-scores, kind='mergesort')`, a stable sort); each takes, among
//! the still unmatched truths of its class, the one with the highest IoU ≥
//! τ; on equal IoU the later truth wins (pycocotools replaces its best on
//! `iou >= best`). τ is capped at 1 − 1e-10 as pycocotools does, so τ = 1
//! still matches a box with itself.
//!
//! [`coco_map`] is `COCOeval` for `iouType='bbox'`, area range `all`,
//! `maxDets` 100, written from its definition and checked against
//! pycocotools to 1e-9 on `tests/fixtures/detect/map_cases.json` (made by
//! `scripts/make_map_fixtures.py`). Its IoU is pycocotools' `bbIou` on COCO
//! `[x, y, w, h]` (corners rebuilt as `x + w`, areas `w·h`, no +1), which
//! can differ from [`BoxPx::iou`] by float rounding only.
//!
//! Scope, stated so nobody assumes more: every box is `iscrowd = 0`, and no
//! area filter applies (pycocotools' `all` range ignores boxes above
//! 10¹⁰ px², which no image that [`BoxPx::check`] accepts can hold).

use super::CalibrateError;
use crate::region::BoxPx;
use std::cmp::Ordering;

/// A predicted box: where, which class (an index), the model's score.
pub type Prediction = (BoxPx, usize, f64);
/// A person's box: where, which class.
pub type Truth = (BoxPx, usize);

/// pycocotools' cap on an IoU threshold, so that τ = 1 can still match.
const IOU_CAP: f64 = 1.0 - 1e-10;

/// The outcome of matching one image's predictions to its truths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matches {
    /// Per prediction, in input order: the index of the truth it matched,
    /// or `None` (a false positive at this τ).
    pub truth_of: Vec<Option<usize>>,
    /// Indices of the truths no prediction matched (misses), ascending.
    pub missed: Vec<usize>,
}

/// Matches one image's predictions to its truths at IoU ≥ `iou_threshold`
/// (in (0, 1]), COCO's greedy way (see the module doc). An image without
/// predictions, without truths, or both, is valid.
pub fn match_image(
    preds: &[Prediction],
    truth: &[Truth],
    iou_threshold: f64,
) -> Result<Matches, CalibrateError> {
    check_iou_threshold(iou_threshold)?;
    check_image(preds, truth)?;
    let order = score_order(preds.iter().map(|p| p.2));
    let assigned = assign(order.len(), truth.len(), iou_threshold, |d, g| {
        let (pred_box, pred_class, _) = preds[order[d]];
        let (truth_box, truth_class) = truth[g];
        (pred_class == truth_class).then(|| pred_box.iou(&truth_box))
    });
    let mut truth_of = vec![None; preds.len()];
    for (rank, matched) in assigned.into_iter().enumerate() {
        truth_of[order[rank]] = matched;
    }
    let mut taken = vec![false; truth.len()];
    for g in truth_of.iter().flatten() {
        taken[*g] = true;
    }
    let missed = (0..truth.len()).filter(|&g| !taken[g]).collect();
    Ok(Matches { truth_of, missed })
}

/// COCO's greedy assignment for detections already in matching order:
/// detection `d` (0-based rank) takes the untaken truth with the highest
/// `iou(d, g) ≥ threshold`, the later truth on ties. `iou` returns `None`
/// for a pair that may never match (different classes). Returns the truth
/// each rank took.
fn assign(
    n_dets: usize,
    n_truths: usize,
    threshold: f64,
    iou: impl Fn(usize, usize) -> Option<f64>,
) -> Vec<Option<usize>> {
    let mut taken = vec![false; n_truths];
    (0..n_dets)
        .map(|d| {
            let mut best = threshold.min(IOU_CAP);
            let mut chosen = None;
            for (g, &is_taken) in taken.iter().enumerate() {
                match iou(d, g) {
                    Some(v) if !is_taken && v >= best => {
                        best = v;
                        chosen = Some(g);
                    }
                    _ => {}
                }
            }
            if let Some(g) = chosen {
                taken[g] = true;
            }
            chosen
        })
        .collect()
}

/// Indices by descending score, ties in input order (a stable sort, as
/// numpy's mergesort). Scores are finite here, so `partial_cmp` is total;
/// it also keeps 0.0 and −0.0 equal, as numpy does (`total_cmp` would not).
fn score_order(scores: impl Iterator<Item = f64>) -> Vec<usize> {
    let scores: Vec<f64> = scores.collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(Ordering::Equal));
    order
}

fn check_iou_threshold(t: f64) -> Result<(), CalibrateError> {
    if t.is_finite() && t > 0.0 && t <= 1.0 {
        Ok(())
    } else {
        Err(CalibrateError::OutOfRange {
            name: "iou_threshold",
            value: t,
            domain: "(0, 1]",
        })
    }
}

fn finite_box(b: &BoxPx) -> bool {
    [b.x0, b.y0, b.x1, b.y1].iter().all(|v| v.is_finite())
}

/// The first prediction with a NaN or infinite score or box: a NaN would
/// make the score order and the IoUs meaningless.
fn first_non_finite_prediction(preds: &[Prediction]) -> Option<usize> {
    preds
        .iter()
        .position(|(b, _, score)| !score.is_finite() || !finite_box(b))
}

fn first_non_finite_truth(truth: &[Truth]) -> Option<usize> {
    truth.iter().position(|(b, _)| !finite_box(b))
}

/// The first class not below `num_classes`, if any.
fn first_class_out_of_range(
    mut classes: impl Iterator<Item = usize>,
    num_classes: usize,
) -> Option<usize> {
    classes.find(|&class| class >= num_classes)
}

/// [`match_image`]'s input check: the error names the prediction or truth.
fn check_image(preds: &[Prediction], truth: &[Truth]) -> Result<(), CalibrateError> {
    if let Some(index) = first_non_finite_prediction(preds) {
        return Err(CalibrateError::NonFinite {
            what: "preds (score or box)",
            index,
        });
    }
    if let Some(index) = first_non_finite_truth(truth) {
        return Err(CalibrateError::NonFinite {
            what: "truth (box)",
            index,
        });
    }
    Ok(())
}

/// [`coco_map`]'s input check: the error names the image.
fn check_images(images: &[CocoImage], num_classes: usize) -> Result<(), CalibrateError> {
    for (index, image) in images.iter().enumerate() {
        if first_non_finite_prediction(&image.preds).is_some() {
            return Err(CalibrateError::NonFinite {
                what: "a prediction's score or box in images",
                index,
            });
        }
        if first_non_finite_truth(&image.truth).is_some() {
            return Err(CalibrateError::NonFinite {
                what: "a truth box in images",
                index,
            });
        }
        let classes = image.preds.iter().map(|p| p.1);
        let classes = classes.chain(image.truth.iter().map(|t| t.1));
        if let Some(class) = first_class_out_of_range(classes, num_classes) {
            return Err(CalibrateError::ClassOutOfRange {
                what: "a class in images",
                index,
                class,
                num_classes,
            });
        }
    }
    Ok(())
}

// ---- COCO mAP ---------------------------------------------------------------

/// Detections kept per image and class, as pycocotools' `maxDets[-1]`.
pub const MAX_DETECTIONS: usize = 100;

/// One image for [`coco_map`]: people's boxes and the model's, classes in
/// `0..num_classes`. Images are taken in slice order, which stands for
/// pycocotools' ascending image ids (it matters when scores tie across
/// images).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoImage {
    pub truth: Vec<Truth>,
    pub preds: Vec<Prediction>,
}

/// COCO bbox evaluation (area `all`, 100 detections per image and class).
#[derive(Debug, Clone, PartialEq)]
pub struct CocoSummary {
    /// The IoU thresholds .50:.05:.95, bit for bit as pycocotools' `linspace`.
    pub iou_thresholds: Vec<f64>,
    /// `class_ap[k][t]`: AP of class k at `iou_thresholds[t]`, 101-point
    /// interpolated; `None` for a class without any truth box (pycocotools'
    /// −1), which the means leave out.
    pub class_ap: Vec<Vec<Option<f64>>>,
    /// AP@0.5 per class (`class_ap[k][0]`).
    pub class_ap_50: Vec<Option<f64>>,
    /// mAP@0.5 over the classes with truth; `None` when no class has any.
    pub map_50: Option<f64>,
    /// mAP@[.5:.95] over the classes with truth; `None` when none has any.
    pub map_50_95: Option<f64>,
}

/// `np.linspace(start, stop, num)` to the bit: `i·step + start` with
/// `step = (stop − start)/(num − 1)`, the last value set to `stop`. The
/// exact values matter where a recall equals a threshold (`3/10` against
/// `30·0.01`).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / num.saturating_sub(1).max(1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = values.last_mut().filter(|_| num > 1) {
        *last = stop;
    }
    values
}

/// pycocotools' IoU thresholds, `np.linspace(.5, 0.95, 10)`.
pub fn coco_iou_thresholds() -> Vec<f64> {
    linspace(0.5, 0.95, 10)
}

/// pycocotools' recall thresholds, `np.linspace(.0, 1.00, 101)`.
pub fn coco_recall_thresholds() -> Vec<f64> {
    linspace(0.0, 1.0, 101)
}

/// pycocotools' `bbIou` (maskApi.c) for one detection and one truth, both
/// COCO `[x, y, w, h]`, not crowd.
fn coco_iou(d: [f64; 4], g: [f64; 4]) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    inter / (d[2] * d[3] + g[2] * g[3] - inter)
}

/// One class's detections over all images, in image order and, within an
/// image, by score: the score and whether it matched at each IoU threshold.
struct ClassDetections {
    scored: Vec<(f64, Vec<bool>)>,
    n_truth: usize,
}

/// Computes COCO's bbox AP per class and IoU threshold and the two mAPs,
/// equal to pycocotools' `COCOeval(iouType='bbox')` (`stats[0]`, `stats[1]`
/// and the per-class means of `eval['precision']`) up to float summation
/// order. Classes are `0..num_classes`; a class with predictions but no
/// truth box anywhere has AP `None`, as pycocotools' −1.
pub fn coco_map(images: &[CocoImage], num_classes: usize) -> Result<CocoSummary, CalibrateError> {
    check_images(images, num_classes)?;
    let thresholds = coco_iou_thresholds();
    let recall_thresholds = coco_recall_thresholds();
    let class_ap: Vec<Vec<Option<f64>>> = (0..num_classes)
        .map(|class| {
            let detections = class_detections(images, class, &thresholds);
            (0..thresholds.len())
                .map(|t| class_ap_at(&detections, t, &recall_thresholds))
                .collect()
        })
        .collect();
    let class_ap_50 = class_ap.iter().map(|row| row[0]).collect();
    let map_50 = mean_of_present(class_ap.iter().map(|row| row[0]));
    let map_50_95 = mean_of_present(
        class_ap
            .iter()
            .map(|row| mean_of_present(row.iter().copied())),
    );
    Ok(CocoSummary {
        iou_thresholds: thresholds,
        class_ap,
        class_ap_50,
        map_50,
        map_50_95,
    })
}

/// Matches one class in every image at every threshold (pycocotools'
/// `computeIoU` + `evaluateImg`): detections sorted by score and cut to
/// [`MAX_DETECTIONS`] per image, truths in input order.
fn class_detections(images: &[CocoImage], class: usize, thresholds: &[f64]) -> ClassDetections {
    let mut scored = Vec::new();
    let mut n_truth = 0;
    for image in images {
        let truths: Vec<[f64; 4]> = image
            .truth
            .iter()
            .filter(|t| t.1 == class)
            .map(|t| t.0.to_coco())
            .collect();
        let preds: Vec<&Prediction> = image.preds.iter().filter(|p| p.1 == class).collect();
        let mut order = score_order(preds.iter().map(|p| p.2));
        order.truncate(MAX_DETECTIONS);
        let dets: Vec<[f64; 4]> = order.iter().map(|&i| preds[i].0.to_coco()).collect();
        let ious: Vec<Vec<f64>> = dets
            .iter()
            .map(|&d| truths.iter().map(|&g| coco_iou(d, g)).collect())
            .collect();
        let per_threshold: Vec<Vec<Option<usize>>> = thresholds
            .iter()
            .map(|&t| assign(dets.len(), truths.len(), t, |d, g| Some(ious[d][g])))
            .collect();
        for (rank, &i) in order.iter().enumerate() {
            let matched = per_threshold.iter().map(|m| m[rank].is_some()).collect();
            scored.push((preds[i].2, matched));
        }
        n_truth += truths.len();
    }
    ClassDetections { scored, n_truth }
}

/// pycocotools' `accumulate` for one class and one IoU threshold, then the
/// mean over recall thresholds that `summarize` takes: detections of all
/// images merged by score (stable, image order on ties), cumulative TP/FP,
/// precision made non-increasing from the right, and at each recall
/// threshold r the precision at the first rank whose recall is ≥ r
/// (`np.searchsorted(rc, r, side='left')`; 0 past the last rank).
fn class_ap_at(detections: &ClassDetections, t: usize, recall_thresholds: &[f64]) -> Option<f64> {
    if detections.n_truth == 0 {
        return None;
    }
    let n_truth = detections.n_truth as f64;
    let order = score_order(detections.scored.iter().map(|s| s.0));
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let mut recall = Vec::with_capacity(order.len());
    let mut precision = Vec::with_capacity(order.len());
    for &i in &order {
        if detections.scored[i].1[t] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        recall.push(tp / n_truth);
        precision.push(tp / (fp + tp + f64::EPSILON));
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let sum: f64 = recall_thresholds
        .iter()
        .map(|&r| {
            let first = recall.partition_point(|&rc| rc < r);
            precision.get(first).copied().unwrap_or(0.0)
        })
        .sum();
    Some(sum / recall_thresholds.len() as f64)
}

/// The mean of the present values (pycocotools' `np.mean(s[s > -1])`), or
/// `None` when none is.
fn mean_of_present(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    if present.is_empty() {
        None
    } else {
        Some(present.iter().sum::<f64>() / present.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x0: f64, y0: f64, x1: f64, y1: f64) -> BoxPx {
        BoxPx::new(x0, y0, x1, y1)
    }

    fn small_box() -> impl proptest::strategy::Strategy<Value = BoxPx> {
        use proptest::prelude::*;
        (0u8..20, 0u8..20, 1u8..8, 1u8..8).prop_map(|(x, y, w, h)| {
            let (x, y) = (f64::from(x), f64::from(y));
            b(x, y, x + f64::from(w), y + f64::from(h))
        })
    }

    proptest::proptest! {
        /// Whatever the boxes: a truth is taken at most once, only by a
        /// prediction of its class at IoU ≥ τ, and the misses are exactly
        /// the truths nobody took.
        #[test]
        fn matching_invariants(
            preds in proptest::collection::vec((small_box(), 0usize..3, 0u8..5), 0..12),
            truth in proptest::collection::vec((small_box(), 0usize..3), 0..12),
            tau in 0.05f64..=1.0,
        ) {
            let preds: Vec<Prediction> =
                preds.into_iter().map(|(bx, c, s)| (bx, c, f64::from(s) / 4.0)).collect();
            let m = match_image(&preds, &truth, tau).unwrap();
            let mut taken = vec![0; truth.len()];
            for (p, g) in m.truth_of.iter().enumerate() {
                if let Some(g) = *g {
                    taken[g] += 1;
                    proptest::prop_assert_eq!(preds[p].1, truth[g].1);
                    proptest::prop_assert!(preds[p].0.iou(&truth[g].0) >= tau.min(IOU_CAP));
                }
            }
            proptest::prop_assert!(taken.iter().all(|&n| n <= 1));
            let missed: Vec<usize> = (0..truth.len()).filter(|&g| taken[g] == 0).collect();
            proptest::prop_assert_eq!(m.missed, missed);
        }
    }

    #[test]
    fn matches_only_within_a_class() {
        let truth = [(b(0.0, 0.0, 10.0, 10.0), 1)];
        let preds = [
            (b(0.0, 0.0, 10.0, 10.0), 0, 0.9),
            (b(1.0, 0.0, 10.0, 10.0), 1, 0.5),
        ];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![None, Some(0)]);
        assert!(m.missed.is_empty());
    }

    #[test]
    fn a_truth_is_matched_at_most_once_and_the_higher_score_wins() {
        let truth = [(b(0.0, 0.0, 10.0, 10.0), 0)];
        // The lower-scored prediction overlaps better; the higher one still
        // goes first and takes the truth; the other is a duplicate.
        let preds = [
            (b(0.0, 0.0, 10.0, 10.0), 0, 0.4),
            (b(0.0, 0.0, 9.0, 10.0), 0, 0.8),
        ];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![None, Some(0)]);
    }

    #[test]
    fn ties_keep_input_order() {
        let truth = [(b(0.0, 0.0, 10.0, 10.0), 0)];
        let preds = [
            (b(0.0, 0.0, 9.0, 10.0), 0, 0.7),
            (b(0.0, 0.0, 10.0, 10.0), 0, 0.7),
        ];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![Some(0), None]);
    }

    #[test]
    fn each_prediction_takes_its_best_unmatched_truth() {
        let truth = [
            (b(0.0, 0.0, 10.0, 10.0), 0),
            (b(2.0, 0.0, 12.0, 10.0), 0),
            (b(50.0, 50.0, 60.0, 60.0), 0),
        ];
        let preds = [
            (b(2.0, 0.0, 12.0, 10.0), 0, 0.9),
            (b(1.0, 0.0, 11.0, 10.0), 0, 0.8),
        ];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![Some(1), Some(0)]);
        assert_eq!(m.missed, vec![2]);
    }

    #[test]
    fn equal_iou_goes_to_the_later_truth_as_pycocotools() {
        let truth = [(b(0.0, 0.0, 10.0, 10.0), 0), (b(0.0, 0.0, 10.0, 10.0), 0)];
        let preds = [(b(0.0, 0.0, 10.0, 10.0), 0, 0.9)];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![Some(1)]);
        assert_eq!(m.missed, vec![0]);
    }

    #[test]
    fn below_threshold_is_a_miss_and_a_false_positive() {
        let truth = [(b(0.0, 0.0, 10.0, 10.0), 0)];
        let preds = [(b(5.0, 0.0, 15.0, 10.0), 0, 0.9)];
        let m = match_image(&preds, &truth, 0.5).unwrap();
        assert_eq!(m.truth_of, vec![None]);
        assert_eq!(m.missed, vec![0]);
        // IoU 1/3 ≥ 0.3 matches.
        assert_eq!(
            match_image(&preds, &truth, 0.3).unwrap().truth_of,
            vec![Some(0)]
        );
    }

    #[test]
    fn threshold_one_still_matches_identical_boxes() {
        let truth = [(b(0.1, 0.2, 10.3, 10.7), 0)];
        let preds = [(b(0.1, 0.2, 10.3, 10.7), 0, 0.9)];
        assert_eq!(
            match_image(&preds, &truth, 1.0).unwrap().truth_of,
            vec![Some(0)]
        );
    }

    #[test]
    fn empty_images_are_valid() {
        let none = match_image(&[], &[], 0.5).unwrap();
        assert_eq!(
            none,
            Matches {
                truth_of: vec![],
                missed: vec![]
            }
        );
        let truth = [(b(0.0, 0.0, 1.0, 1.0), 0), (b(2.0, 2.0, 3.0, 3.0), 1)];
        assert_eq!(match_image(&[], &truth, 0.5).unwrap().missed, vec![0, 1]);
        let preds = [(b(0.0, 0.0, 1.0, 1.0), 0, 0.5)];
        assert_eq!(match_image(&preds, &[], 0.5).unwrap().truth_of, vec![None]);
    }

    #[test]
    fn bad_input_is_refused() {
        let ok = [(b(0.0, 0.0, 1.0, 1.0), 0, 0.5)];
        for t in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(match_image(&ok, &[], t).is_err(), "{t}");
        }
        let nan_score = [(b(0.0, 0.0, 1.0, 1.0), 0, f64::NAN)];
        assert!(matches!(
            match_image(&nan_score, &[], 0.5),
            Err(CalibrateError::NonFinite { index: 0, .. })
        ));
        let nan_truth = [(b(0.0, f64::INFINITY, 1.0, 1.0), 0)];
        assert!(match_image(&ok, &nan_truth, 0.5).is_err());
        let image = CocoImage {
            truth: vec![(b(0.0, 0.0, 1.0, 1.0), 3)],
            preds: vec![],
        };
        let err = coco_map(&[CocoImage::default(), image], 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a class in images[1] = 3 is not below num_classes = 3"
        );
        let nan_image = CocoImage {
            truth: vec![],
            preds: nan_score.to_vec(),
        };
        let err = coco_map(&[nan_image], 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a prediction's score or box in images[0] is NaN or infinite"
        );
    }

    #[test]
    fn thresholds_are_numpy_linspace() {
        let t = coco_iou_thresholds();
        assert_eq!(t.len(), 10);
        assert_eq!((t[0], t[9]), (0.5, 0.95));
        // i·step + start, not start + i·0.05 rounded: 0.5 + 7·0.05 is not 0.85.
        assert_eq!(t[7], 7.0 * ((0.95 - 0.5) / 9.0) + 0.5);
        let r = coco_recall_thresholds();
        assert_eq!((r.len(), r[30], r[100]), (101, 30.0 * 0.01, 1.0));
    }

    #[test]
    fn perfect_detections_give_ap_one_and_classes_without_truth_none() {
        let image = CocoImage {
            truth: vec![(b(0.0, 0.0, 10.0, 10.0), 0), (b(20.0, 20.0, 40.0, 30.0), 0)],
            preds: vec![
                (b(0.0, 0.0, 10.0, 10.0), 0, 0.9),
                (b(20.0, 20.0, 40.0, 30.0), 0, 0.8),
                (b(5.0, 5.0, 8.0, 8.0), 1, 0.7),
            ],
        };
        let s = coco_map(&[image, CocoImage::default()], 3).unwrap();
        assert!((s.class_ap_50[0].unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(&s.class_ap_50[1..], &[None, None]);
        assert!((s.map_50.unwrap() - 1.0).abs() < 1e-12);
        assert!((s.map_50_95.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_truth_at_all_gives_no_map() {
        let image = CocoImage {
            truth: vec![],
            preds: vec![(b(0.0, 0.0, 1.0, 1.0), 0, 0.5)],
        };
        let s = coco_map(&[image], 2).unwrap();
        assert_eq!((s.map_50, s.map_50_95), (None, None));
        assert_eq!(s.class_ap, vec![vec![None; 10]; 2]);
    }

    #[test]
    fn half_recall_by_hand() {
        // Two truths, one found first, then a false positive: precision 1
        // up to recall 0.5, nothing beyond; 51 of 101 recall thresholds
        // (0, .01, …, .50) see precision 1 − ε/2.
        let image = CocoImage {
            truth: vec![(b(0.0, 0.0, 10.0, 10.0), 0), (b(50.0, 50.0, 60.0, 60.0), 0)],
            preds: vec![
                (b(0.0, 0.0, 10.0, 10.0), 0, 0.9),
                (b(90.0, 90.0, 99.0, 99.0), 0, 0.8),
            ],
        };
        let s = coco_map(&[image], 1).unwrap();
        let p1 = 1.0 / (1.0 + f64::EPSILON);
        assert!((s.class_ap[0][0].unwrap() - 51.0 * p1 / 101.0).abs() < 1e-15);
    }
}

/// When a machine line's text counts as a person's (OCR calibration): the
/// project's `text_match` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMatch {
    /// Equal after Unicode NFC (the default): a composed and a decomposed
    /// "é" are the same text, anything else that differs is an error.
    #[default]
    Exact,
    /// Also ignoring case and runs of white space (leading and trailing
    /// white space dropped, inner runs made one space).
    Relaxed,
}

impl TextMatch {
    /// `exact` or `relaxed`.
    pub fn parse(s: &str) -> Option<TextMatch> {
        match s {
            "exact" => Some(TextMatch::Exact),
            "relaxed" => Some(TextMatch::Relaxed),
            _ => None,
        }
    }

    /// The text as compared: NFC, and under [`TextMatch::Relaxed`]
    /// lower-cased with white space collapsed.
    pub fn normalize(self, text: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        let nfc: String = text.nfc().collect();
        match self {
            TextMatch::Exact => nfc,
            TextMatch::Relaxed => nfc
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        }
    }

    /// Whether a machine line's text `machine` is the person's `truth`.
    pub fn same(self, machine: &str, truth: &str) -> bool {
        self.normalize(machine) == self.normalize(truth)
    }
}

#[cfg(test)]
mod text_tests {
    use super::TextMatch;

    #[test]
    fn text_is_compared_after_nfc_and_optionally_relaxed() {
        // "é" composed (U+00E9) and decomposed (e + U+0301).
        assert!(TextMatch::Exact.same("caf\u{e9}", "cafe\u{301}"));
        assert!(!TextMatch::Exact.same("Cafe", "cafe"));
        assert!(!TextMatch::Exact.same("a  b", "a b"));
        assert!(TextMatch::Relaxed.same(" A  b\t", "a B"));
        assert!(!TextMatch::Relaxed.same("a b", "ab"));
        assert_eq!(TextMatch::parse("relaxed"), Some(TextMatch::Relaxed));
        assert_eq!(TextMatch::parse("fuzzy"), None);
    }
}
