//! The review page's sound mode in a real Chromium (issue 24), against a
//! real server: a speech project on the real Silero `vad` model pre-labels
//! a call made of real Asterisk prompts; the page draws its waveform from
//! the server's peaks and its machine segments over it; with the keyboard a
//! reviewer plays the selected segment (the player fetches the recording
//! through a signed link, in byte ranges: the server answers 206), nudges
//! both edges, splits at the cursor, deletes one, adds one at the cursor
//! and accepts with Enter; the API then holds exactly those segments. The
//! peaks and the signed links are checked over HTTP first: the peaks are
//! the recording's own per-bin extremes, a changed or spent link is a 403.
//! Screenshots at 1280×800 and 390×844 go to target/ui-screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::Path;
use std::time::Duration;

use browser::{browser_present, chord, drag, js, press, screenshot, sign_in, wait_js, Driver};
use common::audio::{asterisk, call, wav_bytes, RATE};
use common::server::{create_token, Server, TestDb};
use fantoccini::key::Key;
use fantoccini::Client;
use labelloop::service::content::LinkKey;
use serde_json::{json, Value};

const MEDIA_KEY: &str = "a test key shared by nobody else";

fn seg(v: &Value) -> (f64, f64) {
    let s = v.as_array().unwrap_or_else(|| panic!("{v}"));
    (s[0].as_f64().unwrap(), s[1].as_f64().unwrap())
}

