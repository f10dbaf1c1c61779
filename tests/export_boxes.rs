//! Exports of a detection project's boxes (issue #22), through a real
//! `labelloop serve` with the real `layout` model over the synthetic pages
//! in data/layout-pages, on SQLite and PostgreSQL: the machine pre-labels
//! the pages, a person reviews some of them, and COCO, YOLO, Label Studio
//! and JSONL exports hold exactly the stored boxes (within 1e-9 of the
//! image side), with their provenance; which images COCO and YOLO export is
//! the documented rule (final boxes only; `boxes=machine` for every
//! proposal). Also: auto-accepted images through the store, and the
//! errors (a boxes format on a classification project, unknown values, a
//! missing project).

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use common::detect::{detect_project, ingest, LAYOUT_LABELS};
use common::server::{b64, create_token, fashion_items, send, Server, TestDb};
use futures_util::StreamExt;
use labelloop::region::{BoxPx, LabelStudioRect};
use labelloop::service::export::{self, ExportFormat};
use labelloop::store::{
    Content, MachineBox, MachineRegions, NewItem, Outcome, Store, StoredPrediction,
};
use serde_json::{json, Value};

/// `a` equals `b` within 1e-9 of the image side.
fn close(a: &BoxPx, b: &BoxPx, w: f64, h: f64) -> bool {
    (a.x0 - b.x0).abs() <= 1e-9 * w
        && (a.x1 - b.x1).abs() <= 1e-9 * w
        && (a.y0 - b.y0).abs() <= 1e-9 * h
        && (a.y1 - b.y1).abs() <= 1e-9 * h
}

fn bbox(v: &Value) -> BoxPx {
    let b = v.as_array().unwrap();
    BoxPx::new(
        b[0].as_f64().unwrap(),
        b[1].as_f64().unwrap(),
        b[2].as_f64().unwrap(),
        b[3].as_f64().unwrap(),
    )
}

/// The first `n` synthetic pages as ingest items, ids as in pages.jsonl
/// (`images/page_0001.png`, …), plus one more page under an id with the
/// same file stem as the first (`again/page_0001.png`).
fn pages(n: usize) -> Vec<Value> {
    let dir = common::root().join("data/layout-pages");
    let list = std::fs::read_to_string(common::require(&dir.join("pages.jsonl"))).unwrap();
    let mut out: Vec<Value> = list
        .lines()
        .take(n)
        .map(|l| {
            let p: Value = serde_json::from_str(l).unwrap();
            let file = p["image"].as_str().unwrap();
            json!({"id": p["id"], "image": b64(&std::fs::read(dir.join(file)).unwrap())})
        })
        .collect();
    let first = out[0]["id"].as_str().unwrap().to_string();
    let stem = first.rsplit('/').next().unwrap().to_string();
    let mut dup = out[1].clone();
    dup["id"] = json!(format!("again/{stem}"));
    out.push(dup);
    out
}

/// The machine regions of an item, as the item route answered them.
fn machine_of(stored: &HashMap<i64, Value>, id: i64) -> Vec<Value> {
    stored[&id]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "machine")
        .cloned()
        .collect()
}

async fn bytes(s: &Server, path: &str) -> (u16, String, Vec<u8>) {
    let mut r = s.client.get(format!("{}{}", s.url, path));
    if let Some(t) = &s.token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.bytes().await.unwrap().to_vec())
}

/// One reviewed image: what the reviewer sent (label, box), and its size.
struct Reviewed {
    boxes: Vec<(String, BoxPx)>,
    width: f64,
    height: f64,
    client_id: String,
}

