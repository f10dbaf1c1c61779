//! Quality of the human labels: agreement between annotators (Cohen's κ
//! per pair, Krippendorff's α overall) and each annotator's accuracy
//! against the consensus of the items more than one person labeled; on a
//! detection project agreement on boxes, on an OCR project
//! character-level agreement on the lines two people transcribed, whose
//! conflicts go to the top tier ([`after_lines_review`]).
//! Suspected label errors come with each calibration (see
//! [`super::calibration`]); conflicts are settled in [`super::review`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::app::App;
use super::box_calibration;
use super::error::ServiceResult;
use super::regions;
use crate::calibrate::{
    cohen_kappa, krippendorff_alpha_nominal, match_lines, BoxAgreementCounts, LinePair,
};
use crate::region::BoxPx;
use crate::store::{AnnotationRow, Project};

#[derive(Debug, Serialize, ToSchema)]
pub struct AgreementView {
    /// Items with labels from at least two annotators.
    pub shared_items: usize,
    /// Of those, items whose annotators disagree.
    pub conflicts: usize,
    /// Krippendorff's α (nominal) over all annotators and items; `null` when undefined.
    pub alpha: Option<f64>,
    /// κ per pair of the `MAX_PAIR_ANNOTATORS` annotators with the most
    /// shared items (pairs that share none are left out).
    pub pairs: Vec<PairAgreement>,
    /// Annotators left out of `pairs` by that cap.
    pub pairs_left_out: usize,
    pub annotators: Vec<AnnotatorQuality>,
    /// A detection project: agreement on boxes (absent for classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boxes: Option<BoxAgreementView>,
    /// An OCR project: character-level agreement on transcribed lines
    /// (absent for other projects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<LineAgreementView>,
}

/// Lines are matched across two annotators' transcriptions of a page at
/// this IoU (a line is right at IoU ≥ 0.5 in the region model).
pub const LINE_IOU: f64 = 0.5;

/// A matched line whose two transcriptions agree below this (character
/// level, 1 − normalised edit distance) is a conflict, unless the project
/// sets `line_agreement_min`: at 0.9, one wrong character in ten.
pub const DEFAULT_LINE_AGREEMENT_MIN: f64 = 0.9;

/// Conflicting lines listed at most (lowest agreement first).
pub const MAX_LINE_CONFLICTS: usize = 1000;

/// Agreement between annotators on **transcriptions**, over the pages at
/// least two of them transcribed (each one's latest full set of lines):
/// two annotators' lines are matched by place (IoU ≥ `iou_threshold`,
/// greedily by IoU); a matched pair's agreement is 1 − the Levenshtein
/// distance between their texts over Unicode scalar values after NFC,
/// divided by the longer text's length (two empty texts agree fully).
/// A matched pair below `min_agreement` is a conflict.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineAgreementView {
    pub iou_threshold: f64,
    /// The project's `line_agreement_min` (default 0.9).
    pub min_agreement: f64,
    /// Pages with transcriptions from at least two annotators.
    pub shared_pages: usize,
    /// Line pairs matched by place, summed over annotator pairs.
    pub matched_lines: usize,
    /// Lines one annotator of a pair drew and the other did not.
    pub unmatched_lines: usize,
    /// Mean character-level agreement of the matched pairs; `null` without any.
    pub agreement: Option<f64>,
    /// Matched pairs below `min_agreement`, and the pages holding one.
    pub conflicts: usize,
    pub conflict_pages: usize,
    /// Per pair of the `MAX_PAIR_ANNOTATORS` annotators with the most
    /// shared pages.
    pub pairs: Vec<LinePairAgreement>,
    pub pairs_left_out: usize,
    /// The conflicting lines, lowest agreement first (at most
    /// `MAX_LINE_CONFLICTS`).
    pub conflicting_lines: Vec<LineConflict>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinePairAgreement {
    pub a: String,
    pub b: String,
    pub pages: usize,
    pub matched_lines: usize,
    pub unmatched_lines: usize,
    /// Mean character-level agreement of their matched lines.
    pub agreement: Option<f64>,
    pub conflicts: usize,
}

/// One line two annotators transcribed differently.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineConflict {
    pub item_id: i64,
    pub a: String,
    pub b: String,
    /// Each one's box, `[x0, y0, x1, y1]` in pixels.
    #[schema(value_type = Vec<f64>, min_items = 4, max_items = 4)]
    pub box_a: BoxPx,
    #[schema(value_type = Vec<f64>, min_items = 4, max_items = 4)]
    pub box_b: BoxPx,
    pub text_a: String,
    pub text_b: String,
    pub agreement: f64,
}

