//! The detection loop replayed on images whose boxes are known: every image
//! is pre-labeled once (by the caller, with the engine); then, per seed,
//! audit images are drawn uniformly without replacement and fully
//! annotated, [`calibrate::fit_boxes`] picks per-class thresholds on them,
//! and the other images are routed box by box:
//! - a box at or above its class's threshold is auto-accepted;
//! - an image goes to review when any of its boxes is not (it sits in the
//!   review band between the model's proposal threshold and the class
//!   threshold, or its class is uncalibrated); the simulated annotator
//!   returns the true boxes;
//! - an image whose every box is accepted (or that has no box) is not
//!   touched by anyone.
//!
//! Measured against the truth on the routed (non-audit) images: the boxes
//! auto-accepted, their realised precision (pooled over boxes) and mean
//! per-image FDP (the controlled risk), coverage (true boxes auto-accepted
//! and correct, over all true boxes), the single-threshold oracle's
//! coverage at the same target (the best global threshold chosen with the
//! truth of these very images), the miss rate beside the audit's bound,
//! the share of images people touched, and the finished set's precision
//! and recall (untouched images keep the machine's boxes).
//!
//! "Correct" is [`calibrate::matching::match_image`] at IoU ≥ τ, computed
//! once per image on all proposals: COCO's greedy matching goes in score
//! order, so the matches of the boxes above any threshold are the same as
//! matching those boxes alone.

use serde::Serialize;

use crate::calibrate::matching::{coco_map, match_image, CocoImage, Prediction, Truth};
use crate::calibrate::{self, AuditBox, AuditImage, BoxFit, BoxOptions, CalibrateError};
use crate::select::rng::Rng;

/// One image: the model's proposals and the people's boxes, classes
/// indexing [`BoxDataset::labels`].
#[derive(Debug, Clone)]
pub struct BoxImage {
    pub id: String,
    pub preds: Vec<Prediction>,
    pub truth: Vec<Truth>,
    /// Sent to a person whatever its boxes' scores: a recording on which
    /// the model stayed undecided for a stretch (speech it may have
    /// missed; see `service::regions::route_segments`). Never for images.
    pub held: bool,
    /// OCR pages: each proposal's text and each true line's, in order; a
    /// proposal matched at IoU ≥ τ is correct only when its text is the
    /// true line's after Unicode NFC (`TextMatch::Exact`, the rule of
    /// `service::box_calibration::match_reviewed`). None for boxes and
    /// segments.
    pub texts: Option<(Vec<String>, Vec<String>)>,
}

