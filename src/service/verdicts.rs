//! A person's verdict on a screen issue (issue 25): confirm or reject an
//! outlier, a duplicate group's member, or a leak; undo it. Written once for
//! every adapter; the store applies each in one transaction.

use serde::{Deserialize, Serialize};

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use super::screening::IssueView;
use crate::store::{ScreenIssue, VerdictRow, VERDICT_KINDS};

/// `confirm`: the issue is right (a duplicate is one, a leak a copy) or,
/// for an outlier, the item is in-domain after all. `reject`: an outlier
/// leaves the data (status `rejected`), a duplicate or leak is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirm,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirm => "confirm",
            Verdict::Reject => "reject",
        }
    }
}

/// A verdict as stored, and the item it touched as it is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerdictView {
    /// The issue it was given on.
    pub issue_id: i64,
    pub item_id: i64,
    /// The issue's type: `outlier`, `exact_duplicate`, `near_duplicate` or `leak`.
    #[serde(rename = "type")]
    #[schema(example = "outlier")]
    pub kind: String,
    pub verdict: Verdict,
    /// Who gave it (from the token).
    pub annotator: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// False when this request found the same verdict already stored and
    /// wrote nothing.
    pub recorded: bool,
    /// The item's status now (`rejected` after an outlier is rejected).
    pub item_status: String,
}

/// `GET /v1/projects/{id}/items/{item}/screening`: what the review page
/// shows side by side.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemScreening {
    pub item_id: i64,
    /// The item's outlier, duplicate and leak issues, and the issues of the
    /// other members of its duplicate groups (representative first, by type).
    pub issues: Vec<IssueView>,
    /// Verdicts on those items, one per (item, type) (`recorded` is false:
    /// nothing is written by reading them).
    pub verdicts: Vec<VerdictView>,
}

fn view(v: &VerdictRow, recorded: bool, item_status: String) -> VerdictView {
    VerdictView {
        issue_id: v.issue_id,
        item_id: v.item_id,
        kind: v.kind.clone(),
        verdict: if v.verdict == "confirm" {
            Verdict::Confirm
        } else {
            Verdict::Reject
        },
        annotator: v.annotator.clone(),
        created_at: v.created_at,
        recorded,
        item_status,
    }
}

/// The issue `issue_id` of `project_id` (404 naming both when it is not).
async fn issue_in(app: &App, project_id: i64, issue_id: i64) -> ServiceResult<Option<ScreenIssue>> {
    app.store.get_project(project_id).await?;
    Ok(app
        .store
        .screen_issue(issue_id)
        .await?
        .filter(|i| i.project_id == project_id))
}

/// Give `verdict` on issue `issue_id` of project `project_id` as `by`.
/// The same verdict again writes nothing (`recorded: false`); another
/// verdict on an issue that has one is 409 (undo it first).
pub async fn give(
    app: &App,
    project_id: i64,
    issue_id: i64,
    verdict: Verdict,
    by: &str,
) -> ServiceResult<VerdictView> {
    let issue = issue_in(app, project_id, issue_id).await?;
    let existing = app
        .store
        .verdict_on(
            issue_id,
            issue.as_ref().map(|i| (i.item_id, i.kind.as_str())),
        )
        .await?
        .filter(|v| v.project_id == project_id);
    if let Some(v) = existing {
        return same_or_conflict(app, &v, verdict).await;
    }
    let Some(issue) = issue else {
        return Err(ServiceError::not_found(format!(
            "issue {issue_id} of project {project_id}"
        )));
    };
    if !VERDICT_KINDS.contains(&issue.kind.as_str()) {
        return Err(ServiceError::invalid(
            "issue",
            format!(
                "issue {issue_id} is a `{}` issue; verdicts are given on {} issues",
                issue.kind,
                VERDICT_KINDS.join(", ")
            ),
        ));
    }
    let duplicate = issue.kind != "outlier" && issue.kind != "leak";
    if duplicate && issue.of_item.is_none() {
        return Err(ServiceError::invalid(
            "issue",
            format!(
                "issue {issue_id} is the representative of {} group {}: give the verdict on a member's issue (one whose `of` is item {})",
                issue.kind,
                issue.group.unwrap_or_default(),
                issue.item_id
            ),
        ));
    }
    let stored = match app.store.give_verdict(&issue, verdict.as_str(), by).await {
        Ok(v) => v,
        // Another request stored one first: answer as if it came first.
        Err(crate::store::StoreError::Conflict(m)) => {
            let v = app
                .store
                .verdict_on(issue_id, Some((issue.item_id, issue.kind.as_str())))
                .await?
                .ok_or_else(|| ServiceError::new(Code::Conflict, m))?;
            return same_or_conflict(app, &v, verdict).await;
        }
        Err(e) => return Err(e.into()),
    };
    if issue.kind == "outlier" && verdict == Verdict::Reject {
        // A rejected item's own label leaves its duplicates too.
        if let Err(e) = app.store.withdraw_propagation(issue.item_id).await {
            tracing::warn!(item = issue.item_id, error = %e, "labels propagated from a rejected item not taken back");
        }
    }
    let item = app.store.get_item(issue.item_id).await?;
    Ok(view(&stored, true, item.status))
}

