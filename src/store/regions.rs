//! The region store (issue 22): a model's boxes and a reviewer's, one row
//! per region with its provenance, in both dialects.
//!
//! Machine regions are written by [`Store::complete`] in the transaction
//! that records their item (see `insert_machine_regions`); a reviewer's set
//! is written by [`Store::apply_region_review`], guarded by the item's
//! `regions_rev` so that it lands only on the state it was planned from.

use sqlx::Row;

use super::{now_ms, ItemRecord, RegionRecord, Result, Store, StoreError};
use crate::region::{BoxPx, Geometry, Span};

/// Columns of a [`RegionRecord`], in `from_row` order.
pub(super) const REGION_COLUMNS: &str = "id, item_id, source, kind, x0, y0, x1, y1, label, text, score, \
     uncertainty, status, replaces, model_version, calibration_version, annotator, created_at, updated_at, \
     char_scores";

/// Rows per generated `INSERT`: at most 18 parameters each (32,400) stays
/// below SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const INSERT_ROWS: usize = 1800;

/// What the region routes need of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionItem {
    pub id: i64,
    pub project_id: i64,
    pub status: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// A recording's length in seconds, once pre-labeled.
    pub duration: Option<f64>,
    /// Bumped by every review write of the item's regions.
    pub rev: i64,
}

/// A reviewer's box or segment as it will be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanRegion {
    pub label: String,
    /// A box or a span (never whole: that is an annotation).
    pub geometry: Geometry,
    /// `added` or `corrected`.
    pub status: &'static str,
    /// The machine region a `corrected` box replaces.
    pub replaces: Option<i64>,
    /// An OCR line's text as the person left it (None for boxes and segments).
    pub text: Option<String>,
}

/// A review of one item's regions, planned by the service: every machine
/// region's new status, and the human regions that replace the previous ones.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionReview {
    pub machine: Vec<(i64, &'static str)>,
    pub human: Vec<HumanRegion>,
}

pub(super) fn region_from_row<R: Row>(
    r: &R,
) -> std::result::Result<(i64, RegionRecord), sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let corners: [Option<f64>; 4] = [r.try_get(4)?, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?];
    let kind: String = r.try_get(3)?;
    let (bbox, segment) = match (kind.as_str(), corners) {
        ("span", [Some(start), _, Some(end), _]) => (None, Some(Span::new(start, end))),
        (_, [Some(x0), Some(y0), Some(x1), Some(y1)]) => (Some(BoxPx::new(x0, y0, x1, y1)), None),
        _ => (None, None),
    };
    Ok((
        r.try_get(1)?,
        RegionRecord {
            id: r.try_get(0)?,
            source: r.try_get(2)?,
            kind,
            bbox,
            segment,
            label: r.try_get(8)?,
            text: r.try_get(9)?,
            score: r.try_get(10)?,
            uncertainty: r.try_get(11)?,
            status: r.try_get(12)?,
            replaces: r.try_get(13)?,
            model_version: r.try_get(14)?,
            calibration_version: r.try_get(15)?,
            annotator: r.try_get(16)?,
            created_at: r.try_get(17)?,
            updated_at: r.try_get(18)?,
            char_scores: r
                .try_get::<Option<String>, _>(19)?
                .as_deref()
                .and_then(char_scores_from_json),
        },
    ))
}

