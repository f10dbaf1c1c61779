//! Every error code the service can answer with, in one enum (after
//! meilisearch's `Code`), and the error type the use cases return.
//!
//! Adapters map a [`Code`] to their own protocol (the HTTP status lives in
//! `api::error`), so a use case written once answers the same way through
//! every adapter.

use serde::Serialize;

use crate::store::StoreError;

/// A stable, documented error code: clients match on it, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The body is not valid JSON.
    MalformedJson,
    /// The body is JSON of the wrong shape.
    InvalidBody,
    /// A field or query parameter is out of range or of the wrong type.
    InvalidField,
    /// The body could not be read.
    BadBody,
    /// A multipart body is malformed.
    BadMultipart,
    /// A path parameter is malformed.
    BadPath,
    /// An ingest body holds no items.
    EmptyBatch,
    /// Labels do not match the model's (or the committee's) label set.
    LabelsMismatch,
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// A Label Studio webhook body of a shape labelloop does not know; nothing was stored.
    BadWebhook,
    /// A head needs more human labels than the project has.
    NotEnoughLabels,
    /// Calibrating needs audit labels, and the project has none yet.
    NoAuditLabels,
    /// A `path` item names no file under the data root.
    PathNotFound,
    /// The strategy needs something the project lacks (a committee, embeddings).
    StrategyUnavailable,
    /// A synchronous predict carries more items than allowed.
    TooManyItems,
    /// A label is not in the project's label set.
    UnknownLabel,
    /// No loaded model has this name.
    UnknownModel,
    /// An item's content does not fit the project's model (text vs image).
    WrongContent,
    /// No token, or an unknown one.
    Unauthorized,
    /// The token's role may not do this, or the path is outside the data root.
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// A `Range` header asks for bytes past the end of the content.
    RangeNotSatisfiable,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// A queue is full; retry after the `Retry-After` seconds.
    Busy,
    /// The database or a model is unavailable; retry later.
    Unavailable,
    /// The database's disk is full; nothing was written; retry later.
    StorageFull,
    /// A fault on the server; the message carries a reference for the log.
    Internal,
}

impl Code {
    /// Every code, in declaration order (for the OpenAPI document).
    pub const ALL: [Code; 28] = [
        Code::MalformedJson,
        Code::InvalidBody,
        Code::InvalidField,
        Code::BadBody,
        Code::BadMultipart,
        Code::BadPath,
        Code::EmptyBatch,
        Code::LabelsMismatch,
        Code::MethodNotAllowed,
        Code::BadWebhook,
        Code::NotEnoughLabels,
        Code::NoAuditLabels,
        Code::PathNotFound,
        Code::StrategyUnavailable,
        Code::TooManyItems,
        Code::UnknownLabel,
        Code::UnknownModel,
        Code::WrongContent,
        Code::Unauthorized,
        Code::Forbidden,
        Code::NotFound,
        Code::Conflict,
        Code::RangeNotSatisfiable,
        Code::PayloadTooLarge,
        Code::Busy,
        Code::Unavailable,
        Code::StorageFull,
        Code::Internal,
    ];

    /// The documented name, as sent in `{"error": {"code": …}}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedJson => "malformed_json",
            Code::InvalidBody => "invalid_body",
            Code::InvalidField => "invalid_field",
            Code::BadBody => "bad_body",
            Code::BadMultipart => "bad_multipart",
            Code::BadPath => "bad_path",
            Code::EmptyBatch => "empty_batch",
            Code::LabelsMismatch => "labels_mismatch",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::BadWebhook => "bad_webhook",
            Code::NotEnoughLabels => "not_enough_labels",
            Code::NoAuditLabels => "no_audit_labels",
            Code::PathNotFound => "path_not_found",
            Code::StrategyUnavailable => "strategy_unavailable",
            Code::TooManyItems => "too_many_items",
            Code::UnknownLabel => "unknown_label",
            Code::UnknownModel => "unknown_model",
            Code::WrongContent => "wrong_content",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::RangeNotSatisfiable => "range_not_satisfiable",
            Code::PayloadTooLarge => "payload_too_large",
            Code::Busy => "busy",
            Code::Unavailable => "unavailable",
            Code::StorageFull => "storage_full",
            Code::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a use case can fail with. `Internal` keeps its cause for the log;
/// adapters never show it to a client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub code: Code,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
        }
    }

    /// A 422-class error naming the field that is wrong.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        ServiceError::new(Code::InvalidField, format!("field `{field}`: {why}"))
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ServiceError::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(why: impl Into<String>) -> Self {
        ServiceError::new(Code::Forbidden, why)
    }

    /// A fault whose cause is logged, never sent.
    pub fn internal(cause: impl Into<String>) -> Self {
        ServiceError::new(Code::Internal, cause)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ServiceError::new(
                Code::Unavailable,
                "the database is unavailable; nothing was written, retry later",
            ),
            StoreError::NotFound(what) => ServiceError::not_found(what),
            StoreError::Conflict(m) => ServiceError::new(Code::Conflict, m),
            StoreError::Db(cause) => ServiceError::internal(cause),
            StoreError::Full(_) => ServiceError::new(
                Code::StorageFull,
                "the database's disk is full; nothing was written, retry once space is freed",
            ),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