async fn same_or_conflict(
    app: &App,
    v: &VerdictRow,
    verdict: Verdict,
) -> ServiceResult<VerdictView> {
    if v.verdict == verdict.as_str() {
        let item = app.store.get_item(v.item_id).await?;
        return Ok(view(v, false, item.status));
    }
    Err(ServiceError::new(
        Code::Conflict,
        format!(
            "item {}'s {} issue already has the verdict `{}` (by {}); undo it first: DELETE /v1/projects/{}/issues/{}/verdict",
            v.item_id, v.kind, v.verdict, v.annotator, v.project_id, v.issue_id
        ),
    ))
}

/// Undo the verdict on issue `issue_id`: what it changed comes back. Only
/// its author or an admin may.
pub async fn undo(
    app: &App,
    project_id: i64,
    issue_id: i64,
    by: &str,
    admin: bool,
) -> ServiceResult<VerdictView> {
    let issue = issue_in(app, project_id, issue_id).await?;
    let v = app
        .store
        .verdict_on(
            issue_id,
            issue.as_ref().map(|i| (i.item_id, i.kind.as_str())),
        )
        .await?
        .filter(|v| v.project_id == project_id)
        .ok_or_else(|| {
            ServiceError::not_found(format!(
                "verdict on issue {issue_id} of project {project_id}"
            ))
        })?;
    if !admin && v.annotator != by {
        return Err(ServiceError::forbidden(format!(
            "the verdict on issue {issue_id} was given by another annotator; only its author or an admin may undo it"
        )));
    }
    app.store.undo_verdict(&v).await?;
    let item = app.store.get_item(v.item_id).await?;
    if v.kind == "outlier" && v.verdict == "reject" {
        // Its own label, if a person gave one, reaches its duplicates again.
        super::screening::after_label(app, v.item_id).await;
    }
    Ok(view(&v, true, item.status))
}

/// The item's screening issues and its duplicate groups' members, with the
/// verdicts given on them.
pub async fn item_screening(
    app: &App,
    project_id: i64,
    item_id: i64,
) -> ServiceResult<ItemScreening> {
    app.store.get_project(project_id).await?;
    let item = app.store.get_item(item_id).await?;
    if item.project_id != project_id {
        return Err(ServiceError::not_found(format!(
            "item {item_id} of project {project_id}"
        )));
    }
    let rows = app.store.item_screen_issues(project_id, item_id).await?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.item_id).collect();
    ids.push(item_id);
    ids.sort_unstable();
    ids.dedup();
    let verdicts = app.store.verdicts_of_items(project_id, &ids).await?;
    let mut out = Vec::with_capacity(verdicts.len());
    for v in &verdicts {
        let status = if v.item_id == item_id {
            item.status.clone()
        } else {
            app.store.get_item(v.item_id).await?.status
        };
        out.push(view(v, false, status));
    }
    Ok(ItemScreening {
        item_id,
        issues: rows.into_iter().map(IssueView::from).collect(),
        verdicts: out,
    })
}
