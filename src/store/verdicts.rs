//! People's verdicts on screen issues (issue 25, migration 0024): an
//! outlier confirmed in-domain loses its hold, one rejected gets status
//! `rejected`; a duplicate or leak rejected loses its issue (the item leaves
//! its group). Each verdict keeps what it changed, so that undoing it puts
//! that back. One transaction each.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::screening::issue_row;
use super::{now_ms, IssueRow, Result, Store, StoreError};

/// The issue types a person gives verdicts on.
pub const VERDICT_KINDS: [&str; 4] = ["outlier", "exact_duplicate", "near_duplicate", "leak"];

/// Statements a full or incremental screen runs after writing its issues
/// (`$1` the project), so that verdicts outlive it: confirmed outliers stay
/// unheld, and a rejected duplicate or leak issue of a member is left out.
pub(crate) const REAPPLY: [&str; 2] = [
    "UPDATE screen_issues SET hold = 0 WHERE project_id = $1 AND kind = 'outlier' AND item_id IN \
     (SELECT item_id FROM screen_verdicts WHERE project_id = $1 AND kind = 'outlier' AND verdict = 'confirm')",
    "DELETE FROM screen_issues WHERE project_id = $1 AND of_item IS NOT NULL \
     AND kind IN ('exact_duplicate', 'near_duplicate', 'leak') AND EXISTS (SELECT 1 FROM screen_verdicts v \
     WHERE v.item_id = screen_issues.item_id AND v.kind = screen_issues.kind AND v.verdict = 'reject')",
];

/// One stored issue, as a verdict reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScreenIssue {
    pub id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub kind: String,
    pub score: f64,
    pub group: Option<i64>,
    pub of_item: Option<i64>,
    pub of_reference: Option<i64>,
    pub hold: bool,
}

/// A stored verdict.
#[derive(Debug, Clone)]
pub struct VerdictRow {
    pub id: i64,
    pub project_id: i64,
    pub item_id: i64,
    pub issue_id: i64,
    pub kind: String,
    pub verdict: String,
    pub annotator: String,
    pub created_at: i64,
}

/// What a verdict changed (the `restore` column).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Restore {
    /// Issue rows it deleted.
    #[serde(default)]
    issues: Vec<ScreenIssue>,
    /// The outlier issue's hold before a confirm.
    #[serde(default)]
    hold: Option<bool>,
    /// The item's fields before, and the status the verdict left.
    #[serde(default)]
    item: Option<SavedItem>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedItem {
    status: String,
    final_label: Option<String>,
    final_source: Option<String>,
    propagated_from: Option<i64>,
    /// The status the verdict set: undo restores only while it stands.
    left: String,
}

const ISSUE_COLS: &str = "id, project_id, item_id, kind, score, grp, of_item, of_reference, hold";
const VERDICT_COLS: &str =
    "id, project_id, item_id, issue_id, kind, verdict, annotator, created_at";

fn issue_of(r: &impl RowLike) -> std::result::Result<ScreenIssue, sqlx::Error> {
    Ok(ScreenIssue {
        id: r.i64_at(0)?,
        project_id: r.i64_at(1)?,
        item_id: r.i64_at(2)?,
        kind: r.str_at(3)?,
        score: r.f64_at(4)?,
        group: r.opt_i64_at(5)?,
        of_item: r.opt_i64_at(6)?,
        of_reference: r.opt_i64_at(7)?,
        hold: r.i64_at(8)? != 0,
    })
}

fn verdict_of(r: &impl RowLike) -> std::result::Result<VerdictRow, sqlx::Error> {
    Ok(VerdictRow {
        id: r.i64_at(0)?,
        project_id: r.i64_at(1)?,
        item_id: r.i64_at(2)?,
        issue_id: r.i64_at(3)?,
        kind: r.str_at(4)?,
        verdict: r.str_at(5)?,
        annotator: r.str_at(6)?,
        created_at: r.i64_at(7)?,
    })
}