impl Store {
    /// The item as the region routes need it.
    pub async fn region_item(&self, item_id: i64) -> Result<RegionItem> {
        let row = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, project_id, status, width, height, duration, regions_rev FROM items WHERE id = $1",
            )
            .bind(item_id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>(RegionItem {
                    id: r.try_get(0)?,
                    project_id: r.try_get(1)?,
                    status: r.try_get(2)?,
                    width: r.try_get(3)?,
                    height: r.try_get(4)?,
                    duration: r.try_get(5)?,
                    rev: r.try_get(6)?,
                })
            })
            .transpose()
        })?;
        row.ok_or_else(|| StoreError::NotFound(format!("item {item_id}")))
    }

    /// Every region of an item, machine and human, oldest first.
    pub async fn item_regions(&self, item_id: i64) -> Result<Vec<RegionRecord>> {
        let sql = format!("SELECT {REGION_COLUMNS} FROM regions WHERE item_id = $1 ORDER BY id");
        let rows = with_pool!(self, |p| {
            let rows = sqlx::query(&sql).bind(item_id).fetch_all(p).await?;
            rows.iter()
                .map(region_from_row)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    /// Attach every item's regions, one `IN` query (per 10,000 items).
    pub async fn attach_regions(&self, items: &mut [ItemRecord]) -> Result<()> {
        for it in items.iter_mut() {
            it.regions = Some(Vec::new());
        }
        for chunk in items.chunks_mut(super::review::MAX_IDS) {
            let mut sql = self.params(&format!(
                "SELECT {REGION_COLUMNS} FROM regions WHERE item_id IN ("
            ));
            sql.list(chunk.len()).push(") ORDER BY id");
            let ids: Vec<i64> = chunk.iter().map(|i| i.id).collect();
            let rows = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql);
                for id in &ids {
                    q = q.bind(*id);
                }
                let rows = q.fetch_all(p).await?;
                rows.iter()
                    .map(region_from_row)
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            })?;
            let at: std::collections::HashMap<i64, usize> =
                chunk.iter().enumerate().map(|(i, it)| (it.id, i)).collect();
            for (item_id, region) in rows {
                if let Some(v) = at.get(&item_id).and_then(|&i| chunk[i].regions.as_mut()) {
                    v.push(region);
                }
            }
        }
        Ok(())
    }

    /// How many regions each item of the project has, by source: for tests
    /// (a retried batch must not write its boxes twice) and audits.
    pub async fn region_counts(&self, project_id: i64) -> Result<Vec<(i64, String, i64)>> {
        let rows = with_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT item_id, source, COUNT(*) FROM regions WHERE project_id = $1 \
                 GROUP BY item_id, source ORDER BY item_id, source",
            )
            .bind(project_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(rows)
    }

    /// Write a reviewer's regions for an item in one transaction, over the
    /// state whose `regions_rev` was `rev`: the item becomes `labeled`
    /// (provenance `human`) and its review lease ends; every machine region
    /// takes its planned status, recorded under `annotator`; the human
    /// regions replace the previous ones. Returns false, writing nothing,
    /// when the item's regions moved since `rev` (plan again).
    ///
    /// The item's row is written first, so concurrent reviews of one item
    /// queue on its lock (PostgreSQL) or the write lock (SQLite) instead of
    /// upgrading a read lock and failing.
    pub async fn apply_region_review(
        &self,
        item_id: i64,
        rev: i64,
        review: &RegionReview,
        annotator: &str,
        set_json: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut machine = self.params("UPDATE regions SET status = v.column2, annotator = ");
        machine
            .param()
            .push(", updated_at = ")
            .param()
            .push(" FROM (VALUES ");
        for i in 0..review.machine.len() {
            if i > 0 {
                machine.push(", ");
            }
            machine.push("(").list(2).push(")");
        }
        machine
            .push(") AS v WHERE regions.id = v.column1 AND regions.item_id = ")
            .param()
            .push(" AND regions.source = 'machine'");
        let inserts: Vec<(String, &[HumanRegion])> = review
            .human
            .chunks(INSERT_ROWS)
            .map(|chunk| {
                let mut sql = self.params(
                    "INSERT INTO regions (item_id, project_id, source, kind, x0, y0, x1, y1, label, status, \
                     replaces, annotator, created_at, updated_at, text) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(")
                        .param()
                        .push(", (SELECT project_id FROM items WHERE id = ")
                        .param()
                        .push("), 'human', ")
                        .list(12)
                        .push(")");
                }
                (sql.sql, chunk)
            })
            .collect();
        with_pool!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            let locked = sqlx::query(
                "UPDATE items SET regions_rev = regions_rev + 1, status = 'labeled', final_source = 'human', \
                 review_owner = NULL, review_until = NULL, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND regions_rev = $2",
            )
            .bind(item_id)
            .bind(rev)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if locked == 0 {
                tx.rollback().await?;
                return Ok::<_, sqlx::Error>(false);
            }
            sqlx::query("DELETE FROM regions WHERE item_id = $1 AND source = 'human'")
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
            // The reviewer's own set, kept for agreement between annotators.
            sqlx::query(
                "INSERT INTO region_sets (item_id, project_id, annotator, boxes, updated_at) \
                 SELECT id, project_id, $2, $3, $4 FROM items WHERE id = $1 \
                 ON CONFLICT (item_id, annotator) DO UPDATE SET boxes = excluded.boxes, updated_at = excluded.updated_at",
            )
            .bind(item_id)
            .bind(annotator)
            .bind(set_json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if !review.machine.is_empty() {
                let mut q = sqlx::query(&machine.sql).bind(annotator).bind(now);
                for (id, status) in &review.machine {
                    q = q.bind(*id).bind(*status);
                }
                q.bind(item_id).execute(&mut *tx).await?;
            }
            for (sql, chunk) in &inserts {
                let mut q = sqlx::query(sql);
                for h in chunk.iter() {
                    let (kind, [x0, y0, x1, y1]) = columns_of(&h.geometry);
                    q = q
                        .bind(item_id)
                        .bind(item_id)
                        .bind(kind)
                        .bind(x0)
                        .bind(y0)
                        .bind(x1)
                        .bind(y1)
                        .bind(&h.label)
                        .bind(h.status)
                        .bind(h.replaces)
                        .bind(annotator)
                        .bind(now)
                        .bind(now)
                        .bind(h.text.as_deref());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        })
    }
}

