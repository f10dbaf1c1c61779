//! Screening: duplicates, outliers, leaks, bad items and personal data in a
//! project's items (issue 25).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{parse_object, Body, Id, Ids, Query};
use crate::api::v1::jobs::JobView;
use crate::api::AppState;
use crate::service::screening::{self, IssuePage, ScreenSettings, ScreeningView};
use crate::service::verdicts::{self, ItemScreening, Verdict, VerdictView};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenIn {
    /// False-positive rate of the conformal outlier test, in (0, 0.5]; default 0.01.
    #[schema(exclusive_minimum = 0.0, maximum = 0.5, example = 0.01)]
    alpha: Option<f64>,
    /// Another project on the same model: outliers are tested against its
    /// items, and leaks are copies of them. Without it, the reference is the
    /// project's human-labeled items once there are enough, else Datalab's
    /// within-pool rule decides (the screening says which).
    reference_project: Option<i64>,
    /// Screen every item again (default false). Otherwise, once a project
    /// was screened with the same settings, a screen compares only the
    /// items not screened yet (a new ingest batch) with those that were,
    /// and adds what it finds.
    full: Option<bool>,
}

/// Screen the project's items in a background job: exact and near
/// duplicates, outliers, leaks against a reference project, quality and
/// personal data. A first screen (or `full`) replaces the previous one's
/// results; later ones screen only the items added since and add theirs
/// (`GET …/screening` `batch` says what they compared). Outliers and
/// dark, blurry or odd-sized images leave `auto_accepted` for review and are
/// not auto-accepted afterwards. Answers with the job (one per project at a
/// time: a request while one runs joins it, with its settings).
#[utoipa::path(post, path = "/v1/projects/{id}/screen", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    request_body(content = Option<ScreenIn>, description = "Optional; no body, `null` or `{}` screens with the defaults.", example = json!({"alpha": 0.01})),
    responses((status = 202, body = JobView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The project (or the reference project) has no embeddings yet (`conflict`): the message says what to run first", body = ErrorBody),
        (status = 422, description = "`alpha` outside (0, 0.5], or a `reference_project` that does not exist or is on another model (the message names both models) (`invalid_field`)", body = ErrorBody)))]
pub async fn screen(
    State(state): State<AppState>,
    Id(project_id): Id,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let mut settings = ScreenSettings::default();
    // No body, or JSON `null` (the document's optional body): the defaults.
    let text = body.trim_ascii();
    if !text.is_empty() && text != b"null" {
        let req: ScreenIn = parse_object(&body)?;
        settings.alpha = req.alpha.unwrap_or(settings.alpha);
        settings.reference_project = req.reference_project;
        settings.full = req.full.unwrap_or(false);
    }
    let job = screening::start(&state.app, project_id, settings).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&job))))
}

