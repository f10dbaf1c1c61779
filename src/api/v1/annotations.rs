//! Annotations: a human label on an item, recorded as the caller.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::auth::Caller;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{parse_json, Body, Id};
use crate::api::AppState;
use crate::service::review;
use crate::store::ItemRecord;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotationIn {
    /// One of the project's labels.
    label: String,
    /// Who labeled it. Omit it: the token's name is used. Only an admin may
    /// name someone else.
    annotator: Option<String>,
}

/// Record a human label.
#[utoipa::path(post, path = "/v1/items/{id}/annotations", tag = "review",
    params(("id" = i64, Path, description = "Item id")),
    request_body = AnnotationIn,
    responses((status = 201, description = "The item, with the annotation", body = ItemRecord),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn annotate(
    State(state): State<AppState>,
    caller: Caller,
    Id(item_id): Id,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<ItemRecord>)> {
    let req: AnnotationIn = parse_json(&body)?;
    let annotator = caller.acting_as(req.annotator.as_deref())?;
    let item = review::annotate(&state, item_id, &req.label, &annotator).await?;
    Ok((StatusCode::CREATED, Json(item)))
}
