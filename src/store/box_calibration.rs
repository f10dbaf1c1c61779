//! The store side of calibrating boxes (issue 22): reading the regions of
//! the reviewed audit images, and committing a version of per-class box
//! thresholds together with the re-routing of every machine box it decides,
//! in one transaction.

use sqlx::Row;

use super::regions::{region_from_row, REGION_COLUMNS};
use super::{now_ms, project_written, RegionRecord, Result, Store};

/// Machine boxes of one label decided by a version, and how many of them it
/// auto-accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxCoverage {
    pub label: String,
    pub boxes: i64,
    pub accepted: i64,
}

/// What a committed box calibration changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxCommit {
    pub version: i64,
    /// Images re-routed (their status re-decided under the version).
    pub images: u64,
}

impl Store {
    /// Every region of the project's **reviewed audit images** (audit items
    /// a person labeled), grouped by item, items and regions in id order.
    pub async fn audit_image_regions(
        &self,
        project_id: i64,
    ) -> Result<Vec<(i64, Vec<RegionRecord>)>> {
        let sql = format!(
            "SELECT {REGION_COLUMNS} FROM regions WHERE item_id IN \
             (SELECT id FROM items WHERE project_id = $1 AND audit = 1 AND status = 'labeled') \
             ORDER BY item_id, id"
        );
        let rows = with_pool!(self, |p| {
            let rows = sqlx::query(&sql).bind(project_id).fetch_all(p).await?;
            rows.iter()
                .map(region_from_row)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        let mut out: Vec<(i64, Vec<RegionRecord>)> = Vec::new();
        for (item, region) in rows {
            match out.last_mut() {
                Some((last, regions)) if *last == item => regions.push(region),
                _ => out.push((item, vec![region])),
            }
        }
        Ok(out)
    }

    /// Store a box calibration version and re-route under it, in one
    /// transaction, set-wise (three statements whatever the project's size):
    /// - every machine box not yet seen by a person, on an image outside the
    ///   audit sample still decided by the machine, becomes `accepted` when
    ///   its label has a threshold in `thresholds` and its score reaches it,
    ///   else `review`;
    /// - each such image becomes `auto_accepted` when it has boxes and all of
    ///   them are accepted, else `needs_review` (no box: a person confirms);
    ///   with `held` (speech), a recording becomes `auto_accepted` when none
    ///   of its segments is left for review and the model's longest
    ///   undecided stretch is under `held` seconds (no segment and no such
    ///   stretch: settled as silence, as the job routes it);
    /// - the version's body is written once the per-label coverage is known:
    ///   `body_of` gets it and returns the JSON to store.
    ///
    /// Images a person reviewed, and audit images, are never touched.
    pub async fn commit_box_calibration(
        &self,
        project_id: i64,
        audit_labels: i64,
        thresholds: &[(String, f64)],
        held: Option<f64>,
        body_of: impl FnOnce(&[BoxCoverage]) -> String + Send,
    ) -> Result<BoxCommit> {
        let now = now_ms();
        // Placeholders are numbered in written order: the version, the
        // time, a label and its threshold per calibrated class, the project
        // twice. No calibrated class: nothing passes.
        let mut boxes = self.params("UPDATE regions SET calibration_version = ");
        boxes
            .param()
            .push(", updated_at = ")
            .param()
            .push(", status = CASE WHEN score IS NOT NULL AND (");
        if thresholds.is_empty() {
            boxes.push("1 = 0");
        }
        for i in 0..thresholds.len() {
            if i > 0 {
                boxes.push(" OR ");
            }
            boxes
                .push("(label = ")
                .param()
                .push(" AND score >= ")
                .param()
                .push(")");
        }
        boxes
            .push(") THEN 'accepted' ELSE 'review' END WHERE project_id = ")
            .param()
            .push(
                " AND source = 'machine' AND annotator IS NULL AND status IN ('accepted', 'review') \
                 AND item_id IN (SELECT id FROM items WHERE project_id = ",
            )
            .param()
            .push(" AND audit = 0 AND status IN ('auto_accepted', 'needs_review'))");
        // The first condition: an image needs an accepted box; a recording
        // needs no undecided stretch of `held` seconds ($3).
        let first = if held.is_some() {
            "COALESCE(items.undecided_run, 0) < $3"
        } else {
            "EXISTS (SELECT 1 FROM regions r WHERE r.item_id = items.id AND r.source = 'machine' \
             AND r.status = 'accepted' AND r.annotator IS NULL)"
        };
        let items = format!(
            "UPDATE items SET calibration_version = $1, status = CASE \
             WHEN {first} \
              AND NOT EXISTS (SELECT 1 FROM regions r WHERE r.item_id = items.id AND r.source = 'machine' \
                          AND r.status = 'review') \
             THEN 'auto_accepted' ELSE 'needs_review' END \
             WHERE project_id = $2 AND audit = 0 AND status IN ('auto_accepted', 'needs_review')"
        );
        let counts = "SELECT label, COUNT(*), SUM(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END) \
             FROM regions WHERE project_id = $1 AND source = 'machine' AND calibration_version = $2 \
             GROUP BY label ORDER BY label";
        let saved = with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                // A write first: on SQLite the transaction takes the write
                // lock here, not at a later upgrade that could fail.
                let version: i64 = sqlx::query_scalar(
                    "INSERT INTO calibrations (project_id, version, body, audit_labels, created_at) \
                     SELECT $1, COALESCE(MAX(version), 0) + 1, '{}', $2, $3 FROM calibrations \
                     WHERE project_id = $1 RETURNING version",
                )
                .bind(project_id)
                .bind(audit_labels)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let mut q = sqlx::query(&boxes.sql).bind(version).bind(now);
                for (label, t) in thresholds {
                    q = q.bind(label).bind(*t);
                }
                q.bind(project_id)
                    .bind(project_id)
                    .execute(&mut *tx)
                    .await?;
                let mut q = sqlx::query(&items).bind(version).bind(project_id);
                if let Some(seconds) = held {
                    q = q.bind(seconds);
                }
                let images = q.execute(&mut *tx).await?.rows_affected();
                let coverage = sqlx::query(counts)
                    .bind(project_id)
                    .bind(version)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(BoxCoverage {
                            label: r.try_get(0)?,
                            boxes: r.try_get(1)?,
                            accepted: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
                sqlx::query("UPDATE calibrations SET body = $1 WHERE project_id = $2 AND version = $3")
                    .bind(body_of(&coverage))
                    .bind(project_id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE projects SET calibration_version = $1 WHERE id = $2")
                    .bind(version)
                    .bind(project_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(BoxCommit { version, images })
            }
            .await
        });
        // Also on failure: a kept row read meanwhile is then refetched, harmlessly.
        project_written();
        saved
    }
}
