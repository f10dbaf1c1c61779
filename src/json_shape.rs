//! JSON objects only where the types say objects.
//!
//! serde's derived `Deserialize` for a struct also takes a JSON array of
//! its fields in order (`["alice", 0.5]` for a `Tier`), which no document
//! describes and no client means. These helpers, used with
//! `#[serde(deserialize_with = …)]` on nested struct fields, read a JSON
//! object first and refuse anything else; `api::extract::parse_object` does
//! the same for whole bodies.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

fn from_object<T: DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
    T::deserialize(Value::Object(map)).map_err(E::custom)
}

/// A list of objects, each read as `T`.
pub fn objects<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let maps = Vec::<Map<String, Value>>::deserialize(d)?;
    maps.into_iter()
        .enumerate()
        .map(|(i, m)| from_object(m).map_err(|e: D::Error| D::Error::custom(format!("[{i}]: {e}"))))
        .collect()
}

/// An optional object (`null` or absent: `None`), read as `T`.
pub fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<Map<String, Value>>::deserialize(d)? {
        Some(m) => from_object(m).map(Some),
        None => Ok(None),
    }
}

/// The document's schema of a string that is one of `values`.
pub fn string_enum<I: IntoIterator<Item = String>>(
    values: I,
    description: &str,
) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}

/// The document's schema of a string that is one of `values`, or `null`.
pub fn nullable_enum<I: IntoIterator<Item = String>>(
    values: I,
    description: &str,
) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut values: Vec<Value> = values.into_iter().map(Value::String).collect();
    values.push(Value::Null);
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}
