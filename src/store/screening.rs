//! Screening results (issue 25): the last screen of each project and the
//! issues it found, one row per (item, issue type). A screen replaces the
//! previous one in one transaction, and sends the items its issues hold
//! (outliers, dark, blurry, odd-sized) from `auto_accepted` back to review.

use sqlx::Row;

use super::{bytes_embedding, Content, Result, Store};

/// An item as a screen reads it: its content and stored embedding.
#[derive(Debug, Clone)]
pub struct ScreenRow {
    pub id: i64,
    pub client_id: String,
    pub content: Content,
    pub embedding: Vec<f32>,
    /// The split it was ingested into, if any.
    pub split: Option<String>,
}

/// What a screen used, kept per project.
#[derive(Debug, Clone)]
pub struct ScreenRun {
    pub project_id: i64,
    pub job_id: Option<i64>,
    pub model: String,
    /// `conformal` or `within_pool`; `None` when no outlier test ran.
    pub rule: Option<String>,
    /// What the conformal test (and leaks) measured against.
    pub reference: Option<String>,
    pub alpha: f64,
    pub items: i64,
    /// Items the screen keeps from being auto-accepted.
    pub held: i64,
    /// JSON: counts, thresholds, seconds per stage.
    pub summary: String,
    pub created_at: i64,
}

/// One issue of one item, to store.
#[derive(Debug, Clone)]
pub struct NewIssue {
    pub item_id: i64,
    pub kind: String,
    pub score: f64,
    pub group: Option<i64>,
    pub of_item: Option<i64>,
    pub of_reference: Option<i64>,
    pub hold: bool,
}

/// One stored issue, with the client ids it names.
#[derive(Debug, Clone)]
pub struct IssueRow {
    pub id: i64,
    pub item_id: i64,
    pub client_id: String,
    pub kind: String,
    pub score: f64,
    pub group: Option<i64>,
    pub of_item: Option<i64>,
    pub of_client_id: Option<String>,
    pub of_reference: Option<i64>,
    pub hold: bool,
    /// The item's split, and the split of the item it copies (`of_item`).
    pub split: Option<String>,
    pub of_split: Option<String>,
}

/// Which issues a page lists.
#[derive(Debug, Clone)]
pub enum KindFilter {
    All,
    /// Exactly this type.
    Exact(String),
    /// Every `family:*` type (`quality`, `pii`).
    Family(String),
}

/// What a person's label did to the rest of the item's duplicate groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Propagated {
    /// Members that took the label (`final_source = 'propagated'`).
    pub items: Vec<i64>,
    /// Members a person labeled otherwise: each is now a `conflict` issue,
    /// on both items.
    pub conflicts: Vec<i64>,
}

/// A duplicate group's member as propagation reads it: id, status, final
/// label, final source, lease owner, propagated from.
type Member = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Rows per insert statement (9 parameters each).
const CHUNK: usize = 500;

/// An item the last screen holds: never auto-accepted. For statements on
/// `items` (the alias must be `items`).
pub(crate) const HELD: &str =
    "EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = items.id AND s.hold = 1)";

