//! The credentials Label Studio uses to call a project's backend routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::Id;
use crate::api::AppState;
use crate::service::labelstudio::door::{self, Credentials};

/// Create (or rotate) the project's Label Studio backend credentials: an
/// HTTP Basic user and password to enter under "Basic Authentication" in
/// the ML backend's settings in Label Studio. The password is shown only
/// in this answer; creating again replaces it.
#[utoipa::path(post, path = "/v1/projects/{id}/labelstudio/credentials", tag = "labelstudio",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 201, body = Credentials), (status = 404, body = ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    Id(project): Id,
) -> ApiResult<(StatusCode, Json<Credentials>)> {
    let c = door::create_credentials(&state.app, project).await?;
    Ok((StatusCode::CREATED, Json(c)))
}
