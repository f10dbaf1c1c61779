//! Review lists, tiers and trained heads.

use sqlx::Row;

use super::{bytes_embedding, now_ms, Result, Store, StoreError};
use super::{ItemRecord, Job, ProjectSettings};
pub use crate::select::Measure;

/// An unlabeled item offered to the selector: its id, stored distribution and embedding.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub probs: Vec<f32>,
    pub embedding: Vec<f32>,
}

/// An item a proportional review draw may pick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawCandidate {
    pub id: i64,
    /// Calibrated top score.
    pub score: f64,
    /// Waiting for review (false: auto-accepted).
    pub open: bool,
}

/// One proportional review draw: the item, the probability the draw had of
/// picking it, and the smallest probability any candidate had.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewDraw {
    pub id: i64,
    pub p: f64,
    pub p_min: f64,
}

/// An inclusion probability the estimator may use: in (0, 1], not NaN.
pub fn valid_probability(p: f64) -> bool {
    p.is_finite() && p > 0.0 && p <= 1.0
}

/// What a review list may contain.
#[derive(Debug, Clone, Copy)]
pub struct ReviewFilter {
    /// [lo, hi) of the measure, for tiers.
    pub band: Option<(f64, f64)>,
    /// Also offer items awaiting a top-tier confirmation (top tier only).
    pub confirmations: bool,
}

