//! One screen over a set of items: every detector, and the issues per item.
//! Used by `labelloop screen`; pure (items arrive decoded and embedded).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::exact::{self, Key};
use super::image_near::{self, ImageNearOptions, ImageSet};
use super::leaks;
use super::neighbors::BruteForce;
use super::outliers::{self, OutlierMethod, OutlierOptions};
use super::pii;
use super::quality::{self, Fences, ImageStats, ImageThresholds};
use super::text_near::{Sketches, TextNearOptions};
use super::{components, ScreenError};

/// A decoded item.
#[derive(Debug, Clone)]
pub enum Content {
    Text(String),
    Image {
        key: Key,
        thumb: Vec<f32>,
        stats: ImageStats,
    },
}

/// Decode an encoded image (PNG, JPEG) into its content key, thumbnail and
/// quality measures. The key hashes the decoded pixels with their size and
/// colour layout.
pub fn decode_image(bytes: &[u8]) -> Result<Content, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let key = exact::pixel_key(
        img.width(),
        img.height(),
        img.color().channel_count(),
        img.as_bytes(),
    );
    let grey = img.to_luma8();
    let (w, h) = grey.dimensions();
    Ok(Content::Image {
        key,
        thumb: image_near::thumbnail(grey.as_raw(), w as usize, h as usize),
        stats: quality::image_stats(grey.as_raw(), w, h),
    })
}

/// One item to screen.
#[derive(Debug, Clone)]
pub struct ScreenItem {
    pub content: Content,
    pub embedding: Option<Vec<f32>>,
    /// The split it was ingested into, if any.
    pub split: Option<String>,
}

/// Settings of a whole screen.
#[derive(Debug, Clone)]
pub struct ScreenOptions {
    pub outliers: OutlierOptions,
    pub text: TextNearOptions,
    pub image: ImageNearOptions,
    /// The training split: leaks are looked for in every other split
    /// against it first (then each split against those before it by name).
    pub train_split: String,
    /// Which detectors run (all by default).
    pub stages: Stages,
}

/// The detectors a screen runs. Near duplicates are looked for among one
/// item per exact group when `exact` runs, among all items otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    pub exact: bool,
    pub near: bool,
    pub outliers: bool,
    pub leaks: bool,
    /// Quality and personal data.
    pub quality: bool,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            exact: true,
            near: true,
            outliers: true,
            leaks: true,
            quality: true,
        }
    }
}

impl Stages {
    /// Parse a comma-separated list of `exact`, `near`, `outliers`, `leaks`,
    /// `quality` (or `all`).
    pub fn parse(list: &str) -> Result<Stages, ScreenError> {
        let mut s = Stages {
            exact: false,
            near: false,
            outliers: false,
            leaks: false,
            quality: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => s = Stages::default(),
                "exact" => s.exact = true,
                "near" => s.near = true,
                "outliers" | "outlier" => s.outliers = true,
                "leaks" | "leak" => s.leaks = true,
                "quality" => s.quality = true,
                other => {
                    return Err(ScreenError::Setting(format!(
                        "unknown stage {other:?}: use exact, near, outliers, leaks, quality or all"
                    )))
                }
            }
        }
        if !(s.exact || s.near || s.outliers || s.leaks || s.quality) {
            return Err(ScreenError::Setting("no stage named".into()));
        }
        Ok(s)
    }
}

impl Default for ScreenOptions {
    fn default() -> Self {
        ScreenOptions {
            outliers: OutlierOptions::default(),
            text: TextNearOptions::default(),
            image: ImageNearOptions::default(),
            train_split: "train".into(),
            stages: Stages::default(),
        }
    }
}

/// What an issue points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    /// Another screened item (a group's representative, or the training item a leak copies).
    Item(usize),
    /// An item of the reference set.
    Reference(usize),
}

/// One issue of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// `exact_duplicate`, `near_duplicate`, `outlier`, `leak`, `quality:<kind>`, `pii:<kind>`.
    pub kind: String,
    pub score: f64,
    pub group: Option<usize>,
    pub of: Option<Of>,
    /// Byte spans of personal data.
    pub spans: Vec<(usize, usize)>,
}

