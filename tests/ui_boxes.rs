//! The review page's box mode in a real Chromium (issue 22), against a real
//! server: a detection project on the real `layout` model pre-labels page
//! images as a job; in the page a reviewer moves a box with the mouse,
//! relabels one with a digit, draws a new one on empty space, deletes one
//! with Delete, sees a refused set named by the API with nothing lost, and
//! accepts with Enter; the API then holds exactly those regions with their
//! provenance. A synthetic 2,000 × 2,000 image with 200 boxes measures
//! selecting, nudging and dragging (printed, not asserted) and checks the
//! page stays responsive and never re-renders the boxes while editing.
//! Screenshots at 1280×800 and 390×844 go to target/ui-screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{
    browser_present, chord, drag, hover, js, press, screenshot, sign_in, wait_js, Driver,
};
use common::detect::{detect_project, ingest};
use common::server::{b64, create_token, Server, TestDb};
use fantoccini::key::Key;
use fantoccini::Client;
use labelloop::region::BoxPx;
use labelloop::store::{
    Content, MachineBox, MachineRegions, NewItem, Outcome, Store, StoredPrediction,
};
use serde_json::{json, Value};

fn pages() -> Vec<Value> {
    let dir = common::root().join("tests/fixtures/documents");
    ["page-1.png", "page-2.png", "page-3.png"]
        .iter()
        .map(|n| json!({"id": n, "image": b64(&std::fs::read(dir.join(n)).unwrap())}))
        .collect()
}

fn bbox(v: &Value) -> [f64; 4] {
    let b = v.as_array().unwrap();
    [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())
}