/// The project's last screen: issues per type, the thresholds used, and the
/// outlier rule (`conformal` against a reference, or `within_pool` before one
/// exists).
#[utoipa::path(get, path = "/v1/projects/{id}/screening", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 200, body = ScreeningView), (status = 404, body = ErrorBody)))]
pub async fn get_screening(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<Json<ScreeningView>> {
    Ok(Json(screening::view(&state, project_id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IssuesQuery {
    /// One issue type, or `quality` / `pii` for every kind of that family; default all.
    #[serde(rename = "type")]
    #[param(rename = "type", schema_with = type_schema)]
    kind: Option<String>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_after` of the previous page.
    after: Option<i64>,
}

fn type_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        screening::TYPES.iter().map(|t| t.to_string()),
        "An issue type, or `quality` / `pii` for the whole family.",
    )
}

/// The last screen's issues, oldest first, one page at a time.
#[utoipa::path(get, path = "/v1/projects/{id}/issues", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1), IssuesQuery),
    responses((status = 200, body = IssuePage), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn issues(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<IssuesQuery>,
) -> ApiResult<Json<IssuePage>> {
    Ok(Json(
        screening::issues(
            &state.store,
            project_id,
            q.kind.as_deref(),
            q.after,
            q.limit,
        )
        .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictIn {
    /// `confirm` or `reject`.
    verdict: Verdict,
}

/// A person's verdict on one of the last screen's issues, as the caller (the
/// token's name). `confirm`: an outlier is in-domain after all (its hold
/// goes; labeled, it joins the outlier test's reference), a duplicate
/// group's member is a duplicate (grouping and propagation stay), a leak is
/// a copy. `reject`: an outlier leaves the data (item status `rejected`: out
/// of exports, review lists and counts of accepted or waiting items), a
/// member is not a duplicate (it leaves its group, a label it took from the
/// group goes, and it is reviewed on its own), a leak is not a copy (the
/// issue goes). The same verdict again writes nothing (`recorded: false`).
#[utoipa::path(post, path = "/v1/projects/{id}/issues/{issue}/verdict", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1),
           ("issue" = i64, Path, description = "Issue id (`id` of `GET …/issues`)", example = 1)),
    request_body(content = VerdictIn, example = json!({"verdict": "reject"})),
    responses((status = 200, description = "The verdict, and the item's status now", body = VerdictView),
        (status = 404, description = "No such project, or no such issue in it", body = ErrorBody),
        (status = 409, description = "The issue already has the other verdict: undo it first (`conflict`)", body = ErrorBody),
        (status = 422, description = "A verdict other than `confirm` or `reject`, an issue type that takes none (quality, PII, conflict), or a duplicate group's representative (give it on a member) (`invalid_field`)", body = ErrorBody)))]
pub async fn verdict(
    State(state): State<AppState>,
    caller: Caller,
    Ids(project_id, issue_id): Ids,
    Body(body): Body,
) -> ApiResult<Json<VerdictView>> {
    let req: VerdictIn = parse_object(&body)?;
    let me = caller.acting_as(None)?;
    Ok(Json(
        verdicts::give(&state.app, project_id, issue_id, req.verdict, &me.name).await?,
    ))
}

/// Undo the verdict on an issue: what it changed comes back (a rejected
/// outlier's status, a member's place in its group and the label it had
/// taken, an outlier's hold). Only the verdict's author or an admin may.
#[utoipa::path(delete, path = "/v1/projects/{id}/issues/{issue}/verdict", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1),
           ("issue" = i64, Path, description = "Issue id the verdict was given on", example = 1)),
    responses((status = 200, description = "The verdict that was undone, and the item's status now", body = VerdictView),
        (status = 403, description = "Neither the verdict's author nor an admin", body = ErrorBody),
        (status = 404, description = "No such project, or no verdict on that issue", body = ErrorBody)))]
pub async fn undo_verdict(
    State(state): State<AppState>,
    caller: Caller,
    Ids(project_id, issue_id): Ids,
) -> ApiResult<Json<VerdictView>> {
    let me = caller.acting_as(None)?;
    let admin = caller.role() == Some(Role::Admin);
    Ok(Json(
        verdicts::undo(&state.app, project_id, issue_id, &me.name, admin).await?,
    ))
}

/// One item's outlier, duplicate and leak issues, the other members of its
/// duplicate groups, and the verdicts on them: what the review page shows
/// side by side.
#[utoipa::path(get, path = "/v1/projects/{id}/items/{item}/screening", tag = "screening",
    params(("id" = i64, Path, description = "Project id", example = 1),
           ("item" = i64, Path, description = "Item id", example = 1)),
    responses((status = 200, body = ItemScreening),
        (status = 404, description = "No such project, or no such item in it", body = ErrorBody)))]
pub async fn item_screening(
    State(state): State<AppState>,
    Ids(project_id, item_id): Ids,
) -> ApiResult<Json<ItemScreening>> {
    Ok(Json(
        verdicts::item_screening(&state.app, project_id, item_id).await?,
    ))
}
