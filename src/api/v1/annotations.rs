//! Annotations: a human label on an item, recorded as the caller, and
//! taking one back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{parse_object, Body, Id};
use crate::api::AppState;
use crate::service::annotations::{self, Deleted};
use crate::service::review::{self, Annotated};

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
    params(("id" = i64, Path, description = "Item id", example = 1)),
    request_body(content = AnnotationIn, examples(
        ("image" = (summary = "An item of a Fashion-MNIST project", value = json!({"label": "Trouser"}))),
        ("text" = (summary = "An item of a ham/spam project", value = json!({"label": "spam"}))))),
    responses((status = 201, description = "The item, with the annotation, and the annotation's id", body = Annotated),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The item was rejected as an outlier (a screening verdict): undo the verdict first (`conflict`)", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn annotate(
    State(state): State<AppState>,
    caller: Caller,
    Id(item_id): Id,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Annotated>)> {
    let req: AnnotationIn = parse_object(&body)?;
    let annotator = caller.acting_as(req.annotator.as_deref())?;
    let done = review::record(&state, item_id, &req.label, &annotator).await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// Delete an annotation (undo). With no annotation left the item waits for
/// review again, leased to the author.
#[utoipa::path(delete, path = "/v1/annotations/{id}", tag = "review",
    params(("id" = i64, Path, description = "Annotation id (`annotation_id` of the annotate answer)", example = 1)),
    responses((status = 200, description = "Deleted; the item as it is now", body = Deleted),
              (status = 403, description = "Neither the author nor an admin", body = ErrorBody),
              (status = 404, description = "No such annotation (or already deleted)", body = ErrorBody)))]
pub async fn delete_annotation(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> ApiResult<Json<Deleted>> {
    let me = caller.acting_as(None)?;
    let admin = caller.role() == Some(Role::Admin);
    Ok(Json(
        annotations::delete(&state, id, &me.name, admin).await?,
    ))
}
