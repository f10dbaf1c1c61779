//! Label Studio's ML-backend protocol under `/labelstudio/{project}`: the
//! backend URL given to Label Studio is `http://host:port/labelstudio/{project}`
//! and Label Studio appends `/health`, `/setup`, `/predict`, `/webhook`,
//! `/versions`. This is Label Studio's protocol, not ours, so it stays out
//! of the OpenAPI document (README documents it). Handlers only translate;
//! the use cases are `service::labelstudio`.
//!
//! The door (`service::labelstudio::door`): Label Studio cannot send our
//! bearer tokens, so with token auth on every route needs HTTP Basic
//! credentials, which Label Studio's "Basic Authentication" backend
//! setting sends: the project's own pair (`POST
//! /v1/projects/{id}/labelstudio/credentials`) or the server-wide
//! `ls_basic_auth_*` pair. Without credentials the routes answer 401,
//! unless the server runs with `--no-auth` (loopback only) or the loudly
//! logged `--ls-open` opt-out.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Code};
use super::extract::{parse_json, Body};
use super::AppState;
use crate::service::labelstudio::door::{self, LsCaller};
use crate::service::labelstudio::{self as ls, predict, webhook};
use crate::service::secret::constant_time_eq;

/// The protocol's routes, behind the door: at `/labelstudio/{project}`,
/// and again under `/labelstudio/{project}/key/{key}`, whose key is the
/// project's backend password. Label Studio adds its endpoints to the URL
/// it was given, so a keyed URL authenticates every call it makes,
/// including the webhook it creates on connect, which sends no Basic
/// credentials.
pub fn router(state: AppState) -> Router<AppState> {
    let routes = |base: &str| {
        Router::new()
            .route(base, get(health))
            .route(&format!("{base}/"), get(health))
            .route(&format!("{base}/health"), get(health))
            .route(&format!("{base}/setup"), post(setup))
            .route(&format!("{base}/predict"), post(predict))
            .route(&format!("{base}/webhook"), post(webhook))
            .route(&format!("{base}/versions"), get(versions))
            .route(&format!("{base}/validate"), post(validate))
            .route(
                &format!("{base}/job_status"),
                get(job_status).post(job_status),
            )
    };
    routes("/labelstudio/{project}")
        .merge(routes("/labelstudio/{project}/key/{key}"))
        .layer(middleware::from_fn_with_state(state, door))
}

/// The project of a protocol route, found by the door.
#[derive(Debug, Clone, Copy)]
struct Project(i64);

/// `Authorization: Basic …` as (user, password), if well formed.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The project segment of `/labelstudio/{project}/…`, and the key of
/// `/labelstudio/{project}/key/{key}/…`.
fn project_and_key(req: &Request) -> (String, Option<String>) {
    let mut parts = req.uri().path().split('/').skip(2);
    let project = parts.next().unwrap_or("").to_string();
    let key = match (parts.next(), parts.next()) {
        (Some("key"), Some(k)) => Some(k.to_string()),
        _ => None,
    };
    (project, key)
}

fn refused(why: &'static str) -> Response {
    let mut resp = ApiError::new(Code::Unauthorized, why).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"labelloop\""),
    );
    resp
}

/// Decide who the caller is at the door, or refuse it.
async fn door(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (raw, key) = project_and_key(&req);
    let Ok(project) = raw.parse::<i64>() else {
        return ApiError::not_found(format!("{raw:?} (ids are integers)")).into_response();
    };
    let given = match key {
        Some(k) => Some((None, k)),
        None => basic_credentials(&req).map(|(u, p)| (Some(u), p)),
    };
    let caller = if let Some((user, password)) = given {
        let server_wide = user.as_deref().is_some_and(|user| {
            state.config.ls_basic_auth.as_ref().is_some_and(|(u, p)| {
                constant_time_eq(u.as_bytes(), user.as_bytes())
                    & constant_time_eq(p.as_bytes(), password.as_bytes())
            })
        });
        let ok = server_wide
            || match door::check_credentials(&state.app, project, user.as_deref(), &password).await
            {
                Ok(ok) => ok,
                Err(e) => return ApiError::from(e).into_response(),
            };
        if !ok {
            return refused("these credentials do not open this Label Studio backend; check the backend URL's key, or the user and password in the backend's settings in Label Studio");
        }
        LsCaller::Authenticated
    } else if !state.config.auth && state.config.ls_basic_auth.is_none() {
        // --no-auth (loopback only) and no pair configured: the local user.
        LsCaller::Local
    } else if state.config.ls_open {
        LsCaller::Open
    } else {
        return refused("this Label Studio backend needs the project's credentials: create them with POST /v1/projects/{id}/labelstudio/credentials (admin) and connect Label Studio to the backend URL with its key, or enter them under Basic Authentication in the backend's settings");
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(Project(project));
    next.run(req).await
}

async fn health(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
) -> ApiResult<Json<ls::Health>> {
    Ok(Json(ls::health(&state, project).await?))
}

async fn setup(
    State(state): State<AppState>,
    Extension(caller): Extension<LsCaller>,
    Extension(Project(project)): Extension<Project>,
    Body(body): Body,
) -> ApiResult<Json<ls::SetupOut>> {
    let req: ls::SetupIn = parse_json(&body)?;
    Ok(Json(ls::setup(&state, project, req, caller).await?))
}

async fn predict(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: predict::PredictIn = parse_json(&body)?;
    let predicted = predict::predict(&state.app, project, req).await?;
    Ok(Json(predicted.out()).into_response())
}

async fn webhook(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<webhook::WebhookOut>)> {
    let value: Value = parse_json(&body)?;
    let out = webhook::webhook(&state.app, project, value).await?;
    Ok((StatusCode::OK, Json(out)))
}

async fn versions(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
) -> ApiResult<Json<ls::Versions>> {
    Ok(Json(ls::versions(&state, project).await?))
}

async fn validate(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
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
async fn job_status(
    State(state): State<AppState>,
    Extension(Project(project)): Extension<Project>,
) -> ApiResult<Json<Value>> {
    state.store.get_project(project).await?;
    Ok(Json(json!({"job_status": "completed", "status": "ok"})))
}
