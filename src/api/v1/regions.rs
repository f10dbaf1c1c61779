//! Regions of a detection or speech project's items: read them (machine
//! and human, with provenance), and record a reviewer's full set of boxes
//! or segments.

use axum::extract::State;
use axum::Json;

use crate::api::auth::Caller;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{parse_json, Body, Ids};
use crate::api::AppState;
use crate::service::regions::{self, ItemRegions, RegionsIn};

/// An item's regions: the machine's boxes or speech segments and the
/// reviewers', with the image size or the recording's duration.
#[utoipa::path(get, path = "/v1/projects/{id}/items/{item}/regions", tag = "review",
    params(("id" = i64, Path, description = "Project id"),
           ("item" = i64, Path, description = "Item id")),
    responses((status = 200, description = "The item's regions", body = ItemRegions),
              (status = 404, body = ErrorBody),
              (status = 422, description = "The project is not a detection or speech project (`wrong_content`): its items have no regions", body = ErrorBody)))]
pub async fn get_regions(
    State(state): State<AppState>,
    Ids(project_id, item_id): Ids,
) -> ApiResult<Json<ItemRegions>> {
    Ok(Json(regions::get(&state, project_id, item_id).await?))
}

/// Record a reviewer's full set of boxes for an image (`box`), or of
/// segments for a recording (`segment`: `[start, end]` in seconds); the
/// item becomes `labeled`. Regions that name a machine region (`id`) keep,
/// move or relabel it; machine regions named by none are deleted; regions
/// without `id` are added. Nothing is written when any region is refused.
/// Sending the same set again changes nothing.
#[utoipa::path(put, path = "/v1/projects/{id}/items/{item}/regions", tag = "review",
    params(("id" = i64, Path, description = "Project id"),
           ("item" = i64, Path, description = "Item id")),
    request_body = RegionsIn,
    responses((status = 200, description = "The item's regions as they are now", body = ItemRegions),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The item has no image size or duration yet (still pending)", body = ErrorBody),
              (status = 413, body = ErrorBody),
              (status = 422, description = "A box outside the image or inverted, a segment outside the recording or inverted, a region of the other kind, or a label not in the project (the message names `regions[i]`); or the project is not a detection or speech project (`wrong_content`)", body = ErrorBody)))]
pub async fn put_regions(
    State(state): State<AppState>,
    caller: Caller,
    Ids(project_id, item_id): Ids,
    Body(body): Body,
) -> ApiResult<Json<ItemRegions>> {
    let annotator = caller.acting_as(None)?;
    let req: RegionsIn = parse_json(&body)?;
    Ok(Json(
        regions::put(&state, project_id, item_id, &req, &annotator).await?,
    ))
}