/// Agreement between annotators on **boxes**, over the images at least two
/// of them reviewed (each one's latest full set): boxes are matched across
/// two annotators at IoU ≥ the project's `iou_threshold`, whatever their
/// labels; per class F1 = 2·(matched pairs both labeled c) / (boxes either
/// labeled c), each annotator the other's truth; α is Krippendorff's
/// (nominal) on the matched pairs' labels.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoxAgreementView {
    pub iou_threshold: f64,
    /// Images with sets from at least two annotators.
    pub shared_images: usize,
    /// Box pairs matched by place, and of those the ones labeled alike.
    pub matched: usize,
    pub matched_same_label: usize,
    /// F1 over all classes (micro); `null` without boxes.
    pub f1: Option<f64>,
    /// α on the matched pairs' labels; `null` when undefined.
    pub alpha: Option<f64>,
    pub classes: Vec<BoxClassAgreement>,
    /// Per pair of the `MAX_PAIR_ANNOTATORS` annotators with the most
    /// shared images.
    pub pairs: Vec<BoxPairAgreement>,
    pub pairs_left_out: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoxClassAgreement {
    pub label: String,
    /// Boxes of this class drawn by either annotator of a pair, summed over pairs.
    pub boxes: usize,
    pub agreed: usize,
    pub f1: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoxPairAgreement {
    pub a: String,
    pub b: String,
    pub images: usize,
    pub f1: Option<f64>,
}

/// Pairs grow with the square of the annotators (600 names gave a 10 MB
/// answer): κ is reported for this many at most.
pub const MAX_PAIR_ANNOTATORS: usize = 50;

#[derive(Debug, Serialize, ToSchema)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    /// Items both labeled.
    pub items: usize,
    /// Cohen's κ on those items; `null` when undefined (e.g. one label only).
    pub kappa: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnnotatorQuality {
    pub name: String,
    pub annotations: usize,
    /// Items this annotator labeled that someone else labeled too.
    pub shared_items: usize,
    /// Share of those where this annotator's label is the item's settled
    /// (majority or expert) label; `null` without shared items.
    pub consensus_accuracy: Option<f64>,
}

type Shared<'a> = [(&'a i64, &'a BTreeMap<String, usize>)];

/// Per pair of annotators, their labels on the items they share.
type PairLabels<'a> = BTreeMap<(&'a str, &'a str), (Vec<usize>, Vec<usize>)>;

/// κ for each pair of the annotators with the most shared items, from the
/// items they share (one pass per item over its annotators), and how many
/// annotators were left out.
fn pairs_of(names: &[&str], shared: &Shared<'_>) -> (Vec<PairAgreement>, usize) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, m) in shared {
        for who in m.keys() {
            *count.entry(who.as_str()).or_default() += 1;
        }
    }
    let mut ranked: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| count.contains_key(n))
        .collect();
    ranked.sort_by(|a, b| count[b].cmp(&count[a]).then(a.cmp(b)));
    let left_out = ranked.len().saturating_sub(MAX_PAIR_ANNOTATORS);
    ranked.truncate(MAX_PAIR_ANNOTATORS);
    ranked.sort_unstable();
    let mut labels: PairLabels<'_> = BTreeMap::new();
    for (_, m) in shared {
        let here: Vec<(&str, usize)> = m
            .iter()
            .filter(|(who, _)| ranked.binary_search(&who.as_str()).is_ok())
            .map(|(who, y)| (who.as_str(), *y))
            .collect();
        for (i, (a, la)) in here.iter().enumerate() {
            for (b, lb) in &here[i + 1..] {
                let e = labels.entry((a, b)).or_default();
                e.0.push(*la);
                e.1.push(*lb);
            }
        }
    }
    let pairs = labels
        .into_iter()
        .map(|((a, b), (xa, xb))| PairAgreement {
            a: a.to_string(),
            b: b.to_string(),
            items: xa.len(),
            kappa: cohen_kappa(&xa, &xb).ok(),
        })
        .collect();
    (pairs, left_out)
}

/// Each annotator's latest label per item: item → (annotator → label index).
fn latest_labels(
    rows: &[AnnotationRow],
    labels: &HashMap<&str, usize>,
) -> BTreeMap<i64, BTreeMap<String, usize>> {
    let mut by_item: BTreeMap<i64, BTreeMap<String, usize>> = BTreeMap::new();
    for r in rows {
        if let Some(&y) = labels.get(r.label.as_str()) {
            // Rows come oldest first: a later label replaces an earlier one.
            by_item
                .entry(r.item_id)
                .or_default()
                .insert(r.annotator.clone(), y);
        }
    }
    by_item
}

