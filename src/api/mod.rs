//! The HTTP API (axum). It only translates: typed requests in, calls into
//! the service's use cases, typed responses out. It knows nothing of ONNX
//! Runtime or SQL.
//!
//! Routes are registered through `utoipa-axum`, so the OpenAPI document is
//! built from the very routes the router serves, with each route's request
//! and response schemas, and cannot list a route that is not served.

pub mod auth;
pub mod error;
pub mod error_doc;
pub mod extract;
pub mod ingest_body;
pub mod labelstudio;
pub mod served_doc;
pub mod ui;
pub mod v1;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::service::app::App;
use crate::service::config::ServeConfig;
use crate::service::content::LinkKey;
use auth::Access;
use error::{internal_message, ApiError, Code, ErrorBody, InternalCause};
use extract::BodyLimit;

/// Everything a handler may use: the service, and the API's own settings.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub config: Arc<ApiConfig>,
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// The settings only the HTTP adapter needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub auth: bool,
    pub max_body_bytes: usize,
    pub predict_max_items: usize,
    /// HTTP Basic credentials for the Label Studio protocol routes, if set.
    pub ls_basic_auth: Option<(String, String)>,
    /// Let callers without credentials through the Label Studio door.
    pub ls_open: bool,
    /// Signs the links an `<audio>` element plays an item from (see
    /// `v1::content::content_link`).
    pub link_key: LinkKey,
}

