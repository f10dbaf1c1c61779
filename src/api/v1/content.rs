//! An item's content (the image, text or recording), for people to look
//! at or listen to; a part of it for a `Range` request; a signed link to it
//! for a player that cannot send the token; a recording's waveform peaks.
//!
//! Why signed links: the review page keeps its bearer token in the tab
//! (sessionStorage) and sends it in `Authorization`, which an `<audio src>`
//! cannot do. Fetching the recording with the token into a `blob:` URL
//! would load a one-hour file whole before the first sound; a cookie would
//! make every route reachable by any page the browser visits (cross-site
//! requests carry cookies) unless each write route grew CSRF checks. So the
//! page asks, with its token, for a link to one item
//! (`GET /v1/items/{id}/content-link`): a path signed with HMAC-SHA-256 over
//! the item, the caller's name and an expiry ten minutes ahead, under a key
//! only the server holds (`--media-key`, else random per process). The
//! player then fetches that path itself, with `Range`, so it seeks without
//! downloading the rest. The link grants that one item's bytes, for minutes,
//! to whoever holds it; a changed, forged or spent link is a 403 JSON error.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Id, Query};
use crate::api::AppState;
use crate::service::content::{self, ContentLink, ItemContent, Peaks, DEFAULT_BINS};

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
    let c = content::content(&state, item_id, q.project, range_of(&headers)).await?;
    Ok(respond(c))
}

/// The one `Range` header of a request, if any.
fn range_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::RANGE).and_then(|v| v.to_str().ok())
}

/// The content, 206 with `Content-Range` when it is a part.
fn respond(c: ItemContent) -> Response {
    let (status, content_range) = match c.range {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            Some(format!("bytes {start}-{}/{}", end - 1, c.len)),
        ),
        None => (StatusCode::OK, None),
    };
    let body = c.bytes;
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
    response
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A link to the item's content that needs no token, for ten minutes: for
/// an `<audio>` element, which cannot send one. Ask again when it is spent.
#[utoipa::path(get, path = "/v1/items/{id}/content-link", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1), ContentQuery),
    responses((status = 200, description = "The signed link", body = ContentLink),
              (status = 404, description = "No such item (in this project)", body = ErrorBody)))]
pub async fn content_link(
    State(state): State<AppState>,
    caller: Caller,
    Id(item_id): Id,
    Query(q): Query<ContentQuery>,
) -> ApiResult<Json<ContentLink>> {
    let who = caller.acting_as(None)?;
    let link = content::link(
        &state,
        &state.config.link_key,
        item_id,
        q.project,
        &who.name,
        unix_now(),
    )
    .await?;
    Ok(Json(link))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SignedQuery {
    /// Who the link was made for (as `GET /v1/items/{id}/content-link` wrote it).
    #[param(max_length = 200)]
    user: String,
    /// Unix seconds the link lasts until.
    expires: i64,
    /// The link's signature: 64 hex digits.
    #[param(min_length = 64, max_length = 64)]
    sig: String,
}

/// The item's content through a signed link from
/// `GET /v1/items/{id}/content-link`, with no token: exactly as
/// `GET /v1/items/{id}/content` answers it, `Range` included.
#[utoipa::path(get, path = "/v1/items/{id}/content/signed", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1), SignedQuery,
           ("Range" = Option<String>, Header, description = "One byte range, `bytes=start-end`, `bytes=start-` or `bytes=-suffix`")),
    responses((status = 200, description = "The content", content(
                (String = "image/png"), (String = "image/jpeg"), (String = "audio/wav"),
                (String = "audio/flac"), (String = "audio/ogg"), (String = "audio/mpeg"),
                (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 206, description = "The range asked for, with `Content-Range`", content(
                (String = "image/png"), (String = "image/jpeg"), (String = "audio/wav"),
                (String = "audio/flac"), (String = "audio/ogg"), (String = "audio/mpeg"),
                (String = "text/plain"), (String = "application/octet-stream"))),
              (status = 403, description = "The signature does not match (a changed or forged link) or the link has expired; or the file is outside the data root", body = ErrorBody),
              (status = 404, description = "No such item", body = ErrorBody),
              (status = 416, description = "The range starts past the end of the content (`range_not_satisfiable`)", body = ErrorBody)))]
pub async fn signed_content(
    State(state): State<AppState>,
    Id(item_id): Id,
    Query(q): Query<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state
        .config
        .link_key
        .check(item_id, &q.user, q.expires, &q.sig, unix_now())?;
    let c = content::content(&state, item_id, None, range_of(&headers)).await?;
    Ok(respond(c))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeaksQuery {
    /// Bins across the recording, 1..=8192 (default 2000).
    #[param(minimum = 1, maximum = 8192)]
    bins: Option<i64>,
    /// The project the caller expects the item in: an item of another
    /// project answers 404, like a missing one.
    project: Option<i64>,
}

/// A recording's waveform in `bins` bins: per bin the lowest and highest
/// sample of the file mixed to mono, computed on the server so a long
/// recording never travels whole to draw it.
#[utoipa::path(get, path = "/v1/items/{id}/peaks", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1), PeaksQuery),
    responses((status = 200, description = "The peaks", body = Peaks),
              (status = 403, description = "The file is outside the data root (nothing is read)", body = ErrorBody),
              (status = 404, description = "No such item (in this project)", body = ErrorBody),
              (status = 422, description = "The item is not a speech project's recording, or does not decode, or is longer than `--max-audio-seconds` (`wrong_content`); or `bins` is out of range (`invalid_field`)", body = ErrorBody)))]
pub async fn peaks(
    State(state): State<AppState>,
    Id(item_id): Id,
    Query(q): Query<PeaksQuery>,
) -> ApiResult<Json<Peaks>> {
    let bins = q.bins.unwrap_or(DEFAULT_BINS as i64);
    let bins = usize::try_from(bins)
        .map_err(|_| ApiError::invalid("bins", format!("{bins} is not between 1 and 8192")))?;
    Ok(Json(
        content::peaks(&state, item_id, q.project, bins).await?,
    ))
}