/// One annotator's boxes on one image: `(box, class)`.
type BoxSet = Vec<(BoxPx, usize)>;

/// The `MAX_PAIR_ANNOTATORS` annotators with the most shared items (as
/// for κ), and how many were left out.
fn most_shared<'a, V>(by_item: &BTreeMap<i64, BTreeMap<&'a str, V>>) -> (Vec<&'a str>, usize) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for m in by_item.values() {
        for who in m.keys() {
            *count.entry(who).or_default() += 1;
        }
    }
    let mut ranked: Vec<&str> = count.keys().copied().collect();
    ranked.sort_by(|a, b| count[b].cmp(&count[a]).then(a.cmp(b)));
    let left_out = ranked.len().saturating_sub(MAX_PAIR_ANNOTATORS);
    ranked.truncate(MAX_PAIR_ANNOTATORS);
    (ranked, left_out)
}

/// Box agreement of a detection project from each annotator's latest set.
async fn box_agreement(app: &App, project: &Project) -> ServiceResult<BoxAgreementView> {
    let rows = app.store.shared_region_sets(project.id).await?;
    let iou = box_calibration::iou_threshold(&project.settings);
    let index: HashMap<&str, usize> = project
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    // item → annotator → its boxes (labels outside the project dropped).
    let mut by_item: BTreeMap<i64, BTreeMap<&str, BoxSet>> = BTreeMap::new();
    for (item, who, json) in &rows {
        let Some(set) = regions::parse_box_set(json) else {
            tracing::warn!(item, annotator = %who, "unreadable box set skipped");
            continue;
        };
        let boxes = set
            .into_iter()
            .filter_map(|(l, b)| Some((b, *index.get(l.as_str())?)))
            .collect();
        by_item
            .entry(*item)
            .or_default()
            .insert(who.as_str(), boxes);
    }
    by_item.retain(|_, m| m.len() >= 2);
    let (ranked, pairs_left_out) = most_shared(&by_item);
    let k = project.labels.len();
    let mut all = BoxAgreementCounts::new(k);
    let mut per_pair: BTreeMap<(&str, &str), (usize, BoxAgreementCounts)> = BTreeMap::new();
    for m in by_item.values() {
        let here: Vec<(&&str, &BoxSet)> =
            m.iter().filter(|(who, _)| ranked.contains(who)).collect();
        for (i, (a, sa)) in here.iter().enumerate() {
            for (b, sb) in &here[i + 1..] {
                let e = per_pair
                    .entry((**a, **b))
                    .or_insert_with(|| (0, BoxAgreementCounts::new(k)));
                e.0 += 1;
                // Classes come from the project's own index: always in range.
                let internal = |e: crate::calibrate::CalibrateError| {
                    super::error::ServiceError::internal(format!("box agreement: {e}"))
                };
                e.1.add(sa, sb, iou).map_err(internal)?;
                all.add(sa, sb, iou).map_err(internal)?;
            }
        }
    }
    let alpha = if all.matched.is_empty() {
        None
    } else {
        let (xa, xb): (Vec<Option<usize>>, Vec<Option<usize>>) = all
            .matched
            .iter()
            .map(|(a, b)| (Some(*a), Some(*b)))
            .unzip();
        krippendorff_alpha_nominal(&[xa, xb]).ok()
    };
    Ok(BoxAgreementView {
        iou_threshold: iou,
        shared_images: by_item.len(),
        matched: all.matched.len(),
        matched_same_label: all.agreed.iter().sum(),
        f1: all.f1_all(),
        alpha,
        classes: project
            .labels
            .iter()
            .enumerate()
            .map(|(c, label)| BoxClassAgreement {
                label: label.clone(),
                boxes: all.boxes[c],
                agreed: all.agreed[c],
                f1: all.f1(c),
            })
            .collect(),
        pairs: per_pair
            .into_iter()
            .map(|((a, b), (images, c))| BoxPairAgreement {
                a: a.to_string(),
                b: b.to_string(),
                images,
                f1: c.f1_all(),
            })
            .collect(),
        pairs_left_out,
    })
}

/// One annotator's lines on one page: `(box, text)`.
type LineSet = Vec<(BoxPx, String)>;

/// Per pair of annotators: pages, matched lines, unmatched lines,
/// Σ agreement over the matched, conflicts.
type PairTally = (usize, usize, usize, f64, usize);