impl Store {
    /// Every annotator's latest set of boxes on the project's images that
    /// at least two annotators reviewed: `(item, annotator, boxes JSON)`,
    /// by item then annotator.
    pub async fn shared_region_sets(&self, project_id: i64) -> Result<Vec<(i64, String, String)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (i64, String, String)>(
                "SELECT item_id, annotator, boxes FROM region_sets WHERE project_id = $1 AND item_id IN \
                 (SELECT item_id FROM region_sets WHERE project_id = $1 GROUP BY item_id HAVING COUNT(*) >= 2) \
                 ORDER BY item_id, annotator",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// Forget one annotator's own set of boxes on an item (its review was
    /// withdrawn at its source).
    pub async fn forget_region_set(&self, item_id: i64, annotator: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query("DELETE FROM region_sets WHERE item_id = $1 AND annotator = $2")
                .bind(item_id)
                .bind(annotator)
                .execute(p)
                .await
                .map(|_| ())
        })
    }

    /// Undo the review of an item's regions in one transaction, over the
    /// state whose `regions_rev` was `rev`: its human regions go, every
    /// machine region takes the status `machine` gives it (as routed, with
    /// no annotator), and the item takes `status` with no final label (its
    /// review lease ended). Returns false, writing nothing, when the item's
    /// regions moved since `rev`. For a review withdrawn at its source (a
    /// Label Studio annotation deleted).
    pub async fn reopen_region_review(
        &self,
        item_id: i64,
        rev: i64,
        machine: &[(i64, &'static str)],
        status: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut update =
            self.params("UPDATE regions SET status = v.column2, annotator = NULL, updated_at = ");
        update.param().push(" FROM (VALUES ");
        for i in 0..machine.len() {
            if i > 0 {
                update.push(", ");
            }
            update.push("(").list(2).push(")");
        }
        update
            .push(") AS v WHERE regions.id = v.column1 AND regions.item_id = ")
            .param()
            .push(" AND regions.source = 'machine'");
        with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                // An audit image waits for a person whatever its boxes say.
                let locked = sqlx::query(
                    "UPDATE items SET regions_rev = regions_rev + 1, \
                     status = CASE WHEN audit = 1 THEN 'needs_review' ELSE $1 END, final_label = NULL, \
                     final_source = NULL, review_owner = NULL, review_until = NULL \
                     WHERE id = $2 AND regions_rev = $3",
                )
                .bind(status)
                .bind(item_id)
                .bind(rev)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if locked == 0 {
                    tx.rollback().await?;
                    return Ok::<_, sqlx::Error>(false);
                }
                sqlx::query("DELETE FROM regions WHERE item_id = $1 AND source = 'human'")
                    .bind(item_id)
                    .execute(&mut *tx)
                    .await?;
                if !machine.is_empty() {
                    let mut q = sqlx::query(&update.sql).bind(now);
                    for (id, status) in machine {
                        q = q.bind(*id).bind(*status);
                    }
                    q.bind(item_id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }
            .await
        })
    }
}

/// Items per generated `DELETE` of [`machine_region_replaces`].
const REPLACE_ITEMS: usize = 10_000;

/// The statements that clear the machine regions a batch is about to write
/// again: per model version, the recorded items' machine regions of that
/// version that no human region replaces, bound in order: model version,
/// then the item ids. An item sent back through the model (a re-queue) gets
/// its set of that version replaced, not a second one beside it; other
/// versions' sets stay, as does any machine region a reviewer's box names.
/// On a first prediction they delete nothing. [`Store::complete`] runs them
/// in the transaction that inserts the new set.
pub(super) fn machine_region_replaces<'a>(
    store: &Store,
    recorded: impl IntoIterator<Item = (i64, &'a str)>,
) -> Vec<(String, &'a str, Vec<i64>)> {
    let mut by_version: std::collections::BTreeMap<&'a str, Vec<i64>> = Default::default();
    for (id, version) in recorded {
        by_version.entry(version).or_default().push(id);
    }
    let mut out = Vec::new();
    for (version, ids) in by_version {
        for chunk in ids.chunks(REPLACE_ITEMS) {
            let mut sql =
                store.params("DELETE FROM regions WHERE source = 'machine' AND model_version = ");
            sql.param()
                .push(" AND item_id IN (")
                .list(chunk.len())
                .push(") AND NOT EXISTS (SELECT 1 FROM regions h WHERE h.replaces = regions.id)");
            out.push((sql.sql, version, chunk.to_vec()));
        }
    }
    out
}

