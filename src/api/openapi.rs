//! The OpenAPI 3.1 document, generated from the routes the router serves.

use serde_json::{json, Map, Value};

use super::auth::Access;
use super::route_docs;

pub fn document() -> Value {
    let mut paths = Map::new();
    for doc in route_docs() {
        let params: Vec<Value> = doc
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let ty = if name == "id" { "integer" } else { "string" };
                json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}})
            })
            .collect();
        let mut op = json!({
            "summary": doc.summary,
            "parameters": params,
            "responses": {"default": {"description": "JSON; errors are {\"error\": {\"code\", \"message\"}}"}},
        });
        if doc.access != Access::Public {
            op["security"] = json!([{"bearer": []}]);
            op["x-roles"] = json!(doc.access.roles());
        }
        let entry = paths
            .entry(doc.path.to_string())
            .or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(doc.method.to_string(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "labelloop", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}