/// A text-line set as `region_sets` keeps it (`[[label, x0, y0, x1, y1,
/// text], …]`); `None` when unreadable or not a set of lines.
fn parse_line_set(json: &str) -> Option<LineSet> {
    let set: Vec<Vec<serde_json::Value>> = serde_json::from_str(json).ok()?;
    set.into_iter()
        .map(|row| {
            let c = |i: usize| row.get(i)?.as_f64();
            let text = row.get(5)?.as_str()?.to_string();
            Some((BoxPx::new(c(1)?, c(2)?, c(3)?, c(4)?), text))
        })
        .collect()
}

/// The matched lines of two sets, with their agreement.
fn pair_lines(a: &LineSet, b: &LineSet) -> Vec<LinePair> {
    let a: Vec<(BoxPx, &str)> = a.iter().map(|(x, t)| (*x, t.as_str())).collect();
    let b: Vec<(BoxPx, &str)> = b.iter().map(|(x, t)| (*x, t.as_str())).collect();
    match_lines(&a, &b, LINE_IOU)
}

/// The project's conflict threshold for lines.
pub fn line_agreement_min(project: &Project) -> f64 {
    project
        .settings
        .line_agreement_min
        .unwrap_or(DEFAULT_LINE_AGREEMENT_MIN)
}

/// Line agreement of an OCR project from each annotator's latest set.
async fn line_agreement(app: &App, project: &Project) -> ServiceResult<LineAgreementView> {
    let rows = app.store.shared_region_sets(project.id).await?;
    let min = line_agreement_min(project);
    let mut by_item: BTreeMap<i64, BTreeMap<&str, LineSet>> = BTreeMap::new();
    for (item, who, json) in &rows {
        let Some(set) = parse_line_set(json) else {
            tracing::warn!(item, annotator = %who, "unreadable line set skipped");
            continue;
        };
        by_item.entry(*item).or_default().insert(who.as_str(), set);
    }
    by_item.retain(|_, m| m.len() >= 2);
    let (ranked, pairs_left_out) = most_shared(&by_item);
    let mut per_pair: BTreeMap<(&str, &str), PairTally> = BTreeMap::new();
    let mut conflicting: Vec<LineConflict> = Vec::new();
    let mut conflict_pages = 0;
    for (item, m) in &by_item {
        let here: Vec<(&&str, &LineSet)> =
            m.iter().filter(|(who, _)| ranked.contains(who)).collect();
        let mut page_conflict = false;
        for (i, (a, sa)) in here.iter().enumerate() {
            for (b, sb) in &here[i + 1..] {
                let pairs = pair_lines(sa, sb);
                let e = per_pair.entry((**a, **b)).or_default();
                e.0 += 1;
                e.1 += pairs.len();
                e.2 += sa.len() + sb.len() - 2 * pairs.len();
                for p in &pairs {
                    e.3 += p.agreement;
                    if p.agreement < min {
                        e.4 += 1;
                        page_conflict = true;
                        conflicting.push(LineConflict {
                            item_id: *item,
                            a: a.to_string(),
                            b: b.to_string(),
                            box_a: sa[p.a].0,
                            box_b: sb[p.b].0,
                            text_a: sa[p.a].1.clone(),
                            text_b: sb[p.b].1.clone(),
                            agreement: p.agreement,
                        });
                    }
                }
            }
        }
        conflict_pages += usize::from(page_conflict);
    }
    conflicting.sort_by(|x, y| {
        x.agreement
            .total_cmp(&y.agreement)
            .then(x.item_id.cmp(&y.item_id))
    });
    let conflicts = conflicting.len();
    conflicting.truncate(MAX_LINE_CONFLICTS);
    let mean = |sum: f64, n: usize| (n > 0).then(|| sum / n as f64);
    let (matched, unmatched, sum) = per_pair.values().fold((0, 0, 0.0), |acc, e| {
        (acc.0 + e.1, acc.1 + e.2, acc.2 + e.3)
    });
    Ok(LineAgreementView {
        iou_threshold: LINE_IOU,
        min_agreement: min,
        shared_pages: by_item.len(),
        matched_lines: matched,
        unmatched_lines: unmatched,
        agreement: mean(sum, matched),
        conflicts,
        conflict_pages,
        pairs: per_pair
            .into_iter()
            .map(|((a, b), e)| LinePairAgreement {
                a: a.to_string(),
                b: b.to_string(),
                pages: e.0,
                matched_lines: e.1,
                unmatched_lines: e.2,
                agreement: mean(e.3, e.1),
                conflicts: e.4,
            })
            .collect(),
        pairs_left_out,
        conflicting_lines: conflicting,
    })
}