/// The page's boxes as it holds them: [{uid, id, label, box}], in cycle order.
async fn page_boxes(c: &Client) -> Vec<Value> {
    js(c, "return window.__ll_review.B.E.boxes.map((b) => ({uid: b.uid, id: b.id, label: b.label, box: b.box}));")
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn selected_uid(c: &Client) -> Option<i64> {
    js(c, "return window.__ll_review.B.E.sel;").await.as_i64()
}

/// The centre of a box's element on screen, in viewport pixels.
async fn centre(c: &Client, uid: i64) -> (f64, f64) {
    let r = js(c, &format!("const r = document.querySelector('.bx[data-uid=\"{uid}\"]').getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];")).await;
    (r[0].as_f64().unwrap(), r[1].as_f64().unwrap())
}

/// Image pixels per screen pixel, horizontally and vertically.
async fn scale(c: &Client) -> (f64, f64) {
    let v = js(c, "const B = window.__ll_review.B; const r = B.svg.getBoundingClientRect(); return [B.W / r.width, B.H / r.height];").await;
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

/// Press Tab until the box `uid` is selected.
async fn select_box(c: &Client, uid: i64, n: usize) {
    press(c, Key::Escape.into()).await;
    for _ in 0..=n {
        press(c, Key::Tab.into()).await;
        if selected_uid(c).await == Some(uid) {
            return;
        }
    }
    panic!("Tab never selected box {uid}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return "no samples".into();
    }
    format!(
        "n {}, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    )
}

async fn box_latencies(c: &Client, what: &str, from: usize) -> Vec<f64> {
    js(
        c,
        &format!("return window.__ll_box_latencies.slice({from}).filter((x) => x.what === '{what}').map((x) => x.ms);"),
    )
    .await
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_f64().unwrap())
    .collect()
}

async fn open_review(c: &Client, base: &str, project: i64) {
    c.goto(&format!(
        "{base}/ui/projects/{project}/review?strategy=margin"
    ))
    .await
    .unwrap();
    wait_js(
        c,
        "window.__ll_review && window.__ll_review.B && document.querySelector('#stage .box-img') && document.querySelector('#stage .box-img').complete",
        "an image with its boxes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_review_in_chromium() {
    if !browser_present() {
        return;
    }
    common::require(&common::model_dir("layout").join("model.onnx"));
    let root = common::root();
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let s = Server::start(&db.url, &[]).with_token(&admin);
    let (code, p) = s
        .post("/v1/projects", &json!({"name": "pages", "model": "layout"}))
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "detect");
    let project = p["id"].as_i64().unwrap();
    let labels: Vec<String> = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    ingest(&s, project, &pages()).await;

    let driver = Driver::start().await;
    let (c, _pc) = driver.session(1280, 800).await;
    sign_in(&c, &s.url, &alice).await;
    wait_js(
        &c,
        "document.querySelectorAll('section.project').length",
        "the project list",
    )
    .await;
    open_review(&c, &s.url, project).await;
    // An image with at least 4 boxes (the layout model finds many on each page).
    let mut tries = 0;
    while page_boxes(&c).await.len() < 4 {
        tries += 1;
        assert!(tries < 4, "no page with 4 boxes");
        let id = js(
            &c,
            "return document.querySelector('#stage').dataset.itemId;",
        )
        .await;
        press(&c, ' ').await;
        wait_js(
            &c,
            &format!(
                "document.querySelector('#stage').dataset.itemId !== {id} && window.__ll_review.B"
            ),
            "the next image",
        )
        .await;
    }
    let item: i64 = js(
        &c,
        "return Number(document.querySelector('#stage').dataset.itemId);",
    )
    .await
    .as_i64()
    .unwrap();
    let path = format!("/v1/projects/{project}/items/{item}/regions");
    let (_, before) = s.get(&path).await;
    let machine: Vec<Value> = before["regions"].as_array().unwrap().clone();
    let boxes = page_boxes(&c).await;
    assert_eq!(boxes.len(), machine.len());
    // Drawn exactly where the API says: every element's geometry is the stored box.
    for m in &machine {
        let id = m["id"].as_i64().unwrap();
        let b = boxes.iter().find(|b| b["id"] == id).unwrap();
        assert_eq!(
            bbox(&b["box"]),
            bbox(&m["box"]),
            "the page keeps the stored corners"
        );
        let uid = b["uid"].as_i64().unwrap();
        let geo = js(&c, &format!("const r = document.querySelector('.bx[data-uid=\"{uid}\"]'); return ['x', 'y', 'width', 'height'].map((k) => r[k].baseVal.value);")).await;
        let [x0, y0, x1, y1] = bbox(&m["box"]);
        let g = bbox(&geo);
        for (got, want) in g.iter().zip([x0, y0, x1 - x0, y1 - y0]) {
            assert!((got - want).abs() < 1e-3, "{g:?} vs {:?}", m["box"]);
        }
    }
    screenshot(&c, root, "boxes-machine-1280x800").await;
    // Hovering a box shows its label and score: a box whose centre no other
    // box covers (on some pages a header sits over a title's centre, and
    // the page rightly shows the box on top).
    let covers = |b: &Value, (x, y): (f64, f64)| {
        let [x0, y0, x1, y1] = bbox(&b["box"]);
        x0 <= x && x <= x1 && y0 <= y && y <= y1
    };
    let first = boxes
        .iter()
        .find(|b| {
            let [x0, y0, x1, y1] = bbox(&b["box"]);
            let c = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            boxes.iter().all(|o| o["uid"] == b["uid"] || !covers(o, c))
        })
        .expect("a box whose centre no other box covers");
    hover(&c, centre(&c, first["uid"].as_i64().unwrap()).await).await;
    let want = format!(
        "{} · {:.2}",
        first["label"].as_str().unwrap(),
        machine.iter().find(|m| m["id"] == first["id"]).unwrap()["score"]
            .as_f64()
            .unwrap()
    );
    wait_js(
        &c,
        &format!("!document.querySelector('.box-tag').hidden && document.querySelector('.box-tag').textContent === {}", json!(want)),
        "the hover tag",
    )
    .await;
    let (kx, ky) = scale(&c).await;
    eprintln!(
        "page {item}: {} machine boxes, {kx:.3} image px per screen px",
        machine.len()
    );

    // Pick the three biggest boxes: A moved, B relabeled, D deleted.
    let mut by_area: Vec<&Value> = boxes.iter().collect();
    by_area.sort_by(|p, q| {
        let a = |v: &Value| {
            let [x0, y0, x1, y1] = bbox(&v["box"]);
            (x1 - x0) * (y1 - y0)
        };
        a(q).total_cmp(&a(p))
    });
    let (a, b, d) = (by_area[0].clone(), by_area[1].clone(), by_area[2].clone());
    let uid = |v: &Value| v["uid"].as_i64().unwrap();

    // 1. Move A with the mouse: 30 screen px right, 12 down.
    let from = centre(&c, uid(&a)).await;
    drag(&c, from, (from.0 + 30.0, from.1 + 12.0), 8).await;
    let moved = page_boxes(&c).await;
    let a_now = moved.iter().find(|x| x["uid"] == a["uid"]).unwrap().clone();
    let (o, n) = (bbox(&a["box"]), bbox(&a_now["box"]));
    assert!(
        (n[0] - o[0] - 30.0 * kx).abs() < 2.0 * kx,
        "moved right: {o:?} → {n:?}"
    );
    assert!(
        (n[1] - o[1] - 12.0 * ky).abs() < 2.0 * ky,
        "moved down: {o:?} → {n:?}"
    );
    assert!(((n[2] - n[0]) - (o[2] - o[0])).abs() < 1e-9, "same width");
    assert!(((n[3] - n[1]) - (o[3] - o[1])).abs() < 1e-9, "same height");
    assert_eq!(
        selected_uid(&c).await,
        Some(uid(&a)),
        "the dragged box is selected"
    );

    // 2. Relabel B with a digit key (the next label along).
    select_box(&c, uid(&b), boxes.len()).await;
    let bl = labels.iter().position(|l| *l == b["label"]).unwrap();
    let new_label = labels[(bl + 1) % 10].clone();
    let key = char::from_digit((((bl + 1) % 10 + 1) % 10) as u32, 10).unwrap();
    press(&c, key).await;
    let shown = js(
        &c,
        &format!(
            "return document.querySelector('.bx[data-uid=\"{}\"]').dataset.label;",
            uid(&b)
        ),
    )
    .await;
    assert_eq!(shown, json!(new_label));

    // 3. Delete D with the Delete key.
    select_box(&c, uid(&d), boxes.len()).await;
    press(&c, Key::Delete.into()).await;
    assert_eq!(page_boxes(&c).await.len(), boxes.len() - 1);
    assert_eq!(
        js(
            &c,
            &format!(
                "return document.querySelectorAll('.bx[data-uid=\"{}\"]').length;",
                uid(&d)
            )
        )
        .await,
        json!(0)
    );

    // 4. Draw a new box on empty space: the first spot, scanning the page in
    // screen pixels, where a 40 × 24 px box touches no box.
    let spot = js(
        &c,
        "const B = window.__ll_review.B; const r = B.svg.getBoundingClientRect(); \
         const kx = B.W / r.width, ky = B.H / r.height; const w = 40, h = 24; \
         const free = (sx, sy) => B.E.boxes.every((b) => { const x0 = sx * kx, y0 = sy * ky, x1 = (sx + w) * kx, y1 = (sy + h) * ky; \
           return x1 < b.box[0] - 4 * kx || x0 > b.box[2] + 4 * kx || y1 < b.box[1] - 4 * ky || y0 > b.box[3] + 4 * ky; }); \
         for (let sy = 8; sy + h + 8 < r.height; sy += 4) for (let sx = 8; sx + w + 8 < r.width; sx += 4) \
           if (free(sx, sy)) return [r.left + sx, r.top + sy]; return null;",
    )
    .await;
    assert!(!spot.is_null(), "no empty space on the page");
    let (sx, sy) = (spot[0].as_f64().unwrap(), spot[1].as_f64().unwrap());
    drag(&c, (sx, sy), (sx + 40.0, sy + 24.0), 6).await;
    let now = page_boxes(&c).await;
    assert_eq!(now.len(), boxes.len(), "one deleted, one added");
    let added = now
        .iter()
        .find(|x| x["id"].is_null())
        .expect("the new box")
        .clone();
    assert_eq!(
        added["label"],
        json!(new_label),
        "a new box takes the last label used"
    );
    let nb = bbox(&added["box"]);
    assert!((nb[2] - nb[0] - 40.0 * kx).abs() < 2.0 * kx, "{nb:?}");
    let (_, w, h) = (
        0,
        before["width"].as_f64().unwrap(),
        before["height"].as_f64().unwrap(),
    );
    assert!(nb[0] >= 0.0 && nb[1] >= 0.0 && nb[2] <= w && nb[3] <= h);

    // Undo and redo by hand: u takes the new box back, drawing again restores it.
    press(&c, 'u').await;
    assert_eq!(
        page_boxes(&c).await.len(),
        boxes.len() - 1,
        "u undid the new box"
    );
    drag(&c, (sx, sy), (sx + 40.0, sy + 24.0), 6).await;
    let now = page_boxes(&c).await;
    let added = now
        .iter()
        .find(|x| x["id"].is_null())
        .expect("the new box again")
        .clone();
    // Hover shows label and score; the selected box has a tag too.
    let tag = js(&c, "return document.querySelector('.box-tag').hidden ? '' : document.querySelector('.box-tag').textContent;").await;
    assert!(tag.as_str().unwrap().starts_with(&new_label), "{tag}");
    screenshot(&c, root, "boxes-1280x800").await;

    // A set the API refuses (a box pushed outside the image through the
    // page's state, which its own editing never allows): the 422 names the
    // box, the page stays on the image and keeps every edit.
    let kept = page_boxes(&c).await;
    js(&c, "const E = window.__ll_review.B.E; E.__saved = E.boxes[0].box.slice(); E.boxes[0].box[2] = 1e6; return 1;").await;
    press(&c, Key::Enter.into()).await;
    let alert = wait_js(
        &c,
        "!document.querySelector('#alert').hidden && document.querySelector('#alert').textContent",
        "the refusal",
    )
    .await;
    let alert = alert.as_str().unwrap();
    assert!(alert.contains("regions[0].box"), "{alert}");
    assert!(alert.contains("edits are kept"), "{alert}");
    screenshot(&c, root, "boxes-refused-1280x800").await;
    js(
        &c,
        "const E = window.__ll_review.B.E; E.boxes[0].box = E.__saved; return 1;",
    )
    .await;
    assert_eq!(page_boxes(&c).await, kept, "nothing lost");
    let (_, still) = s.get(&path).await;
    assert_eq!(still["status"], "needs_review", "nothing written");

    // 5. Accept with Enter: the full set in one PUT, then the next image.
    let sent = page_boxes(&c).await;
    press(&c, Key::Enter.into()).await;
    wait_js(
        &c,
        &format!("window.__ll_saved === 1 && document.querySelector('#stage').dataset.itemId !== '{item}'"),
        "the next image",
    )
    .await;
    let (code, after) = s.get(&path).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let find = |pred: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        regions.iter().filter(|r| pred(r)).cloned().collect()
    };
    // Human rows: the two corrections and the new box; the kept boxes are
    // their machine rows, accepted.
    let human = find(&|r| r["source"] == "human");
    assert_eq!(human.len(), 3, "{after}");
    let live = find(&|r| r["source"] == "human" || r["status"] == "accepted");
    assert_eq!(
        live.len(),
        sent.len(),
        "the set sent is the set stored: {after}"
    );
    for r in &human {
        assert_eq!(r["annotator"], "alice", "{r}");
    }
    // A: corrected, the human box exactly the page's moved corners.
    let m_a = find(&|r| r["id"] == a["id"]);
    assert_eq!(m_a[0]["status"], "corrected", "{after}");
    let h_a = find(&|r| r["replaces"] == a["id"]);
    assert_eq!(h_a.len(), 1);
    assert_eq!(h_a[0]["status"], "corrected");
    assert_eq!(h_a[0]["label"], a["label"]);
    assert_eq!(
        bbox(&h_a[0]["box"]),
        bbox(&a_now["box"]),
        "exactly the moved corners"
    );
    // B: relabeled, same corners to the bit.
    let h_b = find(&|r| r["replaces"] == b["id"]);
    assert_eq!(find(&|r| r["id"] == b["id"])[0]["status"], "corrected");
    assert_eq!(h_b[0]["label"], json!(new_label));
    assert_eq!(
        bbox(&h_b[0]["box"]),
        bbox(&b["box"]),
        "relabeling keeps the corners"
    );
    // D: deleted, by alice.
    let m_d = find(&|r| r["id"] == d["id"]);
    assert_eq!(m_d[0]["status"], "deleted", "{after}");
    assert_eq!(m_d[0]["annotator"], "alice");
    // The new box: added, as drawn.
    let h_new = find(&|r| r["status"] == "added");
    assert_eq!(h_new.len(), 1, "{after}");
    assert_eq!(h_new[0]["label"], json!(new_label));
    assert_eq!(bbox(&h_new[0]["box"]), bbox(&added["box"]));
    // Every other machine box: accepted by alice, unchanged.
    for m in find(&|r| r["source"] == "machine") {
        if [&a["id"], &b["id"], &d["id"]].contains(&&m["id"]) {
            continue;
        }
        assert_eq!(m["status"], "accepted", "{m}");
        assert_eq!(m["annotator"], "alice", "{m}");
    }
    c.close().await.unwrap();

    // The phone size: the next page, its legend, no sideways scrolling.
    let (ph, _pp) = driver.session(390, 844).await;
    sign_in(&ph, &s.url, &alice).await;
    wait_js(
        &ph,
        "document.querySelectorAll('section.project').length",
        "the phone's project list",
    )
    .await;
    open_review(&ph, &s.url, project).await;
    press(&ph, Key::Tab.into()).await;
    let overflow = js(
        &ph,
        "return document.documentElement.scrollWidth > window.innerWidth;",
    )
    .await;
    assert_eq!(overflow, json!(false), "no sideways scrolling at 390 px");
    js(&ph, "window.scrollTo(0, 0); return 1;").await;
    screenshot(&ph, root, "boxes-390x844").await;
    js(
        &ph,
        "document.querySelector('.legend-title').scrollIntoView(); return 1;",
    )
    .await;
    screenshot(&ph, root, "boxes-legend-390x844").await;
    press(&ph, '?').await;
    wait_js(&ph, "document.querySelector('#keys').open", "the keys").await;
    let shown = js(&ph, "return [...document.querySelectorAll('#keys .keys')].filter((t) => !t.hidden).map((t) => t.dataset.mode);").await;
    assert_eq!(shown, json!(["boxes"]));
    screenshot(&ph, root, "boxes-keys-390x844").await;
    ph.close().await.unwrap();
}

/// A 2,000 × 2,000 page with 200 machine boxes, stored through the store as
/// a finished pre-labeling batch would (the layout model keeps at most 100).
async fn big_project(db: &TestDb) -> (i64, Vec<[f64; 4]>) {
    let store = Store::connect(&db.url).await.unwrap();
    let project = detect_project(&store, "big").await;
    // 20 columns × 10 rows; corners with fractions, drawn on the image.
    let mut boxes = Vec::new();
    for r in 0..10 {
        for c in 0..20 {
            let (x, y) = (c as f64 * 100.0, r as f64 * 200.0);
            boxes.push([x + 10.25, y + 20.5, x + 90.75, y + 180.125]);
        }
    }
    let mut img = image::GrayImage::from_pixel(2000, 2000, image::Luma([255u8]));
    for b in &boxes {
        for y in b[1].round() as u32..b[3].round() as u32 {
            for x in b[0].round() as u32..b[2].round() as u32 {
                let edge = x < b[0].round() as u32 + 4
                    || y < b[1].round() as u32 + 4
                    || x + 4 >= b[2].round() as u32
                    || y + 4 >= b[3].round() as u32;
                img.put_pixel(x, y, image::Luma([if edge { 40 } else { 225 }]));
            }
        }
    }
    let png = common::png_bytes(&image::DynamicImage::ImageLuma8(img));
    store
        .ingest(
            project.id,
            &[NewItem {
                client_id: "big-2000".into(),
                content: Content::Image(png),
            }],
        )
        .await
        .unwrap();
    let claim = store
        .claim("test", 10, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let outcome = Outcome::Predicted(StoredPrediction {
        model_version: "layout@1.2.1".into(),
        regions: Some(Box::new(MachineRegions {
            width: 2000,
            height: 2000,
            boxes: boxes
                .iter()
                .enumerate()
                .map(|(i, b)| MachineBox {
                    label: ["text", "title", "table", "figure"][i % 4].into(),
                    bbox: BoxPx::new(b[0], b[1], b[2], b[3]),
                    score: 0.5 + (i % 50) as f64 / 100.0,
                    uncertainty: Some(0.5),
                    accepted: false,
                    text: None,
                    char_scores: None,
                })
                .collect(),
        })),
        ..StoredPrediction::default()
    });
    let n = store
        .complete("test", claim.job_id, &[(claim.items[0].id, outcome)])
        .await
        .unwrap();
    assert_eq!(n, 1);
    store.close().await;
    (project.id, boxes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_boxes_stay_fast() {
    if !browser_present() {
        return;
    }
    common::require(&common::model_dir("layout").join("model.onnx"));
    let root = common::root();
    let db = TestDb::sqlite();
    let alice = create_token(&db.url, "annotator", "alice");
    let (project, stored) = big_project(&db).await;
    let s = Server::start(&db.url, &[]).with_token(&alice);
    let driver = Driver::start().await;
    let (c, _pc) = driver.session(1280, 800).await;
    sign_in(&c, &s.url, &alice).await;
    wait_js(
        &c,
        "document.querySelectorAll('section.project').length",
        "the project list",
    )
    .await;
    let t = Instant::now();
    open_review(&c, &s.url, project).await;
    wait_js(
        &c,
        "document.querySelectorAll('#stage .bx').length === 200",
        "200 boxes",
    )
    .await;
    eprintln!(
        "200 boxes on a 2000x2000 image shown in {:.0} ms (navigation included)",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Mark every element: if anything re-rendered the boxes, the marks go.
    js(&c, "document.querySelectorAll('#stage .bx').forEach((r) => { r.__mark = 1; }); window.__ll_errors = []; window.addEventListener('error', (e) => window.__ll_errors.push(e.message)); return 1;").await;
    let item: i64 = js(
        &c,
        "return Number(document.querySelector('#stage').dataset.itemId);",
    )
    .await
    .as_i64()
    .unwrap();
    let order = page_boxes(&c).await;

    // Select: 40 Tabs, 10 Shift+Tabs, 10 j.
    let t = Instant::now();
    for _ in 0..40 {
        press(&c, Key::Tab.into()).await;
    }
    for _ in 0..10 {
        chord(&c, Key::Shift.into(), Key::Tab.into()).await;
    }
    for _ in 0..10 {
        press(&c, 'j').await;
    }
    let select_wall = t.elapsed().as_secs_f64() * 1e3 / 60.0;
    let sel = selected_uid(&c).await.unwrap();
    assert_eq!(
        sel,
        order[39]["uid"].as_i64().unwrap(),
        "40 - 10 + 10 presses: the 40th box"
    );
    // Nudge: 20 ×1 px right, 10 × 10 px down (Shift).
    let t = Instant::now();
    for _ in 0..20 {
        press(&c, Key::Right.into()).await;
    }
    for _ in 0..10 {
        chord(&c, Key::Shift.into(), Key::Down.into()).await;
    }
    let nudge_wall = t.elapsed().as_secs_f64() * 1e3 / 30.0;
    let now = page_boxes(&c).await;
    let b = now.iter().find(|x| x["uid"] == sel).unwrap();
    let o = bbox(&order[39]["box"]);
    // The 40th box in reading order is the last of its row: the nudge stops
    // at the image's right edge (clamped), the box keeps its size.
    let dx = (2000.0 - o[2]).min(20.0);
    assert!(dx < 20.0, "this box meets the edge: {o:?}");
    assert_eq!(
        bbox(&b["box"]),
        [o[0] + dx, o[1] + 100.0, o[2] + dx, o[3] + 100.0],
        "nudged exactly, kept inside"
    );
    // A drag of another box through 40 moves.
    let other = order[150]["uid"].as_i64().unwrap();
    let from = centre(&c, other).await;
    let t = Instant::now();
    drag(&c, from, (from.0 - 20.0, from.1 + 15.0), 40).await;
    let drag_wall = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(selected_uid(&c).await, Some(other));
    let moved = page_boxes(&c).await;
    assert_ne!(
        bbox(&moved.iter().find(|x| x["uid"] == other).unwrap()["box"]),
        bbox(&order[150]["box"]),
        "the drag moved the box"
    );
    let dragged = bbox(
        &page_boxes(&c)
            .await
            .iter()
            .find(|x| x["uid"] == other)
            .unwrap()["box"],
    );
    // Resize it by its bottom-right handle: the top-left corner stays to the bit.
    let se = js(&c, "const r = document.querySelector('.handle.se').getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];").await;
    let se = (se[0].as_f64().unwrap(), se[1].as_f64().unwrap());
    drag(&c, se, (se.0 + 12.0, se.1 + 8.0), 4).await;
    let grown = bbox(
        &page_boxes(&c)
            .await
            .iter()
            .find(|x| x["uid"] == other)
            .unwrap()["box"],
    );
    assert_eq!(
        [grown[0], grown[1]],
        [dragged[0], dragged[1]],
        "resizing moves one corner"
    );
    assert!(
        grown[2] > dragged[2] + 5.0 && grown[3] > dragged[3] + 3.0,
        "{dragged:?} → {grown:?}"
    );
    // Dragged past the opposite corner, it stops at 1 px: never inverted.
    let se = js(&c, "const r = document.querySelector('.handle.se').getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];").await;
    let se = (se[0].as_f64().unwrap(), se[1].as_f64().unwrap());
    drag(&c, se, (se.0 - 150.0, se.1 - 150.0), 4).await;
    let tiny = bbox(
        &page_boxes(&c)
            .await
            .iter()
            .find(|x| x["uid"] == other)
            .unwrap()["box"],
    );
    assert_eq!([tiny[0], tiny[1]], [dragged[0], dragged[1]]);
    assert!(
        (tiny[2] - tiny[0] - 1.0).abs() < 1e-9 && (tiny[3] - tiny[1] - 1.0).abs() < 1e-9,
        "{tiny:?}"
    );
    let marks = js(&c, "const all = document.querySelectorAll('#stage .bx'); return [all.length, [...all].filter((r) => r.__mark === 1).length];").await;
    assert_eq!(
        marks,
        json!([200, 200]),
        "no box element was re-rendered while editing"
    );
    let errors = js(&c, "return window.__ll_errors || [];").await;
    assert_eq!(errors, json!([]), "no script error");
    let sel_ms = box_latencies(&c, "cycle", 0).await;
    let nudge_ms = box_latencies(&c, "nudge", 0).await;
    let drag_ms: Vec<f64> = js(&c, "return window.__ll_drag_ms;")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    eprintln!("200 boxes, 2000x2000: select (key event -> next frame): {}; WebDriver round trip per key {select_wall:.1} ms", summary(sel_ms));
    eprintln!("200 boxes, 2000x2000: nudge (key event -> next frame): {}; WebDriver round trip per key {nudge_wall:.1} ms", summary(nudge_ms));
    eprintln!("200 boxes, 2000x2000: pointermove handler per move: {}; 40-move drag took {drag_wall:.0} ms over WebDriver", summary(drag_ms));
    // Ctrl+Z twice takes both resizes back: the dragged corners exactly.
    chord(&c, Key::Control.into(), 'z').await;
    chord(&c, Key::Control.into(), 'z').await;
    wait_js(
        &c,
        "document.querySelectorAll('#stage .bx').length === 200",
        "the boxes after undo",
    )
    .await;
    let back = bbox(
        &page_boxes(&c)
            .await
            .iter()
            .find(|x| x["uid"] == other)
            .unwrap()["box"],
    );
    assert_eq!(back, dragged, "undo restores the snapshot");
    screenshot(&c, root, "boxes-200-1280x800").await;

    // Accept: the 200 boxes go in one PUT and the list is done.
    press(&c, Key::Enter.into()).await;
    wait_js(
        &c,
        "window.__ll_saved === 1 && document.querySelector('#stage').dataset.itemId === ''",
        "the empty list",
    )
    .await;
    let (code, after) = s
        .get(&format!("/v1/projects/{project}/items/{item}/regions"))
        .await;
    assert_eq!(code, 200, "{after}");
    let regions = after["regions"].as_array().unwrap();
    let human = regions.iter().filter(|r| r["source"] == "human").count();
    let corrected = regions
        .iter()
        .filter(|r| r["source"] == "machine" && r["status"] == "corrected")
        .count();
    let accepted = regions
        .iter()
        .filter(|r| r["source"] == "machine" && r["status"] == "accepted")
        .count();
    assert_eq!(
        (human, corrected, accepted),
        (2, 2, 198),
        "two moved, 198 kept"
    );
    // The kept boxes are the stored corners to the bit.
    for r in regions.iter().filter(|r| r["status"] == "accepted") {
        let bx = bbox(&r["box"]);
        assert!(stored.contains(&bx), "{bx:?}");
    }
    c.close().await.unwrap();
}
