//! Review lists, releasing leases, training the head, annotator tiers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{parse_object, Body, Id, Path, Query};
use crate::api::AppState;
use crate::service::learn::Trained;
use crate::service::review::{self, ReviewList, ReviewOrder};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// margin (default), least-confidence, entropy, vote-entropy, mean-kl, k-center, cluster-margin, random;
    /// `audit` (the audit sample, any tier), `suspect` (suspected label errors),
    /// `outliers`, `duplicates` or `leaks` (the last screen's outliers, one item per duplicate group, and items copying another split's).
    #[param(schema_with = strategy_schema)]
    strategy: Option<String>,
    /// 1..=500, default 20.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Lease for this annotator (admins only; others are who their token says).
    annotator: Option<String>,
}

fn strategy_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        ReviewOrder::names().into_iter().map(str::to_string),
        "The list: a ranking strategy (default margin), `audit` (the audit sample, any tier), `suspect` (suspected label errors, not leased), `outliers` (the last screen's outliers, most unusual first), `duplicates` (one item per duplicate group of the last screen) or `leaks` (the last screen's leaked items, closest copy first).",
    )
}

/// Lease the next items for the caller, ranked by a strategy, within their tier.
#[utoipa::path(get, path = "/v1/projects/{id}/review", tag = "review",
    params(("id" = i64, Path, description = "Project id", example = 1), ReviewQuery),
    responses((status = 200, body = ReviewList), (status = 422, body = ErrorBody)))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Id(project_id): Id,
    Query(q): Query<ReviewQuery>,
) -> ApiResult<Json<ReviewList>> {
    let annotator = caller.acting_as(q.annotator.as_deref())?;
    let name = q
        .strategy
        .as_deref()
        .unwrap_or(crate::select::Strategy::DEFAULT.as_str());
    let order = ReviewOrder::parse(name).ok_or_else(|| {
        ApiError::invalid(
            "strategy",
            format!("{name:?} is not one of {}", ReviewOrder::names().join(", ")),
        )
    })?;
    let limit = q.limit.unwrap_or(20);
    let list = review::next_items(&state, project_id, &annotator, order, limit).await?;
    Ok(Json(list))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseIn {
    /// Whose leases (admins only; others release their own).
    annotator: Option<String>,
    /// Item ids to give back; omitted: all of the annotator's leases.
    items: Option<Vec<i64>>,
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    pub released: u64,
}

/// Give leased items back to the queue.
#[utoipa::path(post, path = "/v1/projects/{id}/review/release", tag = "review",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    request_body(content = ReleaseIn, example = json!({"items": [1]})),
    responses((status = 200, body = Released), (status = 404, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Id(project_id): Id,
    Body(body): Body,
) -> ApiResult<Json<Released>> {
    let req: ReleaseIn = parse_object(&body)?;
    let annotator = caller.acting_as(req.annotator.as_deref())?;
    let released = review::release(&state, project_id, &annotator, req.items.as_deref()).await?;
    Ok(Json(Released { released }))
}

/// Train a classifier head on the human labels; re-predicts in a background job.
#[utoipa::path(post, path = "/v1/projects/{id}/train", tag = "review",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    responses((status = 201, body = Trained),
              (status = 404, body = ErrorBody),
              (status = 422, description = "The project has too few human labels for a head (`not_enough_labels`): it needs labels of at least two classes on items with embeddings, so a project whose model gives no embeddings never has them. The state of the project, not the request: label items, then train again", body = ErrorBody)))]
pub async fn train(
    State(state): State<AppState>,
    Id(project_id): Id,
) -> ApiResult<(StatusCode, Json<Trained>)> {
    Ok((
        StatusCode::CREATED,
        Json(review::train(&state, project_id).await?),
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierIn {
    /// Not blank.
    #[schema(min_length = 1, pattern = "\\S")]
    tier: String,
}

#[derive(Serialize, ToSchema)]
pub struct TierOut {
    pub annotator: String,
    pub tier: String,
}

/// Set an annotator's tier.
#[utoipa::path(put, path = "/v1/annotators/{name}", tag = "review",
    params(("name" = String, Path, description = "Annotator name (a token's name)", example = "alice")),
    request_body(content = TierIn, example = json!({"tier": "expert"})),
    responses((status = 200, body = TierOut), (status = 422, body = ErrorBody)))]
pub async fn set_tier(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<TierOut>> {
    let req: TierIn = parse_object(&body)?;
    review::set_tier(&state, &name, &req.tier).await?;
    Ok(Json(TierOut {
        annotator: name,
        tier: req.tier,
    }))
}
