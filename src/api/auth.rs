//! API tokens with roles. Tokens are random secrets shown once at creation;
//! only their SHA-256 is stored, so a leaked database leaks no credential.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Annotator,
    Predictor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "annotator" => Some(Role::Annotator),
            "predictor" => Some(Role::Predictor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Annotator => "annotator",
            Role::Predictor => "predictor",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// admin, annotator
    Read,
    /// admin, annotator
    Annotate,
    /// admin, predictor
    Predict,
    Admin,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Read | Access::Annotate => matches!(role, Role::Admin | Role::Annotator),
            Access::Predict => matches!(role, Role::Admin | Role::Predictor),
            Access::Admin => role == Role::Admin,
        }
    }

    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Access::Public => &[],
            Access::Read | Access::Annotate => &["admin", "annotator"],
            Access::Predict => &["admin", "predictor"],
            Access::Admin => &["admin"],
        }
    }
}

/// The authenticated caller, if any, for this request.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Option<Role>);

pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: `ll_` and 64 hex digits (256 bits).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    Ok(format!(
        "ll_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Resolve the bearer token (if any) to a role; routes decide what it may do.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = if !state.config.auth {
        Caller(Some(Role::Admin))
    } else {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            None => Caller(None),
            Some(t) => match state.store.token_role(&hash_token(t)).await {
                Ok(Some(role)) => Caller(Role::parse(&role)),
                Ok(None) => return ApiError::Unauthorized.into_response(),
                Err(e) => return ApiError::from(e).into_response(),
            },
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Per-route check, applied by the router from each route's `Access`.
pub async fn require(access: Access, req: Request, next: Next) -> Response {
    if access == Access::Public {
        return next.run(req).await;
    }
    match req.extensions().get::<Caller>().copied() {
        Some(Caller(Some(role))) if access.allows(role) => next.run(req).await,
        Some(Caller(Some(role))) => ApiError::Forbidden(format!(
            "a {} token cannot do this; it needs one of: {}",
            role.as_str(),
            access.roles().join(", ")
        ))
        .into_response(),
        _ => ApiError::Unauthorized.into_response(),
    }
}