/// One machine region to insert (a detection's box or a recording's
/// segment), with its item and provenance.
pub(super) struct MachineInsert<'a> {
    pub item_id: i64,
    pub kind: &'static str,
    pub geometry: [Option<f64>; 4],
    pub label: &'a str,
    pub score: f64,
    pub uncertainty: Option<f64>,
    pub accepted: bool,
    pub model_version: &'a str,
    pub calibration_version: Option<i64>,
    /// An OCR line's text.
    pub text: Option<&'a str>,
    /// An OCR line's per-character probabilities, as stored (JSON).
    pub char_scores: Option<String>,
}

/// Per-character probabilities as the `char_scores` column keeps them: a
/// JSON array rounded to 4 decimals (a non-finite value, which no softmax
/// gives, is kept as 0).
pub(super) fn char_scores_json(scores: &[f32]) -> String {
    let rounded: Vec<f64> = scores
        .iter()
        .map(|&p| {
            let p = if p.is_finite() { f64::from(p) } else { 0.0 };
            (p * 1e4).round() / 1e4
        })
        .collect();
    serde_json::to_string(&rounded).unwrap_or_else(|_| "[]".into())
}

/// The `char_scores` column read back; None when unreadable.
fn char_scores_from_json(json: &str) -> Option<Vec<f32>> {
    serde_json::from_str(json).ok()
}

/// A batch's machine regions, boxes then segments, for the recorded items.
pub(super) fn machine_inserts<'a>(
    boxes: &[(i64, &'a super::MachineRegions, &'a str, Option<i64>)],
    spans: &[(i64, &'a super::MachineSegments, &'a str, Option<i64>)],
) -> Vec<MachineInsert<'a>> {
    let boxes = boxes.iter().flat_map(|(id, r, version, cal)| {
        r.boxes.iter().map(move |b| MachineInsert {
            item_id: *id,
            kind: "box",
            geometry: columns_of(&Geometry::Box(b.bbox)).1,
            label: &b.label,
            score: b.score,
            uncertainty: b.uncertainty,
            accepted: b.accepted,
            model_version: version,
            calibration_version: *cal,
            text: b.text.as_deref(),
            char_scores: b.char_scores.as_deref().map(char_scores_json),
        })
    });
    let spans = spans.iter().flat_map(|(id, r, version, cal)| {
        r.segments.iter().map(move |s| MachineInsert {
            item_id: *id,
            kind: "span",
            geometry: columns_of(&Geometry::Span(s.span)).1,
            label: &s.label,
            score: s.score,
            uncertainty: s.uncertainty,
            accepted: s.accepted,
            model_version: version,
            calibration_version: *cal,
            text: None,
            char_scores: None,
        })
    });
    boxes.chain(spans).collect()
}

/// The statements that insert a batch's machine regions: one per
/// [`INSERT_ROWS`] regions (so per batch, not per item), each with its
/// rows, bound in order: item, project, kind, x0, y0, x1, y1, label, score,
/// uncertainty, status, model version, calibration version, job, created,
/// updated, text, char scores. [`Store::complete`] runs them in the transaction that records
/// the items, for the items whose guarded update succeeded only: that is
/// what makes a retried or outlived batch write its regions exactly once.
pub(super) fn machine_region_inserts<'a>(
    store: &Store,
    mut rest: Vec<MachineInsert<'a>>,
) -> Vec<(String, Vec<MachineInsert<'a>>)> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(INSERT_ROWS));
        let mut sql = store.params(
            "INSERT INTO regions (item_id, project_id, source, kind, x0, y0, x1, y1, label, score, \
             uncertainty, status, model_version, calibration_version, job_id, created_at, updated_at, text, \
             char_scores) VALUES ",
        );
        for i in 0..rest.len() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .list(2)
                .push(", 'machine', ")
                .list(16)
                .push(")");
        }
        out.push((sql.sql, rest));
        rest = tail;
    }
    out
}

/// The kind and the four geometry columns of a box or a span (a span's
/// `[start, end]` in `x0`/`x1`, `y` null).
pub(super) fn columns_of(g: &Geometry) -> (&'static str, [Option<f64>; 4]) {
    match g {
        Geometry::Box(b) => ("box", [Some(b.x0), Some(b.y0), Some(b.x1), Some(b.y1)]),
        Geometry::Span(s) => ("span", [Some(s.start), None, Some(s.end), None]),
        Geometry::Whole => ("whole", [None; 4]),
    }
}

/// The statement that records the recordings' lengths and undecided
/// seconds, bound in order: per recording its id, duration, undecided
/// seconds and longest undecided stretch. One per [`super::RECORD_ROWS`]
/// recordings of a batch; never run for images or text, so the
/// classification and detection paths are unchanged.
pub(super) fn recording_update(store: &Store, n: usize) -> String {
    let mut sql = store.params(
        "UPDATE items SET duration = v.column2, undecided = v.column3, undecided_run = v.column4 \
         FROM (VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").list(4).push(")");
    }
    sql.push(") AS v WHERE items.id = v.column1");
    sql.sql
}