/// **Conflicts go to the top tier.** After `annotator` recorded their
/// lines of an OCR page: when the project has tiers, `annotator` is not
/// in the top one, and two of the page's latest transcriptions (any two
/// annotators') hold a matched line agreeing below `line_agreement_min`,
/// the page waits for a top-tier confirmation (`needs_confirmation`, which
/// only the top tier's review lists offer). A top-tier review settles it:
/// its set becomes the page's, and it is never sent back. Without tiers
/// there is no one to send it to: the conflict shows in `/agreement`.
/// Returns whether the page was sent.
pub async fn after_lines_review(
    app: &App,
    project: &Project,
    item_id: i64,
    annotator: &str,
) -> ServiceResult<bool> {
    let settings = &project.settings;
    let Some(top) = settings.top_tier() else {
        return Ok(false);
    };
    if project.task != regions::LINES
        || super::review::tier_of(app, settings, annotator).await? == top
    {
        return Ok(false);
    }
    let sets: Vec<LineSet> = app
        .store
        .item_region_sets(item_id)
        .await?
        .iter()
        .filter_map(|(_, json)| parse_line_set(json))
        .collect();
    let min = line_agreement_min(project);
    let conflict = sets.iter().enumerate().any(|(i, a)| {
        sets[i + 1..]
            .iter()
            .any(|b| pair_lines(a, b).iter().any(|p| p.agreement < min))
    });
    if !conflict {
        return Ok(false);
    }
    let sent = app.store.send_to_confirmation(item_id).await?;
    if sent {
        tracing::info!(
            item = item_id,
            annotator,
            "transcriptions disagree: the page waits for the top tier"
        );
    }
    Ok(sent)
}

pub async fn agreement(app: &App, project_id: i64) -> ServiceResult<AgreementView> {
    let project = app.store.get_project(project_id).await?;
    let boxes = if project.task == regions::DETECT {
        Some(box_agreement(app, &project).await?)
    } else {
        None
    };
    let lines = if project.task == regions::LINES {
        Some(line_agreement(app, &project).await?)
    } else {
        None
    };
    let rows = app.store.project_annotations(project_id).await?;
    let index: HashMap<&str, usize> = project
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let by_item = latest_labels(&rows, &index);
    let shared: Vec<(&i64, &BTreeMap<String, usize>)> =
        by_item.iter().filter(|(_, m)| m.len() >= 2).collect();
    let annotators: BTreeSet<&str> = by_item
        .values()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    let names: Vec<&str> = annotators.into_iter().collect();

    let pairs = pairs_of(&names, &shared);
    // α on the annotator × shared-item matrix (items one person labeled
    // carry no pairable values and would not change α).
    let alpha = if shared.is_empty() {
        None
    } else {
        let data: Vec<Vec<Option<usize>>> = names
            .iter()
            .map(|n| shared.iter().map(|(_, m)| m.get(*n).copied()).collect())
            .collect();
        krippendorff_alpha_nominal(&data).ok()
    };
    // Consensus: the settled label of shared items.
    let shared_ids: Vec<i64> = shared.iter().map(|(id, _)| **id).collect();
    let settled: HashMap<i64, usize> = app
        .store
        .items_by_ids(&shared_ids)
        .await?
        .into_iter()
        .filter_map(|it| {
            let y = *index.get(it.final_label.as_deref()?)?;
            Some((it.id, y))
        })
        .collect();
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new(); // annotations, shared, agree
    for r in &rows {
        counts.entry(r.annotator.as_str()).or_default().0 += 1;
    }
    for (id, m) in &shared {
        for (who, y) in m.iter() {
            let c = counts.entry(who.as_str()).or_default();
            c.1 += 1;
            if settled.get(id) == Some(y) {
                c.2 += 1;
            }
        }
    }
    let conflicts = shared
        .iter()
        .filter(|(_, m)| m.values().collect::<BTreeSet<_>>().len() > 1)
        .count();
    Ok(AgreementView {
        shared_items: shared.len(),
        conflicts,
        alpha,
        pairs: pairs.0,
        pairs_left_out: pairs.1,
        annotators: counts
            .into_iter()
            .map(
                |(name, (annotations, shared_items, agree))| AnnotatorQuality {
                    name: name.to_string(),
                    annotations,
                    shared_items,
                    consensus_accuracy: (shared_items > 0)
                        .then(|| agree as f64 / shared_items as f64),
                },
            )
            .collect(),
        boxes,
        lines,
    })
}
