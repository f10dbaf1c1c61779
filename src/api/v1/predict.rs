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
use crate::model::{Input, ItemError};
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

/// One item: an optional id and exactly one of `text`, `image`, `audio`
/// (base64) or `path` (a file under the server's `--data-root`): a `oneOf`,
/// the other fields null or absent. An item whose content does not fit the
/// model, or whose path leads out of the data root, fails alone, inside the
/// 200 answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictItem {
    id: Option<serde_json::Value>,
    text: Option<String>,
    image: Option<String>,
    audio: Option<String>,
    path: Option<String>,
    /// A file uploaded as a multipart part, read as the model's input kind.
    #[serde(skip)]
    file: Option<Vec<u8>>,
}

const CONTENT_FIELDS: [&str; 4] = ["text", "image", "audio", "path"];

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
        let audio = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(super::items::BASE64_PATTERN))
                .content_encoding("base64")
                .description(Some(
                    "A sound file (WAV, FLAC, OGG/Vorbis, MP3), base64 (standard alphabet, padded), for a voice-activity model.",
                ))
        };
        // No `minLength`: an empty path, like any path that names no file,
        // fails its item alone (the answer is still 200), so the document
        // must not call it a malformed request.
        let path = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A file under the server's data root (`--data-root`), relative to it, for an image or voice-activity model. A path leading out of the root fails this item alone (`path_outside_root`); an empty one or one naming no file fails it too.",
                ))
        };
        let branch = |name: &str, content: ObjectBuilder| {
            let mut b = ObjectBuilder::new()
                .title(Some(name))
                .property("id", id())
                .property(name, content)
                .required(name);
            for other in CONTENT_FIELDS.iter().filter(|f| **f != name) {
                b = b.property(*other, null());
            }
            b.additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some(
                "Exactly one of `text`, `image` (base64), `audio` (base64) or `path`.",
            ))
            .item(branch("text", text()))
            .item(branch("image", image()))
            .item(branch("audio", audio()))
            .item(branch("path", path()))
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

/// An upload: the part named `model` names the model; every part with a
/// file name is one item, its bytes the file (decoded as the model's input
/// kind when staged), its file name the id.
async fn read_upload(mut mp: axum::extract::Multipart, limit: usize) -> ApiResult<PredictIn> {
    let mut model = None;
    let mut items = Vec::new();
    let mut total = 0usize;
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request(Code::BadMultipart, e.body_text())
        }
    };
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        let file = field.file_name().map(str::to_string);
        let name = field.name().map(str::to_string);
        let data = field.bytes().await.map_err(bad)?;
        total += data.len();
        if total > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        match (file, name.as_deref()) {
            (None, Some("model")) => {
                model = Some(String::from_utf8(data.to_vec()).map_err(|_| {
                    ApiError::invalid("model", "the `model` part must be UTF-8 text")
                })?)
            }
            (Some(file), _) => items.push(PredictItem {
                id: Some(serde_json::Value::String(file)),
                text: None,
                image: None,
                audio: None,
                path: None,
                file: Some(data.to_vec()),
            }),
            (None, other) => {
                return Err(ApiError::invalid(
                    other.unwrap_or("part"),
                    "a part is either `model` or a file (with a file name)",
                ))
            }
        }
    }
    let model =
        model.ok_or_else(|| ApiError::invalid("model", "the upload has no `model` part"))?;
    Ok(PredictIn {
        model,
        items,
        embeddings: false,
    })
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
    request_body(content = PredictIn, description = "JSON; or multipart/form-data with a part `model` (the model's name) and one file per further part (an image or a sound file; the file name is the id)",
        example = json!({"model": "minilm-l6", "items": [{"id": "a", "text": "Free entry: win a prize now"}]})),
    responses((status = 200, body = PredictResponse), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn predict(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    use axum::extract::FromRequest;
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let req: PredictIn = if multipart {
        let mp = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(Code::BadMultipart, e.body_text()))?;
        read_upload(mp, state.config.max_body_bytes).await?
    } else {
        let Body(body) = Body::from_request(request, &state).await?;
        parse_object(&body)?
    };
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
    let mut inputs: Vec<Result<Input, ItemError>> = Vec::with_capacity(req.items.len());
    let audio_model = model.model.is_audio();
    let root: Option<std::sync::Arc<std::path::Path>> = state.data_root.as_deref().map(Into::into);
    let b64 = |i: usize, field: &str, text: String| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| {
                ApiError::invalid(&format!("items[{i}].{field}"), format!("not base64: {e}"))
            })
    };
    for (i, item) in req.items.into_iter().enumerate() {
        ids.push(id_text(i, item.id)?);
        if let Some(bytes) = item.file {
            inputs.push(Ok(if audio_model {
                Input::Audio(bytes)
            } else {
                Input::Image(bytes)
            }));
            continue;
        }
        inputs.push(match (item.text, item.image, item.audio, item.path) {
            (Some(t), None, None, None) => Ok(Input::Text(t)),
            (None, Some(img), None, None) => Ok(Input::Image(b64(i, "image", img)?)),
            (None, None, Some(a), None) => Ok(Input::Audio(b64(i, "audio", a)?)),
            (None, None, None, Some(p)) => match &root {
                // Opened beneath the root when staged: `..`, another root
                // or a link out fail this item alone.
                Some(root) if audio_model => Ok(Input::AudioUnderRoot {
                    root: root.clone(),
                    path: p.into(),
                }),
                Some(root) => Ok(Input::ImageUnderRoot {
                    root: root.clone(),
                    path: p.into(),
                }),
                None => Err(ItemError::Invalid(
                    "`path` items are disabled; start the server with --data-root to allow a folder"
                        .into(),
                )),
            },
            _ => {
                return Err(ApiError::invalid(
                    &format!("items[{i}]"),
                    "give exactly one of `text`, `image` (base64), `audio` (base64) or `path`",
                ))
            }
        });
    }
    let (ok, early): (Vec<_>, Vec<_>) =
        inputs.into_iter().enumerate().partition(|(_, r)| r.is_ok());
    let mut results: Vec<Option<Result<crate::model::Prediction, BatchError>>> =
        (0..ids.len()).map(|_| None).collect();
    for (i, r) in early {
        if let Err(e) = r {
            results[i] = Some(Err(BatchError::Item(e)));
        }
    }
    let (at, ok): (Vec<usize>, Vec<Input>) = ok
        .into_iter()
        .filter_map(|(i, r)| r.ok().map(|x| (i, x)))
        .unzip();
    for (i, r) in at.into_iter().zip(model.predict_many(ok).await) {
        results[i] = Some(r);
    }
    let results: Vec<Result<crate::model::Prediction, BatchError>> = results
        .into_iter()
        .map(|r| r.unwrap_or(Err(BatchError::Closed)))
        .collect();
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
