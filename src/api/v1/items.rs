//! Items: ingest (JSON array, NDJSON or multipart) as a pre-labeling job,
//! list with keyset paging, read one.

use axum::body::Bytes;
use axum::extract::{FromRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::jobs::JobView;
use crate::api::error::{ApiError, ApiResult, Code, ErrorBody};
use crate::api::extract::{Body, Id, Query};
use crate::api::ingest_body::{self, ItemContent};
use crate::api::AppState;
use crate::service::ingest::{self, IngestItem};
use crate::store::{Content, ItemRecord, Status};

/// Standard base64 with padding and no white space, as the `image` field
/// is decoded (`base64`'s STANDARD engine: the unused bits of the last
/// symbol must be zero).
pub const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// The JSON body of an ingest (the schema of what `api::ingest_body`
/// parses): at least one item, each an id and exactly one of `text`,
/// `image` (base64) or `path`, the other two null or absent. A project
/// takes either texts (a text model) or images (an image model), never
/// both, so a batch is all texts or all images (`oneOf`).
///
/// Which of the two a project takes, and whether a `path` names a file
/// under the data root, depend on the project and the server, not on the
/// body: those are refused with 422 `wrong_content` and `path_not_found`
/// (403 `forbidden` outside the data root).
pub struct ItemBatch;

/// One item carrying `field`, the other contents null or absent.
fn item_branch(field: &str) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let string = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    let content = match field {
        "text" => string("The text, for a text model's project."),
        "image" => string(
            "The image file, base64 (standard alphabet, padded), for an image model's project.",
        )
        .pattern(Some(BASE64_PATTERN))
        .content_encoding("base64"),
        _ => string("A file under the server's `--data-root`, for an image model's project."),
    };
    let mut branch = ObjectBuilder::new()
        .title(Some(field))
        .property(
            "id",
            string(
                "The client's id for the item: a non-empty string (numbers are refused, \
                 so that `7` and `\"7\"` can never collide).",
            )
            .min_length(Some(1)),
        )
        .required("id")
        .property(
            "split",
            // Null, like absent, is no split: the handler takes both.
            string(
                "The split the item belongs to (`train`, `val`, `test` or another short name), \
                 or null: a screen reports copies across splits as leaks.",
            )
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .pattern(Some("^[A-Za-z0-9_.-]{1,32}$")),
        )
        .property(field, content)
        .required(field)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for other in ["text", "image", "path"]
        .into_iter()
        .filter(|o| *o != field)
    {
        branch = branch.property(
            other,
            ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some("Null or absent: this item carries another content.")),
        );
    }
    branch.build()
}

impl utoipa::PartialSchema for ItemBatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        let texts = ArrayBuilder::new()
            .title(Some("texts"))
            .items(item_branch("text"))
            .min_items(Some(1))
            .description(Some("Texts, for a text model's project."));
        let images = ArrayBuilder::new()
            .title(Some("images"))
            .items(
                OneOfBuilder::new()
                    .item(item_branch("path"))
                    .item(item_branch("image")),
            )
            .min_items(Some(1))
            .description(Some(
                "Images, each as base64 (`image`) or a file under the data root (`path`), for an image model's project.",
            ));
        OneOfBuilder::new()
            .description(Some(
                "At least one item (an empty batch is `empty_batch`); all texts or all images.",
            ))
            .item(images)
            .item(texts)
            .into()
    }
}

impl ToSchema for ItemBatch {
    fn name() -> std::borrow::Cow<'static, str> {
        "ItemBatch".into()
    }
}

#[derive(Serialize, ToSchema)]
pub struct Ingested {
    pub job: JobView,
    pub inserted: u64,
    /// Items already in the project, and ids repeated within the request.
    pub duplicates: u64,
}