impl Issue {
    fn new(kind: impl Into<String>, score: f64) -> Issue {
        Issue {
            kind: kind.into(),
            score,
            group: None,
            of: None,
            spans: Vec::new(),
        }
    }
}

/// Thresholds and rules a screen used, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub items: usize,
    pub reference_items: usize,
    /// Issues per type.
    pub counts: BTreeMap<String, usize>,
    pub exact_groups: usize,
    pub exact_rows: usize,
    pub near_groups: usize,
    pub near_rows: usize,
    pub outlier_method: Option<OutlierMethod>,
    /// The outlier threshold on the raw score (k-th or mean k-NN distance).
    pub outlier_threshold: Option<f64>,
    pub image_thresholds: Option<ImageThresholds>,
    /// Fences on log10 of text length.
    pub text_length: Option<Fences>,
    /// Where leaks were looked for ("reference", "splits", or none).
    pub leaks_against: Option<String>,
    /// Seconds per stage.
    pub seconds: BTreeMap<String, f64>,
}

/// The result: issues per item (input order) and the summary.
#[derive(Debug, Clone)]
pub struct Report {
    pub issues: Vec<Vec<Issue>>,
    /// Raw outlier score per item (when embeddings were given).
    pub outlier_raw: Option<Vec<f64>>,
    pub summary: Summary,
}

fn embeddings(items: &[ScreenItem]) -> Result<Option<(Vec<f32>, usize)>, ScreenError> {
    let Some(dim) = items
        .first()
        .and_then(|i| i.embedding.as_ref())
        .map(Vec::len)
    else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len() * dim);
    for (n, it) in items.iter().enumerate() {
        match &it.embedding {
            Some(e) if e.len() == dim => out.extend_from_slice(e),
            Some(e) => {
                return Err(ScreenError::Shape(format!(
                    "item {n} has a {}-d embedding, the first item {dim}",
                    e.len()
                )))
            }
            None => {
                return Err(ScreenError::Shape(format!(
                    "item {n} has no embedding while the first has one"
                )))
            }
        }
    }
    Ok(Some((out, dim)))
}

struct Split<'a> {
    texts: Vec<(usize, &'a str)>,
    images: Vec<(usize, &'a Key, &'a Vec<f32>)>,
}

fn split<'a>(items: &'a [ScreenItem], which: &[usize]) -> Split<'a> {
    let mut s = Split {
        texts: Vec::new(),
        images: Vec::new(),
    };
    for &i in which {
        match &items[i].content {
            Content::Text(t) => s.texts.push((i, t)),
            Content::Image { key, thumb, .. } => s.images.push((i, key, thumb)),
        }
    }
    s
}

fn sub_embeddings(items: &[ScreenItem], which: &[usize]) -> Option<(Vec<f32>, usize)> {
    let dim = items.get(*which.first()?)?.embedding.as_ref()?.len();
    let mut out = Vec::with_capacity(which.len() * dim);
    for &i in which {
        out.extend_from_slice(items[i].embedding.as_ref()?);
    }
    Some((out, dim))
}

/// The splits present among `items`, in the order leaks are looked for:
/// `train` (the training split's name) first, then the others by name.
fn split_order<'a>(items: impl Iterator<Item = &'a ScreenItem>, train: &str) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> =
        items.filter_map(|i| i.split.as_deref()).collect();
    let mut order: Vec<String> = names
        .iter()
        .filter(|&&s| s == train)
        .map(|s| s.to_string())
        .collect();
    order.extend(names.iter().filter(|&&s| s != train).map(|s| s.to_string()));
    order
}

