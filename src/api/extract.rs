//! Extractors whose rejections are our JSON errors, not axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Code};

/// The raw body, within the configured size limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(2 * 1024 * 1024);
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::payload_too_large(limit))
            }
            Err(e) => Err(ApiError::bad_request(Code::BadBody, e.body_text())),
        }
    }
}

/// The limit in force, put in request extensions by the router.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parse JSON, naming the field that is wrong: malformed JSON is 400,
/// well-formed JSON of the wrong shape is 422.
///
/// A number with a zero fraction (`5.0`) is an integer, as JSON Schema (and
/// so the API document) counts it: where the shape is refused, the body is
/// read again with every such number written as an integer, and only if that
/// fails too is the first error answered.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let first = match serde_path_to_error::deserialize(de) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let is_shape = first.inner().classify() == serde_json::error::Category::Data;
    if is_shape {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if integral_floats_as_integers(&mut value) {
                if let Ok(v) = serde_path_to_error::deserialize(value) {
                    return Ok(v);
                }
            }
        }
    }
    let path = first.path().to_string();
    let inner = first.into_inner();
    Err(if inner.is_syntax() || inner.is_eof() {
        ApiError::bad_request(Code::MalformedJson, format!("malformed JSON: {inner}"))
    } else if path == "." || path.is_empty() {
        ApiError::unprocessable(Code::InvalidBody, inner.to_string())
    } else {
        ApiError::unprocessable(Code::InvalidField, format!("field `{path}`: {inner}"))
    })
}

/// Rewrite every number with a zero fraction within ±2^53 as that
/// integer; whether any was rewritten. Beyond 2^53 an `f64` need not be the
/// number that was written (`-9223372036854775809` reads as -2^63), so such
/// numbers stay as they are and are refused where an integer is wanted.
fn integral_floats_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if f.fract() != 0.0 || !(-EXACT..=EXACT).contains(&f) {
                return false;
            }
            *value = Value::from(f as i64);
            true
        }
        // Every element is rewritten, so no short-circuiting `any`.
        Value::Array(items) => {
            items
                .iter_mut()
                .map(integral_floats_as_integers)
                .filter(|&rewritten| rewritten)
                .count()
                > 0
        }
        Value::Object(map) => {
            map.values_mut()
                .map(integral_floats_as_integers)
                .filter(|&rewritten| rewritten)
                .count()
                > 0
        }
        _ => false,
    }
}

/// Parse a body that must be one JSON object (serde would also read a
/// struct from an array of its fields): anything else is 422
/// `invalid_body`, malformed JSON still 400.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Malformed JSON says so first.
        parse_json::<serde::de::IgnoredAny>(bytes)?;
        return Err(ApiError::unprocessable(
            Code::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    parse_json(bytes)
}

/// A path parameter as text (or any type serde reads from it), with a
/// JSON 400 `bad_path` when it cannot be read (bad percent-encoding).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::bad_request(Code::BadPath, e.body_text()))
    }
}

/// A numeric id from the path, as 404 (not 400) when it cannot exist.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(Code::BadPath, e.body_text()))?;
        raw.parse::<i64>()
            .map(Id)
            .map_err(|_| ApiError::not_found(format!("{raw:?} (ids are integers)")))
    }
}

/// Query parameters parsed into a typed struct; a wrong one is a 422 naming it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path.is_empty() {
                    ApiError::unprocessable(Code::InvalidField, format!("query: {inner}"))
                } else {
                    ApiError::unprocessable(Code::InvalidField, format!("query `{path}`: {inner}"))
                }
            })
    }
}

/// Two numeric ids from the path (`/v1/projects/{id}/items/{item}/…`), as
/// 404 (not 400) when either cannot exist.
pub struct Ids(pub i64, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(Code::BadPath, e.body_text()))?;
        let parse = |raw: &str| {
            raw.parse::<i64>()
                .map_err(|_| ApiError::not_found(format!("{raw:?} (ids are integers)")))
        };
        Ok(Ids(parse(&a)?, parse(&b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Shape {
        n: u64,
        i: Option<i64>,
        f: f64,
    }

    #[test]
    fn a_number_with_a_zero_fraction_is_an_integer() {
        let s: Shape = parse_json(br#"{"n": 5.0, "i": -3.0, "f": 2.0}"#).unwrap();
        assert_eq!(
            s,
            Shape {
                n: 5,
                i: Some(-3),
                f: 2.0
            }
        );
        let s: Shape = parse_json(br#"{"n": 5, "i": null, "f": 0.5}"#).unwrap();
        assert_eq!(
            s,
            Shape {
                n: 5,
                i: None,
                f: 0.5
            }
        );
        // A fraction is still refused, naming the field, with serde's words.
        let e = parse_json::<Shape>(br#"{"n": 5.5, "i": 1, "f": 1}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidField);
        assert!(
            e.message
                .starts_with("field `n`: invalid type: floating point"),
            "{e}"
        );
        let e = parse_json::<Shape>(br#"{"n": -1.0, "i": 1, "f": 1}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidField, "{e}");
        let e = parse_json::<Shape>(br#"{"n": 1e300, "i": 1, "f": 1}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidField, "{e}");
        // Past 2^53 the float is not the number written: still refused.
        let e = parse_json::<Shape>(br#"{"n": 1, "i": -9223372036854775809, "f": 1}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidField, "{e}");
        let e = parse_json::<Shape>(br#"{"n": 1,"#).unwrap_err();
        assert_eq!(e.code, Code::MalformedJson);
    }
}
