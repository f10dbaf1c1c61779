//! Calibration (thresholds with a guarantee, temperature, drift) and the
//! quality of the human labels (agreement between annotators).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::Id;
use crate::api::v1::jobs::JobView;
use crate::api::AppState;
use crate::service::calibration::{self, CalibrationView};
use crate::service::quality::{self, AgreementView};

/// Refit the calibration now: temperature on the review labels, thresholds on
/// the audit labels. Answers with the job; items are re-routed when it ends.
#[utoipa::path(post, path = "/v1/projects/{id}/calibrate", tag = "calibration",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 202, body = JobView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "No audit labels yet (`no_audit_labels`): the state of the project, not the request; answer audit items (`GET /v1/projects/{id}/review?strategy=audit`), then calibrate again", body = ErrorBody)))]
pub async fn calibrate(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let job = calibration::start(&state.calibrator, project_id).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&job))))
}

/// The calibration in force: temperature and ECE, per-class thresholds with
/// coverage and precision bounds, audit labels spent and pending, the drift
/// alarm, and the history of versions.
#[utoipa::path(get, path = "/v1/projects/{id}/calibration", tag = "calibration",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 200, body = CalibrationView), (status = 404, body = ErrorBody)))]
pub async fn get_calibration(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<Json<CalibrationView>> {
    Ok(Json(calibration::view(&state, project_id).await?))
}

/// Agreement between annotators: Cohen's κ per pair, Krippendorff's α, and
/// each annotator's accuracy against the settled label of shared items; on
/// a detection project agreement on boxes, on an OCR project
/// character-level agreement on transcribed lines and their conflicts.
#[utoipa::path(get, path = "/v1/projects/{id}/agreement", tag = "calibration",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 200, body = AgreementView), (status = 404, body = ErrorBody)))]
pub async fn agreement(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<Json<AgreementView>> {
    Ok(Json(quality::agreement(&state, project_id).await?))
}
