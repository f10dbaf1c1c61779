//! The body of `POST /v1/projects/{id}/items` (JSON array or NDJSON), parsed
//! without any server state, so it can be unit-tested, property-tested and
//! fuzzed on its own. Resolving `path` items against the data root and
//! checking the content against the project's model stay in the handler:
//! they need the server's configuration.
//!
//! Two decisions differ from the handler this replaces:
//!
//! - **Ids are JSON strings.** The handler accepted `7` and `"7"` and turned
//!   both into the client id `"7"`, so two different items collided into one
//!   and one of them was silently dropped. The store keys items by a text
//!   client id; keeping a typed id would need a new column and every lookup
//!   and export to carry the type. Rejecting a number with a 422 naming the
//!   field costs a client one `str()` and makes the collision impossible.
//! - **Duplicates are kept, in order.** The handler dropped repeated ids
//!   inside one request without counting them, so `duplicates` in the answer
//!   only counted ids already stored. [`parse`] returns every item;
//!   [`dedup`] keeps the first of each id and says how many it dropped.

use std::collections::HashSet;

use base64::Engine as _;
use serde::Deserialize;

use super::error::{ApiError, Code};

/// One item of an ingest request, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestItem {
    /// The client's id, non-empty.
    pub id: String,
    pub content: ItemContent,
    /// The split it belongs to (`train`, `test`, …), checked by the service.
    pub split: Option<String>,
}

/// What an item carries. `Path` is the raw string the client sent; the
/// handler resolves it inside the data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemContent {
    Text(String),
    /// Decoded from the base64 the client sent.
    Image(Vec<u8>),
    Path(String),
}

/// Whether a body error is a syntax error (400) or well-formed JSON of the
/// wrong shape (422); clients retry neither, but they fix them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Malformed JSON: HTTP 400.
    Syntax,
    /// Valid JSON that is not a valid batch: HTTP 422.
    Shape,
}

/// Why a body was refused: a stable `code` for programs, a `message` for
/// people that names the field (`[3].image`) or line (`line 4`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// One of `malformed_json`, `invalid_body`, `invalid_field`, `empty_batch`.
    pub code: Code,
    pub message: String,
    pub class: ErrorClass,
}

impl BodyError {
    fn syntax(message: String) -> Self {
        BodyError {
            code: Code::MalformedJson,
            message,
            class: ErrorClass::Syntax,
        }
    }

    fn shape(code: Code, message: String) -> Self {
        BodyError {
            code,
            message,
            class: ErrorClass::Shape,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self.class {
            ErrorClass::Syntax => 400,
            ErrorClass::Shape => 422,
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

/// The wire form of one item, before the exactly-one-content check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    text: Option<String>,
    /// base64
    image: Option<String>,
    path: Option<String>,
    /// `train`, `val`, `test` or another short name (see `service::ingest::check_split`).
    split: Option<String>,
}

/// Where an item came from, for messages: its index in a JSON array, or its
/// line in NDJSON (1-based, as editors count).
#[derive(Clone, Copy)]
enum At {
    Index(usize),
    Line(usize),
}

impl At {
    /// `field` named as the client would find it: `[2].image` or
    /// `line 3: field `image``.
    fn field(self, field: &str) -> String {
        match self {
            At::Index(i) => format!("field `[{i}].{field}`"),
            At::Line(n) => format!("line {n}: field `{field}`"),
        }
    }

    fn item(self) -> String {
        match self {
            At::Index(i) => format!("item [{i}]"),
            At::Line(n) => format!("line {n}"),
        }
    }
}

/// Parse an ingest body. A body whose first non-blank byte is `[` is a JSON
/// array unless the content type says NDJSON; anything else is NDJSON, one
/// object per line, blank lines skipped. Every item is checked: a non-empty
/// string id and exactly one of `text`, `image` (base64) or `path`. An
/// empty batch is an error. Items come back in body order, duplicates
/// included (see [`dedup`]).
pub fn parse(body: &[u8], content_type: &str) -> Result<Vec<IngestItem>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let items = if first == Some(b'[') && !content_type.contains("ndjson") {
        let raw: Vec<RawItem> = deserialize(body, None)?;
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| check(r, At::Index(i)))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let mut items = Vec::new();
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let raw: RawItem = deserialize(line, Some(n + 1))?;
            items.push(check(raw, At::Line(n + 1))?);
        }
        items
    };
    if items.is_empty() {
        return Err(BodyError::shape(
            Code::EmptyBatch,
            "the body holds no items".into(),
        ));
    }
    Ok(items)
}

