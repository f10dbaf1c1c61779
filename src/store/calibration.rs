//! Calibration versions, the audit sample, and re-routing items under a fit.

use sqlx::Row;

use super::{bytes_embedding, now_ms, Result, Store};

/// A stored calibration version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CalibrationRow {
    pub version: i64,
    /// JSON of `service::calibration::Stored`.
    pub body: String,
    pub audit_labels: i64,
    /// JSON array of labels whose drift alarm fired under this version.
    pub drift_classes: String,
    pub created_at: i64,
}

/// A human-labeled item, as a calibration fit reads it.
#[derive(Debug, Clone)]
pub struct LabeledRow {
    pub id: i64,
    /// In the audit sample, and counted: not a duplicate member or a leaked
    /// item of the last screen.
    pub audit: bool,
    /// An audit item the last screen found leaked (and `audit` false),
    /// whether or not it is also a duplicate member: left out of the fit,
    /// counted only in the figures `with_leaked`.
    pub leaked_audit: bool,
    /// The audit draw's inclusion probability (audit items only).
    pub audit_p: Option<f64>,
    /// The human label in force.
    pub label: String,
    /// What the machine predicted, and its raw `{label: p}` JSON.
    pub pred_label: Option<String>,
    pub raw_scores: Option<String>,
    pub embedding: Option<Vec<f32>>,
    /// When the (last) human label was given.
    pub labeled_at: i64,
}

/// An item whose machine decision a new calibration may change.
#[derive(Debug, Clone)]
pub struct MachineRow {
    pub id: i64,
    pub audit: bool,
    pub status: String,
    pub raw_scores: Option<String>,
}

/// The new machine decision for one item.
#[derive(Debug, Clone)]
pub struct Reroute {
    pub id: i64,
    pub auto_accept: bool,
    pub label: String,
    pub score: f64,
    pub scores_json: String,
}

/// Audit labels given, and audit items still waiting for one.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct AuditCounts {
    pub spent: i64,
    pub pending: i64,
}

/// Items of a project by status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct StatusCounts {
    pub total: i64,
    pub pending: i64,
    pub auto_accepted: i64,
    pub needs_review: i64,
    pub needs_confirmation: i64,
    pub labeled: i64,
    pub failed: i64,
    /// Outliers a person rejected (issue 25).
    pub rejected: i64,
}

/// One annotation with what agreement needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnnotationRow {
    pub id: i64,
    pub item_id: i64,
    pub annotator: String,
    pub label: String,
    pub created_at: i64,
}

/// Most ids in one statement.
const CHUNK: usize = 500;

/// Bind one item's new decision to a re-routing statement.
fn bind_reroute<'q, DB: sqlx::Database>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    u: &'q Reroute,
    version: i64,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(u.id)
        .bind(if u.auto_accept {
            "auto_accepted"
        } else {
            "needs_review"
        })
        .bind(u.label.as_str())
        .bind(u.score)
        .bind(u.scores_json.as_str())
        .bind(version)
}