/// Leaks of `queries` (indices into `q_items`) against `refs` (indices into `r_items`).
fn find_leaks(
    q_items: &[ScreenItem],
    queries: &[usize],
    r_items: &[ScreenItem],
    refs: &[usize],
    opts: &ScreenOptions,
) -> Result<Vec<(usize, usize, f64)>, ScreenError> {
    let (qs, rs) = (split(q_items, queries), split(r_items, refs));
    let mut out = Vec::new();
    if !qs.texts.is_empty() && !rs.texts.is_empty() {
        let qt: Vec<&str> = qs.texts.iter().map(|t| t.1).collect();
        let rt: Vec<&str> = rs.texts.iter().map(|t| t.1).collect();
        for l in leaks::text_leaks(&qt, &rt, opts.text)? {
            out.push((qs.texts[l.query].0, rs.texts[l.of].0, l.score));
        }
    }
    if !qs.images.is_empty() && !rs.images.is_empty() {
        let qi: Vec<usize> = qs.images.iter().map(|x| x.0).collect();
        let ri: Vec<usize> = rs.images.iter().map(|x| x.0).collect();
        let qt: Vec<Vec<f32>> = qs.images.iter().map(|x| x.2.clone()).collect();
        let rt: Vec<Vec<f32>> = rs.images.iter().map(|x| x.2.clone()).collect();
        let qk: Vec<Option<Key>> = qs.images.iter().map(|x| Some(*x.1)).collect();
        let rk: Vec<Option<Key>> = rs.images.iter().map(|x| Some(*x.1)).collect();
        let qe = sub_embeddings(q_items, &qi);
        let re = sub_embeddings(r_items, &ri);
        let both = qe.is_some() && re.is_some();
        let qset = ImageSet {
            thumbs: &qt,
            embeddings: qe
                .as_ref()
                .filter(|_| both)
                .map(|(e, d)| (e.as_slice(), *d)),
        };
        let rset = ImageSet {
            thumbs: &rt,
            embeddings: re
                .as_ref()
                .filter(|_| both)
                .map(|(e, d)| (e.as_slice(), *d)),
        };
        for l in leaks::image_leaks(&qk, &qset, &rk, &rset, opts.image)? {
            out.push((qi[l.query], ri[l.of], l.score));
        }
    }
    Ok(out)
}

/// Screen `items`, against `reference` when one is given (outliers by the
/// conformal test, leaks against it); without one, outliers by the
/// within-pool rule and leaks between splits.
pub fn screen(
    items: &[ScreenItem],
    reference: Option<&[ScreenItem]>,
    opts: &ScreenOptions,
) -> Result<Report, ScreenError> {
    screen_with(items, reference, None, opts)
}

