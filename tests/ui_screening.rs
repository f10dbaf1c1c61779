//! The review page's screening lists (issue 25) in a real Chromium, against a
//! real server: a project of 200 real Fashion-MNIST test images with planted
//! copies (two exact, one brightened) and 10 foreign images (real garments
//! upside down in negative), screened by the real screen job against a
//! reference project of 1,000 other test images. With the keyboard alone: a
//! duplicate group's member confirmed (`c`) and the representative labeled,
//! another group's member rejected (`x`) and its representative labeled, an
//! outlier rejected, the rejection undone (`u`) and given again. Then,
//! through the API: the outlier is `rejected` (counted as such, refused a
//! label), the rejected member left its group and took no label, the
//! confirmed one kept the propagated label; a repeated verdict writes
//! nothing, the other verdict is 409, a representative's issue 422, an
//! unknown issue 404. A screenshot of a pair side by side (with the pixel
//! difference) goes to target/ui-screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{browser_present, js, press, screenshot, sign_in, wait_js, Driver};
use common::server::{b64, create_token, Server, TestDb};
use fantoccini::Client;
use serde_json::{json, Value};

const FOREIGN: usize = 10;

/// A Fashion-MNIST test image upside down and in negative, as a PNG.
fn foreign_png(path: &std::path::Path) -> Vec<u8> {
    let img = image::open(path).expect("a test PNG").to_luma8();
    let (w, h) = img.dimensions();
    let flipped = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([255 - img.get_pixel(w - 1 - x, h - 1 - y)[0]])
    });
    common::png_bytes(&image::DynamicImage::ImageLuma8(flipped))
}

/// The image a little brighter (+12 on every pixel), as a PNG.
fn brighter_png(path: &std::path::Path) -> Vec<u8> {
    let img = image::open(path).expect("a test PNG").to_luma8();
    let (w, h) = img.dimensions();
    let out = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([img.get_pixel(x, y)[0].saturating_add(12)])
    });
    common::png_bytes(&image::DynamicImage::ImageLuma8(out))
}