/// The page's segments as it holds them: [{uid, id, seg, status}], in time order.
async fn page_segs(c: &Client) -> Vec<Value> {
    js(c, "return window.__ll_review.S.E.segs.map((b) => ({uid: b.uid, id: b.id, seg: b.seg, status: b.status}));")
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn selected(c: &Client) -> Value {
    js(c, "const E = window.__ll_review.S.E; const b = E.segs.find((x) => x.uid === E.sel); return b ? {uid: b.uid, id: b.id, seg: b.seg} : null;").await
}

async fn cursor(c: &Client) -> f64 {
    js(c, "return window.__ll_review.S.cursor;")
        .await
        .as_f64()
        .unwrap()
}

/// Click the waveform at time `t` (seconds).
async fn click_at(c: &Client, t: f64) {
    let p = js(
        c,
        &format!("const S = window.__ll_review.S; const r = S.over.getBoundingClientRect(); return [r.left + r.width * {t} / S.dur, r.top + r.height / 3];"),
    )
    .await;
    let at = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
    drag(c, at, at, 1).await;
}

/// Press Tab until the segment `uid` is selected.
async fn select_seg(c: &Client, uid: i64, n: usize) {
    for _ in 0..=n {
        if selected(c).await["uid"] == uid {
            return;
        }
        press(c, Key::Tab.into()).await;
    }
    panic!("Tab never selected segment {uid}");
}

fn start(db: &TestDb, root: &Path, models: &Path) -> Server {
    Server::start(
        &db.url,
        &[
            "--models",
            models.to_str().unwrap(),
            "--data-root",
            root.to_str().unwrap(),
            "--media-key",
            MEDIA_KEY,
        ],
    )
}

async fn open_review(c: &Client, base: &str, project: i64) {
    c.goto(&format!(
        "{base}/ui/projects/{project}/review?strategy=margin"
    ))
    .await
    .unwrap();
    wait_js(
        c,
        "window.__ll_review && window.__ll_review.S && window.__ll_review.S.linkExpires > 0",
        "a recording with its waveform and its link",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_review_in_chromium() {
    let Some(dir) = asterisk() else { return };
    if !browser_present() {
        return;
    }
    let root_dir = common::root();
    let db = TestDb::sqlite();
    let admin = create_token(&db.url, "admin", "boss");
    let alice = create_token(&db.url, "annotator", "alice");
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    for m in ["vad", "fashion-mnist-cnn"] {
        std::os::unix::fs::symlink(common::model_dir(m), models.path().join(m)).unwrap();
    }
    let (x, _) = call(&dir, &["goodbye", "activated", "auth-thankyou"], 7, 0.0);
    let bytes = wav_bytes(RATE, 1, &x);
    std::fs::write(data.path().join("call-b.wav"), &bytes).unwrap();
    let (y, _) = call(&dir, &["hello", "vm-password"], 5, 0.0);
    std::fs::write(data.path().join("call-a.wav"), wav_bytes(RATE, 1, &y)).unwrap();
    std::fs::write(data.path().join("notes.wav"), b"plain words, not a sound").unwrap();
    let data_root = data.path().canonicalize().unwrap();
    let s = start(&db, &data_root, models.path()).with_token(&admin);

    // A speech project whose threshold no segment reaches: the call waits
    // for a person with its machine segments.
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "calls", "model": "vad", "threshold": 0.99}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let (code, v) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!([{"id": "call-b", "path": "call-b.wav"}, {"id": "call-a", "path": "call-a.wav"}]),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let job = s
        .wait_job(v["job"]["id"].as_i64().unwrap(), Duration::from_secs(300))
        .await;
    assert_eq!(job["done"], 2, "{job}");
    let (_, list) = s.get(&format!("/v1/projects/{project}/items")).await;
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["client_id"] == "call-b")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // The peaks: the recording's own extremes per bin, as f32, mixed to
    // mono at its own rate (the bins tile the samples: ⌊b·n/bins⌋).
    let (code, pk) = s
        .get(&format!(
            "/v1/items/{item}/peaks?bins=500&project={project}"
        ))
        .await;
    assert_eq!(code, 200, "{pk}");
    assert_eq!(pk["bins"], 500);
    assert_eq!(pk["sample_rate"], RATE);
    assert!((pk["duration"].as_f64().unwrap() - x.len() as f64 / f64::from(RATE)).abs() < 1e-12);
    let scale = 1.0 / 32768.0f32;
    let n = x.len();
    for b in [0usize, 1, 137, 250, 499] {
        let part = &x[b * n / 500..(b + 1) * n / 500];
        let lo = part
            .iter()
            .map(|&v| f32::from(v) * scale)
            .fold(f32::INFINITY, f32::min);
        let hi = part
            .iter()
            .map(|&v| f32::from(v) * scale)
            .fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(pk["min"][b].as_f64().unwrap() as f32, lo, "bin {b}");
        assert_eq!(pk["max"][b].as_f64().unwrap() as f32, hi, "bin {b}");
    }
    for (q, code_want, says) in [
        ("bins=0", 422, "bins"),
        ("bins=8193", 422, "bins"),
        ("bins=-3", 422, "bins"),
        ("project=999", 404, "not found"),
    ] {
        let (code, v) = s.get(&format!("/v1/items/{item}/peaks?{q}")).await;
        assert_eq!(code, code_want, "{q}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    // Not a recording: an image project's item, and a speech project's file
    // that does not decode, are 422 naming why.
    let (code, img_p) = s
        .post(
            "/v1/projects",
            &json!({"name": "images", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{img_p}");
    let img_project = img_p["id"].as_i64().unwrap();
    let (code, v) = s
        .post(
            &format!("/v1/projects/{img_project}/items"),
            &json!(common::server::fashion_items(1)),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let (_, imgs) = s.get(&format!("/v1/projects/{img_project}/items")).await;
    let img_item = imgs["items"][0]["id"].as_i64().unwrap();
    let (code, v) = s.get(&format!("/v1/items/{img_item}/peaks")).await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "wrong_content");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("speech projects"),
        "{v}"
    );
    let (code, bad_p) = s
        .post(
            "/v1/projects",
            &json!({"name": "bad calls", "model": "vad"}),
        )
        .await;
    assert_eq!(code, 201, "{bad_p}");
    let bad_project = bad_p["id"].as_i64().unwrap();
    let (code, v) = s
        .post(
            &format!("/v1/projects/{bad_project}/items"),
            &json!([{"id": "notes", "path": "notes.wav"}]),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let (_, bads) = s.get(&format!("/v1/projects/{bad_project}/items")).await;
    let bad_item = bads["items"][0]["id"].as_i64().unwrap();
    let (code, v) = s.get(&format!("/v1/items/{bad_item}/peaks")).await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "wrong_content");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("decode"),
        "{v}"
    );
    let anonymous = reqwest::Client::new();
    let r = anonymous
        .get(format!("{}/v1/items/{item}/peaks", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "peaks need a token");

    // The signed link: no token, ranges served, anything changed refused.
    let (code, link) = s
        .get_as(
            &alice,
            &format!("/v1/items/{item}/content-link?project={project}"),
        )
        .await;
    assert_eq!(code, 200, "{link}");
    let url = link["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("/v1/items/{item}/content/signed?user=alice&")),
        "{url}"
    );
    let got = anonymous
        .get(format!("{}{url}", s.url))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(
        got.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len()).as_str()
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), &bytes[100..200]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = LinkKey::new(Some(MEDIA_KEY)).unwrap();
    let spent = now - 5;
    let forged_sig = url.replace(&url[url.len() - 4..], "0000");
    for (bad, says) in [
        (url.replace("user=alice", "user=boss"), "does not match"),
        (
            url.replace(&format!("/items/{item}/"), "/items/1234/"),
            "does not match",
        ),
        (forged_sig, "does not match"),
        (
            format!(
                "/v1/items/{item}/content/signed?user=alice&expires={spent}&sig={}",
                key.sign(item, "alice", spent)
            ),
            "expired",
        ),
        (
            format!(
                "/v1/items/{item}/content/signed?user=alice&expires={}&sig={}",
                now + 86_400,
                key.sign(item, "alice", now + 86_400)
            ),
            "does not match",
        ),
    ] {
        let r = anonymous
            .get(format!("{}{bad}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{bad}: {v}"
        );
    }

    // The page.
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
    // Whichever recording the list offers first.
    let item = js(&c, "return window.__ll_review.S.item.id;")
        .await
        .as_i64()
        .unwrap();
    let path = format!("/v1/projects/{project}/items/{item}/regions");
    let (_, before) = s.get(&path).await;
    assert_eq!(before["status"], "needs_review", "{before}");
    let machine: Vec<Value> = before["regions"].as_array().unwrap().clone();
    assert!(machine.len() >= 2, "{before}");
    let duration = before["duration"].as_f64().unwrap();
    let shown = page_segs(&c).await;
    assert_eq!(shown.len(), machine.len());
    for (p, m) in shown.iter().zip(&machine) {
        assert_eq!(p["id"], m["id"]);
        assert_eq!(
            seg(&p["seg"]),
            seg(&m["segment"]),
            "drawn at the stored times"
        );
        assert_eq!(p["status"], m["status"]);
    }
    // The waveform is drawn: dark columns where the prompts are, none in
    // the silence before the first one.
    let ink = js(
        &c,
        "const S = window.__ll_review.S; const g = S.wave.getContext('2d'); \
         const col = (t) => { const x = Math.floor(t / S.dur * S.w); const d = g.getImageData(x, 0, 1, S.hgt - 18 * S.dpr).data; \
           let k = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 120) k++; return k; }; \
         const b = S.E.segs[0].seg; return [col((b[0] + b[1]) / 2), col(b[0] / 4)];",
    )
    .await;
    let (speech_px, silence_px) = (ink[0].as_i64().unwrap(), ink[1].as_i64().unwrap());
    assert!(speech_px > 20, "speech is drawn tall: {ink}");
    assert!(silence_px <= 3, "silence is a flat line: {ink}");
    // The first uncertain segment is selected.
    let first = selected(&c).await;
    assert_eq!(first["id"], machine[0]["id"], "{first}");
    screenshot(&c, root_dir, "sound-machine-1280x800").await;
    // n and Shift+N walk the uncertain segments.
    press(&c, 'n').await;
    assert_eq!(selected(&c).await["id"], machine[1]["id"]);
    chord(&c, Key::Shift.into(), 'N').await;
    assert_eq!(selected(&c).await["id"], machine[0]["id"]);

    // 1. Play the selected segment with Space: the player runs from its
    // start and stops at its end; the recording came in ranges (206).
    let (a0, a1) = seg(&first["seg"]);
    press(&c, ' ').await;
    wait_js(
        &c,
        &format!(
            "!window.__ll_review.S.audio.paused && window.__ll_review.S.audio.currentTime > {}",
            a0 + 0.1
        ),
        "the segment playing",
    )
    .await;
    screenshot(&c, root_dir, "sound-playing-1280x800").await;
    wait_js(
        &c,
        &format!("window.__ll_review.S.audio.paused && window.__ll_review.S.cursor === {a1}"),
        "playback to stop at the segment's end",
    )
    .await;
    let (_, metrics) = s.get_text("/metrics").await;
    let ranged = metrics.lines().any(|l| {
        l.starts_with(
            "labelloop_http_requests_total{route=\"/v1/items/{id}/content/signed\",status=\"206\"}",
        )
    });
    assert!(
        ranged,
        "the player fetched byte ranges: {}",
        metrics
            .lines()
            .filter(|l| l.contains("content"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 2. Nudge: the end 10 ms later, the start 100 ms earlier (Shift).
    press(&c, ']').await;
    press(&c, Key::Right.into()).await;
    press(&c, '[').await;
    chord(&c, Key::Shift.into(), Key::Left.into()).await;
    let want_a = (a0 + -(10.0 * 0.01), a1 + 0.01);
    let a_now = selected(&c).await;
    assert_eq!(a_now["id"], first["id"]);
    assert_eq!(
        seg(&a_now["seg"]),
        want_a,
        "nudged by exactly 10 and 100 ms"
    );

    // 3. Split A at a cursor put a third of the way in by a click.
    click_at(&c, want_a.0 + (want_a.1 - want_a.0) / 3.0).await;
    let cut = cursor(&c).await;
    assert!(
        cut > want_a.0 + 0.05 && cut < want_a.1 - 0.05,
        "{cut} in {want_a:?}"
    );
    assert_eq!(
        selected(&c).await["uid"],
        first["uid"],
        "the click selects the segment under it"
    );
    press(&c, 's').await;
    let after_split = page_segs(&c).await;
    assert_eq!(after_split.len(), machine.len() + 1);
    let left = after_split.iter().find(|p| p["id"] == first["id"]).unwrap();
    assert_eq!(seg(&left["seg"]), (want_a.0, cut));
    let right = after_split
        .iter()
        .find(|p| p["id"].is_null())
        .expect("the right half");
    assert_eq!(seg(&right["seg"]), (cut, want_a.1));
    // m merges the halves back (keeping the machine id); u undoes it.
    press(&c, 'm').await;
    let merged = page_segs(&c).await;
    assert_eq!(merged.len(), machine.len());
    assert_eq!(seg(&merged[0]["seg"]), want_a);
    assert_eq!(merged[0]["id"], first["id"]);
    press(&c, 'u').await;
    assert_eq!(page_segs(&c).await, after_split, "undo restores the split");

    // 4. Delete the last machine segment (D).
    let d = shown.last().unwrap().clone();
    select_seg(&c, d["uid"].as_i64().unwrap(), after_split.len()).await;
    press(&c, Key::Delete.into()).await;
    assert!(page_segs(&c).await.iter().all(|p| p["uid"] != d["uid"]));

    // 5. Add one at a cursor in the silence before the first segment: it
    // runs 1 s or to the next segment.
    click_at(&c, want_a.0 / 4.0).await;
    let at = cursor(&c).await;
    press(&c, 'i').await;
    let added = selected(&c).await;
    assert!(added["id"].is_null());
    let want_new = (at, (at + 1.0).min(duration).min(want_a.0));
    assert_eq!(seg(&added["seg"]), want_new);
    screenshot(&c, root_dir, "sound-edited-1280x800").await;

    // Undo takes the new one back; adding again restores it.
    press(&c, 'u').await;
    assert_eq!(page_segs(&c).await.len(), machine.len());
    press(&c, 'i').await;
    assert_eq!(seg(&selected(&c).await["seg"]), want_new);

    // The keys are listed for sound.
    press(&c, '?').await;
    let help = wait_js(
        &c,
        "document.querySelector('#keys').open && document.querySelector('#keys .keys[data-mode=sound]:not([hidden])') && document.querySelector('#keys .keys[data-mode=sound]').innerText",
        "the sound keys",
    )
    .await;
    assert!(help.as_str().unwrap().contains("10 ms"), "{help}");
    screenshot(&c, root_dir, "sound-keys-1280x800").await;
    press(&c, '?').await;

    // 6. Accept with Enter: the full set in one PUT.
    let sent = page_segs(&c).await;
    press(&c, Key::Enter.into()).await;
    wait_js(
        &c,
        &format!("window.__ll_saved === 1 && window.__ll_review.S && window.__ll_review.S.item.id !== {item}"),
        "the save, then the next recording",
    )
    .await;
    let (code, after) = s.get(&path).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"], "labeled", "{after}");
    let regions = after["regions"].as_array().unwrap();
    let mut live: Vec<(f64, f64)> = regions
        .iter()
        .filter(|r| r["source"] == "human" || r["status"] == "accepted")
        .map(|r| seg(&r["segment"]))
        .collect();
    live.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut want: Vec<(f64, f64)> = vec![want_new, (want_a.0, cut), (cut, want_a.1)];
    want.extend(
        machine[1..machine.len() - 1]
            .iter()
            .map(|m| seg(&m["segment"])),
    );
    want.sort_by(|p, q| p.0.total_cmp(&q.0));
    assert_eq!(live, want, "the API holds exactly what was done: {after}");
    assert_eq!(live.len(), sent.len());
    let status_of = |id: &Value| regions.iter().find(|r| r["id"] == *id).unwrap()["status"].clone();
    assert_eq!(status_of(&first["id"]), "corrected");
    assert_eq!(status_of(&d["id"]), "deleted");
    for m in &machine[1..machine.len() - 1] {
        assert_eq!(status_of(&m["id"]), "accepted");
    }
    let fix = regions
        .iter()
        .find(|r| r["replaces"] == first["id"])
        .expect("the corrected half");
    assert_eq!(seg(&fix["segment"]), (want_a.0, cut));
    assert_eq!(fix["annotator"], "alice");
    assert_eq!(
        regions.iter().filter(|r| r["status"] == "added").count(),
        2,
        "the right half and the new one: {after}"
    );
    screenshot(&c, root_dir, "sound-next-1280x800").await;
    c.close().await.unwrap();

    // The phone size: the other recording, no sideways scrolling.
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
    screenshot(&ph, root_dir, "sound-390x844").await;
    ph.close().await.unwrap();
}