pub struct BoxDataset {
    pub images: Vec<BoxImage>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BoxSimOptions {
    pub seed: u64,
    pub seeds: usize,
    /// Audit images (overrides `audit_rate`).
    pub audit_images: Option<usize>,
    /// Share of the images drawn into the audit.
    pub audit_rate: f64,
    /// IoU a box needs with a human box of its class to be correct.
    pub iou: f64,
    pub fit: BoxOptions,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    pub label: String,
    pub threshold: Option<f64>,
    /// Audit images with a proposal of this class, and those proposals.
    pub audit_images: usize,
    pub audit_boxes: usize,
    /// On the routed images: accepted, correct among them, true boxes.
    pub accepted: usize,
    pub correct: usize,
    pub truths: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoxSeedResult {
    pub seed: u64,
    /// The audit images' ids, in draw order (for side-by-side checks).
    pub audit_ids: Vec<String>,
    pub audit_images: usize,
    pub routed_images: usize,
    pub reviewed_images: usize,
    /// (audit + reviewed) / all images.
    pub touched_share: f64,
    pub accepted_boxes: usize,
    pub accepted_correct: usize,
    /// Accepted over all proposals of the routed images, beside the same
    /// share at the oracle's threshold.
    pub accepted_share: f64,
    pub oracle_accepted_share: f64,
    /// Pooled over the accepted boxes; `None` when none was accepted.
    pub precision: Option<f64>,
    /// Mean per-image FDP over routed images with proposals (the risk the
    /// calibration controls).
    pub mean_fdp: f64,
    /// Precision ≥ target (vacuously when nothing is accepted).
    pub meets_target: bool,
    /// Accepted and correct over all true boxes of the routed images.
    pub coverage: f64,
    pub oracle_threshold: Option<f64>,
    pub oracle_coverage: f64,
    /// Routed images: true boxes no proposal matches, pooled and as the
    /// mean per-image proportion, beside the audit's bounds on the latter.
    pub miss_pooled: Option<f64>,
    pub miss_mean: Option<f64>,
    pub miss_bound: f64,
    pub miss_crc: f64,
    pub miss_within_bound: bool,
    /// The finished set (untouched images keep the machine's boxes,
    /// touched ones get the people's): box precision and recall.
    pub finished_precision: Option<f64>,
    pub finished_recall: Option<f64>,
    pub audit_mean_fdp: f64,
    pub p_value: Option<f64>,
    pub classes: Vec<ClassRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoxSummary {
    pub seeds: usize,
    /// Seeds whose realised precision is ≥ target.
    pub meets_target: usize,
    /// Seeds that accepted nothing.
    pub accepted_nothing: usize,
    pub precision_min: Option<f64>,
    pub precision_mean: Option<f64>,
    pub mean_fdp_mean: f64,
    pub coverage_mean: f64,
    pub oracle_coverage_mean: f64,
    pub accepted_share_mean: f64,
    pub oracle_accepted_share_mean: f64,
    pub miss_mean: Option<f64>,
    pub miss_bound_mean: f64,
    /// Seeds whose realised mean miss proportion is within the bound.
    pub miss_within_bound: usize,
    pub touched_share_mean: f64,
    pub finished_precision_mean: Option<f64>,
    pub finished_recall_mean: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoxSimReport {
    pub task: &'static str,
    pub images: usize,
    pub truths: usize,
    pub proposals: usize,
    pub labels: Vec<String>,
    pub target: f64,
    pub delta: f64,
    pub iou: f64,
    pub design: calibrate::BoxDesign,
    pub bound: calibrate::RiskBound,
    pub audit_images: usize,
    /// The proposals' COCO mAP on all images, for context.
    pub map_50: Option<f64>,
    pub map_50_95: Option<f64>,
    pub summary: BoxSummary,
    pub runs: Vec<BoxSeedResult>,
}

/// Per image, matched once: (class, score, correct) per proposal, and the
/// true-box and miss counts.
pub fn outcomes(data: &BoxDataset, iou: f64) -> Result<Vec<AuditImage>, CalibrateError> {
    data.images
        .iter()
        .map(|im| {
            let m = match_image(&im.preds, &im.truth, iou)?;
            let read_right = |i: usize, g: usize| {
                im.texts.as_ref().is_none_or(|(p, t)| {
                    crate::calibrate::matching::TextMatch::Exact.same(&p[i], &t[g])
                })
            };
            Ok(AuditImage {
                boxes: im
                    .preds
                    .iter()
                    .zip(&m.truth_of)
                    .enumerate()
                    .map(|(i, (p, t))| AuditBox {
                        class: p.1,
                        score: p.2,
                        correct: t.is_some_and(|g| read_right(i, g)),
                    })
                    .collect(),
                truths: im.truth.len(),
                missed: m.missed.len(),
            })
        })
        .collect()
}

/// The best single global threshold with the truth: the largest coverage
/// at pooled precision ≥ target over `images`, and the proposals it accepts.
fn oracle(images: &[&AuditImage], truths: usize, target: f64) -> (Option<f64>, f64, usize) {
    let mut boxes: Vec<(f64, bool)> = images
        .iter()
        .flat_map(|im| im.boxes.iter().map(|b| (b.score, b.correct)))
        .collect();
    boxes.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut best, mut best_cov, mut best_acc) = (None, 0.0, 0usize);
    let (mut acc, mut cor) = (0usize, 0usize);
    for (i, &(s, ok)) in boxes.iter().enumerate() {
        acc += 1;
        cor += usize::from(ok);
        let boundary = boxes.get(i + 1).is_none_or(|n| n.0 < s);
        if boundary && cor as f64 >= target * acc as f64 && truths > 0 {
            let cov = cor as f64 / truths as f64;
            if cov > best_cov {
                best_cov = cov;
                best = Some(s);
                best_acc = acc;
            }
        }
    }
    (best, best_cov, best_acc)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

fn one_seed(
    data: &BoxDataset,
    all: &[AuditImage],
    n_audit: usize,
    seed: u64,
    opts: &BoxSimOptions,
) -> Result<BoxSeedResult, CalibrateError> {
    let k = data.labels.len();
    let mut order: Vec<usize> = (0..all.len()).collect();
    Rng::new(seed).shuffle(&mut order);
    let (audit_idx, routed_idx) = order.split_at(n_audit.min(order.len()));
    let audit: Vec<AuditImage> = audit_idx.iter().map(|&i| all[i].clone()).collect();
    let fit: BoxFit = calibrate::fit_boxes(&audit, k, &opts.fit)?;
    let miss = calibrate::miss_bound(&audit, opts.fit.delta, opts.fit.bound)?;

    let routed: Vec<&AuditImage> = routed_idx.iter().map(|&i| &all[i]).collect();
    let mut classes: Vec<ClassRow> = (0..k)
        .map(|c| ClassRow {
            label: data.labels[c].clone(),
            threshold: fit.threshold(c),
            audit_images: fit.classes[c].images,
            audit_boxes: fit.classes[c].boxes,
            accepted: 0,
            correct: 0,
            truths: 0,
        })
        .collect();
    for &i in routed_idx {
        for t in &data.images[i].truth {
            if let Some(row) = classes.get_mut(t.1) {
                row.truths += 1;
            }
        }
    }
    let (mut accepted, mut correct, mut reviewed, mut truths) = (0usize, 0usize, 0usize, 0usize);
    let (mut fdps, mut misses) = (Vec::new(), Vec::new());
    // The finished set: boxes kept and correct among them.
    let (mut kept, mut kept_correct, mut truths_found) = (0usize, 0usize, 0usize);
    for (&i, im) in routed_idx.iter().zip(&routed) {
        truths += im.truths;
        let (mut a, mut c) = (0usize, 0usize);
        for b in &im.boxes {
            if fit.accepts(b.class, b.score) {
                a += 1;
                c += usize::from(b.correct);
                if let Some(row) = classes.get_mut(b.class) {
                    row.accepted += 1;
                    row.correct += usize::from(b.correct);
                }
            }
        }
        accepted += a;
        correct += c;
        if !im.boxes.is_empty() {
            fdps.push(if a == 0 {
                0.0
            } else {
                (a - c) as f64 / a as f64
            });
        }
        if im.truths > 0 {
            misses.push(im.missed as f64 / im.truths as f64);
        }
        if a < im.boxes.len() || data.images[i].held {
            reviewed += 1;
            kept += im.truths;
            kept_correct += im.truths;
            truths_found += im.truths;
        } else {
            kept += a;
            kept_correct += c;
            truths_found += c;
        }
    }
    for im in &audit {
        kept += im.truths;
        kept_correct += im.truths;
        truths_found += im.truths;
    }
    let all_truths: usize = all.iter().map(|im| im.truths).sum();
    let (oracle_threshold, oracle_coverage, oracle_accepted) =
        oracle(&routed, truths, opts.fit.target);
    let proposals: usize = routed.iter().map(|im| im.boxes.len()).sum();
    let share = |n: usize| {
        if proposals == 0 {
            0.0
        } else {
            n as f64 / proposals as f64
        }
    };
    let precision = (accepted > 0).then(|| correct as f64 / accepted as f64);
    let miss_mean = mean(misses.iter().copied());
    Ok(BoxSeedResult {
        seed,
        audit_ids: audit_idx
            .iter()
            .map(|&i| data.images[i].id.clone())
            .collect(),
        audit_images: audit.len(),
        routed_images: routed.len(),
        reviewed_images: reviewed,
        touched_share: if all.is_empty() {
            0.0
        } else {
            (audit.len() + reviewed) as f64 / all.len() as f64
        },
        accepted_boxes: accepted,
        accepted_correct: correct,
        accepted_share: share(accepted),
        oracle_accepted_share: share(oracle_accepted),
        precision,
        mean_fdp: mean(fdps.iter().copied()).unwrap_or(0.0),
        meets_target: precision.is_none_or(|p| p >= opts.fit.target),
        coverage: if truths == 0 {
            0.0
        } else {
            correct as f64 / truths as f64
        },
        oracle_threshold,
        oracle_coverage,
        miss_pooled: (truths > 0)
            .then(|| routed.iter().map(|im| im.missed).sum::<usize>() as f64 / truths as f64),
        miss_mean,
        miss_bound: miss.upper,
        miss_crc: miss.crc,
        miss_within_bound: miss_mean.is_none_or(|m| m <= miss.upper),
        finished_precision: (kept > 0).then(|| kept_correct as f64 / kept as f64),
        finished_recall: (all_truths > 0).then(|| truths_found as f64 / all_truths as f64),
        audit_mean_fdp: fit.audit_mean_fdp,
        p_value: fit.p_value,
        classes,
    })
}

/// Runs every seed; the data is matched once.
pub fn run(data: &BoxDataset, opts: &BoxSimOptions) -> Result<BoxSimReport, CalibrateError> {
    let k = data.labels.len();
    if k == 0 {
        return Err(CalibrateError::Empty("labels"));
    }
    if data.images.is_empty() {
        return Err(CalibrateError::Empty("images"));
    }
    if !(opts.audit_rate.is_finite() && (0.0..=1.0).contains(&opts.audit_rate)) {
        return Err(CalibrateError::OutOfRange {
            name: "audit_rate",
            value: opts.audit_rate,
            domain: "[0, 1]",
        });
    }
    let all = outcomes(data, opts.iou)?;
    let n = data.images.len();
    let n_audit = opts
        .audit_images
        .unwrap_or_else(|| (opts.audit_rate * n as f64).round() as usize)
        .min(n);
    let coco: Vec<CocoImage> = data
        .images
        .iter()
        .map(|im| CocoImage {
            truth: im.truth.clone(),
            preds: im.preds.clone(),
        })
        .collect();
    let map = coco_map(&coco, k)?;
    let runs = (0..opts.seeds.max(1))
        .map(|s| one_seed(data, &all, n_audit, opts.seed + s as u64, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let precisions: Vec<f64> = runs.iter().filter_map(|r| r.precision).collect();
    let summary = BoxSummary {
        seeds: runs.len(),
        meets_target: runs.iter().filter(|r| r.meets_target).count(),
        accepted_nothing: runs.iter().filter(|r| r.accepted_boxes == 0).count(),
        precision_min: precisions.iter().copied().reduce(f64::min),
        precision_mean: mean(precisions.iter().copied()),
        mean_fdp_mean: mean(runs.iter().map(|r| r.mean_fdp)).unwrap_or(0.0),
        coverage_mean: mean(runs.iter().map(|r| r.coverage)).unwrap_or(0.0),
        oracle_coverage_mean: mean(runs.iter().map(|r| r.oracle_coverage)).unwrap_or(0.0),
        accepted_share_mean: mean(runs.iter().map(|r| r.accepted_share)).unwrap_or(0.0),
        oracle_accepted_share_mean: mean(runs.iter().map(|r| r.oracle_accepted_share))
            .unwrap_or(0.0),
        miss_mean: mean(runs.iter().filter_map(|r| r.miss_mean)),
        miss_bound_mean: mean(runs.iter().map(|r| r.miss_bound)).unwrap_or(1.0),
        miss_within_bound: runs.iter().filter(|r| r.miss_within_bound).count(),
        touched_share_mean: mean(runs.iter().map(|r| r.touched_share)).unwrap_or(0.0),
        finished_precision_mean: mean(runs.iter().filter_map(|r| r.finished_precision)),
        finished_recall_mean: mean(runs.iter().filter_map(|r| r.finished_recall)),
    };
    Ok(BoxSimReport {
        task: "detect",
        images: n,
        truths: all.iter().map(|im| im.truths).sum(),
        proposals: all.iter().map(|im| im.boxes.len()).sum(),
        labels: data.labels.clone(),
        target: opts.fit.target,
        delta: opts.fit.delta,
        iou: opts.iou,
        design: opts.fit.design,
        bound: opts.fit.bound,
        audit_images: n_audit,
        map_50: map.map_50,
        map_50_95: map.map_50_95,
        summary,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::BoxPx;

    /// Pages with 6 true boxes each; the "model" finds each with a score;
    /// high scores are right, low ones shifted off (wrong); one box per
    /// page is missed.
    fn data(n: usize) -> BoxDataset {
        let mut rng = Rng::new(3);
        let images = (0..n)
            .map(|i| {
                let truth: Vec<Truth> = (0..6)
                    .map(|j| {
                        (
                            BoxPx::new(
                                10.0 + 100.0 * j as f64,
                                10.0,
                                90.0 + 100.0 * j as f64,
                                80.0,
                            ),
                            j % 2,
                        )
                    })
                    .collect();
                let preds = truth
                    .iter()
                    .skip(1)
                    .map(|(b, c)| {
                        let s = 0.5 + 0.5 * rng.unit();
                        let shift = if s < 0.7 { 60.0 } else { 0.0 };
                        (BoxPx::new(b.x0 + shift, b.y0, b.x1 + shift, b.y1), *c, s)
                    })
                    .collect();
                BoxImage {
                    id: format!("p{i}"),
                    preds,
                    truth,
                    held: false,
                    texts: None,
                }
            })
            .collect();
        BoxDataset {
            images,
            labels: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn accepts_only_right_boxes_and_counts_everything() {
        let d = data(300);
        let opts = BoxSimOptions {
            seed: 1,
            seeds: 3,
            audit_images: None,
            audit_rate: 0.3,
            iou: 0.5,
            fit: BoxOptions::default(),
        };
        let r = run(&d, &opts).unwrap();
        assert_eq!(r.audit_images, 90);
        assert_eq!(r.truths, 1800);
        assert_eq!(r.summary.meets_target, 3);
        for s in &r.runs {
            // Scores ≥ 0.7 are all right, below all wrong: the threshold may
            // dip below 0.7 only as far as the target allows.
            let t = s.classes[0].threshold.unwrap();
            assert!(
                t > 0.68 && s.classes.iter().all(|c| c.threshold == Some(t)),
                "{t}"
            );
            assert!(s.precision.unwrap() >= 0.95 && s.mean_fdp <= 0.05, "{s:?}");
            assert!(s.coverage > 0.3 && s.coverage <= s.oracle_coverage + 1e-12);
            // One of six never proposed, and the shifted ones match nothing.
            assert!(s.miss_mean.unwrap() > 1.0 / 6.0 + 0.05);
            assert!(s.miss_within_bound && s.miss_bound < 0.65, "{s:?}");
            assert_eq!(s.routed_images, 210);
            assert!(s.touched_share > 0.3 && s.touched_share <= 1.0);
            assert!(s.finished_precision.unwrap() >= s.precision.unwrap());
        }
    }

    #[test]
    fn bad_options_are_errors() {
        let d = data(5);
        let opts = BoxSimOptions {
            seed: 1,
            seeds: 1,
            audit_images: None,
            audit_rate: 1.5,
            iou: 0.5,
            fit: BoxOptions::default(),
        };
        assert!(run(&d, &opts).is_err());
        let opts = BoxSimOptions {
            audit_rate: 0.5,
            iou: 0.0,
            ..opts
        };
        assert!(run(&d, &opts).is_err());
    }
}
