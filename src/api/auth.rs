//! API tokens with roles. Tokens are random secrets shown once at creation;
//! only their SHA-256 is stored, so a leaked database leaks no credential.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::service::review::Annotator;

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

/// Who is calling, resolved once per request from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token was sent.
    Anonymous,
    /// A token was sent that the store does not know. Public routes still
    /// answer; every other route says 401.
    Invalid,
    /// A known token: its role, and its name, which is who the caller is.
    Known { role: Role, name: String },
    /// `--no-auth` on loopback: the local user may do anything.
    Local,
}

impl Caller {
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Known { role, .. } => Some(*role),
            Caller::Local => Some(Role::Admin),
            Caller::Anonymous | Caller::Invalid => None,
        }
    }

    /// The annotator this caller acts as. Identity comes from the token: an
    /// annotator acts as its token's name, and only an admin (or the local
    /// user) may name someone else, which is then recorded as such.
    pub fn acting_as(&self, requested: Option<&str>) -> Result<Annotator, ApiError> {
        let requested = requested.map(str::trim).filter(|a| !a.is_empty());
        match (self, requested) {
            (Caller::Known { name, .. }, None) => Ok(Annotator {
                name: name.clone(),
                on_behalf_by: None,
            }),
            (Caller::Known { role, name }, Some(other)) if other == name || *role == Role::Admin => {
                Ok(Annotator {
                    name: other.to_string(),
                    on_behalf_by: (other != name).then(|| name.clone()),
                })
            }
            (Caller::Known { name, .. }, Some(other)) => Err(ApiError::forbidden(format!(
                "this token belongs to {name:?} and cannot act as {other:?}; only an admin may act for someone else"
            ))),
            (Caller::Local, Some(other)) => Ok(Annotator {
                name: other.to_string(),
                on_behalf_by: None,
            }),
            (Caller::Local, None) => Ok(Annotator {
                name: LOCAL_USER.to_string(),
                on_behalf_by: None,
            }),
            (Caller::Anonymous | Caller::Invalid, _) => Err(ApiError::unauthorized()),
        }
    }
}

/// The annotator's name under `--no-auth` when a request names nobody.
pub const LOCAL_USER: &str = "local";

pub use crate::service::secret::{hash_token, new_token};

/// Resolve the bearer token (if any) to a caller; routes decide what it may do.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = if !state.config.auth {
        Caller::Local
    } else {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            None => Caller::Anonymous,
            Some(t) => match state.store.token_identity(&hash_token(t)).await {
                Ok(Some((name, role))) => match Role::parse(&role) {
                    Some(role) => Caller::Known { role, name },
                    None => Caller::Invalid,
                },
                Ok(None) => Caller::Invalid,
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
    let role = req.extensions().get::<Caller>().and_then(Caller::role);
    match role {
        Some(role) if access.allows(role) => next.run(req).await,
        Some(role) => ApiError::forbidden(format!(
            "a {} token cannot do this; it needs one of: {}",
            role.as_str(),
            access.roles().join(", ")
        ))
        .into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}

/// The caller, as an extractor for handlers.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}