impl Store {
    /// Lease the next `limit` items for `annotator`, most uncertain first by
    /// `measure`, skipping items leased to someone else until their lease ends.
    /// Served by the (project_id, status, measure, review_until, review_owner)
    /// indexes: no sort of the table, and leased items are skipped from the
    /// index alone.
    pub async fn lease_review(
        &self,
        project_id: i64,
        annotator: &str,
        measure: Measure,
        filter: ReviewFilter,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<ItemRecord>> {
        let now = now_ms();
        let col = measure.column();
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        let present = present(measure);
        let band = match filter.band {
            Some((_, hi)) if hi.is_finite() => format!(" AND {col} >= $6 AND {col} < $7"),
            Some(_) => format!(" AND {col} >= $6"),
            None => String::new(),
        };
        let mut out = Vec::new();
        // Confirmations first (for the top tier), then fresh items in the band.
        let statuses: &[&str] = if filter.confirmations {
            &["needs_confirmation", "needs_review"]
        } else {
            &["needs_review"]
        };
        for status in statuses {
            let want = limit - out.len() as i64;
            if want <= 0 {
                break;
            }
            let band_sql = if *status == "needs_confirmation" {
                ""
            } else {
                band.as_str()
            };
            let sql = format!(
                "UPDATE items SET review_owner = $1, review_until = $2 WHERE id IN (\
                   SELECT id FROM items WHERE project_id = $3 AND status = '{status}' \
                   AND (review_until IS NULL OR review_until < $4 OR review_owner = $1){present}{band_sql} \
                   ORDER BY {col} DESC LIMIT $5{lock}) \
                 RETURNING id, {col}"
            );
            let ranked: Vec<(i64, Option<f64>)> = with_pool!(self, |p| {
                let mut q = sqlx::query(&sql)
                    .bind(annotator)
                    .bind(now + lease_ms)
                    .bind(project_id)
                    .bind(now)
                    .bind(want);
                if let (Some((lo, hi)), true) = (filter.band, *status == "needs_review") {
                    q = q.bind(lo);
                    if hi.is_finite() {
                        q = q.bind(hi);
                    }
                }
                q.fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<Option<f64>, _>(1)?)))
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            })?;
            let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
            let rank: std::collections::HashMap<i64, f64> = ranked
                .iter()
                .map(|(id, v)| (*id, v.unwrap_or(-1.0)))
                .collect();
            let mut items = self.items_by_ids(&ids).await?;
            // Keep the ranking order, by the ranked column itself: an item
            // with regions (boxes, lines, segments) has no whole-item
            // prediction to read it from.
            items.sort_by(|a, b| {
                let key = |i: &ItemRecord| rank.get(&i.id).copied().unwrap_or(-1.0);
                key(b).total_cmp(&key(a)).then(a.id.cmp(&b.id))
            });
            out.extend(items);
        }
        Ok(out)
    }

    /// The `limit` most uncertain free items with their embeddings, for the
    /// diversity strategies (k-center, cluster-margin) and cold start.
    pub async fn review_candidates(
        &self,
        project_id: i64,
        measure: Measure,
        band: Option<(f64, f64)>,
        limit: i64,
    ) -> Result<Vec<Candidate>> {
        let now = now_ms();
        let col = measure.column();
        let present = present(measure);
        let band_sql = match band {
            Some((_, hi)) if hi.is_finite() => format!(" AND {col} >= $4 AND {col} < $5"),
            Some(_) => format!(" AND {col} >= $4"),
            None => String::new(),
        };
        let sql = format!(
            "SELECT id, pred_scores, embedding FROM items WHERE project_id = $1 AND status = 'needs_review' \
             AND embedding IS NOT NULL AND (review_until IS NULL OR review_until < $2){present}{band_sql} \
             ORDER BY {col} DESC LIMIT $3"
        );
        let rows: Vec<(i64, Option<String>, Vec<u8>)> = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(project_id).bind(now).bind(limit);
            if let Some((lo, hi)) = band {
                q = q.bind(lo);
                if hi.is_finite() {
                    q = q.bind(hi);
                }
            }
            q.fetch_all(p)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, scores, emb)| Candidate {
                id,
                probs: scores
                    .and_then(|s| {
                        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s).ok()
                    })
                    .map(|m| {
                        m.values()
                            .filter_map(|v| v.as_f64())
                            .map(|v| v as f32)
                            .collect()
                    })
                    .unwrap_or_default(),
                embedding: bytes_embedding(&emb),
            })
            .collect())
    }

    /// Lease exactly these items to `annotator`, those still waiting for a
    /// human (the statuses `lease_review` offers) and not leased to someone
    /// else, in one statement; returns them in the given order. Annotating
    /// ends an item's lease, so the status check is what keeps a labeled
    /// item from being handed out again. On PostgreSQL, `SKIP LOCKED` leaves
    /// rows another annotator is leasing at this moment to them, without
    /// waiting (two overlapping requests could otherwise deadlock).
    pub async fn lease_ids(
        &self,
        ids: &[i64],
        annotator: &str,
        lease_ms: i64,
    ) -> Result<Vec<ItemRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        let mut leased = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS) {
            let mut sql = self.params("UPDATE items SET review_owner = ");
            sql.param()
                .push(", review_until = ")
                .param()
                .push(" WHERE id IN (SELECT id FROM items WHERE id IN (")
                .list(chunk.len())
                .push(
                    ") AND (status = 'needs_review' OR status = 'needs_confirmation') \
                     AND (review_until IS NULL OR review_until < ",
                )
                .param()
                .push(" OR review_owner = ")
                .param()
                .push(&format!("){lock}) RETURNING id"));
            let got: Vec<i64> = with_pool!(self, |p| {
                let mut q = sqlx::query_scalar(&sql.sql)
                    .bind(annotator)
                    .bind(now + lease_ms);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.bind(now).bind(annotator).fetch_all(p).await
            })?;
            leased.extend(got);
        }
        let mut items = self.items_by_ids(&leased).await?;
        let position: std::collections::HashMap<i64, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .rev()
            .collect();
        items.sort_by_key(|i| position.get(&i.id).copied());
        Ok(items)
    }

    /// What a proportional review draw may pick (`review_sampling =
    /// "proportional"`): every scored, non-audit item no person labeled,
    /// waiting for review and free (not leased to someone else; `open`), or
    /// auto-accepted (`open` false), with its calibrated top score.
    pub async fn review_draw_candidates(
        &self,
        project_id: i64,
        annotator: &str,
    ) -> Result<Vec<DrawCandidate>> {
        let now = now_ms();
        let rows: Vec<(i64, f64, String)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, pred_score, status FROM items WHERE project_id = $1 AND audit = 0 \
                 AND pred_score IS NOT NULL AND (status = 'auto_accepted' OR (status = 'needs_review' \
                 AND (review_until IS NULL OR review_until < $2 OR review_owner = $3))) ORDER BY id",
            )
            .bind(project_id)
            .bind(now)
            .bind(annotator)
            .fetch_all(p)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, score, status)| DrawCandidate {
                id,
                score,
                open: status == "needs_review",
            })
            .collect())
    }

    /// Record proportional review draws and lease the drawn items to
    /// `annotator`: each item's probability at its draw, the draw's smallest
    /// probability and the time. An auto-accepted item drawn goes back to
    /// review (its machine label is withdrawn; the next calibration keeps it
    /// there until a person answers). A draw whose probabilities are not in
    /// (0, 1] is never stored: it is skipped with a warning (it could never
    /// weigh a label). Returns the leased items in draw order.
    pub async fn lease_drawn(
        &self,
        draws: &[ReviewDraw],
        annotator: &str,
        lease_ms: i64,
    ) -> Result<Vec<ItemRecord>> {
        let now = now_ms();
        let mut ids = Vec::with_capacity(draws.len());
        for d in draws {
            if !(valid_probability(d.p) && valid_probability(d.p_min) && d.p_min <= d.p) {
                tracing::warn!(
                    item = d.id,
                    p = d.p,
                    p_min = d.p_min,
                    "review draw skipped: its inclusion probability is not in (0, 1]"
                );
                continue;
            }
            let n = with_pool!(self, |p| {
                sqlx::query(
                    "UPDATE items SET review_p = $1, review_p_min = $2, review_drawn_at = $3, \
                     status = 'needs_review', final_label = NULL, final_source = NULL, \
                     review_owner = $4, review_until = $5 \
                     WHERE id = $6 AND audit = 0 AND (status = 'auto_accepted' OR (status = 'needs_review' \
                     AND (review_until IS NULL OR review_until < $3 OR review_owner = $4)))",
                )
                .bind(d.p)
                .bind(d.p_min)
                .bind(now)
                .bind(annotator)
                .bind(now + lease_ms)
                .bind(d.id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
            })?;
            if n == 1 {
                ids.push(d.id);
            }
        }
        let mut items = self.items_by_ids(&ids).await?;
        let position: std::collections::HashMap<i64, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        items.sort_by_key(|i| position.get(&i.id).copied());
        Ok(items)
    }

    /// The stored review draws of labeled items, for the estimator: rows
    /// whose probabilities are not in (0, 1] (written by hand, or by an older
    /// version) are skipped with a warning, never returned.
    pub async fn review_draws(&self, project_id: i64) -> Result<Vec<ReviewDraw>> {
        let rows: Vec<(i64, Option<f64>, Option<f64>)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, review_p, review_p_min FROM items WHERE project_id = $1 \
                 AND review_drawn_at IS NOT NULL AND status = 'labeled' ORDER BY review_drawn_at, id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, p, p_min) in rows {
            match (p, p_min) {
                (Some(p), Some(p_min))
                    if valid_probability(p) && valid_probability(p_min) && p_min <= p =>
                {
                    out.push(ReviewDraw { id, p, p_min })
                }
                _ => tracing::warn!(
                    item = id,
                    ?p,
                    ?p_min,
                    "stored review draw skipped: its inclusion probability is not in (0, 1]"
                ),
            }
        }
        Ok(out)
    }

    /// Give items back to the queue: the given ids, or all of the annotator's.
    /// One statement (per [`MAX_IDS`] ids).
    pub async fn release_review(
        &self,
        project_id: i64,
        annotator: &str,
        ids: Option<&[i64]>,
    ) -> Result<u64> {
        const RELEASE: &str = "UPDATE items SET review_owner = NULL, review_until = NULL \
                               WHERE project_id = $1 AND review_owner = $2";
        let Some(ids) = ids else {
            return with_pool!(self, |p| sqlx::query(RELEASE)
                .bind(project_id)
                .bind(annotator)
                .execute(p)
                .await
                .map(|r| r.rows_affected()));
        };
        let mut total = 0;
        for chunk in ids.chunks(MAX_IDS) {
            let mut sql = self.params(
                "UPDATE items SET review_owner = NULL, review_until = NULL WHERE project_id = ",
            );
            sql.param()
                .push(" AND review_owner = ")
                .param()
                .push(" AND id IN (")
                .list(chunk.len())
                .push(")");
            total += with_pool!(self, |p| {
                let mut q = sqlx::query(&sql.sql).bind(project_id).bind(annotator);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(total)
    }

    /// Many items in one query (plus one for their annotations), sorted by id.
    pub async fn items_by_ids(&self, ids: &[i64]) -> Result<Vec<ItemRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = self.params(&format!(
            "SELECT {} FROM items WHERE id IN (",
            super::ITEM_COLUMNS
        ));
        sql.list(ids.len()).push(") ORDER BY id");
        let mut items = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql.sql);
            for id in ids {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(p).await?;
            rows.iter()
                .map(ItemRecord::from_row)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        self.attach_annotations(&mut items).await?;
        Ok(items)
    }

    /// Stored uncertainty of an item, for tier routing.
    pub async fn item_uncertainty(&self, item_id: i64, measure: Measure) -> Result<Option<f64>> {
        let sql = format!("SELECT {} FROM items WHERE id = $1", measure.column());
        let v = with_pool!(self, |p| {
            match sqlx::query(&sql).bind(item_id).fetch_optional(p).await? {
                Some(r) => r.try_get::<Option<f64>, _>(0),
                None => Ok(None),
            }
        })?;
        Ok(v)
    }

    /// Store an annotation that waits for a top-tier confirmation.
    pub async fn annotate_pending_confirmation(
        &self,
        item_id: i64,
        label: &str,
        annotator: &str,
    ) -> Result<i64> {
        self.record_annotation(item_id, label, annotator, false)
            .await
    }

    // ---- annotators and settings ---------------------------------------------

    pub async fn set_annotator_tier(&self, name: &str, tier: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO annotators (name, tier, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET tier = excluded.tier",
            )
            .bind(name)
            .bind(tier)
            .bind(now_ms())
            .execute(p)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    pub async fn annotator_tier(&self, name: &str) -> Result<Option<String>> {
        let t = with_pool!(self, |p| {
            sqlx::query("SELECT tier FROM annotators WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()
        })?;
        Ok(t)
    }

    pub async fn update_settings(&self, project_id: i64, settings: &ProjectSettings) -> Result<()> {
        let n = with_pool!(self, |p| {
            sqlx::query("UPDATE projects SET settings = $1 WHERE id = $2")
                .bind(sqlx::types::Json(settings))
                .bind(project_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        });
        super::project_written();
        if n? == 0 {
            return Err(StoreError::NotFound(format!("project {project_id}")));
        }
        Ok(())
    }

    // ---- heads --------------------------------------------------------------

    /// Embeddings and final human labels of the project's labeled items.
    pub async fn labeled_embeddings(&self, project_id: i64) -> Result<Vec<(Vec<f32>, String)>> {
        let rows: Vec<(Vec<u8>, String)> = with_pool!(self, |p| {
            sqlx::query(
                "SELECT embedding, final_label FROM items WHERE project_id = $1 AND status = 'labeled' \
                 AND final_source = 'human' AND audit = 0 AND embedding IS NOT NULL AND final_label IS NOT NULL ORDER BY id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(rows
            .into_iter()
            .map(|(e, l)| (bytes_embedding(&e), l))
            .collect())
    }

    /// Save a new head version and make it the project's current one.
    pub async fn save_head(&self, project_id: i64, body: &str, trained_on: i64) -> Result<i64> {
        Ok(self
            .write_head(project_id, body, trained_on, false)
            .await?
            .0)
    }

    /// Save a new head version, make it current, and send every
    /// machine-decided item back through the model under it (a background
    /// job), in one transaction: a crash leaves both or neither.
    pub async fn save_head_and_requeue(
        &self,
        project_id: i64,
        body: &str,
        trained_on: i64,
    ) -> Result<(i64, Job)> {
        let (version, job_id) = self.write_head(project_id, body, trained_on, true).await?;
        let job_id = job_id.ok_or_else(|| StoreError::Db("no re-predict job".into()))?;
        Ok((version, self.get_job(job_id).await?))
    }

    async fn write_head(
        &self,
        project_id: i64,
        body: &str,
        trained_on: i64,
        requeue: bool,
    ) -> Result<(i64, Option<i64>)> {
        let now = now_ms();
        let written = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            // A write first: on SQLite the transaction takes the write lock
            // here (waiting for it), not at a later upgrade that fails at once.
            let v: i64 = sqlx::query_scalar(
                "INSERT INTO heads (project_id, version, body, trained_on, created_at) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM heads WHERE project_id = $1 \
                 RETURNING version",
            )
            .bind(project_id)
            .bind(body)
            .bind(trained_on)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("UPDATE projects SET head_version = $1 WHERE id = $2")
                .bind(v)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
            let job_id = if requeue {
                let job_id: i64 = sqlx::query(
                    "INSERT INTO jobs (project_id, state, total, created_at, updated_at) VALUES ($1, 'running', 0, $2, $3) RETURNING id",
                )
                .bind(project_id)
                .bind(now)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                // Items the last screen holds stay in review with their
                // prediction: sent through the workers again, the new head
                // could auto-accept them (the job path does not look at
                // screening, and must not slow down for it).
                let n = sqlx::query(&format!(
                    "UPDATE items SET status = 'pending', job_id = $1, final_label = NULL, final_source = NULL, \
                     lease_owner = NULL, lease_until = NULL WHERE project_id = $2 \
                     AND status IN ('auto_accepted', 'needs_review') AND NOT {}",
                    super::screening::HELD
                ))
                .bind(job_id)
                .bind(project_id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                sqlx::query(
                    "UPDATE jobs SET total = $1, state = $2, finished_at = $3 WHERE id = $4",
                )
                .bind(n)
                .bind(if n == 0 { "done" } else { "running" })
                .bind(if n == 0 { Some(now) } else { None })
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
                Some(job_id)
            } else {
                None
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>((v, job_id))
        });
        super::project_written();
        written
    }

    /// The body of a project's head version.
    pub async fn head(&self, project_id: i64, version: i64) -> Result<String> {
        let body = with_pool!(self, |p| {
            sqlx::query("SELECT body FROM heads WHERE project_id = $1 AND version = $2")
                .bind(project_id)
                .bind(version)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()
        })?;
        body.ok_or_else(|| StoreError::NotFound(format!("head {version} of project {project_id}")))
    }

    /// Human annotations in the project so far.
    pub async fn human_labeled_count(&self, project_id: i64) -> Result<i64> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "SELECT COUNT(*) FROM items WHERE project_id = $1 AND final_source = 'human'",
            )
            .bind(project_id)
            .fetch_one(p)
            .await?
            .try_get::<i64, _>(0)
        })?;
        Ok(n)
    }

    /// How many labeled items the current head was trained on (0 without a head).
    pub async fn head_trained_on(&self, project_id: i64) -> Result<i64> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "SELECT COALESCE(MAX(h.trained_on), 0) FROM heads h JOIN projects pr ON pr.id = h.project_id \
                 AND pr.head_version = h.version WHERE h.project_id = $1",
            )
            .bind(project_id)
            .fetch_one(p)
            .await?
            .try_get::<i64, _>(0)
        })?;
        Ok(n)
    }

    /// The stored embedding of an item, if any.
    pub async fn item_embedding(&self, item_id: i64) -> Result<Option<Vec<f32>>> {
        let e = with_pool!(self, |p| {
            match sqlx::query("SELECT embedding FROM items WHERE id = $1")
                .bind(item_id)
                .fetch_optional(p)
                .await?
            {
                Some(r) => r.try_get::<Option<Vec<u8>>, _>(0),
                None => Ok(None),
            }
        })?;
        Ok(e.map(|b| bytes_embedding(&b)))
    }
}

