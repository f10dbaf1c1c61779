//! Label Studio's ML-backend protocol under `/labelstudio/{project}`: the
//! backend URL given to Label Studio is `http://host:port/labelstudio/{project}`
//! and Label Studio appends `/health`, `/setup`, `/predict`, `/webhook`,
//! `/versions`. This is Label Studio's protocol, not ours, so it stays out
//! of the OpenAPI document (README documents it). Handlers only translate;
//! the use cases are `service::labelstudio`.
//!
//! Label Studio cannot send our bearer tokens; the routes may instead be
//! protected by HTTP Basic auth (`ls_basic_auth_user` / `_password`), which
//! Label Studio's "Basic Authentication" backend setting sends.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Code};
use super::extract::{parse_json, Body, Id};
use super::AppState;
use crate::service::labelstudio::{self as ls, predict, webhook};

/// The protocol's routes, behind the optional Basic auth.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/labelstudio/{project}", get(health))
        .route("/labelstudio/{project}/", get(health))
        .route("/labelstudio/{project}/health", get(health))
        .route("/labelstudio/{project}/setup", post(setup))
        .route("/labelstudio/{project}/predict", post(predict))
        .route("/labelstudio/{project}/webhook", post(webhook))
        .route("/labelstudio/{project}/versions", get(versions))
        .route("/labelstudio/{project}/validate", post(validate))
        .route(
            "/labelstudio/{project}/job_status",
            get(job_status).post(job_status),
        )
        .layer(middleware::from_fn_with_state(state, basic_auth))
}

/// When Basic credentials are configured, every protocol route needs them.
async fn basic_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some((user, password)) = &state.config.ls_basic_auth else {
        return next.run(req).await;
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        Code::Unauthorized,
        "this Label Studio backend needs HTTP Basic auth; set it in the backend's settings in Label Studio",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"labelloop\""),
    );
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<AppState>, Id(project): Id) -> ApiResult<Json<ls::Health>> {
    Ok(Json(ls::health(&state, project).await?))
}

async fn setup(
    State(state): State<AppState>,
    Id(project): Id,
    Body(body): Body,
) -> ApiResult<Json<ls::SetupOut>> {
    let req: ls::SetupIn = parse_json(&body)?;
    Ok(Json(ls::setup(&state, project, req).await?))
}

async fn predict(
    State(state): State<AppState>,
    Id(project): Id,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: predict::PredictIn = parse_json(&body)?;
    let predicted = predict::predict(&state.app, project, req).await?;
    Ok(Json(predicted.out()).into_response())
}

async fn webhook(
    State(state): State<AppState>,
    Id(project): Id,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<webhook::WebhookOut>)> {
    let value: Value = parse_json(&body)?;
    let out = webhook::webhook(&state.app, project, &value).await?;
    Ok((StatusCode::OK, Json(out)))
}

async fn versions(State(state): State<AppState>, Id(project): Id) -> ApiResult<Json<ls::Versions>> {
    Ok(Json(ls::versions(&state, project).await?))
}

async fn validate(
    State(state): State<AppState>,
    Id(project): Id,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let req: Value = parse_json(&body)?;
    let config = req
        .get("config")
        .or_else(|| req.get("label_config"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("config", "the labeling config (a string) is missing"))?;
    ls::validate(&state, project, config).await?;
    Ok(Json(json!({"status": "ok"})))
}

/// Training runs as a job inside labelloop; Label Studio only asks whether
/// the backend is busy.
async fn job_status(State(state): State<AppState>, Id(project): Id) -> ApiResult<Json<Value>> {
    state.store.get_project(project).await?;
    Ok(Json(json!({"job_status": "completed", "status": "ok"})))
}
