//! Synchronous, stateless pre-labeling of a small batch.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::{ApiError, ApiResult, Code, ErrorBody};
use crate::api::extract::{parse_object, Body};
use crate::api::AppState;
use crate::model::batcher::BatchError;
use crate::model::Input;
use crate::service::hub::PredictionOut;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictIn {
    /// A loaded model's name.
    model: String,
    /// At most the server's `predict_max_items` (`too_many_items`).
    #[serde(deserialize_with = "crate::json_shape::objects")]
    items: Vec<PredictItem>,
    /// Also return each item's embedding.
    #[serde(default)]
    embeddings: bool,
}

/// One item: an optional id and exactly one of `text` or `image` (a
/// `oneOf`, the other field null or absent). An item whose content does not
/// fit the model fails alone, inside the 200 answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictItem {
    id: Option<serde_json::Value>,
    text: Option<String>,
    image: Option<String>,
}

impl utoipa::PartialSchema for PredictItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let id = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([
                    Type::String,
                    Type::Number,
                    Type::Null,
                ]))
                .description(Some(
                    "Echoed back (a number as its JSON text); default: the item's index.",
                ))
        };
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("The text, for a text model."))
        };
        let image = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(super::items::BASE64_PATTERN))
                .content_encoding("base64")
                .description(Some(
                    "The image file, base64 (standard alphabet, padded), for an image model.",
                ))
        };
        let null = || {
            ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some("Null or absent: this item carries the other content."))
        };
        let branch = |name: &str, content: ObjectBuilder, other: &str| {
            ObjectBuilder::new()
                .title(Some(name))
                .property("id", id())
                .property(name, content)
                .required(name)
                .property(other, null())
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some("Exactly one of `text` or `image` (base64)."))
            .item(branch("text", text(), "image"))
            .item(branch("image", image(), "text"))
            .into()
    }
}

impl ToSchema for PredictItem {
    fn name() -> std::borrow::Cow<'static, str> {
        "PredictItem".into()
    }
}

/// The answer: one entry per item, in order; an item that failed carries its error.
#[derive(Serialize, ToSchema)]
pub struct PredictResponse<'a> {
    model: &'a str,
    #[schema(value_type = Vec<Object>)]
    predictions: Vec<PredictOut<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PredictOut<'a> {
    Predicted(PredictionOut<'a>),
    Failed { id: &'a str, error: ItemErrorOut },
}

#[derive(Serialize)]
struct ItemErrorOut {
    code: &'static str,
    message: String,
}

fn id_text(i: usize, id: Option<serde_json::Value>) -> ApiResult<String> {
    match id {
        None => Ok(i.to_string()),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::invalid(
            &format!("items[{i}].id"),
            "must be a string or a number",
        )),
    }
}

/// Synchronous, stateless pre-labeling of a small batch.
#[utoipa::path(post, path = "/v1/predict", tag = "predict",
    request_body(content = PredictIn, example = json!({"model": "minilm-l6", "items": [{"id": "a", "text": "Free entry: win a prize now"}]})),
    responses((status = 200, body = PredictResponse), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn predict(State(state): State<AppState>, Body(body): Body) -> ApiResult<Response> {
    let req: PredictIn = parse_object(&body)?;
    let model = state.hub.get(&req.model).ok_or_else(|| {
        ApiError::new(
            Code::UnknownModel,
            format!("field `model`: no loaded model {:?}", req.model),
        )
    })?;
    if req.items.len() > state.config.predict_max_items {
        return Err(ApiError::new(
            Code::TooManyItems,
            format!(
                "{} items, over the limit of {} for /v1/predict; use POST /v1/projects/{{id}}/items for batch jobs",
                req.items.len(),
                state.config.predict_max_items
            ),
        ));
    }
    let mut ids = Vec::with_capacity(req.items.len());
    let mut inputs = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        ids.push(id_text(i, item.id)?);
        inputs.push(match (item.text, item.image) {
            (Some(t), None) => Input::Text(t),
            (None, Some(b64)) => Input::Image(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        ApiError::invalid(&format!("items[{i}].image"), format!("not base64: {e}"))
                    })?,
            ),
            _ => {
                return Err(ApiError::invalid(
                    &format!("items[{i}]"),
                    "give exactly one of `text` or `image` (base64)",
                ))
            }
        });
    }
    let results = model.predict_many(inputs).await;
    if results
        .iter()
        .any(|r| matches!(r, Err(BatchError::Busy { .. })))
    {
        return Err(ApiError::busy(
            "the model's batch queue is full; retry shortly",
        ));
    }
    let mut out = Vec::with_capacity(results.len());
    for (id, r) in ids.iter().zip(&results) {
        out.push(match r {
            Ok(pred) => PredictOut::Predicted(model.to_out(id, pred, req.embeddings)),
            Err(BatchError::Item(e)) => PredictOut::Failed {
                id,
                error: ItemErrorOut {
                    code: e.code(),
                    message: e.to_string(),
                },
            },
            Err(e) => return Err(ApiError::unavailable(e.to_string())),
        });
    }
    // Serialised here, while `out` can still borrow the results.
    Ok(Json(PredictResponse {
        model: &req.model,
        predictions: out,
    })
    .into_response())
}