/// [`screen`], with the outlier test's reference given apart as embeddings
/// (row-major, and their dimension) when it is not `reference`: a
/// project's own human-labeled items, say, which are a reference for
/// outliers but whose copies in the pool are no leaks. Without either,
/// outliers use the within-pool rule.
pub fn screen_with(
    items: &[ScreenItem],
    reference: Option<&[ScreenItem]>,
    outlier_reference: Option<(&[f32], usize)>,
    opts: &ScreenOptions,
) -> Result<Report, ScreenError> {
    outliers::check_alpha(opts.outliers.alpha)?;
    let n = items.len();
    let mut issues: Vec<Vec<Issue>> = vec![Vec::new(); n];
    let mut seconds = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut BTreeMap<String, f64>| {
        seconds.insert(name.to_string(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };

    // Exact duplicates.
    let keys: Vec<Option<Key>> = items
        .iter()
        .map(|it| {
            Some(match &it.content {
                Content::Text(t) => exact::text_key(t),
                Content::Image { key, .. } => *key,
            })
        })
        .collect();
    let exact_groups = if opts.stages.exact {
        exact::groups(&keys)
    } else {
        Vec::new()
    };
    let mut group_id = 0usize;
    let mut unique = vec![true; n];
    for g in &exact_groups {
        for (m, &i) in g.iter().enumerate() {
            let mut is = Issue::new("exact_duplicate", 1.0);
            is.group = Some(group_id);
            if m > 0 {
                is.of = Some(Of::Item(g[0]));
                unique[i] = false;
            }
            issues[i].push(is);
        }
        group_id += 1;
    }
    if opts.stages.exact {
        lap("exact", &mut seconds);
    }

    // Near duplicates, among the unique items (one per exact group).
    let reps: Vec<usize> = (0..n).filter(|&i| unique[i]).collect();
    let rs = split(items, &reps);
    let mut near_pairs: Vec<(usize, usize, f64)> = Vec::new();
    let near = opts.stages.near;
    let emb = if opts.stages.outliers {
        embeddings(items)?
    } else {
        None
    };
    let shared = opts.stages.outliers && reference.is_none() && outlier_reference.is_none();
    let mut pool_knn: Option<Vec<Vec<super::neighbors::Neighbor>>> = None;
    if near && !rs.texts.is_empty() {
        let texts: Vec<&str> = rs.texts.iter().map(|t| t.1).collect();
        let sk = Sketches::new(&texts, opts.text)?;
        near_pairs.extend(
            sk.pairs_within()
                .into_iter()
                .map(|p| (rs.texts[p.a].0, rs.texts[p.b].0, p.similarity)),
        );
        lap("near_text", &mut seconds);
    }
    if near && !rs.images.is_empty() {
        let idx: Vec<usize> = rs.images.iter().map(|x| x.0).collect();
        let thumbs: Vec<Vec<f32>> = rs.images.iter().map(|x| x.2.clone()).collect();
        let emb = sub_embeddings(items, &idx);
        let set = ImageSet {
            thumbs: &thumbs,
            embeddings: emb.as_ref().map(|(e, d)| (e.as_slice(), *d)),
        };
        // Within the pool, over every item, the outlier score needs the
        // embeddings' leave-one-out neighbours too: search once for both.
        if shared && idx.len() == n {
            if let Some((e, dim)) = &emb {
                let k = opts.outliers.k.max(opts.image.k);
                pool_knn = Some(BruteForce::new(e.clone(), *dim)?.self_knn(k)?);
            }
        }
        near_pairs.extend(
            image_near::near_pairs_with(&set, opts.image, pool_knn.as_deref())?
                .into_iter()
                .map(|p| (idx[p.a], idx[p.b], p.score)),
        );
        lap("near_image", &mut seconds);
    }
    let near_groups = components(n, near_pairs.iter().map(|p| (p.0, p.1)));
    let mut best = vec![0f64; n];
    for &(a, b, s) in &near_pairs {
        best[a] = best[a].max(s);
        best[b] = best[b].max(s);
    }
    let mut near_rows = 0;
    for g in &near_groups {
        near_rows += g.len();
        for (m, &i) in g.iter().enumerate() {
            let mut is = Issue::new("near_duplicate", best[i]);
            is.group = Some(group_id);
            if m > 0 {
                is.of = Some(Of::Item(g[0]));
            }
            issues[i].push(is);
        }
        group_id += 1;
    }

    // Outliers.
    let mut outlier_method = None;
    let mut outlier_threshold = None;
    let mut outlier_raw = None;
    if let Some((e, dim)) = &emb {
        let against = match outlier_reference {
            Some((re, rdim)) => Some((re.to_vec(), rdim)),
            None => reference.map(embeddings).transpose()?.flatten(),
        };
        let res = match against {
            Some((re, rdim)) => {
                if rdim != *dim {
                    return Err(ScreenError::Shape(format!(
                        "the reference's embeddings are {rdim}-d, the items' {dim}-d"
                    )));
                }
                let index = BruteForce::new(re, rdim)?;
                outliers::conformal(&index, e, opts.outliers)?
            }
            None => {
                let knn = match pool_knn.take() {
                    Some(knn) => knn,
                    None => BruteForce::new(e.clone(), *dim)?.self_knn(opts.outliers.k)?,
                };
                outliers::within_pool(&knn, opts.outliers.k)
            }
        };
        for (i, item_issues) in issues.iter_mut().enumerate().take(n) {
            if res.flagged[i] {
                item_issues.push(Issue::new("outlier", res.score(i)));
            }
        }
        outlier_method = Some(res.method);
        outlier_threshold = Some(res.threshold);
        outlier_raw = Some(res.raw.clone());
        lap("outliers", &mut seconds);
    }

    // Leaks: copies of the reference's items, and copies across splits.
    let mut against = Vec::new();
    let mut found: Vec<(usize, Of, f64)> = Vec::new();
    if let Some(r) = reference.filter(|_| opts.stages.leaks) {
        let all: Vec<usize> = (0..n).collect();
        let rall: Vec<usize> = (0..r.len()).collect();
        found.extend(
            find_leaks(items, &all, r, &rall, opts)?
                .into_iter()
                .map(|(q, o, s)| (q, Of::Reference(o), s)),
        );
        against.push("reference".to_string());
    }
    let order = split_order(items.iter(), &opts.train_split);
    if opts.stages.leaks && order.len() > 1 {
        // Each split against every split before it: a test item copying a
        // training item is the test item's leak, never the other way round,
        // and copies inside one split are duplicates, not leaks.
        for (j, later) in order.iter().enumerate().skip(1) {
            let queries: Vec<usize> = (0..n)
                .filter(|&i| items[i].split.as_deref() == Some(later.as_str()))
                .collect();
            let earlier: Vec<usize> = (0..n)
                .filter(|&i| {
                    items[i]
                        .split
                        .as_ref()
                        .is_some_and(|s| order[..j].contains(s))
                })
                .collect();
            found.extend(
                find_leaks(items, &queries, items, &earlier, opts)?
                    .into_iter()
                    .map(|(q, o, s)| (q, Of::Item(o), s)),
            );
        }
        against.push(format!("splits {}", order.join(" < ")));
    }
    // One leak per item: the closest copy (an exact one first).
    let mut best: BTreeMap<usize, (Of, f64)> = BTreeMap::new();
    for (q, of, s) in found {
        let better = best.get(&q).is_none_or(|&(_, b)| s > b);
        if better {
            best.insert(q, (of, s));
        }
    }
    for (q, (of, s)) in best {
        let mut is = Issue::new("leak", s);
        is.of = Some(of);
        issues[q].push(is);
    }
    let leaks_against = (!against.is_empty()).then(|| against.join(", "));
    if leaks_against.is_some() {
        lap("leaks", &mut seconds);
    }

    // Quality and personal data.
    let stats: Vec<ImageStats> = items
        .iter()
        .filter_map(|i| match &i.content {
            Content::Image { stats, .. } => Some(*stats),
            Content::Text(_) => None,
        })
        .collect();
    let quality_on = opts.stages.quality;
    let image_thresholds =
        (quality_on && !stats.is_empty()).then(|| quality::image_thresholds(&stats));
    let texts: Vec<&str> = items
        .iter()
        .filter_map(|i| match &i.content {
            Content::Text(t) => Some(t.as_str()),
            Content::Image { .. } => None,
        })
        .collect();
    let text_length = (quality_on && !texts.is_empty()).then(|| quality::text_thresholds(&texts));
    for (i, it) in items.iter().enumerate().filter(|_| quality_on) {
        match &it.content {
            Content::Image { stats, .. } => {
                if let Some(t) = &image_thresholds {
                    for q in quality::image_issues(stats, t) {
                        issues[i].push(Issue::new(format!("quality:{}", q.name()), 1.0));
                    }
                }
            }
            Content::Text(t) => {
                if let Some(f) = &text_length {
                    for q in quality::text_issues(t, f) {
                        issues[i].push(Issue::new(format!("quality:{}", q.name()), 1.0));
                    }
                }
                let mut by_kind: BTreeMap<pii::PiiKind, Vec<(usize, usize)>> = BTreeMap::new();
                for s in pii::scan(t) {
                    by_kind.entry(s.kind).or_default().push((s.start, s.end));
                }
                for (kind, spans) in by_kind {
                    let mut is = Issue::new(format!("pii:{}", kind.name()), spans.len() as f64);
                    is.spans = spans;
                    issues[i].push(is);
                }
            }
        }
    }
    if quality_on {
        lap("quality_pii", &mut seconds);
    }

    let mut counts = BTreeMap::new();
    for is in issues.iter().flatten() {
        *counts.entry(is.kind.clone()).or_insert(0) += 1;
    }
    Ok(Report {
        issues,
        outlier_raw,
        summary: Summary {
            items: n,
            reference_items: reference.map_or(0, <[_]>::len),
            counts,
            exact_groups: exact_groups.len(),
            exact_rows: exact_groups.iter().map(Vec::len).sum(),
            near_groups: near_groups.len(),
            near_rows,
            outlier_method,
            outlier_threshold,
            image_thresholds,
            text_length,
            leaks_against,
            seconds,
        },
    })
}

/// A copy between a new item and a stored one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossCopy {
    /// The new item (index into the batch).
    pub new: usize,
    /// The stored item it copies (index into the stored items).
    pub stored: usize,
    /// 1 for an exact copy, else the verified similarity.
    pub score: f64,
    pub exact: bool,
}

/// What an incremental screen compared: the work grows with the batch
/// (`new` queries against `stored` items), not with the stored items' pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Compared {
    /// Items of the batch (screened among themselves as a whole screen).
    pub new: usize,
    /// Stored items the batch was compared with.
    pub stored: usize,
    /// Queries from the batch into the stored items: duplicates (one per
    /// new item) and, within the pool, outlier scores (one per new item).
    pub queries: usize,
    /// Leak queries across splits between the batch and the stored items,
    /// both ways (a new training item can make a stored test item a leak).
    pub leak_queries: usize,
    /// New items that copy a stored item (exact or verified near).
    pub copies: usize,
}