/// Ids per statement: far below both dialects' limits on bound parameters
/// (SQLite 32,766, PostgreSQL 65,535), and more than a review page holds.
pub(super) const MAX_IDS: usize = 10_000;

impl Store {
    /// Each annotator's latest set of an item's regions, `(annotator,
    /// set)`, by annotator (see `region_sets`).
    pub async fn item_region_sets(&self, item_id: i64) -> Result<Vec<(String, String)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT annotator, boxes FROM region_sets WHERE item_id = $1 ORDER BY annotator",
            )
            .bind(item_id)
            .fetch_all(p)
            .await
        })
    }

    /// Send a reviewed item to the top tier: `labeled` becomes
    /// `needs_confirmation` (which only the top tier's review lists offer),
    /// its review lease ended. Returns whether it was `labeled`.
    pub async fn send_to_confirmation(&self, item_id: i64) -> Result<bool> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE items SET status = 'needs_confirmation', review_owner = NULL, review_until = NULL \
                 WHERE id = $1 AND status = 'labeled'",
            )
            .bind(item_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }
}

/// The SQL condition that keeps items without this measure out: committee
/// measures' indexes are partial, so queries must say `IS NOT NULL` to use them.
fn present(measure: Measure) -> String {
    if measure.needs_committee() {
        format!(" AND {} IS NOT NULL", measure.column())
    } else {
        String::new()
    }
}
