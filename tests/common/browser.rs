//! Chromium over WebDriver for the page tests that use it (`ui_boxes.rs`;
//! `ui_browser.rs` keeps its own copy of the same helpers). Included with
//! `#[path]` so the other test binaries do not compile it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MouseActions, PointerAction, MOUSE_BUTTON_LEFT,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_present() -> bool {
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
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub async fn start() -> Driver {
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
    pub async fn session(&self, w: u32, h: u32) -> (Client, tempfile::TempDir) {
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

pub async fn press(c: &Client, key: char) {
    let seq = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(seq).await.expect("key press");
}

/// `key` with `modifier` held (Shift, Control).
pub async fn chord(c: &Client, modifier: char, key: char) {
    let seq = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: modifier })
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key })
        .then(KeyAction::Up { value: modifier });
    c.perform_actions(seq).await.expect("key chord");
}

/// A left-button drag in viewport pixels, through `steps` moves.
pub async fn drag(c: &Client, from: (f64, f64), to: (f64, f64), steps: usize) {
    let mut seq = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: from.0,
            y: from.1,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        });
    for i in 1..=steps {
        let t = i as f64 / steps as f64;
        seq = seq.then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(5)),
            x: from.0 + (to.0 - from.0) * t,
            y: from.1 + (to.1 - from.1) * t,
        });
    }
    seq = seq.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    });
    c.perform_actions(seq).await.expect("a drag");
    c.release_actions().await.expect("release");
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Poll a JS expression until it is truthy.
pub async fn wait_js(c: &Client, expr: &str, what: &str) -> Value {
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

pub async fn sign_in(c: &Client, base: &str, tok: &str) {
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

pub async fn screenshot(c: &Client, root: &Path, name: &str) -> PathBuf {
    let dir = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    let path: PathBuf = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

/// Move the mouse to a point in viewport pixels, no button.
pub async fn hover(c: &Client, at: (f64, f64)) {
    let seq = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
        duration: None,
        x: at.0,
        y: at.1,
    });
    c.perform_actions(seq).await.expect("a mouse move");
    c.release_actions().await.expect("release");
}