async fn boxes_exported(db: TestDb) {
    common::require(&common::model_dir("layout").join("model.onnx"));
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let s = Server::start(&db.url, &[]).with_token(&admin);

    let (code, p) = s
        .post("/v1/projects", &json!({"name": "pages", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let pages = pages(5);
    ingest(&s, project, &pages).await;

    // Every item's stored regions, as the item route answers them.
    let (code, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=100"))
        .await;
    assert_eq!(code, 200, "{list}");
    let items: Vec<Value> = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), pages.len());
    let mut stored: HashMap<i64, Value> = HashMap::new();
    for it in &items {
        let id = it["id"].as_i64().unwrap();
        let (code, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["status"], "needs_review", "{r}");
        // GET /v1/items/{id} carries the same regions.
        let (code, one) = s.get(&format!("/v1/items/{id}")).await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(one["regions"], r["regions"], "{one}");
        stored.insert(id, r);
    }
    let total_machine: usize = items
        .iter()
        .map(|i| machine_of(&stored, i["id"].as_i64().unwrap()).len())
        .sum();
    assert!(total_machine >= 10, "the model found {total_machine} boxes");

    // Before any review no image has final boxes: COCO lists none, and says why.
    let (code, ct, raw) = bytes(&s, &format!("/v1/projects/{project}/export?format=coco")).await;
    assert_eq!(code, 200);
    assert_eq!(ct, "application/json");
    let coco: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(coco["images"], json!([]));
    assert_eq!(coco["annotations"], json!([]));
    assert_eq!(coco["labelloop"]["images_left_out"], pages.len());

    // A person reviews three images: the first keeps all machine boxes but
    // moves one by a fraction of a pixel and adds one; the one whose id
    // repeats the first's file stem keeps half and relabels one; the third
    // has nothing on it (every machine box deleted).
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let dup = items
        .iter()
        .find(|i| i["client_id"].as_str().unwrap().starts_with("again/"))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut reviewed: HashMap<i64, Reviewed> = HashMap::new();
    for (k, id) in [ids[0], dup, ids[2]].into_iter().enumerate() {
        let r = &stored[&id];
        let (w, h) = (r["width"].as_f64().unwrap(), r["height"].as_f64().unwrap());
        let m = machine_of(&stored, id);
        let mut set: Vec<(Option<i64>, String, BoxPx)> = Vec::new();
        match k {
            0 => {
                for (j, b) in m.iter().enumerate() {
                    let mut bx = bbox(&b["box"]);
                    if j == 0 {
                        bx.x0 += 0.123_456_789_012_3;
                    }
                    set.push((b["id"].as_i64(), b["label"].as_str().unwrap().into(), bx));
                }
                set.push((
                    None,
                    "title".into(),
                    BoxPx::new(10.25, 11.5, w / 3.0, h / 7.0),
                ));
            }
            1 => {
                for (j, b) in m.iter().enumerate().take(m.len().div_ceil(2)) {
                    let label = if j == 0 && b["label"] != "table" {
                        "table"
                    } else {
                        b["label"].as_str().unwrap()
                    };
                    set.push((b["id"].as_i64(), label.into(), bbox(&b["box"])));
                }
            }
            _ => {}
        }
        let body = json!({"regions": set.iter().map(|(id, label, b)| {
            let mut v = json!({"label": label, "box": [b.x0, b.y0, b.x1, b.y1]});
            if let Some(id) = id { v["id"] = json!(id); }
            v
        }).collect::<Vec<_>>()});
        let (code, after) = send(
            s.client
                .put(format!(
                    "{}/v1/projects/{project}/items/{id}/regions",
                    s.url
                ))
                .bearer_auth(&alice)
                .json(&body),
        )
        .await;
        assert_eq!(code, 200, "{after}");
        assert_eq!(after["status"], "labeled");
        stored.insert(id, after);
        reviewed.insert(
            id,
            Reviewed {
                boxes: set.into_iter().map(|(_, l, b)| (l, b)).collect(),
                width: w,
                height: h,
                client_id: items.iter().find(|i| i["id"] == id).unwrap()["client_id"]
                    .as_str()
                    .unwrap()
                    .into(),
            },
        );
    }

    // The reviewer's set, as a multiset of (label, box), matched within 1e-9.
    let same_set = |got: &[(String, BoxPx)], want: &Reviewed, what: &str| {
        assert_eq!(got.len(), want.boxes.len(), "{what}: {} boxes", got.len());
        let mut left: Vec<&(String, BoxPx)> = want.boxes.iter().collect();
        for (label, b) in got {
            let at = left
                .iter()
                .position(|(l, w)| l == label && close(b, w, want.width, want.height))
                .unwrap_or_else(|| panic!("{what}: {label} {b} is not one of the reviewer's"));
            left.remove(at);
        }
    };

    // COCO: the three reviewed images, each with exactly the reviewer's boxes.
    let (code, _, raw) = bytes(&s, &format!("/v1/projects/{project}/export?format=coco")).await;
    assert_eq!(code, 200);
    let coco: Value = serde_json::from_slice(&raw).unwrap();
    let cats: Vec<&str> = coco["categories"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["id"], i + 1);
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(cats, LAYOUT_LABELS);
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{}", coco["images"]);
    assert_eq!(coco["labelloop"]["images_left_out"], pages.len() - 3);
    let annotations = coco["annotations"].as_array().unwrap();
    let want_total: usize = reviewed.values().map(|r| r.boxes.len()).sum();
    assert_eq!(annotations.len(), want_total);
    assert_eq!(coco["labelloop"]["annotations"], want_total);
    for img in images {
        let id = img["id"].as_i64().unwrap();
        let r = &reviewed[&id];
        assert_eq!(img["file_name"], r.client_id.as_str());
        assert_eq!(img["width"].as_f64().unwrap(), r.width);
        assert_eq!(img["height"].as_f64().unwrap(), r.height);
        assert_eq!(img["labelloop"]["status"], "labeled");
        let mine: Vec<&Value> = annotations.iter().filter(|a| a["image_id"] == id).collect();
        let got: Vec<(String, BoxPx)> = mine
            .iter()
            .map(|a| {
                let b = a["bbox"].as_array().unwrap();
                let xywh = [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap());
                let bx = BoxPx::from_coco(xywh);
                assert!((a["area"].as_f64().unwrap() - xywh[2] * xywh[3]).abs() < 1e-6);
                assert_eq!(a["iscrowd"], 0);
                let cat = a["category_id"].as_u64().unwrap() as usize;
                let p = &a["labelloop"];
                match p["source"].as_str().unwrap() {
                    "machine" => {
                        assert_eq!(p["status"], "accepted", "{a}");
                        assert!(p["score"].as_f64().unwrap() > 0.0, "{a}");
                        assert!(
                            p["model_version"].as_str().unwrap().contains("1.2.1"),
                            "{a}"
                        );
                    }
                    "human" => assert!(p["score"].is_null(), "{a}"),
                    other => panic!("source {other}"),
                }
                assert_eq!(p["annotator"], "alice", "{a}");
                (LAYOUT_LABELS[cat - 1].to_string(), bx)
            })
            .collect();
        same_set(&got, r, &format!("coco image {id}"));
        // Provenance matches the stored region it names.
        for a in mine {
            let rid = &a["labelloop"]["region_id"];
            assert_eq!(rid, &a["id"]);
            let st = stored[&id]["regions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == *rid)
                .unwrap()
                .clone();
            assert_eq!(a["labelloop"]["source"], st["source"]);
            assert_eq!(a["labelloop"]["score"], st["score"]);
            assert_eq!(a["labelloop"]["model_version"], st["model_version"]);
            let b = BoxPx::from_coco([0, 1, 2, 3].map(|i| a["bbox"][i].as_f64().unwrap()));
            assert!(
                close(&b, &bbox(&st["box"]), r.width, r.height),
                "{a} vs {st}"
            );
        }
    }

    // COCO, boxes=machine: every pre-labeled image, every proposal, its score.
    let (code, _, raw) = bytes(
        &s,
        &format!("/v1/projects/{project}/export?format=coco&boxes=machine"),
    )
    .await;
    assert_eq!(code, 200);
    let cm: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(cm["images"].as_array().unwrap().len(), pages.len());
    assert_eq!(cm["annotations"].as_array().unwrap().len(), total_machine);
    for a in cm["annotations"].as_array().unwrap() {
        let id = a["image_id"].as_i64().unwrap();
        let st = machine_of(&stored, id)
            .into_iter()
            .find(|m| m["id"] == a["id"])
            .unwrap();
        assert_eq!(a["score"], st["score"]);
        let bx = BoxPx::from_coco([0, 1, 2, 3].map(|i| a["bbox"][i].as_f64().unwrap()));
        let (w, h) = (
            stored[&id]["width"].as_f64().unwrap(),
            stored[&id]["height"].as_f64().unwrap(),
        );
        assert!(close(&bx, &bbox(&st["box"]), w, h), "{a} vs {st}");
    }

    // YOLO: a zip with data.yaml, a label file per reviewed image (the
    // repeated stem renamed), train.txt and items.csv.
    let (code, ct, raw) = bytes(&s, &format!("/v1/projects/{project}/export?format=yolo")).await;
    assert_eq!(code, 200);
    assert_eq!(ct, "application/zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(raw)).unwrap();
    let mut files: HashMap<String, String> = HashMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        files.insert(f.name().unwrap().to_string(), text);
    }
    let yaml = &files["data.yaml"];
    assert!(yaml.contains("nc: 10\n"), "{yaml}");
    let names_line = yaml.lines().find(|l| l.starts_with("names: ")).unwrap();
    let names: Vec<String> = serde_json::from_str(&names_line["names: ".len()..]).unwrap();
    assert_eq!(names, LAYOUT_LABELS);
    let label_files: Vec<&String> = files.keys().filter(|k| k.starts_with("labels/")).collect();
    assert_eq!(label_files.len(), 3, "{:?}", files.keys());
    assert_eq!(files["train.txt"].lines().count(), 3);
    let mut index = csv::Reader::from_reader(files["items.csv"].as_bytes());
    let rows: Vec<csv::StringRecord> = index.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let mut stems = Vec::new();
    for row in &rows {
        let id: i64 = row[0].parse().unwrap();
        let r = &reviewed[&id];
        assert_eq!(&row[1], r.client_id);
        let text = &files[&row[3]];
        stems.push(row[3].to_string());
        assert!(files["train.txt"].lines().any(|l| l == &row[2]));
        assert_eq!(row[7].parse::<usize>().unwrap(), r.boxes.len());
        let (w, h) = (r.width as u32, r.height as u32);
        let got: Vec<(String, BoxPx)> = text
            .lines()
            .map(|l| {
                let v: Vec<&str> = l.split(' ').collect();
                assert_eq!(v.len(), 5, "{l}");
                let class: usize = v[0].parse().unwrap();
                let n = [1, 2, 3, 4].map(|i| v[i].parse::<f64>().unwrap());
                assert!(n.iter().all(|x| (0.0..=1.0).contains(x)), "{l}");
                (
                    LAYOUT_LABELS[class].to_string(),
                    BoxPx::from_yolo(n, w, h).unwrap(),
                )
            })
            .collect();
        same_set(&got, r, &format!("yolo {}", &row[3]));
    }
    stems.sort();
    let first_stem = reviewed[&ids[0]]
        .client_id
        .rsplit('/')
        .next()
        .unwrap()
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    assert!(
        stems.contains(&format!("labels/{first_stem}.txt")),
        "{stems:?}"
    );
    assert!(
        stems.contains(&format!("labels/{first_stem}_{dup}.txt")),
        "{stems:?}"
    );

    // Label Studio: every task; machine boxes as a scored prediction, the
    // reviewer's boxes as an annotation.
    let (code, _, raw) = bytes(
        &s,
        &format!("/v1/projects/{project}/export?format=labelstudio"),
    )
    .await;
    assert_eq!(code, 200);
    let tasks: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(tasks.len(), pages.len());
    let from_ls = |res: &Value| -> (String, BoxPx) {
        assert_eq!(res["type"], "rectanglelabels");
        assert_eq!(res["image_rotation"], 0);
        let (w, h) = (
            res["original_width"].as_u64().unwrap() as u32,
            res["original_height"].as_u64().unwrap() as u32,
        );
        let rect: LabelStudioRect = serde_json::from_value(res["value"].clone()).unwrap();
        (
            res["value"]["rectanglelabels"][0].as_str().unwrap().into(),
            BoxPx::from_label_studio(&rect, w, h).unwrap(),
        )
    };
    for t in &tasks {
        let id = t["id"].as_i64().unwrap();
        let st = &stored[&id];
        let (w, h) = (
            st["width"].as_f64().unwrap(),
            st["height"].as_f64().unwrap(),
        );
        let m = machine_of(&stored, id);
        if m.is_empty() {
            assert_eq!(t["predictions"], json!([]), "{t}");
            continue;
        }
        let pred = &t["predictions"][0];
        let results = pred["result"].as_array().unwrap();
        assert_eq!(results.len(), m.len());
        assert!(pred["model_version"].as_str().unwrap().contains("1.2.1"));
        let weakest = m
            .iter()
            .map(|r| r["score"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(pred["score"].as_f64().unwrap(), weakest);
        for res in results {
            let mr = m
                .iter()
                .find(|r| res["id"] == format!("m{}", r["id"]))
                .unwrap();
            let (label, b) = from_ls(res);
            assert_eq!(label, mr["label"].as_str().unwrap());
            assert!(close(&b, &bbox(&mr["box"]), w, h));
            assert_eq!(res["score"], mr["score"]);
        }
        match reviewed.get(&id) {
            Some(r) => {
                let ann = &t["annotations"][0];
                assert_eq!(ann["completed_by"], "alice");
                let got: Vec<(String, BoxPx)> = ann["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|res| {
                        assert!(res.get("score").is_none(), "{res}");
                        from_ls(res)
                    })
                    .collect();
                same_set(&got, r, &format!("labelstudio task {id}"));
            }
            None => assert_eq!(t["annotations"], json!([]), "{t}"),
        }
    }

    // JSONL: each line carries the item's stored regions, as stored.
    let (code, text) = s
        .get_text(&format!("/v1/projects/{project}/export?format=jsonl"))
        .await;
    assert_eq!(code, 200);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), pages.len());
    for l in &lines {
        let id = l["id"].as_i64().unwrap();
        assert_eq!(l["regions"], stored[&id]["regions"], "{l}");
    }

    // Errors: a boxes format on a classification project names both.
    let (code, c) = s
        .post(
            "/v1/projects",
            &json!({"name": "clothes", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let cp = c["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{cp}/items"),
            &json!(fashion_items(2)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(body["job"]["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    for f in ["coco", "yolo"] {
        let (code, body) = s.get(&format!("/v1/projects/{cp}/export?format={f}")).await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(body["error"]["code"], "wrong_content");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(f) && msg.contains("classify"), "{msg}");
    }
    let (code, list) = s.get(&format!("/v1/projects/{cp}/items")).await;
    assert_eq!(code, 200);
    let cid = list["items"][0]["id"].as_i64().unwrap();
    let (code, one) = s.get(&format!("/v1/items/{cid}")).await;
    assert_eq!(code, 200);
    assert!(one.get("regions").is_none(), "{one}");
    let (code, body) = s
        .get(&format!("/v1/projects/{project}/export?format=pascal"))
        .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"pascal\"") && msg.contains("jsonl, csv, labelstudio, coco, yolo"),
        "{msg}"
    );
    for q in ["format=coco&boxes=all", "format=jsonl&boxes=machine"] {
        let (code, body) = s.get(&format!("/v1/projects/{project}/export?{q}")).await;
        assert_eq!(code, 422, "{q}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("boxes"),
            "{body}"
        );
    }
    let (code, body) = s.get("/v1/projects/999999/export?format=coco").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = s.get("/v1/projects/999999/export?format=pascal").await;
    assert_eq!(code, 404, "a missing project before a bad format: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_exported_sqlite() {
    boxes_exported(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_exported_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    boxes_exported(db).await;
}

async fn collect(store: &Store, project: i64, format: ExportFormat) -> Vec<u8> {
    let mut s = export::start(store, project, format).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Where no one reviewed, an auto-accepted image exports the machine's
/// accepted boxes; an image awaiting review is left out; paging (more
/// images than a page) neither drops nor repeats one.
async fn auto_accepted(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let project = detect_project(&store, "auto").await;
    let n = 1203;
    let new: Vec<NewItem> = (0..n)
        .map(|i| NewItem {
            client_id: format!("scan-{i}.png"),
            content: Content::Image(vec![0u8; 4]),
        })
        .collect();
    store.ingest(project.id, &new).await.unwrap();
    let mut accepted_images = 0;
    while let Some(claim) = store
        .claim("w", 500, Duration::from_secs(60))
        .await
        .unwrap()
    {
        let outcomes: Vec<(i64, Outcome)> = claim
            .items
            .iter()
            .map(|it| {
                // Every third image auto-accepted (all its boxes accepted).
                let auto = it.id % 3 == 0;
                let boxes = (0..(it.id % 4) as usize)
                    .map(|k| MachineBox {
                        label: LAYOUT_LABELS[k].into(),
                        bbox: BoxPx::new(
                            10.1 * k as f64 + 0.3,
                            20.7,
                            10.1 * k as f64 + 5.9,
                            33.3 + 1.0 / 3.0,
                        ),
                        score: 0.9 - 0.1 * k as f64,
                        uncertainty: Some(0.2),
                        accepted: auto,
                        text: None,
                        char_scores: None,
                    })
                    .collect();
                (
                    it.id,
                    Outcome::Predicted(StoredPrediction {
                        model_version: "layout@1.2.1".into(),
                        auto_accept: auto,
                        calibration_version: auto.then_some(7),
                        regions: Some(Box::new(MachineRegions {
                            width: 600,
                            height: 800,
                            boxes,
                        })),
                        ..StoredPrediction::default()
                    }),
                )
            })
            .collect();
        accepted_images += claim.items.iter().filter(|i| i.id % 3 == 0).count();
        store.complete("w", claim.job_id, &outcomes).await.unwrap();
    }
    let coco: Value =
        serde_json::from_slice(&collect(&store, project.id, ExportFormat::Coco).await).unwrap();
    let images = coco["images"].as_array().unwrap();
    assert_eq!(images.len(), accepted_images);
    assert!(images.iter().all(|i| i["id"].as_i64().unwrap() % 3 == 0));
    assert!(images
        .iter()
        .all(|i| i["labelloop"]["status"] == "auto_accepted"));
    let mut seen = std::collections::HashSet::new();
    for i in images {
        assert!(seen.insert(i["id"].as_i64().unwrap()), "image twice: {i}");
    }
    let want: i64 = images.iter().map(|i| i["id"].as_i64().unwrap() % 4).sum();
    let annotations = coco["annotations"].as_array().unwrap();
    assert_eq!(annotations.len() as i64, want);
    for a in annotations {
        let p = &a["labelloop"];
        assert_eq!(p["source"], "machine");
        assert_eq!(p["status"], "accepted");
        assert!(p["annotator"].is_null());
        assert_eq!(p["calibration_version"], 7);
        assert!(seen.contains(&a["image_id"].as_i64().unwrap()));
        let k = (a["category_id"].as_u64().unwrap() - 1) as f64;
        let b = BoxPx::from_coco([0, 1, 2, 3].map(|i| a["bbox"][i].as_f64().unwrap()));
        let want = BoxPx::new(10.1 * k + 0.3, 20.7, 10.1 * k + 5.9, 33.3 + 1.0 / 3.0);
        assert!(close(&b, &want, 600.0, 800.0), "{b} vs {want}");
        assert!((p["score"].as_f64().unwrap() - (0.9 - 0.1 * k)).abs() < 1e-12);
    }
    assert_eq!(
        coco["labelloop"]["images_left_out"].as_u64().unwrap() as usize,
        n - accepted_images
    );

    // The same images in the YOLO zip, the empty ones with an empty file.
    let raw = collect(&store, project.id, ExportFormat::Yolo).await;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(raw)).unwrap();
    let labels = (0..zip.len())
        .filter(|&i| {
            zip.by_index(i)
                .unwrap()
                .name()
                .unwrap()
                .starts_with("labels/")
        })
        .count();
    assert_eq!(labels, accepted_images);
    let mut lines = 0i64;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.name().unwrap().starts_with("labels/") {
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            lines += text.lines().count() as i64;
        }
    }
    assert_eq!(lines, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_accepted_sqlite() {
    auto_accepted(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_accepted_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    auto_accepted(db).await;
}
