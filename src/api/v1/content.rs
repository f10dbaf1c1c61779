//! An item's content (the image or text), for people to look at.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{Id, Query};
use crate::api::AppState;
use crate::service::content;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    /// The project the caller expects the item in: an item of another
    /// project answers 404, like a missing one.
    project: Option<i64>,
}

/// The item's content: the stored image bytes or the file under
/// `--data-root` with its content type, or the text as `text/plain`.
#[utoipa::path(get, path = "/v1/items/{id}/content", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1), ContentQuery),
    responses((status = 200, description = "The content", content(
                (String = "image/png"), (String = "image/jpeg"),
                (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 403, description = "The file is outside the data root (nothing is read)", body = ErrorBody),
              (status = 404, description = "No such item (in this project)", body = ErrorBody)))]
pub async fn item_content(
    State(state): State<AppState>,
    Id(item_id): Id,
    Query(q): Query<ContentQuery>,
) -> ApiResult<Response> {
    let c = content::content(&state, item_id, q.project).await?;
    Ok((
        [
            (header::CONTENT_TYPE, c.content_type),
            // An item's content never changes; the browser may keep it for
            // the tab's life, but no shared cache may (it needs a token).
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
        ],
        c.bytes,
    )
        .into_response())
}