/// Keep the first item of each id, in order, and count the others. The
/// first wins because that is what the store does with an id it already
/// holds: a repeat never replaces what was sent before.
pub fn dedup(items: Vec<IngestItem>) -> (Vec<IngestItem>, usize) {
    let mut seen = HashSet::with_capacity(items.len());
    let total = items.len();
    let kept: Vec<IngestItem> = items
        .into_iter()
        .filter(|it| seen.insert(it.id.clone()))
        .collect();
    let dropped = total - kept.len();
    (kept, dropped)
}

/// `serde_path_to_error` over `serde_json`, as [`super::extract::parse_json`]
/// does, with the line prefixed for NDJSON.
fn deserialize<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    line: Option<usize>,
) -> Result<T, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let prefix = line.map(|n| format!("line {n}: ")).unwrap_or_default();
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            BodyError::syntax(format!("{prefix}malformed JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            BodyError::shape(Code::InvalidBody, format!("{prefix}{inner}"))
        } else {
            BodyError::shape(
                Code::InvalidField,
                format!("{prefix}field `{path}`: {inner}"),
            )
        }
    })
}

fn check(raw: RawItem, at: At) -> Result<IngestItem, BodyError> {
    if raw.id.is_empty() {
        return Err(BodyError::shape(
            Code::InvalidField,
            format!("{}: must not be empty", at.field("id")),
        ));
    }
    let content = match (raw.text, raw.image, raw.path) {
        (Some(t), None, None) => ItemContent::Text(t),
        (None, Some(b64), None) => ItemContent::Image(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    BodyError::shape(
                        Code::InvalidField,
                        format!("{}: not base64: {e}", at.field("image")),
                    )
                })?,
        ),
        (None, None, Some(p)) => ItemContent::Path(p),
        _ => {
            return Err(BodyError::shape(
                Code::InvalidField,
                format!(
                    "{} ({:?}): give exactly one of `text`, `image` (base64) or `path`",
                    at.item(),
                    raw.id
                ),
            ))
        }
    };
    Ok(IngestItem {
        id: raw.id,
        content,
        split: raw.split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, ct: &str) -> BodyError {
        parse(body.as_bytes(), ct).unwrap_err()
    }

    #[test]
    fn json_array_of_each_content() {
        let body =
            r#"[{"id":"a","text":"hi"},{"id":"b","image":" aGk= "},{"id":"c","path":"x/y.png"}]"#;
        let items = parse(body.as_bytes(), "application/json").unwrap();
        assert_eq!(
            items,
            vec![
                IngestItem {
                    id: "a".into(),
                    content: ItemContent::Text("hi".into()),
                    split: None,
                },
                IngestItem {
                    id: "b".into(),
                    content: ItemContent::Image(b"hi".to_vec()),
                    split: None,
                },
                IngestItem {
                    id: "c".into(),
                    content: ItemContent::Path("x/y.png".into()),
                    split: None,
                },
            ]
        );
    }

    #[test]
    fn ndjson_skips_blank_lines_and_accepts_crlf() {
        let body = "\n{\"id\":\"a\",\"text\":\"x\"}\r\n  \n{\"id\":\"b\",\"text\":\"y\"}";
        let items = parse(body.as_bytes(), "application/x-ndjson").unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn ndjson_content_type_wins_over_a_leading_bracket() {
        let e = err(r#"[{"id":"a","text":"x"}]"#, "application/x-ndjson");
        assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        assert!(e.message.starts_with("line 1: "), "{}", e.message);
    }

    #[test]
    fn malformed_json_is_400_and_names_the_line() {
        let e = err("{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":", "");
        assert_eq!((e.code, e.status()), (Code::MalformedJson, 400));
        assert!(
            e.message.starts_with("line 2: malformed JSON"),
            "{}",
            e.message
        );
        let e = err("[{\"id\":\"a\"", "application/json");
        assert_eq!((e.code, e.class), (Code::MalformedJson, ErrorClass::Syntax));
    }

    #[test]
    fn numeric_id_is_422_naming_the_field() {
        let e = err(r#"[{"id":"7","text":"a"},{"id":7,"text":"b"}]"#, "");
        assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        assert!(e.message.contains("`[1].id`"), "{}", e.message);
        let e = err("{\"id\":7,\"text\":\"b\"}", "");
        assert!(e.message.starts_with("line 1: field `id`"), "{}", e.message);
    }

    #[test]
    fn empty_id_is_refused() {
        let e = err(r#"[{"id":"","text":"a"}]"#, "");
        assert_eq!(e.code, Code::InvalidField);
        assert!(
            e.message.contains("`[0].id`: must not be empty"),
            "{}",
            e.message
        );
        let e = err("\n\n{\"id\":\"\",\"text\":\"a\"}", "");
        assert!(e.message.contains("line 3: field `id`"), "{}", e.message);
    }

    #[test]
    fn exactly_one_content() {
        for body in [
            r#"[{"id":"a"}]"#,
            r#"[{"id":"a","text":"x","path":"p"}]"#,
            r#"[{"id":"a","text":"x","image":"aGk="}]"#,
        ] {
            let e = err(body, "");
            assert_eq!((e.code, e.status()), (Code::InvalidField, 422), "{body}");
            assert!(e.message.contains("exactly one of"), "{}", e.message);
            assert!(e.message.contains("item [0] (\"a\")"), "{}", e.message);
        }
    }

    #[test]
    fn bad_base64_names_the_field() {
        let e = err(r#"[{"id":"a","text":"x"},{"id":"b","image":"!!"}]"#, "");
        assert_eq!(e.code, Code::InvalidField);
        assert!(
            e.message.contains("`[1].image`: not base64"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_field_and_wrong_types() {
        let e = err(r#"[{"id":"a","txt":"x"}]"#, "");
        assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        assert!(e.message.contains("txt"), "{}", e.message);
        let e = err(r#"[{"id":"a","text":5}]"#, "");
        assert!(e.message.contains("`[0].text`"), "{}", e.message);
        let e = err(r#"{"items":[]}"#, "");
        assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        let e = err("5", "");
        assert_eq!((e.code, e.status()), (Code::InvalidBody, 422));
        let e = err("[5]", "");
        assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        assert!(e.message.contains("`[0]`"), "{}", e.message);
    }

    #[test]
    fn empty_batches() {
        for body in ["", "  \n\n ", "[]", " [ ] "] {
            let e = err(body, "");
            assert_eq!((e.code, e.status()), (Code::EmptyBatch, 422), "{body:?}");
        }
    }

    #[test]
    fn duplicates_are_returned_in_order_and_counted_by_dedup() {
        let body = r#"[{"id":"a","text":"1"},{"id":"b","text":"2"},{"id":"a","text":"3"},{"id":"a","text":"4"}]"#;
        let items = parse(body.as_bytes(), "").unwrap();
        assert_eq!(items.len(), 4);
        let (kept, dropped) = dedup(items);
        assert_eq!(dropped, 2);
        assert_eq!(
            kept,
            vec![
                IngestItem {
                    id: "a".into(),
                    content: ItemContent::Text("1".into()),
                    split: None,
                },
                IngestItem {
                    id: "b".into(),
                    content: ItemContent::Text("2".into()),
                    split: None,
                },
            ]
        );
    }

    #[test]
    fn string_seven_and_number_seven_no_longer_collide() {
        // Before: both became client id "7" and the second was dropped.
        assert!(parse(br#"[{"id":"7","text":"a"},{"id":7,"text":"b"}]"#, "").is_err());
        let items = parse(br#"[{"id":"7","text":"a"},{"id":"07","text":"b"}]"#, "").unwrap();
        assert_eq!(dedup(items).1, 0);
    }

    #[test]
    fn converts_to_api_error_with_the_same_code() {
        let e: ApiError = err("{", "").into();
        assert_eq!((e.code, e.status().as_u16()), (Code::MalformedJson, 400));
        let e: ApiError = err("[]", "").into();
        assert_eq!((e.code, e.status().as_u16()), (Code::EmptyBatch, 422));
    }
}