/// Ingest items; answers 202 with a pre-labeling job.
#[utoipa::path(post, path = "/v1/projects/{id}/items", tag = "items",
    params(("id" = i64, Path, description = "Project id", example = 1)),
    request_body(content = ItemBatch, description = "A JSON array, NDJSON (one item per line), or multipart/form-data with one image file per part (the file name is the id)",
        examples(
            ("text" = (summary = "For a text model's project", value = json!([{"id": "example-1", "text": "Free entry in 2 a wkly comp"}]))),
            ("image" = (summary = "For an image model's project", value = json!([{"id": "example-1", "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg=="}]))))),
    responses((status = 202, body = Ingested), (status = 413, body = ErrorBody),
              (status = 422, description = "The body is of the wrong shape, or holds no items (`empty_batch`); an item's content does not fit the project's model (`wrong_content`); a `path` names no file under the data root (`path_not_found`)", body = ErrorBody),
              (status = 403, description = "A `path` outside the data root", body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    Id(project_id): Id,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<Ingested>)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // 404 before reading a body for a project that does not exist.
    state.store.get_project(project_id).await?;
    let items = if content_type.starts_with("multipart/form-data") {
        let multipart = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(Code::BadMultipart, e.body_text()))?;
        read_multipart(multipart, state.config.max_body_bytes).await?
    } else {
        let Body(body) = Body::from_request(request, &state).await?;
        parse_items(&body, &content_type)?
    };
    let done = ingest::ingest_in_splits(&state, project_id, items).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Ingested {
            job: JobView::from(&done.job),
            inserted: done.inserted,
            duplicates: done.duplicates,
        }),
    ))
}

fn parse_items(body: &Bytes, content_type: &str) -> ApiResult<Vec<(IngestItem, Option<String>)>> {
    let items = ingest_body::parse(body, content_type)?;
    Ok(items
        .into_iter()
        .map(|item| {
            let it = IngestItem {
                id: item.id,
                content: match item.content {
                    ItemContent::Text(t) => Content::Text(t),
                    ItemContent::Image(b) => Content::Image(b),
                    ItemContent::Path(p) => Content::Path(p),
                },
            };
            (it, item.split)
        })
        .collect())
}

/// Each part is one image; its bytes go to the store as they are.
async fn read_multipart(
    mut mp: axum::extract::Multipart,
    limit: usize,
) -> ApiResult<Vec<(IngestItem, Option<String>)>> {
    let mut items = Vec::new();
    let mut total = 0usize;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(Code::BadMultipart, e.body_text()))?
    {
        let id = field
            .file_name()
            .or(field.name())
            .map(str::to_string)
            .unwrap_or_else(|| format!("part-{}", items.len()));
        let data = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(limit)
            } else {
                ApiError::bad_request(Code::BadMultipart, e.body_text())
            }
        })?;
        total += data.len();
        if total > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        items.push((
            IngestItem {
                id,
                content: Content::Image(data.into()),
            },
            None,
        ));
    }
    Ok(items)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending, auto_accepted, needs_review, needs_confirmation, labeled, failed or rejected.
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

fn status_schema() -> utoipa::openapi::Object {
    crate::json_shape::string_enum(
        [
            Status::Pending,
            Status::AutoAccepted,
            Status::NeedsReview,
            Status::NeedsConfirmation,
            Status::Labeled,
            Status::Failed,
            Status::Rejected,
        ]
        .map(|s| s.as_str().to_string()),
        "Only items in this status.",
    )
}

#[derive(Serialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<ItemRecord>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<i64>,
}

/// List items with keyset paging.
#[utoipa::path(get, path = "/v1/projects/{id}/items", tag = "items",
    params(("id" = i64, Path, description = "Project id", example = 1), ListQuery),
    responses((status = 200, body = ItemPage), (status = 422, body = ErrorBody)))]
pub async fn list_items(
    State(state): State<AppState>,
    Id(project_id): Id,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ItemPage>> {
    state.store.get_project(project_id).await?;
    let status = match q.status.as_deref() {
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                format!("{s:?} is not one of pending, auto_accepted, needs_review, needs_confirmation, labeled, failed, rejected"),
            )
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1..=1000"));
    }
    let items = state
        .store
        .list_items(project_id, status, q.cursor, limit)
        .await?;
    let next_cursor = if items.len() as i64 == limit {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok(Json(ItemPage { items, next_cursor }))
}

/// Get one item with its prediction and annotations (a detection item: its regions).
#[utoipa::path(get, path = "/v1/items/{id}", tag = "items",
    params(("id" = i64, Path, description = "Item id", example = 1)),
    responses((status = 200, description = "The item", body = ItemRecord), (status = 404, body = ErrorBody)))]
pub async fn get_item(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<ItemRecord>> {
    Ok(Json(crate::service::regions::item(&state.store, id).await?))
}
