//! Label Studio on a detection project (issue #22), against a real
//! `labelloop serve` with the real layout model: `<RectangleLabels>` configs
//! checked at `/setup`, `/predict` answering `rectanglelabels` results in
//! percent of the original image, and box annotations from the webhook
//! recorded as the item's human regions. The bodies follow the shapes Label
//! Studio 1.23.2 sends (tests/fixtures/labelstudio/); the box coordinates
//! are arranged here.

mod common;

use std::time::{Duration, Instant};

use common::detect::LAYOUT_LABELS;
use common::server::{Server, TestDb};
use serde_json::{json, Value};

fn config(labels: &[&str]) -> String {
    let labels: String = labels
        .iter()
        .map(|l| format!("<Label value=\"{l}\"/>"))
        .collect();
    format!(
        "<View><Image name=\"image\" value=\"$image\"/>\
         <RectangleLabels name=\"block\" toName=\"image\">{labels}</RectangleLabels></View>"
    )
}

struct Env {
    server: Server,
    _db: TestDb,
    project: i64,
}

async fn env() -> Env {
    env_on(TestDb::sqlite()).await
}

async fn env_on(db: TestDb) -> Env {
    common::require(&common::model_dir("layout").join("model.onnx"));
    let data = common::root().join("tests/fixtures/documents");
    let server = Server::start(
        &db.url,
        &["--no-auth", "--data-root", data.to_str().unwrap()],
    );
    let (code, p) = server
        .post("/v1/projects", &json!({"name": "pages", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "detect", "{p}");
    let project = p["id"].as_i64().unwrap();
    Env {
        server,
        _db: db,
        project,
    }
}

async fn hook(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = server.post(path, body).await;
        if code != 200 || out["status"] != "queued" {
            return (code, out);
        }
        assert!(Instant::now() < deadline, "webhook never applied: {body}");
    }
}

#[tokio::test]
async fn setup_refuses_rectangle_labels_that_miss_the_models_classes() {
    let e = env().await;
    let setup = |schema: String| {
        json!({"project": "1.1", "schema": schema, "hostname": "http://localhost:8080",
               "access_token": "t", "model_version": ""})
    };
    let (code, body) = e
        .server
        .post(
            &format!("/labelstudio/{}/setup", e.project),
            &setup(config(&["text", "Title", "picture"])),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("<RectangleLabels name=\"block\""), "{msg}");
    assert!(msg.contains("\"figure\""), "names a missing class: {msg}");
    // A <Choices> config is not what a detector fills.
    let choices = "<View><Image name=\"image\" value=\"$image\"/><Choices name=\"c\" toName=\"image\"><Choice value=\"text\"/></Choices></View>";
    let (code, body) = e
        .server
        .post(
            &format!("/labelstudio/{}/setup", e.project),
            &setup(choices.to_string()),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no <RectangleLabels>"),
        "{body}"
    );
    // Case differs: still every class (labels match case-insensitively).
    let upper: Vec<String> = LAYOUT_LABELS.iter().map(|l| l.to_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    let (code, body) = e
        .server
        .post(
            &format!("/labelstudio/{}/setup", e.project),
            &setup(config(&upper)),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn predict_answers_rectangles_in_percent_of_the_original_image_and_webhooks_record_regions() {
    let e = env().await;
    let p = e.project;
    let tasks = json!([
        {"id": 1, "data": {"image": "page-1.png"}},
        {"id": 2, "data": {"image": "page-2.png"}},
    ]);
    let (code, out) = e
        .server
        .post(
            &format!("/labelstudio/{p}/predict"),
            &json!({"tasks": tasks, "label_config": config(&LAYOUT_LABELS)}),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);

    // The engine's own boxes for page 1, in pixels.
    let page = std::fs::read(common::root().join("tests/fixtures/documents/page-1.png")).unwrap();
    let (w, h) = {
        let img = image::load_from_memory(&page).unwrap();
        (f64::from(img.width()), f64::from(img.height()))
    };
    let model = common::shared("layout");
    let engine = model
        .predict(&[labelloop::model::Input::Image(page)])
        .remove(0)
        .unwrap()
        .detections
        .unwrap();
    let got = results[0]["result"].as_array().unwrap();
    assert_eq!(got.len(), engine.boxes.len(), "{}", results[0]);
    for (r, d) in got.iter().zip(&engine.boxes) {
        assert_eq!(r["type"], "rectanglelabels");
        assert_eq!(r["from_name"], "block");
        assert_eq!(r["to_name"], "image");
        assert_eq!(r["original_width"].as_f64().unwrap(), w);
        assert_eq!(r["original_height"].as_f64().unwrap(), h);
        let v = &r["value"];
        assert_eq!(v["rectanglelabels"][0], LAYOUT_LABELS[d.class]);
        // Top-left corner and size in percent, exact to rounding.
        let [x0, y0, x1, y1] = d.bbox;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
        assert!(close(v["x"].as_f64().unwrap(), x0 / w * 100.0), "{v}");
        assert!(close(v["y"].as_f64().unwrap(), y0 / h * 100.0), "{v}");
        assert!(
            close(v["width"].as_f64().unwrap(), (x1 - x0) / w * 100.0),
            "{v}"
        );
        assert!(
            close(v["height"].as_f64().unwrap(), (y1 - y0) / h * 100.0),
            "{v}"
        );
        assert!((r["score"].as_f64().unwrap() - f64::from(d.score)).abs() < 1e-6);
    }
    let weakest = engine
        .boxes
        .iter()
        .map(|b| f64::from(b.score))
        .fold(f64::INFINITY, f64::min);
    assert!((results[0]["score"].as_f64().unwrap() - weakest).abs() < 1e-6);

    // The tasks became items; wait for their pre-labels.
    let deadline = Instant::now() + Duration::from_secs(60);
    let item = loop {
        let (_, items) = e.server.get(&format!("/v1/projects/{p}/items")).await;
        let found = items["items"].as_array().and_then(|list| {
            list.iter()
                .find(|i| i["id_in_source"] == "ls-task-1" || i["client_id"] == "ls-task-1")
                .filter(|i| i["status"] != "pending")
                .cloned()
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "{items}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let item_id = item["id"].as_i64().unwrap();
    let (_, before) = e
        .server
        .get(&format!("/v1/projects/{p}/items/{item_id}/regions"))
        .await;
    let machine: Vec<Value> = before["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "machine")
        .cloned()
        .collect();
    assert!(machine.len() >= 2, "{before}");

    // The annotator keeps the first box, moves the second by 5% and adds one.
    let mut result: Vec<Value> = got[..2].to_vec();
    result[1]["value"]["x"] = json!(result[1]["value"]["x"].as_f64().unwrap() / 2.0);
    result.push(json!({
        "id": "new1", "from_name": "block", "to_name": "image", "type": "rectanglelabels",
        "original_width": w, "original_height": h, "image_rotation": 0,
        "value": {"x": 10.0, "y": 90.0, "width": 30.0, "height": 5.0, "rotation": 0,
                  "rectanglelabels": ["footer"]}
    }));
    let body = json!({
        "action": "ANNOTATION_CREATED",
        "task": {"id": 1, "data": {"image": "page-1.png"}},
        "annotation": {"id": 501, "task": 1, "result": result, "completed_by": {"id": 1, "email": "ann@example.com"},
                        "updated_at": "2026-12-07T09:00:00Z"},
        "project": {"id": 1, "label_config": config(&LAYOUT_LABELS)},
    });
    let (code, out) = hook(&e.server, &format!("/labelstudio/{p}/webhook"), &body).await;
    assert_eq!(code, 200, "{out}");
    let (_, after) = e
        .server
        .get(&format!("/v1/projects/{p}/items/{item_id}/regions"))
        .await;
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 2, "a moved box and an added one: {after}");
    assert!(human.iter().all(|r| r["annotator"] == "ls:ann@example.com"));
    let added = human.iter().find(|r| r["status"] == "added").unwrap();
    assert_eq!(added["label"], "footer");
    let b = added["box"].as_array().unwrap();
    assert!((b[0].as_f64().unwrap() - 0.1 * w).abs() < 1e-9, "{added}");
    assert!((b[3].as_f64().unwrap() - 0.95 * h).abs() < 1e-6, "{added}");
    let corrected = human.iter().find(|r| r["status"] == "corrected").unwrap();
    assert_eq!(corrected["replaces"], machine[1]["id"], "{after}");
    let kept = regions
        .iter()
        .find(|r| r["id"] == machine[0]["id"])
        .unwrap();
    assert_eq!(kept["status"], "accepted", "{kept}");
    for m in &machine[2..] {
        let now = regions.iter().find(|r| r["id"] == m["id"]).unwrap();
        assert_eq!(now["status"], "deleted", "{now}");
    }

    // A replay of the same event writes nothing twice.
    let (code, _) = hook(&e.server, &format!("/labelstudio/{p}/webhook"), &body).await;
    assert_eq!(code, 200);
    let (_, again) = e
        .server
        .get(&format!("/v1/projects/{p}/items/{item_id}/regions"))
        .await;
    assert_eq!(again["regions"], after["regions"]);

    // A box outside the image is refused by name, and nothing is written.
    let mut bad = body.clone();
    bad["annotation"]["id"] = json!(502);
    bad["annotation"]["result"][0]["value"]["x"] = json!(95.0);
    bad["annotation"]["result"][0]["value"]["width"] = json!(20.0);
    let (code, out) = hook(&e.server, &format!("/labelstudio/{p}/webhook"), &bad).await;
    assert!(code == 422 || out["status"] != "ok", "{code} {out}");
    let (_, still) = e
        .server
        .get(&format!("/v1/projects/{p}/items/{item_id}/regions"))
        .await;
    assert_eq!(still["regions"], after["regions"]);
}

/// The item of Label Studio task `task` once its pre-label is recorded.
async fn prelabeled(server: &Server, project: i64, task: i64) -> i64 {
    let client = format!("ls-task-{task}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, items) = server.get(&format!("/v1/projects/{project}/items")).await;
        let found = items["items"].as_array().and_then(|list| {
            list.iter()
                .find(|i| i["client_id"] == client.as_str())
                .filter(|i| i["status"] != "pending")
                .and_then(|i| i["id"].as_i64())
        });
        if let Some(id) = found {
            return id;
        }
        assert!(Instant::now() < deadline, "{items}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A box annotation event of `email` on task 1 (page-1.png).
fn box_event(action: &str, id: i64, email: &str, result: Vec<Value>, at: &str) -> Value {
    json!({
        "action": action,
        "task": {"id": 1, "data": {"image": "page-1.png"}},
        "annotation": {"id": id, "task": 1, "result": result,
                        "completed_by": {"id": 1, "email": email}, "updated_at": at},
        "project": {"id": 1, "label_config": config(&LAYOUT_LABELS)},
    })
}

/// A human region as `(annotator, label, box)`, for comparing sets.
fn human_set(regions: &Value) -> Vec<(String, String, Vec<f64>)> {
    let mut out: Vec<(String, String, Vec<f64>)> = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "human")
        .map(|r| {
            (
                r["annotator"].as_str().unwrap().to_string(),
                r["label"].as_str().unwrap().to_string(),
                r["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

/// Deleting a box annotation in Label Studio withdraws what it recorded,
/// exactly once: a set someone recorded later stays; the latest remaining
/// annotation's set comes back when the deleted one was the item's; with
/// none left the image goes back to review, its machine boxes as routed.
/// Predicting the task again writes no second machine set.
async fn deleting_a_box_annotation_withdraws_its_regions_once(e: Env) {
    let p = e.project;
    let predict = json!({"tasks": [{"id": 1, "data": {"image": "page-1.png"}}],
                         "label_config": config(&LAYOUT_LABELS)});
    let (code, out) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200, "{out}");
    let predicted = out["results"][0]["result"].as_array().unwrap().clone();
    assert!(predicted.len() >= 2, "{out}");
    let item = prelabeled(&e.server, p, 1).await;
    let regions_path = format!("/v1/projects/{p}/items/{item}/regions");
    let (_, fresh) = e.server.get(&regions_path).await;
    assert_eq!(fresh["status"], "needs_review", "{fresh}");
    // Predicting the same task again (Label Studio's "Retrieve predictions"
    // twice) writes no second set of machine boxes.
    let (code, again) = e
        .server
        .post(&format!("/labelstudio/{p}/predict"), &predict)
        .await;
    assert_eq!(code, 200);
    assert_eq!(again["results"][0]["result"], out["results"][0]["result"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, still) = e.server.get(&regions_path).await;
    assert_eq!(still["regions"], fresh["regions"], "no second machine set");

    let hook_path = format!("/labelstudio/{p}/webhook");
    let send = |body: Value| {
        let server = &e.server;
        let path = hook_path.clone();
        async move {
            let (code, out) = hook(server, &path, &body).await;
            assert_eq!(code, 200, "{out}");
            out
        }
    };
    // Ann keeps the first box only; Bob moves it; Carol relabels it.
    let ann = vec![predicted[0].clone()];
    let mut bob = ann.clone();
    bob[0]["value"]["x"] = json!(bob[0]["value"]["x"].as_f64().unwrap() / 2.0);
    let mut carol = ann.clone();
    carol[0]["value"]["rectanglelabels"] = json!(["equation"]);
    send(box_event(
        "ANNOTATION_CREATED",
        601,
        "ann@example.com",
        ann,
        "t1",
    ))
    .await;
    let (_, after_ann) = e.server.get(&regions_path).await;
    assert_eq!(after_ann["status"], "labeled");
    send(box_event(
        "ANNOTATION_CREATED",
        602,
        "bob@example.com",
        bob,
        "t2",
    ))
    .await;
    let (_, after_bob) = e.server.get(&regions_path).await;
    assert!(human_set(&after_bob)
        .iter()
        .all(|(who, _, _)| who == "ls:bob@example.com"));
    assert_eq!(human_set(&after_bob).len(), 1, "{after_bob}");

    // Ann's annotation goes: Bob's set is the item's, and stays.
    let out = send(
        json!({"action": "ANNOTATION_DELETED", "annotation": {"id": 601},
                          "project": {"id": 1}}),
    )
    .await;
    assert_eq!(out["recorded"], 1, "{out}");
    let (_, now) = e.server.get(&regions_path).await;
    assert_eq!(now["regions"], after_bob["regions"]);
    assert_eq!(now["status"], "labeled");

    // Carol relabels; her annotation goes: Bob's set comes back.
    send(box_event(
        "ANNOTATION_CREATED",
        603,
        "carol@example.com",
        carol,
        "t3",
    ))
    .await;
    let (_, after_carol) = e.server.get(&regions_path).await;
    assert_eq!(human_set(&after_carol)[0].1, "equation", "{after_carol}");
    send(
        json!({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 603}],
                "project": {"id": 1}}),
    )
    .await;
    let (_, now) = e.server.get(&regions_path).await;
    assert_eq!(human_set(&now), human_set(&after_bob), "{now}");
    assert_eq!(now["status"], "labeled");

    // Bob's goes too, in the plural form Label Studio sends: nobody's boxes
    // are left, so the image needs review again, its machine boxes as the
    // pre-label routed them, with no reviewer.
    let delete_bob = json!({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 602}],
                            "project": {"id": 1}});
    let out = send(delete_bob.clone()).await;
    assert_eq!(out["recorded"], 1, "{out}");
    let (_, reopened) = e.server.get(&regions_path).await;
    assert_eq!(reopened["status"], "needs_review", "{reopened}");
    assert!(human_set(&reopened).is_empty(), "{reopened}");
    let strip = |v: &Value| -> Vec<Value> {
        v["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("updated_at");
                r
            })
            .collect()
    };
    assert_eq!(strip(&reopened), strip(&fresh), "machine boxes as routed");

    // Redelivered, and again in another shape naming one more id: nothing
    // changes, and a review recorded since is not undone.
    let out = send(delete_bob).await;
    assert_eq!(out["recorded"], 1, "the first answer: {out}");
    let (code, reviewed) = common::server::send(
        e.server
            .client
            .put(format!("{}{regions_path}", e.server.url))
            .json(&json!({"regions": [{"label": "title", "box": [1.0, 2.0, 30.0, 40.0]}]})),
    )
    .await;
    assert_eq!(code, 200, "{reviewed}");
    let out = send(json!({"action": "ANNOTATIONS_DELETED",
                          "annotations": [{"id": 602}, {"id": 999}], "project": {"id": 1}}))
    .await;
    assert_eq!(out["recorded"], 0, "{out}");
    let (_, now) = e.server.get(&regions_path).await;
    assert_eq!(now["regions"], reviewed["regions"]);
    assert_eq!(now["status"], "labeled");
}

#[tokio::test]
async fn deleting_a_box_annotation_withdraws_its_regions_once_sqlite() {
    deleting_a_box_annotation_withdraws_its_regions_once(env().await).await;
}

#[tokio::test]
async fn deleting_a_box_annotation_withdraws_its_regions_once_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    deleting_a_box_annotation_withdraws_its_regions_once(env_on(db).await).await;
}
