//! An item's content (the image, text or recording), for people to look
//! at or listen to; a part of it for a `Range` request.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
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
/// `--data-root` (an image or a recording) with its content type, or the
/// text as `text/plain`. A single `Range: bytes=…` is answered 206 with
/// that part (`Content-Range`), so a player can seek in a long recording;
/// other `Range` forms are ignored (200, the whole content).
#[utoipa::path(get, path = "/v1/items/{id}/content", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1), ContentQuery,
           ("Range" = Option<String>, Header, description = "One byte range, `bytes=start-end`, `bytes=start-` or `bytes=-suffix`")),
    responses((status = 200, description = "The content", content(
                (String = "image/png"), (String = "image/jpeg"), (String = "audio/wav"),
                (String = "audio/flac"), (String = "audio/ogg"), (String = "audio/mpeg"),
                (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 206, description = "The range asked for, with `Content-Range`", content(
                (String = "image/png"), (String = "image/jpeg"), (String = "audio/wav"),
                (String = "audio/flac"), (String = "audio/ogg"), (String = "audio/mpeg"),
                (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 403, description = "The file is outside the data root (nothing is read)", body = ErrorBody),
              (status = 404, description = "No such item (in this project)", body = ErrorBody),
              (status = 416, description = "The range starts past the end of the content (`range_not_satisfiable`)", body = ErrorBody)))]
pub async fn item_content(
    State(state): State<AppState>,
    Id(item_id): Id,
    Query(q): Query<ContentQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = content::content(&state, item_id, q.project).await?;
    let len = c.bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let part = content::byte_range(range.as_deref(), len)?;
    let (status, body, content_range) = match part {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            c.bytes[start as usize..end as usize].to_vec(),
            Some(format!("bytes {start}-{}/{len}", end - 1)),
        ),
        None => (StatusCode::OK, c.bytes, None),
    };
    let mut response = (
        status,
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
            (header::ACCEPT_RANGES, "bytes"),
        ],
        body,
    )
        .into_response();
    if let Some(v) = content_range.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}