impl ApiConfig {
    pub fn from_serve(config: &ServeConfig) -> Result<ApiConfig, String> {
        Ok(ApiConfig {
            auth: !config.no_auth,
            max_body_bytes: config.max_body_bytes,
            predict_max_items: config.predict_max_items,
            ls_basic_auth: config
                .ls_basic_auth_user
                .clone()
                .zip(config.ls_basic_auth_password.clone()),
            ls_open: config.ls_open,
            link_key: LinkKey::new(config.media_key.as_deref())?,
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "labelloop",
        description = "Model-assisted auto-labeling: pre-label with ONNX models, route uncertain items to people, learn from corrections. Errors are `{\"error\": {\"code\", \"message\"}}`; the codes are listed in `components.schemas.ErrorCode`."
    ),
    // `Stored` and `BoxStored` are the calibration view's flattened fit (`fit_schema`).
    components(schemas(
        ErrorBody,
        crate::service::calibration::Stored,
        crate::service::box_calibration::BoxStored
    ))
)]
struct ApiDoc;

/// One route with the roles that may call it.
fn guarded(access: Access, route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (schemas, mut paths, method_router) = route;
    for item in paths.paths.values_mut() {
        for (_, op) in error_doc::operations(item) {
            if access != Access::Public {
                op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let roles = access.roles().join(", ");
                let text = op.description.take().unwrap_or_default();
                op.description = Some(format!("{text}\n\nRoles: {roles}.").trim().to_string());
            }
        }
    }
    (schemas, paths, method_router).layer(middleware::from_fn(move |req: Request, next: Next| {
        auth::require(access, req, next)
    }))
}

/// Every route, with its access, in the order the document lists them.
fn routes() -> OpenApiRouter<AppState> {
    use v1::*;
    use Access::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(guarded(Public, routes!(ops::healthz)))
        .routes(guarded(Public, routes!(ops::readyz)))
        .routes(guarded(Public, routes!(ops::metrics)))
        .routes(guarded(Public, routes!(ops::openapi)))
        .routes(guarded(Admin, routes!(projects::create_project)))
        .routes(guarded(Read, routes!(projects::list_projects)))
        .routes(guarded(Read, routes!(projects::get_project)))
        .routes(guarded(Admin, routes!(projects::put_settings)))
        .routes(guarded(Admin, routes!(items::ingest)))
        .routes(guarded(Read, routes!(items::list_items)))
        .routes(guarded(Read, routes!(items::get_item)))
        .routes(guarded(Annotate, routes!(annotations::annotate)))
        .routes(guarded(Read, routes!(regions::get_regions)))
        .routes(guarded(Annotate, routes!(regions::put_regions)))
        .routes(guarded(Read, routes!(export::export)))
        .routes(guarded(Read, routes!(jobs::get_job)))
        .routes(guarded(Predict, routes!(predict::predict)))
        .routes(guarded(Annotate, routes!(review::review)))
        .routes(guarded(Annotate, routes!(review::release)))
        .routes(guarded(Admin, routes!(review::train)))
        .routes(guarded(Admin, routes!(review::set_tier)))
        .routes(guarded(Admin, routes!(calibration::calibrate)))
        .routes(guarded(Read, routes!(calibration::get_calibration)))
        .routes(guarded(Read, routes!(calibration::agreement)))
        .routes(guarded(Read, routes!(content::item_content)))
        .routes(guarded(Read, routes!(content::content_link)))
        // The signature is the credential: the handler checks it.
        .routes(guarded(Public, routes!(content::signed_content)))
        .routes(guarded(Read, routes!(content::peaks)))
        .routes(guarded(Annotate, routes!(annotations::delete_annotation)))
        .routes(guarded(Read, routes!(progress::progress)))
        .routes(guarded(Admin, routes!(screening::screen)))
        .routes(guarded(Read, routes!(screening::get_screening)))
        .routes(guarded(Read, routes!(screening::issues)))
        .routes(guarded(
            Annotate,
            routes!(screening::verdict, screening::undo_verdict),
        ))
        .routes(guarded(Read, routes!(screening::item_screening)))
        // Any valid token, predictor included: the handler answers 401 itself.
        .routes(guarded(Public, routes!(me::me)))
        .routes(guarded(Read, routes!(me::strategies)))
        .routes(guarded(Admin, routes!(labelstudio_sync::sync)))
        .routes(guarded(
            Admin,
            routes!(labelstudio_credentials::credentials),
        ))
}

/// The OpenAPI 3.1 document of the served routes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.schemas.insert(
        "ErrorCode".to_string(),
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Code::ALL.map(Code::as_str)))
            .description(Some("Every error code the API answers with."))
            .into(),
    );
    // The errors the shared layers answer, on every operation (one place).
    error_doc::document_errors(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The full router with auth, body limits, request ids, metrics and JSON fallbacks.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (router, _) = routes().split_for_parts();
    router
        .merge(ui::routes())
        .merge(labelstudio::router(state.clone()))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serve until SIGINT or SIGTERM, then drain the requests in flight.
pub async fn serve(
    app: Arc<App>,
    config: &ServeConfig,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let state = AppState {
        app,
        config: Arc::new(ApiConfig::from_serve(config).map_err(std::io::Error::other)?),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested: draining requests and running batches");
}

async fn fallback() -> ApiError {
    ApiError::not_found("route (see /v1/openapi.json for the API)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this method is not allowed on this route; see /v1/openapi.json",
    )
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Give every request an id (answered in `x-request-id`), count requests and
/// latency by route template, and log internal errors with their cause and
/// id while the client sees only the id.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let id = format!(
        "{:x}-{}",
        std::process::id(),
        REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let start = Instant::now();
    let mut resp = hide_internal_cause(next.run(req).await, &id, &route);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    state.metrics.request(
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// An internal error's cause goes to the log with the request id; the
/// client gets a fixed message carrying only that id.
fn hide_internal_cause(mut resp: Response, id: &str, route: &str) -> Response {
    let Some(InternalCause(cause)) = resp.extensions_mut().remove::<InternalCause>() else {
        return resp;
    };
    tracing::error!(request_id = %id, route = %route, %cause, "internal error");
    let body = ErrorBody {
        error: error::ErrorDetail {
            code: Code::Internal.as_str(),
            message: internal_message(id),
        },
    };
    (resp.status(), axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_never_show_their_cause() {
        let cause = "error returned from database: no such table: itemz (SELECT * FROM itemz)";
        let resp = hide_internal_cause(ApiError::internal(cause).into_response(), "ab-12", "/x");
        assert_eq!(resp.status(), 500);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("ab-12"), "{message}");
        assert!(
            !message.contains("itemz") && !message.contains("SELECT"),
            "{message}"
        );
    }

    #[test]
    fn the_document_lists_every_route_with_schemas() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 17, "{}", paths.len());
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let ok = responses
                    .iter()
                    .find(|(code, _)| code.starts_with('2'))
                    .unwrap_or_else(|| panic!("{method} {path} has no 2xx response"));
                assert!(
                    ok.1.get("content").is_some(),
                    "{method} {path}: no response schema"
                );
                if method == "post" || method == "put" {
                    let needs_body = !path.ends_with("/train")
                        && !path.ends_with("/calibrate")
                        && !path.ends_with("/credentials");
                    assert_eq!(
                        op.get("requestBody").is_some(),
                        needs_body,
                        "{method} {path}"
                    );
                }
            }
        }
        let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), Code::ALL.len());
    }

    /// The shared layers' errors are on every operation, from one place:
    /// a route registered without any error response still documents them.
    #[test]
    fn every_operation_documents_the_shared_errors() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let mut want = vec!["500", "503"];
                if op.get("security").is_some() {
                    want.extend(["401", "403", "507"]);
                }
                if path.contains('{') {
                    want.extend(["400", "404"]);
                }
                if op.get("requestBody").is_some() {
                    want.extend(["400", "413", "422"]);
                }
                for status in want {
                    let r = responses
                        .get(status)
                        .unwrap_or_else(|| panic!("{method} {path} lacks {status}"));
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            r["content"]["application/json"]["schema"]["$ref"]
                                .as_str()
                                .is_some_and(|s| s.ends_with("/ErrorBody"))
                                || path == "/readyz",
                            "{method} {path} {status}: not the error body"
                        );
                    }
                }
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }
}
