//! The document a running server serves: [`super::openapi_document`], with
//! the constraints that only the loaded models decide stated in it, since a
//! request that breaks them is refused:
//!
//! - `PredictIn.model`: one of the loaded models, and `PredictIn.items`: at
//!   most the server's `predict_max_items`;
//! - `CreateProject`: one branch (`oneOf`) per loaded model and committee
//!   shape. A classifier's or detector's project takes the model's own
//!   labels (any order, each once) or none; an embedding model's project
//!   brings at least two distinct labels of its own. A committee lists other
//!   loaded models with exactly the project's label set, each once, and a
//!   detection project has none;
//! - `BoxIn.label`: one of the labels of a loaded detection model (a
//!   project's labels are its model's, checked again per project);
//! - `SyncIn.url`: a base URL on a host and port of the server's
//!   `ls_hosts` (any other is refused with 403).
//!
//! The generic document (`labelloop openapi`) knows no models and keeps the
//! plain types; every branch here is narrower than it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// What the served document needs to know of one loaded model.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub name: String,
    /// The model's label set; empty for an embedding model (the project
    /// brings its own labels).
    pub labels: Vec<String>,
    /// An object-detection model.
    pub detect: bool,
    /// A voice-activity model: its projects' regions are speech segments.
    pub segments: bool,
}

/// What the served document states of this server.
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub models: Vec<ServedModel>,
    /// The Label Studio hosts a sync may reach.
    pub ls_hosts: Vec<String>,
    /// The most items one `POST /v1/predict` takes.
    pub predict_max_items: Option<usize>,
}

/// [`super::openapi_document`] as JSON, narrowed to what `served` says.
pub fn served_document(served: &Served) -> Value {
    let (models, ls_hosts) = (&served.models[..], &served.ls_hosts[..]);
    let mut doc = serde_json::to_value(super::openapi_document()).unwrap_or(Value::Null);
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return doc;
    };
    if let (Some(pattern), Some(url)) = (
        hosts_pattern(ls_hosts),
        schemas
            .get_mut("SyncIn")
            .and_then(|s| s.pointer_mut("/properties/url"))
            .and_then(Value::as_object_mut),
    ) {
        url.remove("format");
        url.insert("pattern".into(), json!(pattern));
        url.insert(
            "description".into(),
            json!(format!(
                "Label Studio's base URL, http(s), on a host of this server's `ls_hosts` ({}).",
                ls_hosts.join(", ")
            )),
        );
    }
    if let (Some(max), Some(items)) = (
        served.predict_max_items,
        schemas
            .get_mut("PredictIn")
            .and_then(|s| s.pointer_mut("/properties/items"))
            .and_then(Value::as_object_mut),
    ) {
        items.insert("maxItems".into(), json!(max));
    }
    if models.is_empty() {
        return doc;
    }
    if let Some(model) = schemas
        .get_mut("PredictIn")
        .and_then(|s| s.pointer_mut("/properties/model"))
        .and_then(Value::as_object_mut)
    {
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        model.insert("enum".into(), json!(names));
        model.insert(
            "description".into(),
            json!("A model this server has loaded."),
        );
    }
    if let Some(create) = schemas.get_mut("CreateProject") {
        *create = create_project(create, models);
    }
    let detection: std::collections::BTreeSet<&str> = models
        .iter()
        .filter(|m| m.detect || m.segments)
        .flat_map(|m| m.labels.iter().map(String::as_str))
        .collect();
    if !detection.is_empty() {
        if let Some(label) = schemas
            .get_mut("BoxIn")
            .and_then(|s| s.pointer_mut("/properties/label"))
            .and_then(Value::as_object_mut)
        {
            label.insert("enum".into(), json!(detection));
            label.insert(
                "description".into(),
                json!(
                    "One of the project's labels (those of its detection or voice-activity model)."
                ),
            );
        }
    }
    doc
}