impl Store {
    /// Items of a project, and how many of them have an embedding.
    pub async fn embedded_counts(&self, project_id: i64) -> Result<(i64, i64)> {
        with_pool!(self, |p| {
            let r = sqlx::query(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN embedding IS NOT NULL THEN 1 ELSE 0 END), 0) \
                 FROM items WHERE project_id = $1",
            )
            .bind(project_id)
            .fetch_one(p)
            .await?;
            Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))
        })
    }

    /// Every item of a project that has an embedding, in id order, with
    /// its content.
    pub async fn screen_rows(&self, project_id: i64) -> Result<Vec<ScreenRow>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, client_id, kind, text, image, path, embedding, split FROM items \
                 WHERE project_id = $1 AND embedding IS NOT NULL ORDER BY id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(ScreenRow {
                    id: r.try_get(0)?,
                    client_id: r.try_get(1)?,
                    content: Content::from_columns(
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ),
                    embedding: bytes_embedding(&r.try_get::<Vec<u8>, _>(6)?),
                    split: r.try_get(7)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Ids of a project's items labeled by people, with embeddings: the
    /// outlier test's reference within the project.
    pub async fn human_labeled_ids(&self, project_id: i64) -> Result<Vec<i64>> {
        with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT id FROM items WHERE project_id = $1 AND status = 'labeled' \
                 AND final_source = 'human' AND embedding IS NOT NULL ORDER BY id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// Replace the project's screening with `run` and `issues`, and send
    /// the held items that were auto-accepted back to review, in one
    /// transaction. Returns how many items moved to review.
    pub async fn replace_screening(&self, run: &ScreenRun, issues: &[NewIssue]) -> Result<u64> {
        let statements: Vec<(String, &[NewIssue])> = issues
            .chunks(CHUNK)
            .map(|c| {
                let mut sql = self.params(
                    "INSERT INTO screen_issues (project_id, item_id, kind, score, grp, of_item, of_reference, hold) VALUES ",
                );
                for i in 0..c.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(").list(8).push(")");
                }
                (sql.sql, c)
            })
            .collect();
        let move_sql = format!(
            "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL \
             WHERE project_id = $1 AND status = 'auto_accepted' AND {HELD}"
        );
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            // A write first: on SQLite the transaction takes the write lock here.
            sqlx::query("DELETE FROM screen_runs WHERE project_id = $1")
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM screen_issues WHERE project_id = $1")
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO screen_runs (project_id, job_id, model, rule, reference, alpha, items, held, summary, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(run.project_id)
            .bind(run.job_id)
            .bind(&run.model)
            .bind(run.rule.as_deref())
            .bind(run.reference.as_deref())
            .bind(run.alpha)
            .bind(run.items)
            .bind(run.held)
            .bind(&run.summary)
            .bind(run.created_at)
            .execute(&mut *tx)
            .await?;
            for (sql, chunk) in &statements {
                let mut q = sqlx::query(sql);
                for is in *chunk {
                    q = q
                        .bind(run.project_id)
                        .bind(is.item_id)
                        .bind(is.kind.as_str())
                        .bind(is.score)
                        .bind(is.group)
                        .bind(is.of_item)
                        .bind(is.of_reference)
                        .bind(i64::from(is.hold));
                }
                q.execute(&mut *tx).await?;
            }
            let moved = sqlx::query(&move_sql)
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(moved)
        })
    }

    /// The project's last screen, if any.
    pub async fn screen_run(&self, project_id: i64) -> Result<Option<ScreenRun>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT project_id, job_id, model, rule, reference, alpha, items, held, summary, created_at \
                 FROM screen_runs WHERE project_id = $1",
            )
            .bind(project_id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>(ScreenRun {
                    project_id: r.try_get(0)?,
                    job_id: r.try_get(1)?,
                    model: r.try_get(2)?,
                    rule: r.try_get(3)?,
                    reference: r.try_get(4)?,
                    alpha: r.try_get(5)?,
                    items: r.try_get(6)?,
                    held: r.try_get(7)?,
                    summary: r.try_get(8)?,
                    created_at: r.try_get(9)?,
                })
            })
            .transpose()
        })
    }

    /// Issues of the last screen per type.
    pub async fn screen_counts(&self, project_id: i64) -> Result<Vec<(String, i64)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT kind, COUNT(*) FROM screen_issues WHERE project_id = $1 GROUP BY kind ORDER BY kind",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// A page of the last screen's issues, by id after `after`.
    pub async fn screen_issues(
        &self,
        project_id: i64,
        kind: &KindFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<IssueRow>> {
        let filter = match kind {
            KindFilter::All => "",
            KindFilter::Exact(_) => " AND s.kind = $4",
            KindFilter::Family(_) => " AND s.kind LIKE $4",
        };
        let sql = format!(
            "SELECT s.id, s.item_id, i.client_id, s.kind, s.score, s.grp, s.of_item, o.client_id, s.of_reference, s.hold, i.split, o.split \
             FROM screen_issues s JOIN items i ON i.id = s.item_id LEFT JOIN items o ON o.id = s.of_item \
             WHERE s.project_id = $1 AND s.id > $2{filter} ORDER BY s.id LIMIT $3"
        );
        with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(project_id).bind(after).bind(limit);
            match kind {
                KindFilter::All => {}
                KindFilter::Exact(k) => q = q.bind(k.as_str()),
                KindFilter::Family(f) => q = q.bind(format!("{f}:%")),
            }
            q.fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(IssueRow {
                        id: r.try_get(0)?,
                        item_id: r.try_get(1)?,
                        client_id: r.try_get(2)?,
                        kind: r.try_get(3)?,
                        score: r.try_get(4)?,
                        group: r.try_get(5)?,
                        of_item: r.try_get(6)?,
                        of_client_id: r.try_get(7)?,
                        of_reference: r.try_get(8)?,
                        hold: r.try_get::<i64, _>(9)? != 0,
                        split: r.try_get(10)?,
                        of_split: r.try_get(11)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// The newest job of `kind` for the project: its id, state and result.
    pub async fn last_job_of(
        &self,
        project_id: i64,
        kind: &str,
    ) -> Result<Option<(i64, String, Option<String>)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (i64, String, Option<String>)>(
                "SELECT id, state, result FROM jobs WHERE project_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(project_id)
            .bind(kind)
            .fetch_optional(p)
            .await
        })
    }

    /// Free items waiting for a person that the last screen flagged, for the
    /// review lists: `outliers` most unusual first; `duplicates` one item
    /// per duplicate group (its representative), by group.
    pub async fn screen_review_candidates(
        &self,
        project_id: i64,
        outliers: bool,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let now = super::now_ms();
        let sql = if outliers {
            "SELECT i.id FROM screen_issues s JOIN items i ON i.id = s.item_id \
             WHERE s.project_id = $1 AND s.kind = 'outlier' AND i.status = 'needs_review' \
             AND (i.review_until IS NULL OR i.review_until < $2) ORDER BY s.score DESC, i.id LIMIT $3"
        } else {
            "SELECT i.id FROM screen_issues s JOIN items i ON i.id = s.item_id \
             WHERE s.project_id = $1 AND s.kind IN ('exact_duplicate', 'near_duplicate') \
             AND s.of_item IS NULL AND i.status = 'needs_review' \
             AND (i.review_until IS NULL OR i.review_until < $2) \
             GROUP BY i.id ORDER BY MIN(s.grp), i.id LIMIT $3"
        };
        with_pool!(self, |p| {
            sqlx::query_scalar(sql)
                .bind(project_id)
                .bind(now)
                .bind(limit)
                .fetch_all(p)
                .await
        })
    }

    /// Ids of the items the last screen holds (never auto-accepted).
    pub async fn held_items(&self, project_id: i64) -> Result<Vec<i64>> {
        with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT DISTINCT item_id FROM screen_issues WHERE project_id = $1 AND hold = 1 ORDER BY item_id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// Propagate human label `label` of `item_id` to the other members of
    /// its duplicate groups from the last screen: every exact-duplicate
    /// group, and near-duplicate groups whose members all scored at least
    /// `strict`. A member takes it when it waits for a person
    /// (`needs_review`, or `pending` and not leased to a worker, whose
    /// record would overwrite it) or holds an earlier propagation from this
    /// item, and is not in the audit sample (whose labels must be people's,
    /// the guarantee's evidence); a human label is never overridden, and
    /// one that differs is recorded as a `conflict` issue on both items.
    /// One transaction.
    pub async fn propagate_label(
        &self,
        project_id: i64,
        item_id: i64,
        label: &str,
        strict: f64,
    ) -> Result<Propagated> {
        with_pool!(self, |p| {
            // Read first: on a project never screened (or an item in no
            // group) the annotation path pays one indexed read, no write.
            let groups: Vec<i64> = sqlx::query_scalar(
                "SELECT s.grp FROM screen_issues s WHERE s.item_id = $1 AND s.grp IS NOT NULL \
                 AND (s.kind = 'exact_duplicate' OR (s.kind = 'near_duplicate' AND NOT EXISTS ( \
                   SELECT 1 FROM screen_issues o WHERE o.project_id = $2 AND o.grp = s.grp \
                   AND o.kind = 'near_duplicate' AND o.score < $3)))",
            )
            .bind(item_id)
            .bind(project_id)
            .bind(strict)
            .fetch_all(p)
            .await?;
            let was_propagated: Option<i64> =
                sqlx::query_scalar("SELECT propagated_from FROM items WHERE id = $1")
                    .bind(item_id)
                    .fetch_one(p)
                    .await?;
            if groups.is_empty() && was_propagated.is_none() {
                return Ok(Propagated::default());
            }
            let mut tx = p.begin().await?;
            // A write first: on SQLite the transaction takes the write lock
            // here. The item's label is a person's now, not a copy.
            sqlx::query("UPDATE items SET propagated_from = NULL WHERE id = $1")
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
            let mut out = Propagated::default();
            for grp in groups {
                let members: Vec<Member> =
                    sqlx::query_as(
                        "SELECT i.id, i.status, i.final_label, i.final_source, i.lease_owner, i.propagated_from \
                         FROM screen_issues s JOIN items i ON i.id = s.item_id \
                         WHERE s.project_id = $1 AND s.grp = $2 AND s.item_id <> $3 \
                         AND s.kind IN ('exact_duplicate', 'near_duplicate') ORDER BY i.id",
                    )
                    .bind(project_id)
                    .bind(grp)
                    .bind(item_id)
                    .fetch_all(&mut *tx)
                    .await?;
                for (id, status, final_label, source, lease, from) in members {
                    let human = source.as_deref() == Some("human");
                    if human {
                        if final_label.as_deref() != Some(label) {
                            for (a, b) in [(item_id, id), (id, item_id)] {
                                sqlx::query(
                                    "INSERT INTO screen_issues (project_id, item_id, kind, score, grp, of_item, of_reference, hold) \
                                     VALUES ($1, $2, 'conflict', 1.0, $3, $4, NULL, 0) \
                                     ON CONFLICT (item_id, kind) DO UPDATE SET grp = excluded.grp, of_item = excluded.of_item",
                                )
                                .bind(project_id)
                                .bind(a)
                                .bind(grp)
                                .bind(b)
                                .execute(&mut *tx)
                                .await?;
                            }
                            out.conflicts.push(id);
                        }
                        continue;
                    }
                    let waiting =
                        status == "needs_review" || (status == "pending" && lease.is_none());
                    let ours = source.as_deref() == Some("propagated") && from == Some(item_id);
                    if !(waiting || ours) || out.items.contains(&id) {
                        continue;
                    }
                    // The same rule again in the statement: a person or a
                    // worker may have taken the item since it was read.
                    let n = sqlx::query(
                        "UPDATE items SET status = 'labeled', final_label = $1, final_source = 'propagated', \
                         propagated_from = $2, review_owner = NULL, review_until = NULL WHERE id = $3 \
                         AND (final_source IS NULL OR final_source <> 'human') AND audit = 0 \
                         AND (status = 'needs_review' OR (status = 'pending' AND lease_owner IS NULL) \
                              OR (final_source = 'propagated' AND propagated_from = $2))",
                    )
                    .bind(label)
                    .bind(item_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n > 0 {
                        out.items.push(id);
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(out)
        })
    }

    /// Take back the labels propagated from `item_id` (its human label was
    /// deleted): those items wait for a person again. Returns how many.
    pub async fn withdraw_propagation(&self, item_id: i64) -> Result<u64> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL, \
                 propagated_from = NULL WHERE propagated_from = $1 AND final_source = 'propagated'",
            )
            .bind(item_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })
    }

    /// The last screen's issues of the project's items with ids in
    /// `from..=to` (one export page), by item.
    pub async fn screen_flags(&self, project_id: i64, from: i64, to: i64) -> Result<Vec<NewIssue>> {
        with_pool!(self, |p| {
            sqlx::query(
                "SELECT item_id, kind, score, grp, of_item, of_reference, hold FROM screen_issues \
                 WHERE item_id >= $1 AND item_id <= $2 AND project_id = $3 ORDER BY item_id, kind",
            )
            .bind(from)
            .bind(to)
            .bind(project_id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(NewIssue {
                    item_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    score: r.try_get(2)?,
                    group: r.try_get(3)?,
                    of_item: r.try_get(4)?,
                    of_reference: r.try_get(5)?,
                    hold: r.try_get::<i64, _>(6)? != 0,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Whether the project was ever screened (one row per project).
    pub async fn was_screened(&self, project_id: i64) -> Result<bool> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM screen_runs WHERE project_id = $1")
                .bind(project_id)
                .fetch_one(p)
                .await
                .map(|n| n > 0)
        })
    }

    /// Items of the project a person labeled that belong to a duplicate
    /// group of the last screen, with their labels, in id order.
    pub async fn human_labels_in_groups(&self, project_id: i64) -> Result<Vec<(i64, String)>> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, (i64, String)>(
                "SELECT DISTINCT i.id, i.final_label FROM screen_issues s JOIN items i ON i.id = s.item_id \
                 WHERE s.project_id = $1 AND s.kind IN ('exact_duplicate', 'near_duplicate') \
                 AND i.status = 'labeled' AND i.final_source = 'human' AND i.final_label IS NOT NULL \
                 ORDER BY i.id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }
}
