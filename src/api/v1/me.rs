//! Who the caller is, and which review lists exist: what a client (the
//! review page) needs before it can show anything.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::service::review::ReviewOrder;

#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The token's name: who annotations and leases are recorded as.
    pub name: String,
    /// admin, annotator or predictor.
    pub role: &'static str,
    /// False under `--no-auth` (the local user, with admin rights).
    pub auth: bool,
}

/// The caller's name and role, from the token. Any valid token may ask
/// (a predictor learns that it cannot review); no token or an unknown one: 401.
#[utoipa::path(get, path = "/v1/me", tag = "ops",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> ApiResult<Json<Me>> {
    match caller {
        Caller::Known { role, name } => Ok(Json(Me {
            name,
            role: role.as_str(),
            auth: true,
        })),
        Caller::Local => Ok(Json(Me {
            name: crate::api::auth::LOCAL_USER.to_string(),
            role: "admin",
            auth: false,
        })),
        Caller::Anonymous | Caller::Invalid => Err(ApiError::unauthorized()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Strategies {
    /// Every review list `GET /v1/projects/{id}/review?strategy=` takes.
    pub strategies: Vec<&'static str>,
    pub default: &'static str,
}

/// The review lists (strategies) the API offers.
#[utoipa::path(get, path = "/v1/strategies", tag = "review",
    responses((status = 200, body = Strategies)))]
pub async fn strategies() -> Json<Strategies> {
    Json(Strategies {
        strategies: ReviewOrder::names(),
        default: crate::select::Strategy::DEFAULT.as_str(),
    })
}