/// A base URL on one of `hosts` (`host` or `host:port`; without a port, the
/// scheme's default, as `labelstudio::host_listed` reads them), with an
/// optional path; `None` for an empty list.
fn hosts_pattern(hosts: &[String]) -> Option<String> {
    let mut alternatives = Vec::new();
    for entry in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        let (host, port) = match entry.rsplit_once(':') {
            Some((h, p))
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
            {
                (h, p.parse::<u16>().ok())
            }
            _ => (entry, None),
        };
        let host = regex_escape(host);
        match port {
            Some(80) => alternatives.push(format!("http://{host}(?::80)?|https://{host}:80")),
            Some(443) => alternatives.push(format!("https://{host}(?::443)?|http://{host}:443")),
            Some(p) => alternatives.push(format!("https?://{host}:{p}")),
            None => alternatives.push(format!("http://{host}(?::80)?|https://{host}(?::443)?")),
        }
    }
    if alternatives.is_empty() {
        return None;
    }
    Some(format!(
        "^(?:{})(?:/[A-Za-z0-9._~-]*)*$",
        alternatives.join("|")
    ))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `CreateProject` as one branch per loaded model and committee shape; the
/// fields every branch shares (`name`, the numbers, `settings`) are the
/// generic schema's.
fn create_project(generic: &Value, models: &[ServedModel]) -> Value {
    let base = generic
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Committee candidates: the classifiers (and detectors) with a given
    // label set, keyed by the sorted set.
    let mut by_set: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    for m in models
        .iter()
        .filter(|m| !m.labels.is_empty() && !m.segments)
    {
        let mut key = m.labels.clone();
        key.sort();
        by_set.entry(key).or_default().push(&m.name);
    }
    let mut branches = Vec::new();
    for m in models {
        let no_committee = json!({"type": ["array", "null"], "maxItems": 0,
            "items": {"type": "string"},
            "description": "No committee (null, absent or empty)."});
        if m.labels.is_empty() {
            // An embedding model: the project's own labels, no committee.
            branches.push(branch(
                &base,
                m,
                json!({"type": "array", "items": {"type": "string"}, "minItems": 2,
                    "uniqueItems": true,
                    "description": "The project's own labels: at least two, distinct (a head is trained from the first annotations)."}),
                true,
                no_committee.clone(),
            ));
            // Or a fixed label set, with a committee of models that classify into it.
            for (set, members) in &by_set {
                branches.push(branch(
                    &base,
                    m,
                    permutation(set, false),
                    true,
                    committee(members, &m.name),
                ));
            }
            continue;
        }
        branches.push(branch(
            &base,
            m,
            permutation(&m.labels, true),
            false,
            no_committee,
        ));
        if m.detect || m.segments {
            continue;
        }
        let mut key = m.labels.clone();
        key.sort();
        let members: Vec<&str> = by_set
            .get(&key)
            .map(|v| v.iter().copied().filter(|n| *n != m.name).collect())
            .unwrap_or_default();
        if !members.is_empty() {
            branches.push(branch(
                &base,
                m,
                permutation(&m.labels, true),
                false,
                committee(&members, &m.name),
            ));
        }
    }
    let mut out = Map::new();
    if let Some(d) = generic.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("oneOf".into(), Value::Array(branches));
    Value::Object(out)
}

/// Exactly the labels of `set`, in any order, each once (or, where
/// `optional`, null or absent for the model's own).
fn permutation(set: &[String], optional: bool) -> Value {
    json!({
        "type": if optional { json!(["array", "null"]) } else { json!("array") },
        "items": {"type": "string", "enum": set},
        "minItems": set.len(),
        "maxItems": set.len(),
        "uniqueItems": true,
        "description": if optional {
            "The model's label set, in any order, each label once; null or absent: the model's."
        } else {
            "A label set that the committee's models classify into, in any order, each label once."
        },
    })
}

fn committee(members: &[&str], own: &str) -> Value {
    json!({
        "type": "array",
        "items": {"type": "string", "enum": members},
        "minItems": 1,
        "maxItems": members.len(),
        "uniqueItems": true,
        "description": format!("Other loaded models with the same label set as the project (not {own:?}), each once."),
    })
}

