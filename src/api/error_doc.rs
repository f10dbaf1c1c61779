//! The error answers of every operation, documented from one place.
//!
//! Handlers document their successes (and any error only they produce); the
//! errors that the shared layers produce are added here, to every operation
//! of the document, from what the operation is: each layer contributes the
//! [`Code`]s it can answer with, and [`status`] groups them into responses.
//! A new route therefore cannot forget them:
//!
//! | the operation… | layer | codes |
//! |---|---|---|
//! | any | `track` (a fault), `auth::authenticate` (the token lookup reaches the store) | `internal`, `unavailable` |
//! | needs a token (`security`) | `auth::require`, the store behind every use case | `unauthorized`, `forbidden`, `storage_full` |
//! | writes (POST, PUT, DELETE) with a token | the store's unique keys | `conflict` |
//! | has a path parameter | `extract::Id`, `extract::Path` | `bad_path`, `not_found` |
//! | has query parameters | `extract::Query` | `invalid_field` |
//! | has a body | `extract::Body`, `extract::parse_json` | `malformed_json`, `bad_body`, `payload_too_large`, `invalid_body`, `invalid_field` |
//! | takes multipart | `items::ingest` | `bad_multipart` |
//!
//! Refusals that depend on a resource's state rather than on the request
//! (`not_enough_labels` and `no_audit_labels`: the project lacks labels;
//! `wrong_content`: the project's model takes the other kind of content, or
//! has no regions; `path_not_found`: no such file under the data root;
//! `unknown_label`: not one of the project's labels) are 422 like every
//! other refusal of a body's meaning, and each operation that answers one
//! says so in its own 422 description. The state of a resource shows as 409
//! only where it is transient (`conflict`: a unique key taken meanwhile, an
//! item still pending).
//!
//! Every error response has the [`super::error::ErrorBody`] schema; those
//! with `Retry-After` (429, 503, 507) and `WWW-Authenticate` (401) document
//! the header. 405 is the router's (`method_not_allowed`), for methods an
//! operation does not have, so no operation lists it.

use std::collections::BTreeMap;

use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn, PathItem};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
    Type,
};

use super::error::{status, Code};

/// Any operation: a fault, or the store gone during the token lookup.
const ANY: &[Code] = &[Code::Internal, Code::Unavailable];
/// Operations that need a token, and reach the store through a use case.
const TOKEN: &[Code] = &[Code::Unauthorized, Code::Forbidden, Code::StorageFull];
/// Writes behind a token: a unique key taken meanwhile.
const WRITE: &[Code] = &[Code::Conflict];
/// A path parameter: malformed, or naming nothing.
const PATH: &[Code] = &[Code::BadPath, Code::NotFound];
/// Query parameters of the wrong type or out of range.
const QUERY: &[Code] = &[Code::InvalidField];
/// A body: unreadable, too large, not JSON, of the wrong shape.
const BODY: &[Code] = &[
    Code::MalformedJson,
    Code::BadBody,
    Code::PayloadTooLarge,
    Code::InvalidBody,
    Code::InvalidField,
];
/// A multipart body.
const MULTIPART: &[Code] = &[Code::BadMultipart];

/// The codes the shared layers can answer an operation with.
pub fn shared_codes(method: &HttpMethod, op: &Operation) -> Vec<Code> {
    let mut codes: Vec<Code> = ANY.to_vec();
    let token = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if token {
        codes.extend(TOKEN);
        if matches!(
            method,
            HttpMethod::Post | HttpMethod::Put | HttpMethod::Delete
        ) {
            codes.extend(WRITE);
        }
    }
    let params = op.parameters.as_deref().unwrap_or_default();
    if params.iter().any(|p| p.parameter_in == ParameterIn::Path) {
        codes.extend(PATH);
    }
    if params.iter().any(|p| p.parameter_in == ParameterIn::Query) {
        codes.extend(QUERY);
    }
    if let Some(body) = &op.request_body {
        codes.extend(BODY);
        if body.content.keys().any(|k| k.starts_with("multipart/")) {
            codes.extend(MULTIPART);
        }
    }
    codes
}

/// Add the shared error responses to every operation of `doc`.
pub fn document_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for (method, op) in operations(item) {
            let codes = shared_codes(&method, op);
            add_responses(op, &codes);
        }
    }
}

/// Every operation of a path item with its method.
pub fn operations(item: &mut PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Group `codes` by status and add (or complete) one response per status.
fn add_responses(op: &mut Operation, codes: &[Code]) {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for &code in codes {
        let names = by_status.entry(status(code).as_u16()).or_default();
        if !names.contains(&code.as_str()) {
            names.push(code.as_str());
        }
    }
    for (status, names) in by_status {
        let listed = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let key = status.to_string();
        match op.responses.responses.get_mut(&key) {
            // The route documents this status itself (a reason of its own):
            // keep its words, add the shared codes and the error body.
            Some(RefOr::T(existing)) => {
                let text = existing.description.trim();
                existing.description = if text.is_empty() {
                    format!("Error, code {listed}.")
                } else {
                    format!("{text} Also, from the shared layers: {listed}.")
                };
                existing
                    .content
                    .insert("application/json".into(), error_content());
                add_headers(existing, status);
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let mut resp = ResponseBuilder::new()
                    .description(format!("Error, code {listed}."))
                    .content("application/json", error_content())
                    .build();
                add_headers(&mut resp, status);
                op.responses.responses.insert(key, RefOr::T(resp));
            }
        }
    }
}

fn error_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build()
}

fn add_headers(resp: &mut Response, status: u16) {
    let header = |what: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(what))
            .build()
    };
    match status {
        429 | 503 | 507 => {
            resp.headers.insert(
                "Retry-After".into(),
                header("Seconds to wait before retrying."),
            );
        }
        401 => {
            resp.headers.insert(
                "WWW-Authenticate".into(),
                header("`Bearer`: send `Authorization: Bearer <token>`."),
            );
        }
        _ => {}
    }
}
