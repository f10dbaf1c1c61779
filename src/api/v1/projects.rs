//! Projects: create, list, read, settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ApiResult, Code, ErrorBody};
use crate::api::extract::{parse_object, Body, Id};
use crate::api::AppState;
use crate::service::projects::{self, CreateProject};
use crate::service::review;
use crate::store::{Project, ProjectSettings};

/// Create a project.
#[utoipa::path(post, path = "/v1/projects", tag = "projects",
    request_body(content = CreateProject, example = json!({"name": "shirts", "model": "fashion-mnist-cnn"})),
    responses((status = 201, description = "The project", body = Project),
              (status = 422, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let req: CreateProject = parse_object(&body)?;
    let project = projects::create(&state, req).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

#[derive(Serialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// List projects.
#[utoipa::path(get, path = "/v1/projects", tag = "projects",
    responses((status = 200, body = ProjectList)))]
pub async fn list_projects(State(state): State<AppState>) -> ApiResult<Json<ProjectList>> {
    Ok(Json(ProjectList {
        projects: state.store.list_projects().await?,
    }))
}

/// Get a project.
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 200, description = "The project", body = Project),
              (status = 404, body = ErrorBody)))]
pub async fn get_project(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Project>> {
    Ok(Json(state.store.get_project(id).await?))
}

/// Set tiers, expert confirmation, automatic retraining and the review lease.
#[utoipa::path(put, path = "/v1/projects/{id}/settings", tag = "projects",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    request_body(content = ProjectSettings, description = "Replaces every setting; train_every: 0..=1000000; review_lease_secs: 1..=86400",
        example = json!({"train_every": 50, "review_lease_secs": 600, "calibrate_every": 0})),
    responses((status = 200, description = "The project", body = Project),
              (status = 422, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    Id(project_id): Id,
    Body(body): Body,
) -> ApiResult<Json<Project>> {
    // serde reads a struct from an array too, and `[]` would then reset
    // every setting to its default: settings are an object, or nothing.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            Code::InvalidBody,
            "the settings must be a JSON object such as {\"train_every\": 50}",
        ));
    }
    let settings: ProjectSettings = parse_object(&body)?;
    Ok(Json(
        review::update_settings(&state, project_id, &settings).await?,
    ))
}