fn branch(
    base: &Map<String, Value>,
    m: &ServedModel,
    labels: Value,
    labels_required: bool,
    committee: Value,
) -> Value {
    let mut props = base.clone();
    props.insert(
        "model".into(),
        json!({"type": "string", "const": m.name, "description": "A model this server has loaded."}),
    );
    let has_committee = committee
        .get("minItems")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0;
    props.insert("labels".into(), labels);
    props.insert("committee".into(), committee);
    // Boxes are accepted by box calibration only: no fixed threshold.
    if m.detect {
        props.insert(
            "threshold".into(),
            json!({"type": "null", "description": "A detection project takes no fixed threshold: its boxes are auto-accepted only by box calibration."}),
        );
    }
    let mut required = vec!["name", "model"];
    if labels_required {
        required.push("labels");
    }
    // A branch with a committee requires it, so that no body matches two
    // branches (`oneOf`).
    if has_committee {
        required.push("committee");
    }
    let kind = if m.detect {
        "object detection"
    } else if m.labels.is_empty() {
        "embeddings (the project brings its labels)"
    } else {
        "classification"
    };
    json!({
        "type": "object",
        "title": format!(
            "{} ({kind}{})",
            m.name,
            if has_committee { ", with a committee" } else { "" }
        ),
        "required": required,
        "properties": props,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, labels: &[&str], detect: bool) -> ServedModel {
        ServedModel {
            name: name.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            detect,
            segments: false,
        }
    }

    #[test]
    fn sync_urls_are_on_the_allowed_hosts() {
        let doc = served_document(&Served {
            ls_hosts: vec!["localhost:8080".into(), "ls.example".into()],
            predict_max_items: Some(64),
            ..Served::default()
        });
        assert_eq!(
            doc["components"]["schemas"]["PredictIn"]["properties"]["items"]["maxItems"],
            64
        );
        let url = &doc["components"]["schemas"]["SyncIn"]["properties"]["url"];
        assert_eq!(
            url["pattern"],
            json!("^(?:https?://localhost:8080|http://ls\\.example(?::80)?|https://ls\\.example(?::443)?)(?:/[A-Za-z0-9._~-]*)*$")
        );
        assert!(url.get("format").is_none());
        let none = served_document(&Served::default());
        assert_eq!(
            none["components"]["schemas"]["SyncIn"]["properties"]["url"]["format"],
            "uri"
        );
    }

    #[test]
    fn create_project_has_a_branch_per_model_and_committee() {
        let doc = served_document(&Served {
            models: vec![
                model("a", &["x", "y"], false),
                model("b", &["y", "x"], false),
                model("e", &[], false),
                model("d", &["box"], true),
            ],
            ..Served::default()
        });
        let create = &doc["components"]["schemas"]["CreateProject"];
        let branches = create["oneOf"].as_array().unwrap();
        let titles: Vec<&str> = branches
            .iter()
            .map(|b| b["title"].as_str().unwrap())
            .collect();
        // a, a+committee, b, b+committee, e, e+committee of each label set
        // (d's, then a's and b's), d
        assert_eq!(branches.len(), 8, "{titles:?}");
        assert_eq!(
            branches[5]["properties"]["committee"]["items"]["enum"],
            json!(["d"])
        );
        assert_eq!(
            branches[6]["properties"]["committee"]["items"]["enum"],
            json!(["a", "b"])
        );
        let a_committee = &branches[1]["properties"]["committee"];
        assert_eq!(a_committee["items"]["enum"], json!(["b"]));
        assert_eq!(branches[0]["properties"]["committee"]["maxItems"], 0);
        assert_eq!(
            branches[1]["required"],
            json!(["name", "model", "committee"])
        );
        assert_eq!(branches[4]["required"], json!(["name", "model", "labels"]));
        assert_eq!(
            branches[5]["required"],
            json!(["name", "model", "labels", "committee"])
        );
        assert_eq!(branches[4]["properties"]["labels"]["minItems"], 2);
        assert_eq!(
            branches[7]["properties"]["labels"]["items"]["enum"],
            json!(["box"])
        );
        assert_eq!(branches[7]["properties"]["committee"]["maxItems"], 0);
        assert_eq!(
            branches[0]["properties"]["name"]["pattern"],
            json!("\\S"),
            "the shared fields come from the generic schema"
        );
        assert_eq!(
            doc["components"]["schemas"]["BoxIn"]["properties"]["label"]["enum"],
            json!(["box"])
        );
        assert_eq!(
            doc["components"]["schemas"]["PredictIn"]["properties"]["model"]["enum"],
            json!(["a", "b", "e", "d"])
        );
    }
}