/// The screen of a batch of `new` items against `stored` items that were
/// screened before.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The batch screened by itself ([`screen_with`]: duplicates within the
    /// batch, outliers, leaks against the reference and between its own
    /// splits, quality, PII); `Of::Item` indexes the batch.
    pub report: Report,
    /// Each new item's closest stored copy, if any.
    pub copies: Vec<CrossCopy>,
    /// Leaks across splits: (item, the item of an earlier split it copies,
    /// score), new items into stored ones and stored items into new ones.
    pub new_leaks: Vec<(usize, usize, f64)>,
    pub stored_leaks: Vec<(usize, usize, f64)>,
    pub compared: Compared,
}

/// Screen a new batch against the stored items: the batch by itself, then
/// each new item against the stored ones (exact keys, then the near
/// duplicates' verification), and leaks across splits between the two
/// sides. Within the pool (no outlier reference), a new item's outlier
/// score is its mean distance to its k nearest among stored and new items,
/// flagged above `pool_threshold` (the last full screen's threshold).
pub fn screen_batch(
    new: &[ScreenItem],
    stored: &[ScreenItem],
    reference: Option<&[ScreenItem]>,
    outlier_reference: Option<(&[f32], usize)>,
    pool_threshold: Option<f64>,
    opts: &ScreenOptions,
) -> Result<BatchReport, ScreenError> {
    let mut report = screen_with(new, reference, outlier_reference, opts)?;
    let mut compared = Compared {
        new: new.len(),
        stored: stored.len(),
        ..Compared::default()
    };
    let all_new: Vec<usize> = (0..new.len()).collect();
    let all_stored: Vec<usize> = (0..stored.len()).collect();
    let mut clock = Instant::now();
    let copies: Vec<CrossCopy> = if stored.is_empty() {
        Vec::new()
    } else {
        compared.queries += new.len();
        find_leaks(new, &all_new, stored, &all_stored, opts)?
            .into_iter()
            .map(|(q, o, score)| CrossCopy {
                new: q,
                stored: o,
                score,
                exact: score >= 1.0 && same_key(&new[q], &stored[o]),
            })
            .collect()
    };
    compared.copies = copies.len();
    report
        .summary
        .seconds
        .insert("batch_copies".into(), clock.elapsed().as_secs_f64());
    clock = Instant::now();

    // Within the pool: score the batch against stored and new items.
    if let (Some(OutlierMethod::WithinPool), Some(threshold), false) = (
        report.summary.outlier_method,
        pool_threshold,
        stored.is_empty(),
    ) {
        let k = opts.outliers.k;
        let mut data = embeddings(stored)?.map(|e| e.0).unwrap_or_default();
        let new_emb = embeddings(new)?;
        if let Some((ne, dim)) = new_emb {
            data.extend_from_slice(&ne);
            let index = BruteForce::new(data, dim)?;
            use super::neighbors::NeighborIndex;
            let knn = index.search(&ne, k + 1, false)?;
            compared.queries += new.len();
            let raw: Vec<f64> = knn
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    // Leave the item itself out (point stored + i).
                    let own = (stored.len() + i) as u32;
                    let ds: Vec<f64> = ns
                        .iter()
                        .filter(|n| n.index != own)
                        .take(k)
                        .map(|n| n.distance as f64)
                        .collect();
                    if ds.is_empty() {
                        0.0
                    } else {
                        ds.iter().sum::<f64>() / ds.len() as f64
                    }
                })
                .collect();
            for (i, item_issues) in report.issues.iter_mut().enumerate() {
                item_issues.retain(|is| is.kind != "outlier");
                if raw[i] > threshold {
                    let score = if threshold > 0.0 {
                        raw[i] / threshold
                    } else {
                        0.0
                    };
                    item_issues.push(Issue::new("outlier", score));
                }
            }
            report.summary.outlier_threshold = Some(threshold);
            report.outlier_raw = Some(raw);
        }
        report
            .summary
            .seconds
            .insert("batch_outliers".into(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    }

    // Leaks across splits between the batch and the stored items.
    let (mut new_leaks, mut stored_leaks) = (Vec::new(), Vec::new());
    let order = split_order(stored.iter().chain(new), &opts.train_split);
    for (j, later) in order.iter().enumerate().skip(1) {
        let in_later = |it: &ScreenItem| it.split.as_deref() == Some(later.as_str());
        let in_earlier =
            |it: &ScreenItem| it.split.as_ref().is_some_and(|s| order[..j].contains(s));
        let pick = |items: &[ScreenItem], f: &dyn Fn(&ScreenItem) -> bool| -> Vec<usize> {
            (0..items.len()).filter(|&i| f(&items[i])).collect()
        };
        let (nq, se) = (pick(new, &in_later), pick(stored, &in_earlier));
        if !nq.is_empty() && !se.is_empty() {
            compared.leak_queries += nq.len();
            new_leaks.extend(find_leaks(new, &nq, stored, &se, opts)?);
        }
        let (sq, ne) = (pick(stored, &in_later), pick(new, &in_earlier));
        if !sq.is_empty() && !ne.is_empty() {
            compared.leak_queries += sq.len();
            stored_leaks.extend(find_leaks(stored, &sq, new, &ne, opts)?);
        }
    }
    report
        .summary
        .seconds
        .insert("batch_leaks".into(), clock.elapsed().as_secs_f64());
    Ok(BatchReport {
        report,
        copies,
        new_leaks,
        stored_leaks,
        compared,
    })
}

