//! Screening results (issue 25): the last screen of each project and the
//! issues it found, one row per (item, issue type). A screen replaces the
//! previous one in one transaction, and sends the items its issues hold
//! (outliers, dark, blurry, odd-sized) from `auto_accepted` back to review.

use sqlx::Row;

use super::{bytes_embedding, Content, Result, Store};

/// An [`IssueRow`] from a row whose columns are, in order: id, item_id,
/// client_id, kind, score, grp, of_item, of_client_id, of_reference, hold,
/// split, of_split (the issues list and an item's own issues both select them
/// so). A macro, not a function: the row is SQLite's or PostgreSQL's.
macro_rules! issue_row {
    ($r:expr) => {
        IssueRow {
            id: $r.try_get(0)?,
            item_id: $r.try_get(1)?,
            client_id: $r.try_get(2)?,
            kind: $r.try_get(3)?,
            score: $r.try_get(4)?,
            group: $r.try_get(5)?,
            of_item: $r.try_get(6)?,
            of_client_id: $r.try_get(7)?,
            of_reference: $r.try_get(8)?,
            hold: $r.try_get::<i64, _>(9)? != 0,
            split: $r.try_get(10)?,
            of_split: $r.try_get(11)?,
        }
    };
}
pub(crate) use issue_row;

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
    /// Members a worker was labeling: marked, they take the label when the
    /// worker records them, instead of the machine's.
    pub marked: Vec<i64>,
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

/// An item of the table (or alias) `t` that is a member of a duplicate
/// group of the last screen other than its representative: never in the
/// audit sample, its audit label (given before the screen) never counted.
pub(crate) fn dup_member(t: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM screen_issues sm WHERE sm.item_id = {t}.id \
         AND sm.kind IN ('exact_duplicate', 'near_duplicate') AND sm.of_item IS NOT NULL)"
    )
}

