//! The review page in a real Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver), against a real server with a
//! project of 500 Fashion-MNIST images read from the data root and a real
//! calibration: sign in by typing the token, label 20 items with the keyboard
//! alone, check through the API that exactly those 20 annotations are stored
//! under the annotator with those labels, undo one with Backspace, run two
//! annotators at once and check their items are disjoint, report the key
//! press → next item latency (p50, p95), save screenshots at 1280×800 and
//! 390×844; a wrong token and a predictor token are refused with a message,
//! and `/ui` works under `--no-auth`.
//!
//! Without Chromium the test fails under CI=true and is skipped loudly
//! otherwise (scripts/setup-browser.sh installs it).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{create_token, Server, TestDb};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ITEMS: usize = 500;

fn browser_present() -> bool {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{CHROMIUM} and {CHROMEDRIVER} are required under CI=true: run scripts/setup-browser.sh");
    }
    eprintln!(
        "\n!!! SKIPPING the browser test: {CHROMIUM} or {CHROMEDRIVER} is missing; run scripts/setup-browser.sh\n"
    );
    false
}

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    /// A fresh headless Chromium with its own profile, at `w`×`h`.
    async fn session(&self, w: u32, h: u32) -> (Client, tempfile::TempDir) {
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    format!("--window-size={w},{h}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                // The exact viewport: a headless window's size includes its
                // frame, and Chromium keeps windows at least 500 px wide.
                "mobileEmulation": {"deviceMetrics": {"width": w, "height": h, "pixelRatio": 1.0, "touch": w < 600}}
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session");
        (client, profile)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn press(c: &Client, key: char) {
    let seq = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(seq).await.expect("key press");
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Poll a JS expression until it is truthy.
async fn wait_js(c: &Client, expr: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = js(c, &format!("return ({expr});")).await;
        if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
            return v;
        }
        if Instant::now() > deadline {
            let page = js(c, "return document.body.innerText;").await;
            panic!("timed out waiting for {what} ({expr}); the page says: {page}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn shown_item(c: &Client) -> (i64, String) {
    let v = wait_js(
        c,
        "(() => { const s = document.querySelector('#stage'); return s && s.dataset.itemId ? [Number(s.dataset.itemId), s.dataset.pred] : null; })()",
        "an item on the stage",
    )
    .await;
    (
        v[0].as_i64().unwrap(),
        v[1].as_str().unwrap_or("").to_string(),
    )
}

async fn sign_in(c: &Client, base: &str, tok: &str) {
    c.goto(&format!("{base}/ui/")).await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("input[name=token]"))
        .await
        .expect("the sign-in form");
    input.send_keys(tok).await.unwrap();
    c.find(Locator::Css("form.sign-in button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    let dir = common::root().join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    let path: PathBuf = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Label `n` items with the keyboard: a mix of digits and Enter. Returns
/// (item, label) in order.
async fn label_items(c: &Client, labels: &[String], n: usize, seed: usize) -> Vec<(i64, String)> {
    let mut done = Vec::new();
    for i in 0..n {
        let (id, pred) = shown_item(c).await;
        let before = js(c, "return window.__ll_latencies.length;")
            .await
            .as_u64()
            .unwrap();
        let label = if (i + seed).is_multiple_of(3) && !pred.is_empty() {
            press(c, Key::Enter.into()).await;
            pred
        } else {
            let k = (i * 7 + seed) % 10; // label index
            let key = char::from_digit(((k + 1) % 10) as u32, 10).unwrap();
            press(c, key).await;
            labels[k].clone()
        };
        done.push((id, label));
        // The next item is on the stage (or the list is empty).
        wait_js(
            c,
            &format!("window.__ll_latencies.length > {before} || (document.querySelector('#stage').dataset.itemId === '')"),
            "the next item",
        )
        .await;
        let (next, _) = shown_item(c).await;
        assert_ne!(next, id, "the page moved on");
    }
    done
}

/// Every annotation of the project by `who`, as (item, label).
async fn stored(s: &Server, admin: &str, project: i64, who: &str) -> Vec<(i64, String)> {
    let (code, body) = s
        .get_as(admin, &format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{body}");
    let mut out = Vec::new();
    for item in body["items"].as_array().unwrap() {
        for a in item["annotations"].as_array().unwrap() {
            if a["annotator"] == who {
                out.push((
                    item["id"].as_i64().unwrap(),
                    a["label"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

async fn wait_job(s: &Server, admin: &str, job: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (code, j) = s.get_as(admin, &format!("/v1/jobs/{job}")).await;
        assert_eq!(code, 200, "{j}");
        if j["state"] == "done" {
            return;
        }
        assert_ne!(j["state"], "failed", "{j}");
        assert!(Instant::now() < deadline, "job {job}: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 500 images by path under the data root; the audit sample labeled with
/// the truth, and a calibration fitted, so the project page has its charts.
async fn fashion_project(s: &Server, admin: &str) -> (i64, Vec<String>) {
    let (code, p) = s
        .post_as(
            admin,
            "/v1/projects",
            &json!({"name": "fashion-500", "model": "fashion-mnist-cnn", "precision_target": 0.9,
                    "settings": {"audit_rate": 0.15, "calibrate_every": 0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let labels: Vec<String> = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let test = common::fashion_mnist_test();
    let items: Vec<Value> = test[..ITEMS]
        .iter()
        .map(|(id, path, _)| {
            let rel = path
                .strip_prefix(common::root().join("data/fashion-mnist"))
                .unwrap();
            json!({"id": id, "path": rel.to_str().unwrap()})
        })
        .collect();
    let (code, body) = s
        .post_as(
            admin,
            &format!("/v1/projects/{project}/items"),
            &json!(items),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    wait_job(s, admin, body["job"]["id"].as_i64().unwrap()).await;
    let truth: HashMap<&str, &str> = test[..ITEMS]
        .iter()
        .map(|(id, _, l)| (id.as_str(), l.as_str()))
        .collect();
    let (_, all) = s
        .get_as(admin, &format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let mut audited = 0;
    for it in all["items"].as_array().unwrap() {
        if it["audit"] == true && it["status"] == "needs_review" {
            let label = truth[it["client_id"].as_str().unwrap()];
            let (code, body) = s
                .post_as(
                    admin,
                    &format!("/v1/items/{}/annotations", it["id"]),
                    &json!({"label": label, "annotator": "auditor"}),
                )
                .await;
            assert_eq!(code, 201, "{body}");
            audited += 1;
        }
    }
    assert!(audited > 20, "{audited} audit items");
    let (code, job) = s
        .post_as(
            admin,
            &format!("/v1/projects/{project}/calibrate"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    wait_job(s, admin, job["id"].as_i64().unwrap()).await;
    (project, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_page_in_chromium() {
    if !browser_present() {
        return;
    }
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let bob = create_token(&db.url, "annotator", "bob");
    let predictor = create_token(&db.url, "predictor", "robot");
    let data = common::root().join("data/fashion-mnist");
    let s = Server::start(&db.url, &["--data-root", data.to_str().unwrap()]);
    let (project, labels) = fashion_project(&s, &admin).await;
    let (_, cal) = s
        .get_as(&admin, &format!("/v1/projects/{project}/calibration"))
        .await;
    assert!(cal["version"].is_i64(), "a calibration is in force: {cal}");

    let driver = Driver::start().await;
    let (a, _pa) = driver.session(1280, 800).await;

    // A wrong token and a predictor token are refused with a message.
    sign_in(&a, &s.url, "ll_0000wrong").await;
    let msg = wait_js(&a, "document.querySelector('#sign-in-error') && document.querySelector('#sign-in-error').textContent", "the refusal").await;
    assert!(msg.as_str().unwrap().contains("refused"), "{msg}");
    assert_eq!(
        js(&a, "return sessionStorage.getItem('ll_token');").await,
        Value::Null
    );
    screenshot(&a, "sign-in-refused-1280x800").await;
    sign_in(&a, &s.url, &predictor).await;
    let msg = wait_js(&a, "document.querySelector('#sign-in-error') && document.querySelector('#sign-in-error').textContent", "the predictor message").await;
    assert!(msg.as_str().unwrap().contains("predictor"), "{msg}");

    // 1. Sign in as an annotator by typing the token.
    sign_in(&a, &s.url, &alice).await;
    wait_js(
        &a,
        "document.querySelectorAll('section.project').length",
        "the project list",
    )
    .await;
    assert!(a.current_url().await.unwrap().as_str().ends_with("/ui/"));
    assert!(
        !a.current_url().await.unwrap().as_str().contains(&alice),
        "never in the URL"
    );
    let who = js(
        &a,
        "return document.querySelector('#who-name').textContent;",
    )
    .await;
    assert!(who.as_str().unwrap().contains("alice"), "{who}");
    screenshot(&a, "projects-1280x800").await;

    // 2. The review list by deep link; 20 items with the keyboard alone.
    a.goto(&format!(
        "{}/ui/projects/{project}/review?strategy=margin",
        s.url
    ))
    .await
    .unwrap();
    shown_item(&a).await;
    let done = label_items(&a, &labels, 20, 0).await;
    wait_js(&a, "window.__ll_pending() === 0", "the outbox to empty").await;
    screenshot(&a, "review-1280x800").await;

    // 3. Exactly those 20 annotations, by alice, with those labels.
    let mut expected = done.clone();
    expected.sort();
    assert_eq!(stored(&s, &admin, project, "alice").await, expected);
    let mut seen = HashSet::new();
    assert!(
        done.iter().all(|(id, _)| seen.insert(*id)),
        "20 different items"
    );

    // 6. Latency over the 20 items.
    let lat = js(&a, "return window.__ll_latencies.slice(0, 20);").await;
    let mut ms: Vec<f64> = lat
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ms.len(), 20);
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "key press -> next item rendered over {} items: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    );

    // 4. Undo the last one with Backspace: the annotation is gone and the
    // item is shown again.
    let (last_item, _) = *done.last().unwrap();
    press(&a, Key::Backspace.into()).await;
    wait_js(
        &a,
        &format!("document.querySelector('#stage').dataset.itemId === '{last_item}'"),
        "the undone item",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = stored(&s, &admin, project, "alice").await;
        if now.len() == 19 {
            assert!(!now.iter().any(|(id, _)| *id == last_item));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "undo did not reach the API: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, it) = s.get_as(&admin, &format!("/v1/items/{last_item}")).await;
    assert_eq!(it["status"], "needs_review", "{it}");

    // 5. Two annotators at once: their items are disjoint.
    let (b, _pb) = driver.session(1280, 800).await;
    sign_in(&b, &s.url, &bob).await;
    wait_js(
        &b,
        "document.querySelectorAll('section.project').length",
        "bob's project list",
    )
    .await;
    b.goto(&format!(
        "{}/ui/projects/{project}/review?strategy=margin",
        s.url
    ))
    .await
    .unwrap();
    shown_item(&b).await;
    let (da, db_) = tokio::join!(
        label_items(&a, &labels, 6, 1),
        label_items(&b, &labels, 6, 2)
    );
    let held_a: HashSet<i64> = js(&a, "return window.__ll_held();")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let held_b: HashSet<i64> = js(&b, "return window.__ll_held();")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let mine_a: HashSet<i64> = da.iter().map(|x| x.0).chain(held_a).collect();
    let mine_b: HashSet<i64> = db_.iter().map(|x| x.0).chain(held_b).collect();
    assert!(mine_a.len() > 6 && mine_b.len() > 6);
    assert!(
        mine_a.is_disjoint(&mine_b),
        "shared: {:?}",
        mine_a.intersection(&mine_b).collect::<Vec<_>>()
    );
    wait_js(&b, "window.__ll_pending() === 0", "bob's outbox").await;
    let bobs = stored(&s, &admin, project, "bob").await;
    assert_eq!(bobs.len(), 6);

    // Leaving the page gives the leases back.
    let held_b: Vec<i64> = js(&b, "return window.__ll_held();")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(!held_b.is_empty());
    b.goto(&format!("{}/ui/", s.url)).await.unwrap();
    wait_js(
        &b,
        "document.querySelectorAll('section.project').length",
        "bob's project list again",
    )
    .await;
    let (_, others) = s
        .get_as(
            &admin,
            &format!("/v1/projects/{project}/review?annotator=carol&limit=500&strategy=margin"),
        )
        .await;
    let offered: HashSet<i64> = others["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert!(
        held_b.iter().all(|id| offered.contains(id)),
        "bob's leases were released on leaving"
    );
    let (code, _) = s
        .post_as(
            &admin,
            &format!("/v1/projects/{project}/review/release"),
            &json!({"annotator": "carol"}),
        )
        .await;
    assert_eq!(code, 200);
    b.close().await.unwrap();

    // 7. Screenshots: the project page as admin (calibration panel), and the phone size.
    let (c, _pc) = driver.session(1280, 800).await;
    sign_in(&c, &s.url, &admin).await;
    wait_js(
        &c,
        "document.querySelectorAll('section.project').length",
        "admin's project list",
    )
    .await;
    c.goto(&format!("{}/ui/projects/{project}", s.url))
        .await
        .unwrap();
    wait_js(
        &c,
        "document.querySelectorAll('section.calibration svg.chart').length",
        "the reliability diagram",
    )
    .await;
    let classes = js(
        &c,
        "return document.querySelectorAll('table.classes tbody tr').length;",
    )
    .await;
    assert_eq!(classes, json!(labels.len()));
    screenshot(&c, "project-1280x800").await;
    c.close().await.unwrap();
    let (p, _pp) = driver.session(390, 844).await;
    sign_in(&p, &s.url, &admin).await;
    wait_js(
        &p,
        "document.querySelectorAll('section.project').length",
        "the phone's project list",
    )
    .await;
    screenshot(&p, "projects-390x844").await;
    p.goto(&format!("{}/ui/projects/{project}", s.url))
        .await
        .unwrap();
    wait_js(
        &p,
        "document.querySelectorAll('section.calibration svg.chart').length",
        "the phone's calibration",
    )
    .await;
    screenshot(&p, "project-390x844").await;
    p.goto(&format!(
        "{}/ui/projects/{project}/review?strategy=entropy",
        s.url
    ))
    .await
    .unwrap();
    shown_item(&p).await;
    let overflow = js(
        &p,
        "return document.documentElement.scrollWidth > window.innerWidth;",
    )
    .await;
    assert_eq!(overflow, json!(false), "no sideways scrolling at 390 px");
    screenshot(&p, "review-390x844").await;
    press(&p, '?').await;
    wait_js(
        &p,
        "document.querySelector('#keys').open",
        "the keys dialog",
    )
    .await;
    screenshot(&p, "keys-390x844").await;
    p.close().await.unwrap();
    a.close().await.unwrap();

    // `/ui` under --no-auth: no sign-in.
    let db2 = TestDb::sqlite();
    let open = Server::start(&db2.url, &["--no-auth"]);
    let (code, _) = open
        .post(
            "/v1/projects",
            &json!({"name": "open", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201);
    let (n, _pn) = driver.session(1280, 800).await;
    n.goto(&format!("{}/ui/", open.url)).await.unwrap();
    wait_js(
        &n,
        "document.querySelectorAll('section.project').length",
        "the list without sign-in",
    )
    .await;
    let form = js(
        &n,
        "return document.querySelectorAll('input[name=token]').length;",
    )
    .await;
    assert_eq!(form, json!(0), "no sign-in under --no-auth");
    n.close().await.unwrap();
}