impl Store {
    /// Store a fit as the project's next calibration version, re-route the
    /// items under it, and make it current, in one transaction: a version
    /// takes force only with its re-routing complete (a crash midway leaves
    /// the previous version in force and no item under the new one).
    /// Returns the version and how many items moved.
    pub async fn commit_calibration(
        &self,
        project_id: i64,
        body: &str,
        audit_labels: i64,
        updates: &[Reroute],
    ) -> Result<(i64, u64)> {
        let now = now_ms();
        let statements: Vec<_> = updates
            .chunks(CHUNK)
            .map(|c| (self.reroute_sql(c.len()), c))
            .collect();
        let saved = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            // A write first: on SQLite the transaction takes the write lock
            // here (waiting for it), not at a later upgrade that could fail.
            let version: i64 = sqlx::query_scalar(
                "INSERT INTO calibrations (project_id, version, body, audit_labels, created_at) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM calibrations WHERE project_id = $1 \
                 RETURNING version",
            )
            .bind(project_id)
            .bind(body)
            .bind(audit_labels)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let mut moved = 0u64;
            for (sql, chunk) in &statements {
                let mut q = sqlx::query(&sql.sql);
                for u in *chunk {
                    q = bind_reroute(q, u, version);
                }
                moved += q.execute(&mut *tx).await?.rows_affected();
                crate::failpoint::hit("calibration-reroute");
            }
            sqlx::query("UPDATE projects SET calibration_version = $1 WHERE id = $2")
                .bind(version)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>((version, moved))
        });
        // Also on failure: a kept row read meanwhile is then refetched, harmlessly.
        super::project_written();
        saved
    }

    /// The project's current calibration version, if it has one.
    pub async fn current_calibration(&self, project_id: i64) -> Result<Option<CalibrationRow>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CalibrationRow>(
                "SELECT c.version, c.body, c.audit_labels, c.drift_classes, c.created_at \
                 FROM calibrations c JOIN projects p ON p.id = c.project_id \
                 WHERE c.project_id = $1 AND c.version = p.calibration_version",
            )
            .bind(project_id)
            .fetch_optional(p)
            .await
        })
    }

    /// Every calibration version of a project, oldest first.
    pub async fn calibration_history(&self, project_id: i64) -> Result<Vec<CalibrationRow>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CalibrationRow>(
                "SELECT version, body, audit_labels, drift_classes, created_at FROM calibrations \
                 WHERE project_id = $1 ORDER BY version",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// Record which classes' drift alarms fired under a version.
    pub async fn set_drift_classes(&self, project_id: i64, version: i64, json: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE calibrations SET drift_classes = $1 WHERE project_id = $2 AND version = $3",
            )
            .bind(json)
            .bind(project_id)
            .bind(version)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Human-labeled items (final label by a human), with their raw scores
    /// and embeddings, ordered by when they were labeled.
    pub async fn labeled_rows(&self, project_id: i64) -> Result<Vec<LabeledRow>> {
        #[derive(sqlx::FromRow)]
        struct Raw {
            id: i64,
            audit: i64,
            leaked_audit: i64,
            audit_p: Option<f64>,
            final_label: Option<String>,
            pred_label: Option<String>,
            raw_scores: Option<String>,
            embedding: Option<Vec<u8>>,
            labeled_at: Option<i64>,
        }
        // Audit labels on duplicate members and leaked items of the last
        // screen do not count (the audit is a sample of representatives);
        // a leaked one (a copy across splits is often a member of its
        // original's group too) is kept aside for the figures with leaked items.
        let (member, leaked) = (
            super::screening::dup_member("i"),
            super::screening::leaked("i"),
        );
        let sql = format!(
            "SELECT i.id, \
             CAST(CASE WHEN i.audit = 1 AND NOT {member} AND NOT {leaked} THEN 1 ELSE 0 END AS BIGINT) AS audit, \
             CAST(CASE WHEN i.audit = 1 AND {leaked} THEN 1 ELSE 0 END AS BIGINT) AS leaked_audit, \
             i.audit_p, i.final_label, i.pred_label, i.raw_scores, i.embedding, \
             (SELECT MAX(a.created_at) FROM annotations a WHERE a.item_id = i.id) AS labeled_at \
             FROM items i WHERE i.project_id = $1 AND i.status = 'labeled' AND i.final_source = 'human' \
             ORDER BY labeled_at, i.id"
        );
        let rows: Vec<Raw> = with_pool!(self, |p| {
            sqlx::query_as(&sql).bind(project_id).fetch_all(p).await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| LabeledRow {
                id: r.id,
                audit: r.audit != 0,
                leaked_audit: r.leaked_audit != 0,
                audit_p: r.audit_p,
                label: r.final_label.unwrap_or_default(),
                pred_label: r.pred_label,
                raw_scores: r.raw_scores,
                embedding: r.embedding.as_deref().map(bytes_embedding),
                labeled_at: r.labeled_at.unwrap_or(0),
            })
            .collect())
    }

    /// Items whose machine decision a calibration decides: predicted, not
    /// decided by a human.
    pub async fn machine_rows(&self, project_id: i64) -> Result<Vec<MachineRow>> {
        #[derive(sqlx::FromRow)]
        struct Raw {
            id: i64,
            audit: i64,
            status: String,
            raw_scores: Option<String>,
        }
        let rows: Vec<Raw> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, audit, status, raw_scores FROM items WHERE project_id = $1 \
                 AND (status = 'auto_accepted' OR status = 'needs_review') AND pred_label IS NOT NULL",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| MachineRow {
                id: r.id,
                audit: r.audit != 0,
                status: r.status,
                raw_scores: r.raw_scores,
            })
            .collect())
    }

    /// Apply new machine decisions under calibration `version`. Only items
    /// still undecided by a human move (`auto_accepted` ↔ `needs_review`);
    /// audit items, and items a proportional review draw picked, stay in
    /// review until a human answers. Returns how many rows changed.
    pub async fn reroute(&self, version: i64, updates: &[Reroute]) -> Result<u64> {
        let mut changed = 0u64;
        for chunk in updates.chunks(CHUNK) {
            let sql = self.reroute_sql(chunk.len());
            let n = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql);
                for u in chunk {
                    q = bind_reroute(q, u, version);
                }
                q.execute(p).await.map(|r| r.rows_affected())
            })?;
            changed += n;
        }
        Ok(changed)
    }

    /// The re-routing statement for `n` items (bound by [`bind_reroute`]).
    fn reroute_sql(&self, n: usize) -> super::Params {
        // An item the last screen holds (an outlier, a dark, blurry or
        // odd-sized image) stays in review whatever the new decision.
        let held = super::screening::HELD;
        let mut sql = self.params(&format!(
            "UPDATE items SET status = CASE WHEN items.audit = 1 OR items.review_drawn_at IS NOT NULL OR {held} THEN 'needs_review' ELSE v.column2 END, \
             pred_label = v.column3, pred_score = v.column4, pred_scores = v.column5, \
             final_label = CASE WHEN items.audit = 0 AND items.review_drawn_at IS NULL AND v.column2 = 'auto_accepted' AND NOT {held} THEN v.column3 ELSE NULL END, \
             final_source = CASE WHEN items.audit = 0 AND items.review_drawn_at IS NULL AND v.column2 = 'auto_accepted' AND NOT {held} THEN 'machine' ELSE NULL END, \
             calibration_version = v.column6 FROM (VALUES ",
        ));
        for i in 0..n {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(").list(6).push(")");
        }
        sql.push(
            ") AS v WHERE items.id = v.column1 \
             AND (items.status = 'auto_accepted' OR items.status = 'needs_review')",
        );
        sql
    }

    /// Audit labels given and audit items still waiting.
    pub async fn audit_counts(&self, project_id: i64) -> Result<AuditCounts> {
        let (spent, pending): (i64, i64) = with_pool!(self, |p| {
            let r = sqlx::query(
                "SELECT COALESCE(SUM(CASE WHEN status = 'labeled' THEN 1 ELSE 0 END), 0), \
                        COALESCE(SUM(CASE WHEN status = 'needs_review' OR status = 'needs_confirmation' THEN 1 ELSE 0 END), 0) \
                 FROM items WHERE project_id = $1 AND audit = 1",
            )
            .bind(project_id)
            .fetch_one(p)
            .await?;
            Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))
        })?;
        Ok(AuditCounts { spent, pending })
    }

    /// Audit items per predicted label, for the per-class minimum: for each
    /// of `labels`, in order, how many of the project's items predicted as
    /// it are in the audit sample, counted up to `cap` (past the minimum
    /// the exact count changes nothing). One statement, and each count stops
    /// after `cap` entries of `items_audit_label`: a batch pays for its own
    /// labels up to the minimum, not for every audit item of the project.
    pub async fn audit_class_counts(
        &self,
        project_id: i64,
        labels: &[&str],
        cap: i64,
    ) -> Result<Vec<i64>> {
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = self.params("SELECT ");
        for i in 0..labels.len() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(SELECT COUNT(*) FROM (SELECT 1 FROM items WHERE project_id = ")
                .param()
                .push(" AND audit = 1 AND pred_label = ")
                .param()
                .push(" LIMIT ")
                .param()
                .push(&format!(") AS c{i})"));
        }
        with_pool!(self, |p| {
            let mut q = sqlx::query(&sql.sql);
            for label in labels {
                q = q.bind(project_id).bind(*label).bind(cap);
            }
            let row = q.fetch_one(p).await?;
            (0..labels.len())
                .map(|i| row.try_get::<i64, _>(i))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Free audit items waiting for a label, oldest first: the `audit` list.
    pub async fn audit_candidates(&self, project_id: i64, limit: i64) -> Result<Vec<i64>> {
        let now = now_ms();
        with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT id FROM items WHERE project_id = $1 AND audit = 1 AND status = 'needs_review' \
                 AND (review_until IS NULL OR review_until < $2) ORDER BY id LIMIT $3",
            )
            .bind(project_id)
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await
        })
    }

    /// Items of a project by status.
    pub async fn status_counts(&self, project_id: i64) -> Result<StatusCounts> {
        let rows: Vec<(String, i64)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM items WHERE project_id = $1 GROUP BY status",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })?;
        let mut c = StatusCounts::default();
        for (status, n) in rows {
            c.total += n;
            match status.as_str() {
                "pending" => c.pending = n,
                "auto_accepted" => c.auto_accepted = n,
                "needs_review" => c.needs_review = n,
                "needs_confirmation" => c.needs_confirmation = n,
                "labeled" => c.labeled = n,
                "failed" => c.failed = n,
                "rejected" => c.rejected = n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Every annotation of a project, oldest first.
    pub async fn project_annotations(&self, project_id: i64) -> Result<Vec<AnnotationRow>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, AnnotationRow>(
                "SELECT a.id, a.item_id, a.annotator, a.label, a.created_at FROM annotations a \
                 JOIN items i ON i.id = a.item_id WHERE i.project_id = $1 ORDER BY a.id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// Set an item's final human label after resolving a conflict, with its provenance.
    pub async fn resolve_item(&self, item_id: i64, label: &str, resolution: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE items SET final_label = $1, resolution = $2 WHERE id = $3 AND status = 'labeled'",
            )
            .bind(label)
            .bind(resolution)
            .bind(item_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}
