//! Jobs: state, progress, errors and rate.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::Id;
use crate::api::AppState;
use crate::store::Job;

/// A job as clients see it, with its rate and an estimate of the time left.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub project_id: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub errors: i64,
    /// Items handled per second of work (not of queueing behind other jobs).
    pub rate_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Why a failed job gave up, in words meant for the user (a Label
    /// Studio sync that could not reach Label Studio, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let start = job.started_at.unwrap_or(job.created_at);
        let elapsed =
            ((job.finished_at.unwrap_or(job.updated_at) - start) as f64 / 1000.0).max(0.001);
        let handled = job.done + job.errors;
        let rate = handled as f64 / elapsed;
        let remaining = (job.total - handled).max(0);
        JobView {
            id: job.id,
            project_id: job.project_id,
            state: job.state.clone(),
            total: job.total,
            done: job.done,
            errors: job.errors,
            rate_per_sec: if handled > 0 { rate } else { 0.0 },
            eta_secs: (handled > 0 && rate > 0.0).then(|| remaining as f64 / rate),
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            error: job.error.clone(),
        }
    }
}

/// Job state, progress, errors and rate.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", example = 1)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get_job(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<JobView>> {
    Ok(Json(JobView::from(&state.store.get_job(id).await?)))
}
