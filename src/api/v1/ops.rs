//! Operations: liveness, readiness, Prometheus metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process answers.
    pub status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct StoreHealth {
    pub backend: &'static str,
    pub ok: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub store: StoreHealth,
    /// The loaded models.
    pub models: Vec<String>,
}

/// Readiness: the store answers and models are loaded.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Ready), (status = 503, description = "Not ready", body = Ready)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ping().await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: the store does not answer");
    }
    let models: Vec<String> = state.hub.names().map(str::to_string).collect();
    let ready = store.is_ok() && !models.is_empty();
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        store: StoreHealth {
            backend: state.store.backend(),
            ok: store.is_ok(),
        },
        models,
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let batchers: Vec<(String, u64, u64)> = state
        .hub
        .iter()
        .map(|(name, m)| {
            let s = m.batcher.stats();
            (
                name.clone(),
                s.batches.load(std::sync::atomic::Ordering::Relaxed) as u64,
                s.items.load(std::sync::atomic::Ordering::Relaxed) as u64,
            )
        })
        .collect();
    if let Err(e) = crate::service::projects::publish_guarantees(&state).await {
        tracing::warn!(error = %e, "metrics: could not read the projects' guarantees");
    }
    let text = state.metrics.render(state.hub.queue_depth(), &batchers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", responses(
    (status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    use crate::api::served_doc::{served_document, Served, ServedModel};
    let models = state
        .hub
        .iter()
        .map(|(name, m)| ServedModel {
            name: name.clone(),
            labels: m.labels().to_vec(),
            detect: crate::service::projects::task_of(m) == crate::service::regions::DETECT,
            segments: m.model.is_audio(),
        })
        .collect();
    Json(served_document(&Served {
        models,
        ls_hosts: state.app.labelstudio.settings.ls_hosts.clone(),
        predict_max_items: Some(state.config.predict_max_items),
    }))
}
