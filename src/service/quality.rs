//! Quality of the human labels: agreement between annotators (Cohen's κ
//! per pair, Krippendorff's α overall) and each annotator's accuracy
//! against the consensus of the items more than one person labeled.
//! Suspected label errors come with each calibration (see
//! [`super::calibration`]); conflicts are settled in [`super::review`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::app::App;
use super::box_calibration;
use super::error::ServiceResult;
use super::regions;
use crate::calibrate::{cohen_kappa, krippendorff_alpha_nominal, BoxAgreementCounts};
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
    // The annotators with the most shared images, as for κ.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for m in by_item.values() {
        for who in m.keys() {
            *count.entry(who).or_default() += 1;
        }
    }
    let mut ranked: Vec<&str> = count.keys().copied().collect();
    ranked.sort_by(|a, b| count[b].cmp(&count[a]).then(a.cmp(b)));
    let pairs_left_out = ranked.len().saturating_sub(MAX_PAIR_ANNOTATORS);
    ranked.truncate(MAX_PAIR_ANNOTATORS);
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

pub async fn agreement(app: &App, project_id: i64) -> ServiceResult<AgreementView> {
    let project = app.store.get_project(project_id).await?;
    let boxes = if project.task == regions::DETECT {
        Some(box_agreement(app, &project).await?)
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
    })
}
