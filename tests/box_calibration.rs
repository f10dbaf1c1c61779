//! Calibration for boxes through the real server and the real `layout`
//! model (issue 22), on SQLite and PostgreSQL, over the 60 synthetic pages
//! of `data/layout-pages` (rendered by `scripts/render_layout_pages.py`,
//! with exact ground truth):
//! - a detection project draws a uniform audit sample of images, and those
//!   wait for a person with every box left for review;
//! - a reviewer returns the true boxes of every audit image;
//! - `POST …/calibrate` fits box thresholds; `GET …/calibration` shows per
//!   class the threshold, its audit figures, the bound and the miss rate;
//! - every other image is re-routed under the version: a box is accepted
//!   exactly when its class has a threshold its score reaches, an image is
//!   auto-accepted exactly when all its boxes are;
//! - the boxes auto-accepted meet the target **against the truth**;
//! - images ingested after the fit are routed by it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::detect::{corners, ingest, machine};
use common::server::{create_token, send, Server, TestDb};
use serde_json::{json, Value};

const TARGET: f64 = 0.8;

/// The pages' ground truth: per file name, `(label, [x0, y0, x1, y1])`.
fn truth() -> HashMap<String, Vec<(String, [f64; 4])>> {
    let path = common::root().join("data/layout-pages/instances.json");
    common::require(&path);
    let coco: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let names: HashMap<i64, String> = coco["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files: HashMap<i64, String> = coco["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_i64().unwrap(),
                i["file_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut out: HashMap<String, Vec<(String, [f64; 4])>> =
        files.values().map(|f| (f.clone(), Vec::new())).collect();
    for a in coco["annotations"].as_array().unwrap() {
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let file = &files[&a["image_id"].as_i64().unwrap()];
        let label = names[&a["category_id"].as_i64().unwrap()].clone();
        out.get_mut(file)
            .unwrap()
            .push((label, [b[0], b[1], b[0] + b[2], b[1] + b[3]]));
    }
    out
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// How many of `accepted` (label, box, score) match a distinct true box of
/// their label at IoU ≥ 0.5, greedily by score (an independent check of
/// the server's matching).
fn correct(accepted: &[(String, [f64; 4], f64)], truth: &[(String, [f64; 4])]) -> usize {
    let mut order: Vec<&(String, [f64; 4], f64)> = accepted.iter().collect();
    order.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut taken = vec![false; truth.len()];
    let mut hits = 0;
    for (label, b, _) in order {
        let best = truth
            .iter()
            .enumerate()
            .filter(|(g, (l, _))| !taken[*g] && l == label)
            .map(|(g, (_, t))| (g, iou(b, t)))
            .filter(|(_, v)| *v >= 0.5)
            .max_by(|x, y| x.1.total_cmp(&y.1));
        if let Some((g, _)) = best {
            taken[g] = true;
            hits += 1;
        }
    }
    hits
}

async fn calibrated_boxes(db: TestDb) {
    let truth = truth();
    let admin = create_token(&db.url, "admin", "boss");
    let data = common::root().join("data/layout-pages");
    let s = Server::start(&db.url, &["--data-root", data.to_str().unwrap()]).with_token(&admin);

    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "pages", "model": "layout", "precision_target": TARGET,
                    "settings": {"audit_rate": 0.5, "calibrate_every": 0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let mut files: Vec<&String> = truth.keys().collect();
    files.sort();
    let pages: Vec<Value> = files.iter().map(|f| json!({"id": f, "path": f})).collect();
    ingest(&s, project, &pages).await;

    // Before any fit: nothing is auto-accepted.
    let (code, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), files.len());
    assert!(
        items.iter().all(|i| i["status"] == "needs_review"),
        "{list}"
    );
    let audit: Vec<&Value> = items.iter().filter(|i| i["audit"] == true).collect();
    // A uniform draw at 0.5 of 60 images.
    assert!(
        (15..=45).contains(&audit.len()),
        "{} audit images",
        audit.len()
    );

    // Calibrating before any audit image is reviewed is refused.
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("no_audit_labels"), "{body}");

    // A reviewer returns the true boxes of every audit image.
    let mut audit_truths = 0;
    for it in &audit {
        let id = it["id"].as_i64().unwrap();
        let file = it["client_id"].as_str().unwrap();
        let boxes: Vec<Value> = truth[file]
            .iter()
            .map(|(label, b)| json!({"label": label, "box": b}))
            .collect();
        audit_truths += boxes.len();
        let (code, body) = send(
            s.client
                .put(format!(
                    "{}/v1/projects/{project}/items/{id}/regions",
                    s.url
                ))
                .bearer_auth(&admin)
                .json(&json!({ "regions": boxes })),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "labeled", "{body}");
    }

    let (code, body) = s
        .post(&format!("/v1/projects/{project}/calibrate"), &json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    let job = s
        .wait_job(body["id"].as_i64().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["errors"], 0, "{job}");

    let (code, cal) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert_eq!(code, 200, "{cal}");
    eprintln!("box calibration: {cal:#}");
    let version = cal["version"].as_i64().expect("a version");
    assert_eq!(cal["kind"], "boxes", "{cal}");
    assert_eq!(cal["target"], TARGET, "{cal}");
    assert_eq!(cal["iou_threshold"], 0.5, "{cal}");
    assert_eq!(cal["audit_images"], audit.len(), "{cal}");
    assert_eq!(cal["miss"]["truths"], audit_truths, "{cal}");
    let missed = cal["miss"]["missed"].as_u64().unwrap() as usize;
    assert!(missed < audit_truths, "{cal}");
    let upper = cal["miss"]["upper"].as_f64().unwrap();
    assert!(
        cal["miss"]["mean"].as_f64().unwrap() <= upper && upper <= 1.0,
        "{cal}"
    );
    let classes = cal["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10, "{cal}");
    assert_eq!(
        classes
            .iter()
            .map(|c| c["truths"].as_u64().unwrap() as usize)
            .sum::<usize>(),
        audit_truths
    );
    assert_eq!(
        classes
            .iter()
            .map(|c| c["missed"].as_u64().unwrap() as usize)
            .sum::<usize>(),
        missed
    );
    let thresholds: HashMap<String, f64> = classes
        .iter()
        .filter_map(|c| Some((c["label"].as_str()?.to_string(), c["threshold"].as_f64()?)))
        .collect();
    assert!(
        !thresholds.is_empty(),
        "no class calibrated at target {TARGET} on {} audit images: {cal}",
        audit.len()
    );

    // Every other image is re-routed under the version, and what it
    // accepts meets the target against the truth.
    let (mut accepted_all, mut correct_all, mut machine_all, mut auto_images) = (0, 0, 0, 0);
    for it in items.iter().filter(|i| i["audit"] == false) {
        let id = it["id"].as_i64().unwrap();
        let (code, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        assert_eq!(code, 200, "{r}");
        let boxes = machine(&r);
        let mut accepted = Vec::new();
        for b in &boxes {
            assert_eq!(b["calibration_version"], version, "{b}");
            let label = b["label"].as_str().unwrap();
            let score = b["score"].as_f64().unwrap();
            let should = thresholds.get(label).is_some_and(|t| score >= *t);
            let status = if should { "accepted" } else { "review" };
            assert_eq!(b["status"], status, "{b}");
            if should {
                accepted.push((label.to_string(), corners(&b["box"]), score));
            }
        }
        let auto = !boxes.is_empty() && accepted.len() == boxes.len();
        assert_eq!(
            r["status"],
            if auto {
                "auto_accepted"
            } else {
                "needs_review"
            },
            "{r}"
        );
        auto_images += usize::from(auto);
        machine_all += boxes.len();
        correct_all += correct(&accepted, &truth[it["client_id"].as_str().unwrap()]);
        accepted_all += accepted.len();
    }
    eprintln!(
        "non-audit images: {accepted_all} of {machine_all} machine boxes auto-accepted, \
         {correct_all} correct against the truth; {auto_images} images auto-accepted"
    );
    assert!(accepted_all > 0, "the version accepted no box");
    let coverage = cal["coverage"].as_f64().unwrap();
    assert!(
        (coverage - accepted_all as f64 / machine_all as f64).abs() < 1e-12,
        "{coverage}"
    );
    let realised = correct_all as f64 / accepted_all as f64;
    assert!(
        realised >= TARGET,
        "realised precision {realised:.3} of auto-accepted boxes is below {TARGET}"
    );

    // Pages ingested after the fit are routed by it (the same pages again,
    // under new ids; the audit draw applies to them as to any image).
    let again: Vec<Value> = files
        .iter()
        .take(12)
        .map(|f| json!({"id": format!("again/{f}"), "path": f}))
        .collect();
    ingest(&s, project, &again).await;
    let (_, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let mut routed = 0;
    for it in list["items"].as_array().unwrap() {
        let cid = it["client_id"].as_str().unwrap();
        if !cid.starts_with("again/") || it["audit"] == true {
            continue;
        }
        let id = it["id"].as_i64().unwrap();
        let (_, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        for b in machine(&r) {
            assert_eq!(b["calibration_version"], version, "{b}");
            let should = thresholds
                .get(b["label"].as_str().unwrap())
                .is_some_and(|t| b["score"].as_f64().unwrap() >= *t);
            assert_eq!(
                b["status"],
                if should { "accepted" } else { "review" },
                "{b}"
            );
            routed += 1;
        }
    }
    assert!(routed > 0, "no box routed after the fit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrated_boxes_sqlite() {
    calibrated_boxes(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrated_boxes_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    calibrated_boxes(db).await;
}

/// Two annotators review the same pages: agreement on boxes is measured
/// from each one's own set (bob relabels one box and leaves one out per
/// page), while the image keeps the latest review.
async fn box_agreement(db: TestDb) {
    let truth = truth();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let bob = create_token(&db.url, "annotator", "bob");
    let data = common::root().join("data/layout-pages");
    let s = Server::start(&db.url, &["--data-root", data.to_str().unwrap()]).with_token(&admin);
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "pages", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let mut files: Vec<&String> = truth.keys().filter(|f| truth[*f].len() >= 3).collect();
    files.sort();
    files.truncate(3);
    let pages: Vec<Value> = files.iter().map(|f| json!({"id": f, "path": f})).collect();
    ingest(&s, project, &pages).await;
    // Detection images carry a layout embedding: the diversity strategies
    // rank them (before it, k-center found no candidate at all).
    let (code, picked) = s
        .get(&format!(
            "/v1/projects/{project}/review?strategy=k-center&limit=2"
        ))
        .await;
    assert_eq!(code, 200, "{picked}");
    assert_eq!(picked["items"].as_array().unwrap().len(), 2, "{picked}");
    let (code, _) = s
        .post(
            &format!("/v1/projects/{project}/review/release"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 200);
    // Boxes learn through box calibration; there is no head to train.
    let (code, body) = s
        .post(&format!("/v1/projects/{project}/train"), &json!({}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("wrong_content"), "{body}");
    let (_, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=10"))
        .await;
    let (mut boxes, mut agreed, mut matched) = (0usize, 0usize, 0usize);
    for it in list["items"].as_array().unwrap() {
        let id = it["id"].as_i64().unwrap();
        let t = &truth[it["client_id"].as_str().unwrap()];
        let set_a: Vec<Value> = t
            .iter()
            .map(|(l, b)| json!({"label": l, "box": b}))
            .collect();
        // bob: the first box relabeled, the last left out.
        let mut set_b = set_a.clone();
        set_b.pop();
        let other = if t[0].0 == "text" { "title" } else { "text" };
        set_b[0]["label"] = json!(other);
        for (token, set) in [(&alice, &set_a), (&bob, &set_b)] {
            let (code, body) = send(
                s.client
                    .put(format!(
                        "{}/v1/projects/{project}/items/{id}/regions",
                        s.url
                    ))
                    .bearer_auth(token)
                    .json(&json!({ "regions": set })),
            )
            .await;
            assert_eq!(code, 200, "{body}");
        }
        let n = t.len();
        boxes += 2 * n - 1;
        matched += n - 1;
        agreed += n - 2;
    }
    let (code, a) = s.get(&format!("/v1/projects/{project}/agreement")).await;
    assert_eq!(code, 200, "{a}");
    let b = &a["boxes"];
    assert_eq!(b["shared_images"], 3, "{a}");
    assert_eq!(b["matched"], matched, "{a}");
    assert_eq!(b["matched_same_label"], agreed, "{a}");
    let f1 = b["f1"].as_f64().unwrap();
    assert!(
        (f1 - 2.0 * agreed as f64 / boxes as f64).abs() < 1e-12,
        "{a}"
    );
    let alpha = b["alpha"].as_f64().unwrap();
    assert!(alpha > 0.0 && alpha < 1.0, "{a}");
    assert_eq!(b["pairs"][0]["a"], "alice", "{a}");
    assert_eq!(b["pairs"][0]["b"], "bob", "{a}");
    assert_eq!(b["pairs"][0]["images"], 3, "{a}");
    // A classification project's agreement has no `boxes`.
    let (_, c) = s
        .post(
            "/v1/projects",
            &json!({"name": "c", "model": "fashion-mnist-cnn"}),
        )
        .await;
    let (_, ca) = s.get(&format!("/v1/projects/{}/agreement", c["id"])).await;
    assert!(ca.get("boxes").is_none(), "{ca}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_agreement_sqlite() {
    box_agreement(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_agreement_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    box_agreement(db).await;
}
