//! The review page's line mode (OCR) in a real Chromium (issue 23), against
//! a real server: an OCR project on the real PP-OCRv6 model (`models/ocr`)
//! reads real rendered pages of data/ocr-pages (synthetic pages, made by
//! scripts/setup.sh) as a job; lines below the fixed threshold wait for a
//! person. In the page, with the keyboard alone, a reviewer fixes two
//! lines' text (one retyped, one edited in place), deletes one, adds a
//! missing one below another (typing its text, moving its box), and saves
//! the page; the API then holds exactly those changes with their
//! provenance, the machine lines keep their per-character probabilities and
//! the person's lines have none. The characters the model read below 0.9
//! are marked in the DOM, exactly those of the stored `char_scores`, and
//! the marks go once the text is edited. Screenshots at 1280×800 and
//! 390×844 go to target/ui-screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::{browser_present, chord, js, press, screenshot, sign_in, wait_js, Driver};
use common::server::{create_token, Server, TestDb};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::Client;
use serde_json::{json, Value};

/// Lines scoring below this wait for a person (high, so that each page
/// has several).
const THRESHOLD: f64 = 0.98;
/// The page marks a character read below this (app.js `LOW_CHAR`).
const LOW_CHAR: f64 = 0.9;
/// Image pixels per Alt+arrow (app.js `LINE_STEP`).
const STEP: f64 = 2.0;

/// Two clean pages and two degraded ones (blur, noise, JPEG): the
/// degraded ones hold characters read with low confidence.
const PAGES: [&str; 4] = [
    "images/page_0002.jpg",
    "images/page_0005.jpg",
    "images/page_0001.png",
    "images/page_0003.png",
];

fn corners(v: &Value) -> [f64; 4] {
    let a = v.as_array().unwrap_or_else(|| panic!("{v}"));
    [0, 1, 2, 3].map(|i| a[i].as_f64().unwrap())
}

