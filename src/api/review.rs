//! Review lists (leased, ranked by a selection strategy, routed by tier),
//! annotator tiers, project settings, and training the head.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, Body, Id};
use super::AppState;
use crate::select::strategies::{self, Pool, Strategy};
use crate::service::learn::{self, LearnError};
use crate::store::{Measure, ProjectSettings, ReviewFilter};

/// `GET /v1/projects/{id}/review?strategy=&limit=&annotator=`
pub async fn review(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let project = state.store.get_project(project_id).await?;
    let annotator = q
        .get("annotator")
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_field",
                "query `annotator` is required: items are leased to them",
            )
        })?
        .clone();
    let strategy_name = q.get("strategy").map(String::as_str).unwrap_or("margin");
    let strategy = Strategy::parse(strategy_name).ok_or_else(|| {
        let all: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::unprocessable(
            "invalid_field",
            format!(
                "query `strategy`: {strategy_name:?} is not one of {}",
                all.join(", ")
            ),
        )
    })?;
    let limit: i64 = match q.get("limit") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable("invalid_field", "query `limit`: an integer in 1..=500")
            })?,
        None => 20,
    };
    let settings = &project.settings;
    let measure = settings
        .tier_measure
        .as_deref()
        .and_then(Measure::parse)
        .unwrap_or(Measure::Margin);
    // Tier routing: the annotator sees only their band (top tier also gets confirmations).
    let (tier, filter) = if settings.tiers.is_empty() {
        (
            None,
            ReviewFilter {
                band: None,
                confirmations: true,
            },
        )
    } else {
        let tier = match state.store.annotator_tier(&annotator).await? {
            Some(t) if settings.band(&t).is_some() => t,
            _ => settings.lowest_tier().unwrap_or_default(),
        };
        let top = settings.top_tier().as_deref() == Some(tier.as_str());
        (
            Some(tier.clone()),
            ReviewFilter {
                band: settings.band(&tier),
                confirmations: top,
            },
        )
    };
    let lease_ms = settings.review_lease_secs.unwrap_or(600) as i64 * 1000;
    let committee_measure = matches!(measure, Measure::VoteEntropy | Measure::MeanKl);
    if (strategy.needs_committee() || committee_measure) && project.committee.is_empty() {
        return Err(ApiError::unprocessable(
            "strategy_unavailable",
            format!(
                "strategy {:?} ranks by committee disagreement, and project {project_id} has one model; create a project with `committee` (extra models with the same labels) to use it",
                strategy.as_str()
            ),
        ));
    }
    let order_measure = match strategy {
        Strategy::LeastConfidence => Measure::LeastConfidence,
        Strategy::Entropy => Measure::Entropy,
        Strategy::VoteEntropy => Measure::VoteEntropy,
        Strategy::MeanKl => Measure::MeanKl,
        _ => measure,
    };
    let items = match strategy {
        Strategy::LeastConfidence
        | Strategy::Margin
        | Strategy::Entropy
        | Strategy::VoteEntropy
        | Strategy::MeanKl => {
            state
                .store
                .lease_review(
                    project_id,
                    &annotator,
                    order_measure,
                    filter,
                    limit,
                    lease_ms,
                )
                .await?
        }
        _ => {
            // Diversity-aware and the rest: choose among the most uncertain
            // free candidates in memory, then lease the chosen ones.
            let candidates = state
                .store
                .review_candidates(project_id, measure, filter.band, (limit * 20).max(200))
                .await?;
            let dim = candidates.first().map(|c| c.embedding.len()).unwrap_or(0);
            let probs: Vec<Vec<f32>> = candidates.iter().map(|c| c.probs.clone()).collect();
            let embeddings: Vec<f32> = candidates
                .iter()
                .filter(|c| c.embedding.len() == dim)
                .flat_map(|c| c.embedding.iter().copied())
                .collect();
            let cold = probs.iter().all(Vec::is_empty);
            let chosen = if cold
                || strategy == Strategy::KCenter && embeddings.len() != candidates.len() * dim
            {
                strategies::cold_start(&embeddings, dim, candidates.len(), limit as usize, 0)
            } else {
                let pool = Pool {
                    probs: &probs,
                    embeddings: &embeddings,
                    dim,
                    committee: &[],
                };
                strategies::select(strategy, &pool, &[], limit as usize, 0)
                    .map_err(|e| ApiError::unprocessable("strategy_unavailable", e.to_string()))?
            };
            let ids: Vec<i64> = chosen
                .into_iter()
                .filter_map(|i| candidates.get(i).map(|c| c.id))
                .collect();
            state.store.lease_ids(&ids, &annotator, lease_ms).await?
        }
    };
    Ok(Json(json!({
        "annotator": annotator,
        "tier": tier,
        "strategy": strategy.as_str(),
        "lease_secs": lease_ms / 1000,
        "items": items,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseIn {
    annotator: String,
    /// Item ids to give back; omitted: all of the annotator's leases.
    items: Option<Vec<i64>>,
}

pub async fn release(
    State(state): State<AppState>,
    Id(project_id): Id,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let req: ReleaseIn = parse_json(&body)?;
    state.store.get_project(project_id).await?;
    let n = state
        .store
        .release_review(project_id, &req.annotator, req.items.as_deref())
        .await?;
    Ok(Json(json!({"released": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierIn {
    tier: String,
}

/// `PUT /v1/annotators/{name}` `{tier}`
pub async fn set_tier(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let req: TierIn = parse_json(&body)?;
    if req.tier.trim().is_empty() || name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "annotator name and `tier` must not be empty",
        ));
    }
    state.store.set_annotator_tier(&name, &req.tier).await?;
    Ok(Json(json!({"annotator": name, "tier": req.tier})))
}

/// `PUT /v1/projects/{id}/settings`
pub async fn put_settings(
    State(state): State<AppState>,
    Id(project_id): Id,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let settings: ProjectSettings = parse_json(&body)?;
    super::handlers::validate_settings(&settings)?;
    state.store.update_settings(project_id, &settings).await?;
    Ok(Json(json!(state.store.get_project(project_id).await?)))
}

/// `POST /v1/projects/{id}/train`: a new head from the human labels so far.
pub async fn train(State(state): State<AppState>, Id(project_id): Id) -> ApiResult<Response> {
    let project = state.store.get_project(project_id).await?;
    let base = state
        .hub
        .get(&project.model)
        .map(|m| m.model.version().to_string())
        .unwrap_or_default();
    match learn::train_head(&state.store, project_id, &base).await {
        Ok(t) => {
            state.wake_workers.notify_waiters();
            Ok((StatusCode::CREATED, Json(json!(t))).into_response())
        }
        Err(LearnError::Store(e)) => Err(e.into()),
        Err(LearnError::NotEnough(why)) => Err(ApiError::unprocessable("not_enough_labels", why)),
        Err(LearnError::Train(why)) => Err(ApiError::Internal(why)),
    }
}