async fn create(s: &Server, tok: &str, name: &str) -> (i64, Vec<String>) {
    // No threshold: nothing is auto-accepted before a calibration, so every
    // item waits for a person and the screening lists can offer it.
    let (code, p) = s
        .post_as(
            tok,
            "/v1/projects",
            &json!({"name": name, "model": "fashion-mnist-cnn", "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let labels = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (p["id"].as_i64().unwrap(), labels)
}

async fn wait_job(s: &Server, tok: &str, job: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (code, j) = s.get_as(tok, &format!("/v1/jobs/{job}")).await;
        assert_eq!(code, 200, "{j}");
        if j["state"] == "done" {
            return;
        }
        assert_ne!(j["state"], "failed", "{j}");
        assert!(Instant::now() < deadline, "job {job}: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ingest(s: &Server, tok: &str, project: i64, items: &[Value]) {
    for chunk in items.chunks(500) {
        let (code, body) = s
            .post_as(tok, &format!("/v1/projects/{project}/items"), &json!(chunk))
            .await;
        assert_eq!(code, 202, "{body}");
        wait_job(s, tok, body["job"]["id"].as_i64().unwrap()).await;
    }
}

async fn item(s: &Server, tok: &str, id: i64) -> Value {
    let (code, v) = s.get_as(tok, &format!("/v1/items/{id}")).await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn screening_of(s: &Server, tok: &str, project: i64, id: i64) -> Value {
    let (code, v) = s
        .get_as(tok, &format!("/v1/projects/{project}/items/{id}/screening"))
        .await;
    assert_eq!(code, 200, "{v}");
    v
}

/// The pair on the stage once its screening is shown: (item, other, issue).
async fn shown_pair(c: &Client, not: i64) -> (i64, Option<i64>, Option<i64>) {
    let v = wait_js(
        c,
        &format!(
            "(() => {{ const s = document.querySelector('#stage'); const p = document.querySelector('#pair');
                 if (!s || !p || !s.dataset.itemId || Number(s.dataset.itemId) === {not}) return null;
                 return [Number(s.dataset.itemId), p.dataset.other ? Number(p.dataset.other) : null,
                         p.dataset.issue ? Number(p.dataset.issue) : null]; }})()"
        ),
        "a screening pair on the stage",
    )
    .await;
    (v[0].as_i64().unwrap(), v[1].as_i64(), v[2].as_i64())
}

async fn verdicts_given(c: &Client, n: u64) {
    wait_js(
        c,
        &format!("(window.__ll_verdicts || 0) >= {n}"),
        "the verdict recorded",
    )
    .await;
}

/// Every label given on the page has reached the server.
async fn labels_sent(c: &Client) {
    wait_js(
        c,
        "window.__ll_review && window.__ll_review.history.every((e) => e.state === 'sent')",
        "the labels sent",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screening_lists_in_chromium() {
    if !browser_present() {
        return;
    }
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let bob = create_token(&db.url, "annotator", "bob");
    let s = Server::start(&db.url, &[]);
    let test = common::fashion_mnist_test();
    let png = |p: &std::path::Path| b64(&std::fs::read(p).unwrap());

    let (reference, _) = create(&s, &admin, "reference").await;
    let ref_items: Vec<Value> = test[..1000]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": png(p)}))
        .collect();
    ingest(&s, &admin, reference, &ref_items).await;

    let (project, labels) = create(&s, &admin, "screened").await;
    let mut items: Vec<Value> = test[5000..5200]
        .iter()
        .map(|(id, p, _)| json!({"id": id, "image": png(p)}))
        .collect();
    for (id, p, _) in &test[5000..5002] {
        items.push(json!({"id": format!("{id}-copy"), "image": png(p)}));
    }
    let (id, p, _) = &test[5002];
    items.push(json!({"id": format!("{id}-brighter"), "image": b64(&brighter_png(p))}));
    for (i, (_, p, _)) in test[6000..6000 + FOREIGN].iter().enumerate() {
        items.push(json!({"id": format!("foreign-{i}"), "image": b64(&foreign_png(p))}));
    }
    ingest(&s, &admin, project, &items).await;
    let (code, job) = s
        .post_as(
            &admin,
            &format!("/v1/projects/{project}/screen"),
            &json!({"reference_project": reference}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    wait_job(&s, &admin, job["id"].as_i64().unwrap()).await;
    let (_, view) = s
        .get_as(&admin, &format!("/v1/projects/{project}/screening"))
        .await;
    eprintln!("screening: {view}");
    let (_, groups) = s
        .get_as(
            &admin,
            &format!("/v1/projects/{project}/issues?type=exact_duplicate"),
        )
        .await;
    assert!(
        groups["issues"].as_array().unwrap().len() >= 4,
        "the two planted exact pairs: {groups}"
    );
    let (_, outliers) = s
        .get_as(
            &admin,
            &format!("/v1/projects/{project}/issues?type=outlier"),
        )
        .await;
    assert!(
        !outliers["issues"].as_array().unwrap().is_empty(),
        "outliers flagged: {outliers}"
    );

    let driver = Driver::start().await;
    let (c, _profile) = driver.session(1280, 800).await;
    sign_in(&c, &s.url, &alice).await;
    wait_js(
        &c,
        "document.querySelectorAll('section.project').length",
        "the project list",
    )
    .await;

    // 1. Duplicates: confirm the first group's member, label the representative.
    c.goto(&format!(
        "{}/ui/projects/{project}/review?strategy=duplicates",
        s.url
    ))
    .await
    .unwrap();
    let (rep1, member1, issue1) = shown_pair(&c, -1).await;
    let member1 = member1.expect("a member beside the representative");
    assert!(issue1.is_some());
    let panes = js(
        &c,
        "return document.querySelectorAll('#pair .pane').length;",
    )
    .await;
    assert_eq!(
        panes,
        json!(3),
        "representative, member and their difference"
    );
    let diff = js(
        &c,
        "return document.querySelector('#pair canvas.diff').getAttribute('aria-label');",
    )
    .await;
    eprintln!("pair #{rep1} / #{member1}: {diff}");
    let shot = screenshot(&c, common::root(), "screening-duplicates-1280x800").await;
    press(&c, 'c').await;
    verdicts_given(&c, 1).await;
    wait_js(
        &c,
        "document.querySelector('#pair') && document.querySelector('#pair').dataset.issue === ''",
        "the group judged",
    )
    .await;
    press(&c, '1').await;

    // 2. The next group: reject its member, label the representative.
    let (rep2, member2, _) = shown_pair(&c, rep1).await;
    let member2 = member2.expect("a member beside the second representative");
    assert_ne!(member2, member1);
    press(&c, 'x').await;
    verdicts_given(&c, 2).await;
    wait_js(
        &c,
        "document.querySelector('#pair') && document.querySelector('#pair').dataset.issue === ''",
        "the second group judged",
    )
    .await;
    press(&c, '2').await;
    wait_js(
        &c,
        &format!("document.querySelector('#stage').dataset.itemId !== '{rep2}'"),
        "the page moved on",
    )
    .await;
    labels_sent(&c).await;
    // The planted brightened copy, if its group comes next: the difference shows.
    let near = js(&c, "const p = document.querySelector('#pair'); return p && p.dataset.issue !== '' && document.querySelector('#pair canvas.diff') ? document.querySelector('#pair canvas.diff').getAttribute('aria-label') : null;").await;
    if let Some(d) = near.as_str() {
        eprintln!("next pair: {d}");
        screenshot(&c, common::root(), "screening-near-duplicate-1280x800").await;
    }

    // 3. Outliers: reject one, undo it (u), reject it again.
    c.goto(&format!(
        "{}/ui/projects/{project}/review?strategy=outliers",
        s.url
    ))
    .await
    .unwrap();
    let (outlier, other, oissue) = shown_pair(&c, -1).await;
    assert_eq!(other, None);
    assert!(oissue.is_some());
    press(&c, 'x').await;
    verdicts_given(&c, 1).await;
    assert_eq!(item(&s, &admin, outlier).await["status"], "rejected");
    wait_js(
        &c,
        &format!("document.querySelector('#stage').dataset.itemId !== '{outlier}'"),
        "the next outlier",
    )
    .await;
    press(&c, 'u').await;
    wait_js(
        &c,
        &format!("document.querySelector('#stage').dataset.itemId === '{outlier}' && document.querySelector('#pair').dataset.issue !== ''"),
        "the rejected outlier back",
    )
    .await;
    assert_eq!(item(&s, &admin, outlier).await["status"], "needs_review");
    press(&c, 'x').await;
    verdicts_given(&c, 2).await;
    screenshot(&c, common::root(), "screening-outliers-1280x800").await;

    // 4. Through the API.
    let o = item(&s, &admin, outlier).await;
    assert_eq!(o["status"], "rejected", "{o}");
    let (code, prog) = s
        .get_as(&admin, &format!("/v1/projects/{project}/progress"))
        .await;
    assert_eq!(code, 200, "{prog}");
    assert_eq!(prog["rejected"], 1, "{prog}");
    let (code, err) = s
        .post_as(
            &alice,
            &format!("/v1/items/{outlier}/annotations"),
            &json!({"label": labels[0]}),
        )
        .await;
    assert_eq!(code, 409, "a rejected item takes no label: {err}");

    let r1 = item(&s, &admin, rep1).await;
    assert_eq!(
        (&r1["final_label"], &r1["final_source"]),
        (&json!(labels[0]), &json!("human")),
        "{r1}"
    );
    let m1 = item(&s, &admin, member1).await;
    let sc1 = screening_of(&s, &admin, project, member1).await;
    let in_group = sc1["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item_id"] == member1 && i["of"] == rep1)
        .unwrap_or_else(|| panic!("the confirmed member is still in its group: {sc1}"))
        .clone();
    // Exact groups propagate; near groups when every member scored >= 0.9.
    if in_group["type"] == "exact_duplicate" || in_group["score"].as_f64().unwrap() >= 0.9 {
        assert_eq!(
            m1["final_source"], "propagated",
            "the confirmed member kept the label: {m1}"
        );
        assert_eq!(m1["final_label"], json!(labels[0]), "{m1}");
        assert_eq!(m1["propagated_from"], json!(rep1), "{m1}");
    } else {
        panic!(
            "the first group is a loose near-duplicate group, which does not propagate: {in_group}"
        );
    }
    let r2 = item(&s, &admin, rep2).await;
    assert_eq!(
        (&r2["final_label"], &r2["final_source"]),
        (&json!(labels[1]), &json!("human")),
        "{r2}"
    );
    let m2 = item(&s, &admin, member2).await;
    assert_eq!(
        m2["status"], "needs_review",
        "the rejected member is reviewed on its own: {m2}"
    );
    assert_ne!(m2["final_source"], "propagated", "{m2}");
    let sc2 = screening_of(&s, &admin, project, member2).await;
    assert!(
        !sc2["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["item_id"] == member2 && i["type"].as_str().unwrap().ends_with("duplicate")),
        "the rejected member left its group: {sc2}"
    );
    assert!(
        sc2["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["verdict"] == "reject" && v["annotator"] == "alice"),
        "{sc2}"
    );

    // Idempotent, and the errors name the problem.
    let issue1 = issue1.unwrap();
    let path = format!("/v1/projects/{project}/issues/{issue1}/verdict");
    let (code, again) = s
        .post_as(&alice, &path, &json!({"verdict": "confirm"}))
        .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        (&again["recorded"], &again["annotator"]),
        (&json!(false), &json!("alice")),
        "{again}"
    );
    let (code, err) = s
        .post_as(&alice, &path, &json!({"verdict": "reject"}))
        .await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("undo"),
        "{err}"
    );
    let (code, err) = s.post_as(&alice, &path, &json!({"verdict": "maybe"})).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verdict"),
        "{err}"
    );
    let rep_issue = sc1["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item_id"] == rep1 && i["of"].is_null())
        .expect("the representative's issue")["id"]
        .clone();
    let (code, err) = s
        .post_as(
            &alice,
            &format!("/v1/projects/{project}/issues/{rep_issue}/verdict"),
            &json!({"verdict": "reject"}),
        )
        .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("representative"),
        "{err}"
    );
    let (code, err) = s
        .post_as(
            &alice,
            &format!("/v1/projects/{project}/issues/999999/verdict"),
            &json!({"verdict": "reject"}),
        )
        .await;
    assert_eq!(code, 404, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("999999"),
        "{err}"
    );
    // Only the author (or an admin) undoes a verdict.
    let (code, err) = common::server::send(
        s.client
            .delete(format!("{}{path}", s.url))
            .bearer_auth(&bob),
    )
    .await;
    assert_eq!(code, 403, "{err}");
    // 5. Texts: a real SMS and a copy with one word replaced, side by side,
    // the differing words marked; rejected with `x`.
    let (sms, _) = {
        let (code, p) = s
            .post_as(
                &admin,
                "/v1/projects",
                &json!({"name": "sms", "model": "minilm-l6", "labels": ["ham", "spam"],
                        "settings": {"audit_rate": 0.0}}),
            )
            .await;
        assert_eq!(code, 201, "{p}");
        (p["id"].as_i64().unwrap(), ())
    };
    let raw = std::fs::read_to_string(common::require(
        &common::root().join("data/sms-spam/sms.jsonl"),
    ))
    .unwrap();
    let mut texts: Vec<String> = Vec::new();
    for l in raw.lines() {
        let t = serde_json::from_str::<Value>(l).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string();
        if t.len() >= 80 && t.split(' ').count() >= 12 && !texts.contains(&t) {
            texts.push(t);
        }
        if texts.len() == 40 {
            break;
        }
    }
    let words: Vec<&str> = texts[0].split(' ').collect();
    let replaced = words[5].to_string();
    let mut edited = words.clone();
    edited[5] = "WINNER";
    let mut sms_items: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("sms-{i}"), "text": t}))
        .collect();
    sms_items.push(json!({"id": "sms-0-edited", "text": edited.join(" ")}));
    ingest(&s, &admin, sms, &sms_items).await;
    let (code, job) = s
        .post_as(&admin, &format!("/v1/projects/{sms}/screen"), &json!({}))
        .await;
    assert_eq!(code, 202, "{job}");
    wait_job(&s, &admin, job["id"].as_i64().unwrap()).await;
    c.goto(&format!(
        "{}/ui/projects/{sms}/review?strategy=duplicates",
        s.url
    ))
    .await
    .unwrap();
    let (t_rep, t_member, _) = shown_pair(&c, -1).await;
    let t_member = t_member.expect("the edited copy beside the text");
    let marks = js(
        &c,
        "return [...document.querySelectorAll('#pair .pane')].map((p) => [...p.querySelectorAll('mark.diff-mark')].map((m) => m.textContent));",
    )
    .await;
    eprintln!("text pair #{t_rep} / #{t_member}: marked {marks}");
    let (a, b) = if item(&s, &admin, t_rep).await["client_id"] == "sms-0" {
        (json!([replaced]), json!(["WINNER"]))
    } else {
        (json!(["WINNER"]), json!([replaced]))
    };
    assert_eq!(
        marks,
        json!([a, b]),
        "exactly the replaced word is marked on each side"
    );
    screenshot(&c, common::root(), "screening-text-1280x800").await;
    press(&c, 'x').await;
    verdicts_given(&c, 1).await;
    let sc = screening_of(&s, &admin, sms, t_member).await;
    assert!(
        !sc["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["item_id"] == t_member),
        "the edited copy left its group: {sc}"
    );

    // The served OpenAPI document has the routes, typed.
    let (code, doc) = s.get_as(&admin, "/v1/openapi.json").await;
    assert_eq!(code, 200);
    let ops = &doc["paths"]["/v1/projects/{id}/issues/{issue}/verdict"];
    assert!(
        ops["post"]["requestBody"].is_object() && ops["delete"].is_object(),
        "{ops}"
    );
    assert!(doc["components"]["schemas"]["VerdictView"].is_object());
    assert!(doc["paths"]["/v1/projects/{id}/items/{item}/screening"]["get"].is_object());
    eprintln!("screenshot of the pair: {}", shot.display());
}
