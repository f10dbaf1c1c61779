//! The HTTP API (axum). It only translates requests: validation and JSON in,
//! calls into the store and the service layer, JSON out. It knows nothing of
//! ONNX Runtime or SQL.

pub mod auth;
pub mod error;
pub mod extract;
mod handlers;
pub mod ingest_body;
pub mod openapi;
mod review;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use tokio::sync::Notify;

use crate::service::hub::ModelHub;
use crate::service::metrics::Metrics;
use crate::store::Store;
use auth::Access;
use error::ApiError;
use extract::BodyLimit;

/// Everything a handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Arc<ModelHub>,
    pub metrics: Arc<Metrics>,
    pub wake_workers: Arc<Notify>,
    pub config: Arc<ApiConfig>,
}

/// The settings handlers need.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub auth: bool,
    pub max_body_bytes: usize,
    pub predict_max_items: usize,
    /// Canonical data root; `path` items must resolve inside it.
    pub data_root: Option<PathBuf>,
    pub default_threshold: f64,
}

/// One documented route; the OpenAPI document is built from these, so it
/// cannot list a route that is not served, nor miss one that is.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
}

struct Routes {
    router: Router<AppState>,
    docs: Vec<RouteDoc>,
}

impl Routes {
    fn add(mut self, doc: RouteDoc, handler: MethodRouter<AppState>) -> Self {
        let access = doc.access;
        self.router = self.router.route(
            doc.path,
            handler.layer(middleware::from_fn(move |req: Request, next: Next| {
                auth::require(access, req, next)
            })),
        );
        self.docs.push(doc);
        self
    }
}

macro_rules! doc {
    ($method:literal, $path:literal, $access:ident, $summary:literal) => {
        RouteDoc {
            method: $method,
            path: $path,
            summary: $summary,
            access: Access::$access,
        }
    };
}

/// The documented routes, in the order the OpenAPI document lists them.
pub fn route_docs() -> Vec<RouteDoc> {
    build_routes().docs
}

fn build_routes() -> Routes {
    use handlers as h;
    Routes {
        router: Router::new(),
        docs: Vec::new(),
    }
    .add(
        doc!("get", "/healthz", Public, "Liveness: the process is up."),
        get(h::healthz),
    )
    .add(
        doc!(
            "get",
            "/readyz",
            Public,
            "Readiness: the store answers and models are loaded."
        ),
        get(h::readyz),
    )
    .add(
        doc!("get", "/metrics", Public, "Prometheus metrics."),
        get(h::metrics),
    )
    .add(
        doc!("get", "/v1/openapi.json", Public, "This document."),
        get(h::openapi),
    )
    .add(
        doc!("post", "/v1/projects", Admin, "Create a project."),
        post(h::create_project),
    )
    .add(
        doc!("get", "/v1/projects", Read, "List projects."),
        get(h::list_projects),
    )
    .add(
        doc!("get", "/v1/projects/{id}", Read, "Get a project."),
        get(h::get_project),
    )
    .add(
        doc!(
            "post",
            "/v1/projects/{id}/items",
            Admin,
            "Ingest items (JSON array, NDJSON or multipart); answers 202 with a pre-labeling job."
        ),
        post(h::ingest),
    )
    .add(
        doc!(
            "get",
            "/v1/projects/{id}/items",
            Read,
            "List items with keyset paging (status, cursor, limit)."
        ),
        get(h::list_items),
    )
    .add(
        doc!(
            "get",
            "/v1/projects/{id}/export",
            Read,
            "Export labels as jsonl, csv or labelstudio (streamed)."
        ),
        get(h::export),
    )
    .add(
        doc!(
            "get",
            "/v1/items/{id}",
            Read,
            "Get one item with its prediction and annotations."
        ),
        get(h::get_item),
    )
    .add(
        doc!(
            "post",
            "/v1/items/{id}/annotations",
            Annotate,
            "Record a human label."
        ),
        post(h::annotate),
    )
    .add(
        doc!(
            "get",
            "/v1/jobs/{id}",
            Read,
            "Job state, progress, errors and rate."
        ),
        get(h::get_job),
    )
    .add(
        doc!(
            "post",
            "/v1/predict",
            Predict,
            "Synchronous, stateless pre-labeling of a small batch."
        ),
        post(h::predict),
    )
    .add(
        doc!("get", "/v1/projects/{id}/review", Annotate, "Lease the next items for an annotator, ranked by a strategy (strategy, limit, annotator)."),
        get(review::review),
    )
    .add(doc!("post", "/v1/projects/{id}/review/release", Annotate, "Give leased items back to the queue."), post(review::release))
    .add(doc!("put", "/v1/projects/{id}/settings", Admin, "Set tiers, expert confirmation, automatic retraining."), put(review::put_settings))
    .add(doc!("post", "/v1/projects/{id}/train", Admin, "Train a classifier head on the human labels; re-predicts in a background job."), post(review::train))
    .add(doc!("put", "/v1/annotators/{name}", Admin, "Set an annotator's tier."), put(review::set_tier))
}

/// The full router with auth, body limits, metrics and JSON fallbacks.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    build_routes()
        .router
        .fallback(h_fallback)
        .method_not_allowed_fallback(h_method_not_allowed)
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

async fn h_fallback() -> ApiError {
    ApiError::NotFound("route (see /v1/openapi.json for the API)".into())
}

async fn h_method_not_allowed() -> ApiError {
    ApiError::bad_request(
        "method_not_allowed",
        "this method is not allowed on this route; see /v1/openapi.json",
    )
}

/// Count requests and latency by route template.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.request(
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