/// The page's lines as it holds them, in its order.
async fn page_lines(c: &Client) -> Vec<Value> {
    js(c, "return window.__ll_review.L.E.lines.map((l) => ({uid: l.uid, id: l.id, text: l.text, box: l.box, deleted: l.deleted, checked: l.checked, status: l.status, source: l.source}));")
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// The current line's uid, and whether the text field has the focus with
/// that line's text in it.
async fn current(c: &Client) -> (Option<i64>, bool) {
    let v = js(c, "const E = window.__ll_review.L.E; const l = E.lines.find((x) => x.uid === E.cur); const t = document.querySelector('#line-text'); return [l ? l.uid : null, !!l && document.activeElement === t && t.value === l.text];").await;
    (v[0].as_i64(), v[1] == json!(true))
}

/// Type `text` key by key into whatever has the focus.
async fn type_text(c: &Client, text: &str) {
    let mut seq = KeyActions::new("keyboard".into());
    for ch in text.chars() {
        seq = seq
            .then(KeyAction::Down { value: ch })
            .then(KeyAction::Up { value: ch });
    }
    c.perform_actions(seq).await.expect("typing");
}

/// `key` pressed with every key of `mods` held.
async fn held(c: &Client, mods: &[Key], key: Key) {
    let mut seq = KeyActions::new("keyboard".into());
    for m in mods {
        seq = seq.then(KeyAction::Down { value: (*m).into() });
    }
    seq = seq
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    for m in mods.iter().rev() {
        seq = seq.then(KeyAction::Up { value: (*m).into() });
    }
    c.perform_actions(seq).await.expect("keys held");
}

/// Select the field's whole text (Ctrl+A) and type `text` over it.
async fn retype(c: &Client, text: &str) {
    chord(c, Key::Control.into(), 'a').await;
    type_text(c, text).await;
}

async fn shown_item(c: &Client) -> i64 {
    js(
        c,
        "return Number(document.querySelector('#stage').dataset.itemId);",
    )
    .await
    .as_i64()
    .unwrap()
}

async fn open_review(c: &Client, base: &str, project: i64) {
    c.goto(&format!(
        "{base}/ui/projects/{project}/review?strategy=margin"
    ))
    .await
    .unwrap();
    wait_for_page(c).await;
}

async fn wait_for_page(c: &Client) {
    wait_js(
        c,
        "window.__ll_review && window.__ll_review.L && document.querySelector('#stage .box-img') \
         && document.querySelector('#stage .box-img').complete && document.activeElement \
         && document.activeElement.id === 'line-text'",
        "a page with its lines, the text field focused",
    )
    .await;
}

/// The live regions of a page (the lines a reviewer starts from), in id order.
fn live(regions: &[Value]) -> Vec<Value> {
    regions
        .iter()
        .filter(|r| {
            r["source"] == "machine" && r["status"] != "deleted" && r["status"] != "corrected"
        })
        .cloned()
        .collect()
}

/// The characters of `text` whose score is below [`LOW_CHAR`], as (index, char).
fn low_chars(r: &Value) -> Vec<(usize, String)> {
    let text: Vec<char> = r["text"].as_str().unwrap().chars().collect();
    r["char_scores"]
        .as_array()
        .map(|s| {
            s.iter()
                .enumerate()
                .filter(|(_, p)| p.as_f64().unwrap() < LOW_CHAR)
                .map(|(i, _)| (i, text[i].to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_review_in_chromium() {
    if !browser_present() {
        return;
    }
    common::require(&common::model_dir("ocr").join("rec.onnx"));
    let dir = common::root().join("data/ocr-pages");
    common::require(&dir.join("lines.json"));
    let root = common::root();
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("ocr"), models.path().join("ocr")).unwrap();
    let data = dir.canonicalize().unwrap();
    let s = Server::start(
        &db.url,
        &[
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            data.to_str().unwrap(),
        ],
    )
    .with_token(&admin);
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "transcripts", "model": "ocr", "threshold": THRESHOLD,
                    "settings": {"audit_rate": 0.0}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["task"], "lines", "{p}");
    let project = p["id"].as_i64().unwrap();
    let body: Vec<Value> = PAGES.iter().map(|n| json!({"id": n, "path": n})).collect();
    let (code, v) = s
        .post(&format!("/v1/projects/{project}/items"), &json!(body))
        .await;
    assert_eq!(code, 202, "{v}");
    let job = s
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(900))
        .await;
    assert_eq!(job["errors"], 0, "{job}");

    // Every machine line carries one probability per character, and its
    // score is their mean (the model's line confidence), up to the stored
    // rounding.
    let (code, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=100"))
        .await;
    assert_eq!(code, 200, "{list}");
    let mut lines_seen = 0;
    for it in list["items"].as_array().unwrap() {
        let (code, r) = s
            .get(&format!(
                "/v1/projects/{project}/items/{}/regions",
                it["id"]
            ))
            .await;
        assert_eq!(code, 200, "{r}");
        for line in r["regions"].as_array().unwrap() {
            let text = line["text"].as_str().unwrap();
            let scores = line["char_scores"]
                .as_array()
                .unwrap_or_else(|| panic!("no char_scores: {line}"));
            assert_eq!(scores.len(), text.chars().count(), "{line}");
            let ps: Vec<f64> = scores.iter().map(|p| p.as_f64().unwrap()).collect();
            assert!(ps.iter().all(|p| (0.0..=1.0).contains(p)), "{line}");
            let mean = ps.iter().sum::<f64>() / ps.len() as f64;
            let score = line["score"].as_f64().unwrap();
            assert!(
                (mean - score).abs() < 1e-3,
                "mean {mean} vs score {score}: {line}"
            );
            lines_seen += 1;
        }
    }
    assert!(lines_seen > 40, "{lines_seen} lines");

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
    js(&c, "window.__ll_errors = []; window.addEventListener('error', (e) => window.__ll_errors.push(e.message)); return 1;").await;

    // A page with at least four uncertain lines and a character read below
    // 0.9 (Page Down skips the others).
    let mut tries = 0;
    let (item, machine) = loop {
        let item = shown_item(&c).await;
        let (_, r) = s
            .get(&format!("/v1/projects/{project}/items/{item}/regions"))
            .await;
        let machine = live(r["regions"].as_array().unwrap());
        let uncertain = machine.iter().filter(|m| m["status"] == "review").count();
        let low = machine.iter().any(|m| !low_chars(m).is_empty());
        if uncertain >= 4 && low {
            break (item, machine);
        }
        tries += 1;
        assert!(
            tries < PAGES.len(),
            "no page with 4 uncertain lines and a low character"
        );
        press(&c, Key::PageDown.into()).await;
        wait_js(
            &c,
            &format!("document.querySelector('#stage').dataset.itemId !== '{item}' && window.__ll_review.L"),
            "the next page",
        )
        .await;
        wait_for_page(&c).await;
    };
    let path = format!("/v1/projects/{project}/items/{item}/regions");

    // The page holds the stored lines, in reading order, at their stored
    // corners; one rectangle each, uncertain ones orange, the others accepted.
    let lines = page_lines(&c).await;
    assert_eq!(lines.len(), machine.len());
    for (l, m) in lines.iter().zip(&machine) {
        assert_eq!(l["id"], m["id"], "reading order is the stored order");
        assert_eq!(l["text"], m["text"]);
        assert_eq!(corners(&l["box"]), corners(&m["box"]));
        let state = js(
            &c,
            &format!(
                "return document.querySelector('.ln[data-uid=\"{}\"]').dataset.state;",
                l["uid"]
            ),
        )
        .await;
        let want = if m["status"] == "review" {
            "review"
        } else {
            "accepted"
        };
        assert_eq!(state, want, "{m}");
    }
    let uncertain: Vec<Value> = lines
        .iter()
        .filter(|l| l["status"] == "review")
        .cloned()
        .collect();
    let uid = |v: &Value| v["uid"].as_i64().unwrap();
    let (cur, focused) = current(&c).await;
    assert_eq!(
        cur,
        Some(uid(&uncertain[0])),
        "the first uncertain line is current"
    );
    assert!(focused, "its text is in the focused field");
    let crop = js(
        &c,
        "const k = document.querySelector('#crop'); return [k.width, k.height];",
    )
    .await;
    assert!(
        crop[0].as_i64().unwrap() > 50 && crop[1].as_i64().unwrap() > 20,
        "the crop is drawn: {crop}"
    );

    // Low-confidence characters: go to a line with one (Ctrl+↓), and the
    // marks are exactly its characters below 0.9, in place.
    let marked = machine
        .iter()
        .position(|m| !low_chars(m).is_empty())
        .unwrap();
    let at = lines.iter().position(|l| l["uid"] == json!(cur)).unwrap();
    for _ in 0..(marked + lines.len() - at) % lines.len() {
        chord(&c, Key::Control.into(), Key::Down.into()).await;
    }
    let (now, focused) = current(&c).await;
    assert_eq!(now, Some(uid(&lines[marked])));
    assert!(focused);
    let want = low_chars(&machine[marked]);
    let marks = js(&c, "return [...document.querySelectorAll('#marks mark.low')].map((m) => [Number(m.dataset.i), m.textContent]);").await;
    let want_json: Vec<Value> = want.iter().map(|(i, ch)| json!([i, ch])).collect();
    assert_eq!(
        marks,
        json!(want_json),
        "the marked characters are the stored low ones"
    );
    // The backdrop holds the same text as the field, so each mark sits
    // under its character.
    let same = js(&c, "return document.querySelector('#marks').textContent === document.querySelector('#line-text').value;").await;
    assert_eq!(same, json!(true));
    let info = js(
        &c,
        "return document.querySelector('#line-info').textContent;",
    )
    .await;
    assert!(
        info.as_str()
            .unwrap()
            .contains(&format!("{} character", want.len())),
        "{info}"
    );
    screenshot(&c, root, "ocr-marks-1280x800").await;
    // Back to the first uncertain line: Shift+Tab from here goes to the
    // previous uncertain one; Ctrl+↑ walks back exactly.
    for _ in 0..(marked + lines.len() - at) % lines.len() {
        chord(&c, Key::Control.into(), Key::Up.into()).await;
    }
    assert_eq!(current(&c).await.0, Some(uid(&uncertain[0])));

    // 1. Fix the first uncertain line by retyping it; Tab keeps it and goes on.
    let fix1 = "Line one, fixed by hand";
    retype(&c, fix1).await;
    let gone = js(
        &c,
        "return document.querySelectorAll('#marks mark').length;",
    )
    .await;
    assert_eq!(gone, json!(0), "an edited line shows no marks");
    press(&c, Key::Tab.into()).await;
    let (cur, focused) = current(&c).await;
    assert_eq!(
        cur,
        Some(uid(&uncertain[1])),
        "Tab: the next uncertain line"
    );
    assert!(focused);

    // 2. Fix the second in place: Ctrl+End, two Backspaces, two characters.
    let t2: Vec<char> = uncertain[1]["text"].as_str().unwrap().chars().collect();
    let fix2: String = t2[..t2.len().saturating_sub(2)].iter().collect::<String>() + "éq";
    chord(&c, Key::Control.into(), Key::End.into()).await;
    press(&c, Key::Backspace.into()).await;
    press(&c, Key::Backspace.into()).await;
    type_text(&c, "éq").await;
    let shown = js(&c, "return document.querySelector('#line-text').value;").await;
    assert_eq!(shown, json!(fix2));
    press(&c, Key::Enter.into()).await;
    assert_eq!(
        current(&c).await.0,
        Some(uid(&uncertain[2])),
        "Enter: the next uncertain line"
    );

    // 3. Delete the third (Ctrl+Delete): struck out, and on to the fourth.
    chord(&c, Key::Control.into(), Key::Delete.into()).await;
    let state = js(
        &c,
        &format!(
            "return document.querySelector('.ln[data-uid=\"{}\"]').dataset.state;",
            uid(&uncertain[2])
        ),
    )
    .await;
    assert_eq!(state, "deleted");
    let (cur, focused) = current(&c).await;
    assert_eq!(cur, Some(uid(&uncertain[3])));
    assert!(focused);

    // 4. Add a line below the fourth (Ctrl+I), type its text, move its box
    // 3 steps down and widen it 2 steps (Alt+↓, Alt+Shift+→).
    let below = corners(&uncertain[3]["box"]);
    chord(&c, Key::Control.into(), 'i').await;
    let (cur, focused) = current(&c).await;
    assert!(focused, "the new line's empty field has the focus");
    let added = page_lines(&c)
        .await
        .into_iter()
        .find(|l| l["uid"] == json!(cur))
        .unwrap();
    assert!(added["id"].is_null() && added["text"] == "");
    let b0 = corners(&added["box"]);
    assert!(b0[1] > below[3], "below the line: {b0:?} vs {below:?}");
    assert_eq!([b0[0], b0[2]], [below[0], below[2]], "as wide as it");
    let fix4 = "A line the model missed";
    type_text(&c, fix4).await;
    for _ in 0..3 {
        held(&c, &[Key::Alt], Key::Down).await;
    }
    for _ in 0..2 {
        held(&c, &[Key::Alt, Key::Shift], Key::Right).await;
    }
    let added = page_lines(&c)
        .await
        .into_iter()
        .find(|l| l["uid"] == json!(cur))
        .unwrap();
    let nb = corners(&added["box"]);
    assert_eq!(added["text"], fix4);
    let (_, r) = s.get(&path).await;
    let (w, h) = (r["width"].as_f64().unwrap(), r["height"].as_f64().unwrap());
    let want_b = [
        b0[0],
        (b0[1] + 3.0 * STEP).min(h - (b0[3] - b0[1])),
        (b0[2] + 2.0 * STEP).min(w),
        (b0[3] + 3.0 * STEP).min(h),
    ];
    assert_eq!(nb, want_b, "moved 3 steps down, widened 2");
    screenshot(&c, root, "ocr-edited-1280x800").await;

    // The keys are listed for lines (Ctrl+/), and hinted on the page.
    let hints = js(
        &c,
        "return document.querySelector('#line-hints').innerText;",
    )
    .await;
    for k in ["Tab", "Ctrl+Del", "Ctrl+I", "Ctrl+Enter"] {
        assert!(hints.as_str().unwrap().contains(k), "{k}: {hints}");
    }
    chord(&c, Key::Control.into(), '/').await;
    let help = wait_js(
        &c,
        "document.querySelector('#keys').open && document.querySelector('#keys .keys[data-mode=lines]:not([hidden])') && document.querySelector('#keys .keys[data-mode=lines]').innerText",
        "the line keys",
    )
    .await;
    assert!(
        help.as_str().unwrap().contains("next uncertain line"),
        "{help}"
    );
    screenshot(&c, root, "ocr-keys-1280x800").await;
    chord(&c, Key::Control.into(), '/').await;
    wait_js(
        &c,
        "!document.querySelector('#keys').open",
        "the keys closed",
    )
    .await;
    js(
        &c,
        "document.querySelector('#line-text').focus(); return 1;",
    )
    .await;

    // 5. Save the page (Ctrl+Enter): one PUT, then the next page.
    chord(&c, Key::Control.into(), Key::Enter.into()).await;
    wait_js(
        &c,
        &format!("window.__ll_saved === 1 && window.__ll_review.L && window.__ll_review.L.item.id !== {item}"),
        "the save, then the next page",
    )
    .await;
    let errors = js(&c, "return window.__ll_errors;").await;
    assert_eq!(errors, json!([]), "no script error");

    // The API holds exactly those changes.
    let (code, after) = s.get(&path).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let by_id = |id: &Value| regions.iter().find(|r| r["id"] == *id).unwrap().clone();
    let replacing = |id: &Value| -> Vec<Value> {
        regions
            .iter()
            .filter(|r| r["replaces"] == *id)
            .cloned()
            .collect()
    };
    let human: Vec<&Value> = regions.iter().filter(|r| r["source"] == "human").collect();
    assert_eq!(human.len(), 3, "two corrected, one added: {after}");
    for (u, text) in [(&uncertain[0], fix1), (&uncertain[1], fix2.as_str())] {
        assert_eq!(by_id(&u["id"])["status"], "corrected", "{after}");
        let fix = replacing(&u["id"]);
        assert_eq!(fix.len(), 1, "{after}");
        assert_eq!(fix[0]["text"], text);
        assert_eq!(fix[0]["status"], "corrected");
        assert_eq!(fix[0]["annotator"], "alice");
        assert_eq!(
            corners(&fix[0]["box"]),
            corners(&u["box"]),
            "the box is kept"
        );
        assert!(
            fix[0].get("char_scores").is_none(),
            "a person's text has no machine scores: {}",
            fix[0]
        );
    }
    let deleted = by_id(&uncertain[2]["id"]);
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["annotator"], "alice");
    let new: Vec<&&Value> = human.iter().filter(|r| r["status"] == "added").collect();
    assert_eq!(new.len(), 1, "{after}");
    assert_eq!(new[0]["text"], fix4);
    assert_eq!(corners(&new[0]["box"]), nb, "the box as the page placed it");
    assert!(new[0].get("char_scores").is_none());
    // Every other line: the machine's, accepted by alice, its scores kept.
    for m in &machine {
        if [
            &uncertain[0]["id"],
            &uncertain[1]["id"],
            &uncertain[2]["id"],
        ]
        .contains(&&m["id"])
        {
            continue;
        }
        let r = by_id(&m["id"]);
        assert_eq!(r["status"], "accepted", "{r}");
        assert_eq!(r["annotator"], "alice", "{r}");
        assert_eq!(r["text"], m["text"]);
        assert_eq!(
            r["char_scores"], m["char_scores"],
            "the machine's scores stay"
        );
    }
    let corrected_scores = by_id(&uncertain[0]["id"]);
    assert_eq!(
        corrected_scores["char_scores"],
        uncertain_scores(&machine, &uncertain[0])
    );
    screenshot(&c, root, "ocr-next-1280x800").await;
    c.close().await.unwrap();

    // The phone size: the next page, no sideways scrolling; the field, the
    // crop and the hints first.
    let (ph, _pp) = driver.session(390, 844).await;
    sign_in(&ph, &s.url, &alice).await;
    wait_js(
        &ph,
        "document.querySelectorAll('section.project').length",
        "the phone's project list",
    )
    .await;
    open_review(&ph, &s.url, project).await;
    let overflow = js(
        &ph,
        "return document.documentElement.scrollWidth > window.innerWidth;",
    )
    .await;
    assert_eq!(overflow, json!(false), "no sideways scrolling at 390 px");
    js(&ph, "window.scrollTo(0, 0); return 1;").await;
    screenshot(&ph, root, "ocr-390x844").await;
    js(
        &ph,
        "document.querySelector('#stage').scrollIntoView(); return 1;",
    )
    .await;
    screenshot(&ph, root, "ocr-page-390x844").await;
    ph.close().await.unwrap();
}

/// The stored scores of a machine line (a corrected machine line keeps its own).
fn uncertain_scores(machine: &[Value], line: &Value) -> Value {
    machine.iter().find(|m| m["id"] == line["id"]).unwrap()["char_scores"].clone()
}