/// Typed reads of a row of either database.
trait RowLike {
    fn i64_at(&self, i: usize) -> std::result::Result<i64, sqlx::Error>;
    fn opt_i64_at(&self, i: usize) -> std::result::Result<Option<i64>, sqlx::Error>;
    fn f64_at(&self, i: usize) -> std::result::Result<f64, sqlx::Error>;
    fn str_at(&self, i: usize) -> std::result::Result<String, sqlx::Error>;
}

macro_rules! row_like {
    ($t:ty) => {
        impl RowLike for $t {
            fn i64_at(&self, i: usize) -> std::result::Result<i64, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_i64_at(&self, i: usize) -> std::result::Result<Option<i64>, sqlx::Error> {
                self.try_get(i)
            }
            fn f64_at(&self, i: usize) -> std::result::Result<f64, sqlx::Error> {
                self.try_get(i)
            }
            fn str_at(&self, i: usize) -> std::result::Result<String, sqlx::Error> {
                self.try_get(i)
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

impl Store {
    /// Issue `id` of the last screen, if it still exists.
    pub async fn screen_issue(&self, id: i64) -> Result<Option<ScreenIssue>> {
        let sql = format!("SELECT {ISSUE_COLS} FROM screen_issues WHERE id = $1");
        with_pool!(self, |p| {
            match sqlx::query(&sql).bind(id).fetch_optional(p).await? {
                Some(r) => issue_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The verdict given on issue `issue_id` (or, after a full screen
    /// renumbered the issues, on the same item and type), if any.
    pub async fn verdict_on(
        &self,
        issue_id: i64,
        item_kind: Option<(i64, &str)>,
    ) -> Result<Option<VerdictRow>> {
        let sql = format!(
            "SELECT {VERDICT_COLS} FROM screen_verdicts WHERE issue_id = $1 OR (item_id = $2 AND kind = $3) \
             ORDER BY CASE WHEN issue_id = $1 THEN 0 ELSE 1 END, id LIMIT 1"
        );
        let (item, kind) = item_kind.unwrap_or((-1, ""));
        with_pool!(self, |p| {
            match sqlx::query(&sql)
                .bind(issue_id)
                .bind(item)
                .bind(kind)
                .fetch_optional(p)
                .await?
            {
                Some(r) => verdict_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Verdicts on the items `ids`, for the review page.
    pub async fn verdicts_of_items(&self, project_id: i64, ids: &[i64]) -> Result<Vec<VerdictRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT {VERDICT_COLS} FROM screen_verdicts WHERE project_id = $1 AND item_id IN ({list}) ORDER BY id"
        );
        with_pool!(self, |p| {
            sqlx::query(&sql)
                .bind(project_id)
                .fetch_all(p)
                .await?
                .iter()
                .map(verdict_of)
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// The issues of `item_id` that take verdicts, and the other members of
    /// its duplicate groups (their issues), for the review page's side by
    /// side view; at most 1,000 rows.
    pub async fn item_screen_issues(&self, project_id: i64, item_id: i64) -> Result<Vec<IssueRow>> {
        let sql = "SELECT s.id, s.item_id, i.client_id, s.kind, s.score, s.grp, s.of_item, o.client_id, s.of_reference, s.hold, i.split, o.split \
             FROM screen_issues s JOIN items i ON i.id = s.item_id LEFT JOIN items o ON o.id = s.of_item \
             WHERE s.project_id = $1 AND s.kind IN ('outlier', 'exact_duplicate', 'near_duplicate', 'leak') \
             AND (s.item_id = $2 OR (s.grp IS NOT NULL AND s.kind IN ('exact_duplicate', 'near_duplicate') AND EXISTS ( \
               SELECT 1 FROM screen_issues m WHERE m.project_id = $1 AND m.item_id = $2 AND m.kind = s.kind AND m.grp = s.grp))) \
             ORDER BY s.kind, s.of_item IS NOT NULL, s.id LIMIT 1000";
        with_pool!(self, |p| {
            sqlx::query(sql)
                .bind(project_id)
                .bind(item_id)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| Ok(issue_row!(r)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        })
    }

    /// Record `annotator`'s `verdict` (`confirm` or `reject`) on `issue` and
    /// apply it, in one transaction:
    /// - outlier, confirm: its hold goes (the item may be auto-accepted and,
    ///   once a person labels it, belongs to the outlier test's reference);
    /// - outlier, reject: the item's status becomes `rejected` (its lease ends);
    /// - duplicate, reject: the member's issue goes, with the `conflict`
    ///   issues between it and its group (and the representative's issue when
    ///   no other member is left); a label it took from the group goes too, and
    ///   it waits for a person (`needs_review`);
    /// - leak, reject: the issue goes;
    /// - duplicate or leak, confirm: nothing more than the verdict.
    ///
    /// A verdict already stored on the item and type is `Conflict`.
    pub async fn give_verdict(
        &self,
        issue: &ScreenIssue,
        verdict: &str,
        annotator: &str,
    ) -> Result<VerdictRow> {
        let now = now_ms();
        let insert = format!(
            "INSERT INTO screen_verdicts (project_id, item_id, issue_id, kind, verdict, annotator, restore, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, '{{}}', $7) ON CONFLICT (item_id, kind) DO NOTHING RETURNING {VERDICT_COLS}"
        );
        let select_issues = format!("SELECT {ISSUE_COLS} FROM screen_issues WHERE ");
        let duplicate = issue.kind == "exact_duplicate" || issue.kind == "near_duplicate";
        with_pool!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            let Some(row) = sqlx::query(&insert)
                .bind(issue.project_id)
                .bind(issue.item_id)
                .bind(issue.id)
                .bind(issue.kind.as_str())
                .bind(verdict)
                .bind(annotator)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(Err(StoreError::Conflict(format!(
                    "item {} already has a verdict on its {} issue",
                    issue.item_id, issue.kind
                ))));
            };
            let stored = verdict_of(&row)?;
            let mut restore = Restore::default();
            match (issue.kind.as_str(), verdict) {
                ("outlier", "confirm") => {
                    sqlx::query("UPDATE screen_issues SET hold = 0 WHERE id = $1")
                        .bind(issue.id)
                        .execute(&mut *tx)
                        .await?;
                    restore.hold = Some(issue.hold);
                }
                ("outlier", _) => {
                    let r = sqlx::query(
                        "SELECT status, final_label, final_source, propagated_from FROM items WHERE id = $1",
                    )
                    .bind(issue.item_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    restore.item = Some(SavedItem {
                        status: r.try_get(0)?,
                        final_label: r.try_get(1)?,
                        final_source: r.try_get(2)?,
                        propagated_from: r.try_get(3)?,
                        left: "rejected".into(),
                    });
                    sqlx::query(
                        "UPDATE items SET status = 'rejected', review_owner = NULL, review_until = NULL WHERE id = $1",
                    )
                    .bind(issue.item_id)
                    .execute(&mut *tx)
                    .await?;
                }
                (_, "reject") => {
                    let mut gone = vec![issue.clone()];
                    if duplicate {
                        let grp = issue.group.unwrap_or(-1);
                        let members: Vec<i64> = sqlx::query_scalar(
                            "SELECT item_id FROM screen_issues WHERE project_id = $1 AND kind = $2 AND grp = $3",
                        )
                        .bind(issue.project_id)
                        .bind(issue.kind.as_str())
                        .bind(grp)
                        .fetch_all(&mut *tx)
                        .await?;
                        let conflicts = sqlx::query(&format!(
                            "{select_issues} project_id = $1 AND kind = 'conflict' AND grp = $2 AND (item_id = $3 OR of_item = $3)"
                        ))
                        .bind(issue.project_id)
                        .bind(grp)
                        .bind(issue.item_id)
                        .fetch_all(&mut *tx)
                        .await?;
                        for r in &conflicts {
                            gone.push(issue_of(r)?);
                        }
                        let others: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM screen_issues WHERE project_id = $1 AND kind = $2 AND grp = $3 \
                             AND of_item IS NOT NULL AND id <> $4",
                        )
                        .bind(issue.project_id)
                        .bind(issue.kind.as_str())
                        .bind(grp)
                        .bind(issue.id)
                        .fetch_one(&mut *tx)
                        .await?;
                        if others == 0 {
                            let reps = sqlx::query(&format!(
                                "{select_issues} project_id = $1 AND kind = $2 AND grp = $3 AND of_item IS NULL"
                            ))
                            .bind(issue.project_id)
                            .bind(issue.kind.as_str())
                            .bind(grp)
                            .fetch_all(&mut *tx)
                            .await?;
                            for r in &reps {
                                gone.push(issue_of(r)?);
                            }
                        }
                        // A label (or a mark) it took from this group goes.
                        let r = sqlx::query(
                            "SELECT status, final_label, final_source, propagated_from FROM items WHERE id = $1",
                        )
                        .bind(issue.item_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        let from: Option<i64> = r.try_get(3)?;
                        if from.is_some_and(|f| members.contains(&f)) {
                            let source: Option<String> = r.try_get(2)?;
                            let copied = source.as_deref() == Some("propagated");
                            let status: String = r.try_get(0)?;
                            let left = if copied { "needs_review".to_string() } else { status.clone() };
                            restore.item = Some(SavedItem {
                                status,
                                final_label: r.try_get(1)?,
                                final_source: source,
                                propagated_from: from,
                                left,
                            });
                            sqlx::query(
                                "UPDATE items SET status = CASE WHEN final_source = 'propagated' THEN 'needs_review' ELSE status END, \
                                 final_label = CASE WHEN final_source = 'propagated' THEN NULL ELSE final_label END, \
                                 final_source = CASE WHEN final_source = 'propagated' THEN NULL ELSE final_source END, \
                                 propagated_from = NULL WHERE id = $1",
                            )
                            .bind(issue.item_id)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    for g in &gone {
                        sqlx::query("DELETE FROM screen_issues WHERE id = $1")
                            .bind(g.id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    restore.issues = gone;
                }
                _ => {}
            }
            let body = serde_json::to_string(&restore)
                .map_err(|e| sqlx::Error::Protocol(format!("verdict restore: {e}")))?;
            sqlx::query("UPDATE screen_verdicts SET restore = $1 WHERE id = $2")
                .bind(body)
                .bind(stored.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(stored))
        }
        .await
        })?
    }

    /// Undo verdict `v`: delete it and put back what it changed (issues it
    /// deleted, an outlier's hold, the item's status and label while the
    /// status it left still stands). One transaction; a verdict already gone
    /// is `NotFound`.
    pub async fn undo_verdict(&self, v: &VerdictRow) -> Result<()> {
        let insert = format!(
            "INSERT INTO screen_issues ({ISSUE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        );
        with_pool!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            let body: Option<String> =
                sqlx::query_scalar("DELETE FROM screen_verdicts WHERE id = $1 RETURNING restore")
                    .bind(v.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(body) = body else {
                return Ok(Err(StoreError::NotFound(format!(
                    "verdict on issue {}",
                    v.issue_id
                ))));
            };
            let restore: Restore = serde_json::from_str(&body)
                .map_err(|e| sqlx::Error::Protocol(format!("verdict {} restore: {e}", v.id)))?;
            if let Some(hold) = restore.hold {
                sqlx::query("UPDATE screen_issues SET hold = $1 WHERE id = $2")
                    .bind(i64::from(hold))
                    .bind(v.issue_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for g in &restore.issues {
                sqlx::query(&insert)
                    .bind(g.id)
                    .bind(g.project_id)
                    .bind(g.item_id)
                    .bind(g.kind.as_str())
                    .bind(g.score)
                    .bind(g.group)
                    .bind(g.of_item)
                    .bind(g.of_reference)
                    .bind(i64::from(g.hold))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(it) = &restore.item {
                // Only while nobody changed the item since (a label given
                // after the verdict stands).
                sqlx::query(
                    "UPDATE items SET status = $1, final_label = $2, final_source = $3, propagated_from = $4 \
                     WHERE id = $5 AND status = $6 AND (final_source IS NULL OR final_source <> 'human' OR $6 = 'rejected')",
                )
                .bind(it.status.as_str())
                .bind(it.final_label.as_deref())
                .bind(it.final_source.as_deref())
                .bind(it.propagated_from)
                .bind(v.item_id)
                .bind(it.left.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(()))
        }
        .await
        })?
    }
}
