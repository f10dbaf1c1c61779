//! Export of a project's labels, streamed page by page (`service::export`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Id, Query};
use crate::api::AppState;
use crate::service::export::{self, ExportFormat};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// jsonl (default), csv or labelstudio.
    #[param(schema_with = format_schema)]
    format: Option<String>,
}

fn format_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        ["jsonl", "csv", "labelstudio"].map(str::to_string),
        "jsonl (default), csv or labelstudio.",
    )
}

/// Export labels as jsonl, csv or labelstudio (streamed).
#[utoipa::path(get, path = "/v1/projects/{id}/export", tag = "export",
    params(("id" = i64, Path, description = "Project id", example = 1), ExportQuery),
    responses((status = 200, description = "The export, streamed: JSON lines, CSV, or Label Studio's task list", content(
                (String = "application/x-ndjson"), (String = "text/csv"), (Vec<Object> = "application/json"))),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    // 404 for a missing project before 422 for a bad format.
    state.store.get_project(project_id).await?;
    let name = q.format.as_deref().unwrap_or("jsonl");
    let format = ExportFormat::parse(name).ok_or_else(|| {
        ApiError::invalid(
            "format",
            format!("{name:?} is not one of jsonl, csv, labelstudio"),
        )
    })?;
    let stream = export::start(&state.store, project_id, format).await?;
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