/// An item of `t` the last screen found leaked (a copy of an earlier
/// split's item or of the reference project's): out of the audit sample
/// and, by default, out of the evaluation figures.
pub(crate) fn leaked(t: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM screen_issues sl WHERE sl.item_id = {t}.id AND sl.kind = 'leak')"
    )
}

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
    pub async fn replace_screening(
        &self,
        run: &ScreenRun,
        issues: &[NewIssue],
        screened: &[i64],
    ) -> Result<u64> {
        self.write_screening(run, issues, screened, true).await
    }

    /// Add an incremental screen's results to the project's screening: the
    /// run's row is replaced (its counts now cover every screened item),
    /// `issues` are added (an item keeps an issue of a type it has), the
    /// batch's items join the screened ones, and held items that were
    /// auto-accepted go to review, in one transaction. Returns how many
    /// items moved to review.
    pub async fn append_screening(
        &self,
        run: &ScreenRun,
        issues: &[NewIssue],
        screened: &[i64],
    ) -> Result<u64> {
        self.write_screening(run, issues, screened, false).await
    }

    /// One multi-row insert per [`CHUNK`] rows of `rows`, `width`
    /// placeholders a row, with `tail` after the values.
    fn chunked_inserts<'a, T>(
        &self,
        rows: &'a [T],
        head: &str,
        width: usize,
        tail: &str,
    ) -> Vec<(String, &'a [T])> {
        rows.chunks(CHUNK)
            .map(|c| {
                let mut sql = self.params(head);
                for i in 0..c.len() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.push("(").list(width).push(")");
                }
                sql.push(tail);
                (sql.sql, c)
            })
            .collect()
    }

    async fn write_screening(
        &self,
        run: &ScreenRun,
        issues: &[NewIssue],
        screened: &[i64],
        replace: bool,
    ) -> Result<u64> {
        let screened_sql = self.chunked_inserts(
            screened,
            "INSERT INTO screen_items (item_id, project_id) VALUES ",
            2,
            " ON CONFLICT (item_id) DO NOTHING",
        );
        let statements = self.chunked_inserts(
            issues,
            "INSERT INTO screen_issues (project_id, item_id, kind, score, grp, of_item, of_reference, hold) VALUES ",
            8,
            " ON CONFLICT (item_id, kind) DO NOTHING",
        );
        let postgres = matches!(self, Store::Postgres(_));
        // On PostgreSQL, rows a writer holds are skipped, not waited for:
        // that writer is blocked in the hold trigger behind this screen's
        // lock (and holds them once it reads the issues), or it is not
        // auto-accepting them; the pass after the commit takes the rest.
        let move_sql = if postgres {
            format!(
                "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL \
                 WHERE id IN (SELECT id FROM items WHERE project_id = $1 AND status = 'auto_accepted' \
                 AND {HELD} FOR UPDATE SKIP LOCKED)"
            )
        } else {
            format!(
                "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL \
                 WHERE project_id = $1 AND status = 'auto_accepted' AND {HELD}"
            )
        };
        let unaudit_sql = format!(
            "UPDATE items SET audit = 0 WHERE project_id = $1 AND audit = 1 \
             AND NOT (status = 'labeled' AND final_source = 'human') AND ({} OR {})",
            dup_member("items"),
            leaked("items")
        );
        let moved = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            if postgres {
                // The hold trigger's lock (migration 0022): statements
                // auto-accepting this project's items finish first, later
                // ones wait for this commit and then see its holds.
                sqlx::query("SELECT pg_advisory_xact_lock(25, ($1 % 2147483647)::int4)")
                    .bind(run.project_id)
                    .execute(&mut *tx)
                    .await?;
            }
            // A write first: on SQLite the transaction takes the write lock here.
            sqlx::query("DELETE FROM screen_runs WHERE project_id = $1")
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?;
            if replace {
                sqlx::query("DELETE FROM screen_issues WHERE project_id = $1")
                    .bind(run.project_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM screen_items WHERE project_id = $1")
                    .bind(run.project_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (sql, chunk) in &screened_sql {
                let mut q = sqlx::query(sql);
                for id in *chunk {
                    q = q.bind(*id).bind(run.project_id);
                }
                q.execute(&mut *tx).await?;
            }
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
            // People's verdicts (migration 0024) outlive the screen.
            for sql in super::verdicts::REAPPLY {
                sqlx::query(sql)
                    .bind(run.project_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let moved = sqlx::query(&move_sql)
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // The audit sample keeps representatives only: duplicate
            // members and leaked items a person has not labeled yet leave
            // it (a labeled one keeps its flag; calibration does not count
            // it, see `labeled_rows`).
            sqlx::query(&unaudit_sql)
                .bind(run.project_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(moved)
        })?;
        if !postgres {
            return Ok(moved);
        }
        let late = with_pool!(self, |p| {
            sqlx::query(&move_sql)
                .bind(run.project_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(moved + late)
    }

    /// Ids of the project's items its screens covered since the last full one.
    pub async fn screened_items(&self, project_id: i64) -> Result<Vec<i64>> {
        with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT item_id FROM screen_items WHERE project_id = $1 ORDER BY item_id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await
        })
    }

    /// The duplicate groups of the last screens: (item, kind, group,
    /// representative) of every `exact_duplicate` and `near_duplicate`
    /// issue, and the largest group number used.
    pub async fn duplicate_groups(
        &self,
        project_id: i64,
    ) -> Result<(Vec<(i64, String, i64, Option<i64>)>, i64)> {
        with_pool!(self, |p| {
            let rows: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(
                "SELECT item_id, kind, grp, of_item FROM screen_issues WHERE project_id = $1 \
                 AND kind IN ('exact_duplicate', 'near_duplicate') AND grp IS NOT NULL ORDER BY id",
            )
            .bind(project_id)
            .fetch_all(p)
            .await?;
            let top: Option<i64> =
                sqlx::query_scalar("SELECT MAX(grp) FROM screen_issues WHERE project_id = $1")
                    .bind(project_id)
                    .fetch_one(p)
                    .await?;
            Ok::<_, sqlx::Error>((rows, top.unwrap_or(-1)))
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
                .map(|r| Ok(issue_row!(r)))
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
    /// per duplicate group (its representative), by group; `leaks` the
    /// items copying another split's (or the reference project's), closest
    /// copy first.
    pub async fn screen_review_candidates(
        &self,
        project_id: i64,
        list: &str,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let now = super::now_ms();
        let by_score = |kind: &str| {
            format!(
                "SELECT i.id FROM screen_issues s JOIN items i ON i.id = s.item_id \
                 WHERE s.project_id = $1 AND s.kind = '{kind}' AND i.status = 'needs_review' \
                 AND (i.review_until IS NULL OR i.review_until < $2) ORDER BY s.score DESC, i.id LIMIT $3"
            )
        };
        let sql = match list {
            "outliers" => by_score("outlier"),
            "leaks" => by_score("leak"),
            _ => "SELECT i.id FROM screen_issues s JOIN items i ON i.id = s.item_id \
                  WHERE s.project_id = $1 AND s.kind IN ('exact_duplicate', 'near_duplicate') \
                  AND s.of_item IS NULL AND i.status = 'needs_review' \
                  AND (i.review_until IS NULL OR i.review_until < $2) \
                  GROUP BY i.id ORDER BY MIN(s.grp), i.id LIMIT $3"
                .to_string(),
        };
        with_pool!(self, |p| {
            sqlx::query_scalar(&sql)
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
                    if status == "pending" && lease.is_some() && !out.items.contains(&id) {
                        // A worker holds it: a copy written now would be
                        // overwritten by its record. The mark makes that
                        // record take this label instead (the hold trigger,
                        // migration 0022); `status = status` lets the
                        // trigger act at once if the worker wrote it since.
                        let n = sqlx::query(
                            "UPDATE items SET propagated_from = $1, status = status WHERE id = $2 \
                             AND audit = 0 AND (final_source IS NULL OR final_source = 'machine') \
                             AND status IN ('pending', 'needs_review')",
                        )
                        .bind(item_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n > 0 {
                            out.marked.push(id);
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

    /// Clear the `conflict` issues that name `item_id` (its own, and those
    /// of group members naming it) once the two labels no longer disagree
    /// (a relabel, an undo, a deleted Label Studio annotation); a member
    /// whose conflict went names another member it still disagrees with,
    /// if any. Returns how many conflict rows were deleted (a member's may
    /// come back naming another member). One transaction.
    pub async fn settle_conflicts(
        &self,
        project_id: i64,
        item_id: i64,
        strict: f64,
    ) -> Result<u64> {
        with_pool!(self, |p| {
            let rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
                "SELECT s.id, s.item_id, s.of_item FROM screen_issues s \
                 WHERE s.project_id = $1 AND s.kind = 'conflict' AND (s.item_id = $2 OR s.of_item = $2)",
            )
            .bind(project_id)
            .bind(item_id)
            .fetch_all(p)
            .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let mut tx = p.begin().await?;
            let mut cleared = 0u64;
            for (id, owner, other) in rows {
                // Still two people's different labels: the conflict stands.
                let stands: Option<i64> = sqlx::query_scalar(
                    "SELECT a.id FROM items a JOIN items b ON b.id = $2 WHERE a.id = $1 \
                     AND a.status = 'labeled' AND a.final_source = 'human' \
                     AND b.status = 'labeled' AND b.final_source = 'human' AND a.final_label <> b.final_label",
                )
                .bind(owner)
                .bind(other)
                .fetch_optional(&mut *tx)
                .await?;
                if stands.is_some() {
                    continue;
                }
                cleared += sqlx::query("DELETE FROM screen_issues WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // Another member the owner still disagrees with, in a group
                // that propagates (as `propagate_label` reads them).
                let mate: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT m.id, s.grp FROM screen_issues so \
                     JOIN screen_issues s ON s.project_id = so.project_id AND s.grp = so.grp \
                       AND s.kind IN ('exact_duplicate', 'near_duplicate') \
                     JOIN items m ON m.id = s.item_id JOIN items o ON o.id = so.item_id \
                     WHERE so.item_id = $1 AND so.grp IS NOT NULL AND m.id <> $1 \
                     AND (so.kind = 'exact_duplicate' OR (so.kind = 'near_duplicate' AND NOT EXISTS ( \
                       SELECT 1 FROM screen_issues n WHERE n.project_id = $2 AND n.grp = so.grp \
                       AND n.kind = 'near_duplicate' AND n.score < $3))) \
                     AND o.status = 'labeled' AND o.final_source = 'human' \
                     AND m.status = 'labeled' AND m.final_source = 'human' AND m.final_label <> o.final_label \
                     ORDER BY m.id LIMIT 1",
                )
                .bind(owner)
                .bind(project_id)
                .bind(strict)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((mate, grp)) = mate {
                    sqlx::query(
                        "INSERT INTO screen_issues (project_id, item_id, kind, score, grp, of_item, of_reference, hold) \
                         VALUES ($1, $2, 'conflict', 1.0, $3, $4, NULL, 0)",
                    )
                    .bind(project_id)
                    .bind(owner)
                    .bind(grp)
                    .bind(mate)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(cleared)
        })
    }

    /// Items of the project behind Label Studio annotations `ls_ids` that
    /// belong to a duplicate group of the last screen (before the
    /// annotations are deleted: their copies and conflicts follow).
    pub async fn ls_grouped_items(&self, project_id: i64, ls_ids: &[i64]) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for chunk in ls_ids.chunks(CHUNK) {
            let mut sql = self
                .params("SELECT DISTINCT a.item_id FROM ls_annotations a WHERE a.project_id = ");
            sql.param()
                .push(" AND a.ls_annotation_id IN (")
                .list(chunk.len())
                .push(
                    ") AND EXISTS (SELECT 1 FROM screen_issues s WHERE s.item_id = a.item_id \
                     AND s.kind IN ('exact_duplicate', 'near_duplicate', 'conflict'))",
                );
            let ids: Vec<i64> = with_pool!(self, |p| {
                let mut q = sqlx::query_scalar(&sql.sql).bind(project_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            out.extend(ids);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Take back the labels propagated from `item_id` (its human label was
    /// deleted): those items wait for a person again. Returns how many.
    pub async fn withdraw_propagation(&self, item_id: i64) -> Result<u64> {
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE items SET status = 'needs_review', final_label = NULL, final_source = NULL, \
                 propagated_from = NULL WHERE propagated_from = $1 AND final_source = 'propagated'",
            )
            .bind(item_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Marks on items a worker was labeling: nothing to take now.
            sqlx::query(
                "UPDATE items SET propagated_from = NULL WHERE propagated_from = $1 \
                 AND (final_source IS NULL OR final_source = 'machine')",
            )
            .bind(item_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
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

    /// Of `ids` (the project's items), those the audit draw must skip: duplicate
    /// members and leaked items of the last screen ([`dup_member`], [`leaked`]).
    pub async fn off_audit(&self, project_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut sql = self.params("SELECT id FROM items WHERE project_id = ");
            sql.param()
                .push(" AND id IN (")
                .list(chunk.len())
                .push(&format!(
                    ") AND ({} OR {})",
                    dup_member("items"),
                    leaked("items")
                ));
            let found: Vec<i64> = with_pool!(self, |p| {
                let mut q = sqlx::query_scalar(&sql.sql).bind(project_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            out.extend(found);
        }
        Ok(out)
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
