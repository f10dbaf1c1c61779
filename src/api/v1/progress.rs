//! A project's progress: items by who decided them, and the precision the
//! current calibration vouches for.

use axum::extract::State;
use axum::Json;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::Id;
use crate::api::AppState;
use crate::service::progress::{self, Progress};

/// Items in total, auto-accepted, human-labeled and waiting; audit items
/// pending; the precision estimate and its lower bound under the current
/// calibration.
#[utoipa::path(get, path = "/v1/projects/{id}/progress", tag = "projects",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 200, body = Progress), (status = 404, body = ErrorBody)))]
pub async fn progress(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<Json<Progress>> {
    Ok(Json(progress::progress(&state, project_id).await?))
}
