//! The HTTP face of [`ServiceError`]: every [`Code`] mapped to its status in
//! one place, so handlers use `?` everywhere and every error is JSON:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! Internal faults never show their cause: the response carries a fixed
//! message, and the `track` middleware logs the cause with the request's id
//! and puts that id in the message, so a user can quote it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use crate::service::error::Code;
use crate::service::error::ServiceError;
use crate::store::StoreError;

/// An error answer. Build it from a [`ServiceError`] or with the helpers.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

/// The status each code is answered with.
pub fn status(code: Code) -> StatusCode {
    use Code::*;
    match code {
        MalformedJson | BadBody | BadMultipart | BadPath | BadWebhook => StatusCode::BAD_REQUEST,
        InvalidBody | InvalidField | EmptyBatch | LabelsMismatch | NotEnoughLabels
        | NoAuditLabels | PathNotFound | StrategyUnavailable | TooManyItems | UnknownLabel
        | UnknownModel | WrongContent => StatusCode::UNPROCESSABLE_ENTITY,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        Conflict => StatusCode::CONFLICT,
        RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Busy => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: Code, message: impl Into<String>) -> Self {
        ApiError::new(code, message)
    }

    pub fn bad_request(code: Code, message: impl Into<String>) -> Self {
        ApiError::new(code, message)
    }

    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        ServiceError::invalid(field, why).into()
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            Code::Unauthorized,
            "missing or unknown API token; send `Authorization: Bearer <token>` (create one with `labelloop tokens create`)",
        )
    }

    pub fn forbidden(why: impl Into<String>) -> Self {
        ApiError::new(Code::Forbidden, why)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes; split the batch or raise max_body_bytes"),
        )
    }

    pub fn busy(why: impl Into<String>) -> Self {
        ApiError::new(Code::Busy, why)
    }

    pub fn unavailable(why: impl Into<String>) -> Self {
        ApiError::new(Code::Unavailable, why)
    }

    /// A fault: `cause` goes to the log only.
    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError::new(Code::Internal, cause)
    }

    pub fn status(&self) -> StatusCode {
        status(self.code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// The JSON error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// One of the documented codes.
    #[schema(schema_with = error_code_ref)]
    pub code: &'static str,
    pub message: String,
}

/// `ErrorDetail.code` is one of `components.schemas.ErrorCode` (built from
/// [`Code::ALL`] by `api::openapi_document`).
fn error_code_ref() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name("ErrorCode")
}

/// The cause of an internal error, handed to the `track` middleware in the
/// response's extensions, which logs it with the request id.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// The message clients see for an internal error.
pub fn internal_message(request_id: &str) -> String {
    format!("internal error (reference {request_id}); the cause is in the server log")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let internal = self.code == Code::Internal;
        let message = if internal {
            internal_message("unknown")
        } else {
            self.message.clone()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if internal {
            resp.extensions_mut().insert(InternalCause(self.message));
        } else if status.is_server_error() {
            tracing::warn!(code = %self.code, error = %self.message, "request failed");
        }
        if matches!(
            self.code,
            Code::Busy | Code::Unavailable | Code::StorageFull
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.code == Code::Unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