/// Whether two items have the same exact key (decoded pixels, or
/// normalised text).
fn same_key(a: &ScreenItem, b: &ScreenItem) -> bool {
    match (&a.content, &b.content) {
        (Content::Text(x), Content::Text(y)) => exact::text_key(x) == exact::text_key(y),
        (Content::Image { key: x, .. }, Content::Image { key: y, .. }) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, split: Option<&str>) -> ScreenItem {
        ScreenItem {
            content: Content::Text(t.into()),
            embedding: None,
            split: split.map(String::from),
        }
    }

    #[test]
    fn a_small_text_screen_names_groups_leaks_and_pii() {
        let items = vec![
            text("Ok lar... Joking wif u oni...", Some("train")),
            text("Ok lar...  Joking wif u oni...", Some("train")),
            text("Call 08712460324 to claim your prize now", Some("train")),
            text("CALL 08712460324 to claim your prize now!!", Some("test")),
            text("see you at the station at six", Some("test")),
        ];
        let r = screen(&items, None, &ScreenOptions::default()).unwrap();
        let kinds =
            |i: usize| -> Vec<&str> { r.issues[i].iter().map(|x| x.kind.as_str()).collect() };
        assert_eq!(kinds(0), vec!["exact_duplicate"]);
        assert_eq!(r.issues[1][0].of, Some(Of::Item(0)));
        assert!(kinds(2).contains(&"near_duplicate") && kinds(2).contains(&"pii:phone"));
        assert!(kinds(3).contains(&"leak"), "{:?}", kinds(3));
        assert_eq!(
            r.issues[3].iter().find(|x| x.kind == "leak").unwrap().of,
            Some(Of::Item(2))
        );
        assert!(kinds(4).is_empty());
        assert_eq!((r.summary.exact_groups, r.summary.exact_rows), (1, 2));
        let bad = ScreenOptions {
            outliers: OutlierOptions { k: 10, alpha: 0.7 },
            ..Default::default()
        };
        assert_eq!(
            screen(&items, None, &bad).unwrap_err(),
            ScreenError::Alpha(0.7)
        );
    }

    #[test]
    fn a_batch_is_compared_with_the_stored_items_only() {
        let stored = vec![
            text("Ok lar... Joking wif u oni...", Some("train")),
            text("see you at the station at six tonight", Some("train")),
            text(
                "I will be late for dinner, sorry, the bus broke down",
                Some("test"),
            ),
        ];
        let new = vec![
            text("Ok lar... Joking wif u oni...", Some("test")),
            text("SEE you at the station at six tonight!", Some("val")),
            text(
                "I will be late for dinner, sorry, the bus broke down",
                Some("train"),
            ),
            text("a message like no other in this little set", Some("test")),
        ];
        let b = screen_batch(&new, &stored, None, None, None, &ScreenOptions::default()).unwrap();
        let copies: Vec<(usize, usize, bool)> = b
            .copies
            .iter()
            .map(|c| (c.new, c.stored, c.exact))
            .collect();
        assert_eq!(copies, vec![(0, 0, true), (1, 1, false), (2, 2, true)]);
        // New test and val items copying stored train items leak; a stored
        // test item copying a new train item leaks too.
        let new_leaks: Vec<(usize, usize)> = b.new_leaks.iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(new_leaks, vec![(0, 0), (1, 1)]);
        let stored_leaks: Vec<(usize, usize)> = b.stored_leaks.iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(stored_leaks, vec![(2, 2)]);
        assert_eq!(
            b.compared,
            Compared {
                new: 4,
                stored: 3,
                queries: 4,
                // Splits train < test < val: the two new test items into
                // the stored train ones, the stored test item into the new
                // train one, the new val item into stored train and test.
                leak_queries: 4,
                copies: 3,
            }
        );
        assert_eq!(b.report.issues.len(), new.len(), "the batch's own issues");
    }

    #[test]
    fn leaks_cross_splits_only_and_point_at_the_earlier_split() {
        let items = vec![
            text("Ok lar... Joking wif u oni...", Some("train")),
            text("Ok lar...  Joking wif u oni...", Some("test")),
            text("see you at the station at six tonight", Some("test")),
            text("see you at the station at six tonight", Some("test")),
            text("see you at the station at six tonight!", Some("val")),
            text(
                "I will be late for dinner, sorry, the bus broke down",
                Some("val"),
            ),
            text("I will be late for dinner, sorry, the bus broke down", None),
        ];
        let r = screen(&items, None, &ScreenOptions::default()).unwrap();
        let leak = |i: usize| r.issues[i].iter().find(|x| x.kind == "leak").map(|x| x.of);
        assert_eq!(leak(1), Some(Some(Of::Item(0))));
        assert_eq!(leak(4), Some(Some(Of::Item(2))), "val against test");
        for i in [0, 2, 3, 5, 6] {
            assert_eq!(
                leak(i),
                None,
                "item {i}: a copy within a split (or without one) is no leak"
            );
        }
        assert_eq!(
            r.summary.leaks_against.as_deref(),
            Some("splits train < test < val")
        );
    }
}
