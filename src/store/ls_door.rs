//! The Label Studio door's state: each project's backend credentials, and
//! the webhook outbox (events written in the request, applied by a worker).

use sqlx::Row;

use super::{now_ms, LsAnnotation, Result, Store};

/// One webhook event waiting in (or done from) the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: i64,
    pub project_id: i64,
    pub body: String,
    pub attempts: i64,
}

/// What putting an event in the outbox found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPut {
    pub id: i64,
    /// False when the same event (same dedup key) was already there.
    pub new: bool,
    /// The answer applying it gave, when it was applied before.
    pub answer: Option<String>,
}

impl Store {
    /// Set (or replace) a project's Label Studio backend credentials.
    pub async fn ls_set_credentials(
        &self,
        project_id: i64,
        username: &str,
        secret_hash: &str,
    ) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO ls_credentials (project_id, username, secret_hash, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (project_id) DO UPDATE SET \
                 username = excluded.username, secret_hash = excluded.secret_hash, created_at = excluded.created_at",
            )
            .bind(project_id)
            .bind(username)
            .bind(secret_hash)
            .bind(now_ms())
            .execute(p)
            .await
            .map(|_| ())
        })
    }

    /// A project's backend credentials: (user, SHA-256 of the password).
    pub async fn ls_credentials(&self, project_id: i64) -> Result<Option<(String, String)>> {
        with_pool!(self, |p| {
            sqlx::query("SELECT username, secret_hash FROM ls_credentials WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(p)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()
        })
    }

    /// Put a webhook event in the outbox, once per `dedup` key: a replay,
    /// concurrent or late, finds the row already there.
    pub async fn ls_outbox_put(
        &self,
        project_id: i64,
        dedup: &str,
        body: &str,
    ) -> Result<OutboxPut> {
        let now = now_ms();
        with_pool!(self, |p| {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO ls_outbox (project_id, dedup, body, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, dedup) DO NOTHING RETURNING id",
            )
            .bind(project_id)
            .bind(dedup)
            .bind(body)
            .bind(now)
            .fetch_optional(p)
            .await?;
            if let Some(id) = inserted {
                return Ok(OutboxPut {
                    id,
                    new: true,
                    answer: None,
                });
            }
            let r = sqlx::query(
                "SELECT id, answer FROM ls_outbox WHERE project_id = $1 AND dedup = $2",
            )
            .bind(project_id)
            .bind(dedup)
            .fetch_one(p)
            .await?;
            Ok(OutboxPut {
                id: r.try_get(0)?,
                new: false,
                answer: r.try_get(1)?,
            })
        })
    }

    /// Claim up to `limit` open events, oldest first, for `lease_ms`. A
    /// claim that lapses (its worker died) is claimed again.
    pub async fn ls_outbox_claim(&self, limit: i64, lease_ms: i64) -> Result<Vec<OutboxEvent>> {
        let now = now_ms();
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        let sql = format!(
            "UPDATE ls_outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM ls_outbox WHERE done_at IS NULL AND claimed_until < $2 ORDER BY id LIMIT $3{lock}) \
             RETURNING id, project_id, body, attempts"
        );
        let mut events = with_pool!(self, |p| {
            sqlx::query(&sql)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(OutboxEvent {
                        id: r.try_get(0)?,
                        project_id: r.try_get(1)?,
                        body: r.try_get(2)?,
                        attempts: r.try_get(3)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Mark an event applied (or given up on), and forget events done more
    /// than a day ago.
    pub async fn ls_outbox_done(&self, id: i64, answer: &str) -> Result<()> {
        let now = now_ms();
        with_pool!(self, |p| {
            sqlx::query("UPDATE ls_outbox SET done_at = $1, answer = $2 WHERE id = $3")
                .bind(now)
                .bind(answer)
                .bind(id)
                .execute(p)
                .await?;
            sqlx::query("DELETE FROM ls_outbox WHERE done_at < $1")
                .bind(now - 86_400_000)
                .execute(p)
                .await
                .map(|_| ())
        })
    }

    /// Let a failed event be claimed again after `delay_ms`.
    pub async fn ls_outbox_retry(&self, id: i64, delay_ms: i64) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query("UPDATE ls_outbox SET claimed_until = $1 WHERE id = $2")
                .bind(now_ms() + delay_ms)
                .bind(id)
                .execute(p)
                .await
                .map(|_| ())
        })
    }

    /// Events not applied yet.
    pub async fn ls_outbox_open(&self) -> Result<i64> {
        with_pool!(self, |p| {
            sqlx::query_scalar("SELECT COUNT(*) FROM ls_outbox WHERE done_at IS NULL")
                .fetch_one(p)
                .await
        })
    }

    /// Remove many recorded Label Studio annotations and settle their items
    /// again, in one transaction and a few set-wise statements per 500 ids
    /// (one statement per annotation took 10 s for 100,000). Items keep the
    /// latest remaining annotation, or go back to review with none left.
    /// Returns how many were recorded.
    pub async fn ls_delete_annotations(&self, project_id: i64, ls_ids: &[i64]) -> Result<u64> {
        let mut removed = 0u64;
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            for chunk in ls_ids.chunks(500) {
                let mut sql = self.params("DELETE FROM ls_annotations WHERE project_id = ");
                sql.param()
                    .push(" AND ls_annotation_id IN (")
                    .list(chunk.len())
                    .push(") RETURNING annotation_id, item_id");
                let mut q = sqlx::query(&sql.sql).bind(project_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                let gone: Vec<(i64, i64)> = q
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<std::result::Result<_, _>>()?;
                if gone.is_empty() {
                    continue;
                }
                removed += gone.len() as u64;
                let mut del = self.params("DELETE FROM annotations WHERE id IN (");
                del.list(gone.len()).push(")");
                let mut q = sqlx::query(&del.sql);
                for (a, _) in &gone {
                    q = q.bind(*a);
                }
                q.execute(&mut *tx).await?;
                let mut items: Vec<i64> = gone.iter().map(|(_, i)| *i).collect();
                items.sort_unstable();
                items.dedup();
                let mut keep = self.params(
                    "UPDATE items SET status = 'labeled', final_source = 'human', final_label = \
                     (SELECT label FROM annotations a WHERE a.item_id = items.id ORDER BY a.id DESC LIMIT 1) \
                     WHERE EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = items.id) AND id IN (",
                );
                keep.list(items.len()).push(")");
                let mut q = sqlx::query(&keep.sql);
                for i in &items {
                    q = q.bind(*i);
                }
                q.execute(&mut *tx).await?;
                let mut back = self.params(
                    "UPDATE items SET status = CASE WHEN pred_label IS NULL THEN status ELSE 'needs_review' END, \
                     final_label = NULL, final_source = NULL, resolution = NULL WHERE status = 'labeled' \
                     AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = items.id) AND id IN (",
                );
                back.list(items.len()).push(")");
                let mut q = sqlx::query(&back.sql);
                for i in &items {
                    q = q.bind(*i);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(removed)
    }

    /// Record a Label Studio annotation unless one is already recorded for
    /// its id: false when another writer got there first.
    pub async fn ls_try_record(&self, project_id: i64, a: &LsAnnotation) -> Result<bool> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO ls_annotations (project_id, ls_annotation_id, ls_task_id, item_id, annotation_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(project_id)
            .bind(a.ls_annotation_id)
            .bind(a.ls_task_id)
            .bind(a.item_id)
            .bind(a.annotation_id)
            .bind(now_ms())
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1)
        })
    }
}
