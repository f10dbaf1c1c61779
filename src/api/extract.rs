//! Extractors whose rejections are our JSON errors, not axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The raw body, within the configured size limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(2 * 1024 * 1024);
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge { limit })
            }
            Err(e) => Err(ApiError::bad_request("bad_body", e.body_text())),
        }
    }
}

/// The limit in force, put in request extensions by the router.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parse JSON, naming the field that is wrong: malformed JSON is 400,
/// well-formed JSON of the wrong shape is 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("malformed_json", format!("malformed JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::unprocessable("invalid_body", inner.to_string())
        } else {
            ApiError::unprocessable("invalid_field", format!("field `{path}`: {inner}"))
        }
    })
}

/// A numeric id from the path, as 404 (not 400) when it cannot exist.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
        raw.parse::<i64>()
            .map(Id)
            .map_err(|_| ApiError::NotFound(format!("{:?} (ids are integers)", raw)))
    }
}
