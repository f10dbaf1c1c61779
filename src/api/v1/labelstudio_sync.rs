//! Bulk pre-annotation of a Label Studio project, as a job.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{parse_object, Body, Id};
use crate::api::v1::jobs::JobView;
use crate::api::AppState;
use crate::service::labelstudio::sync::{self, SyncIn};

/// Pre-label every task of a Label Studio project and write the
/// predictions back, as a job (`GET /v1/jobs/{id}`: `total` tasks, `done`
/// predictions written). The URL's host must be in the server's `ls_hosts`;
/// the token is never logged, listed or exported.
#[utoipa::path(post, path = "/v1/projects/{id}/labelstudio/sync", tag = "labelstudio",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    request_body(content = SyncIn, example = json!({"url": "http://localhost:8080", "token": "a-label-studio-token", "ls_project": 1})),
    responses((status = 202, body = JobView), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sync(
    State(state): State<AppState>,
    Id(project): Id,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let req: SyncIn = parse_object(&body)?;
    let job = sync::start(&state.app, project, req).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&job))))
}
