//! Recording calibration (issue 24), on the real server, the real Silero
//! VAD model and real Asterisk prompts arranged into calls with white noise
//! of rising levels in the gaps (tests/common/audio.rs; the arrangement is
//! synthetic, the sounds are real), on SQLite and PostgreSQL:
//! - a speech project draws a uniform audit sample of **recordings**; each
//!   waits for a person with every segment left for review;
//! - a reviewer returns the true segments of every audit recording;
//! - `POST …/calibrate` fits the segment threshold; `GET …/calibration`
//!   shows it (`kind: segments`), its audit figures and the missed speech;
//! - every other recording is re-routed: a segment is accepted iff its
//!   score reaches the threshold, and what is accepted meets the target
//!   against the truth;
//! - recordings ingested after the fit are routed by it.

mod common;

use std::path::Path;

use common::audio::{asterisk, call, iou, wav_bytes, RATE};
use common::detect::{ingest, machine};
use common::server::{create_token, send, Server, TestDb};
use serde_json::{json, Value};

const TARGET: f64 = 0.9;

/// Single phrases the calls are made of (prompts that pass
/// `scripts/make_calls.py`'s filter: one phrase, no pause inside).
const PROMPTS: [&str; 16] = [
    "activated",
    "added",
    "agent-loginok",
    "agent-loggedoff",
    "call-waiting",
    "auth-thankyou",
    "goodbye",
    "hello",
    "vm-password",
    "queue-thankyou",
    "vm-goodbye",
    "conf-enteringno",
    "transfer",
    "vm-nomore",
    "conf-locked",
    "conf-getpin",
];

/// Noise in the gaps as a share of the speech RMS, by call number: clean
/// calls and calls loud enough that the model errs.
const NOISE: [f64; 4] = [0.0, 0.0, 0.0, 0.3];

/// Call `i`: three prompts, its noise level; its WAV written under `root`.
fn write_call(dir: &Path, root: &Path, i: usize) -> (String, Vec<(f64, f64)>) {
    let picks: Vec<&str> = (0..3)
        .map(|k| PROMPTS[(i * 5 + k * 7) % PROMPTS.len()])
        .collect();
    let (x, truth) = call(dir, &picks, 100 + i as u64, NOISE[i % NOISE.len()]);
    let name = format!("call-{i:03}.wav");
    std::fs::write(root.join(&name), wav_bytes(RATE, 1, &x)).unwrap();
    (name, truth)
}

fn segment(r: &Value) -> (f64, f64) {
    let s = r["segment"].as_array().unwrap_or_else(|| panic!("{r}"));
    (s[0].as_f64().unwrap(), s[1].as_f64().unwrap())
}

/// Accepted segments that match a true one at IoU ≥ 0.5, one to one.
fn correct(accepted: &[(f64, f64)], truth: &[(f64, f64)]) -> usize {
    let mut used = vec![false; truth.len()];
    let mut n = 0;
    for a in accepted {
        let best = (0..truth.len())
            .filter(|&j| !used[j])
            .map(|j| (iou(*a, truth[j]), j))
            .max_by(|x, y| x.0.total_cmp(&y.0));
        if let Some((v, j)) = best {
            if v >= 0.5 {
                used[j] = true;
                n += 1;
            }
        }
    }
    n
}

async fn calibrated_segments(db: TestDb) {
    let Some(dir) = asterisk() else { return };
    let admin = create_token(&db.url, "admin", "boss");
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::model_dir("vad"), models.path().join("vad")).unwrap();
    let truth: Vec<(String, Vec<(f64, f64)>)> =
        (0..88).map(|i| write_call(&dir, root.path(), i)).collect();
    let truth_of = |file: &str| -> &Vec<(f64, f64)> {
        &truth
            .iter()
            .find(|(f, _)| f == file)
            .unwrap_or_else(|| panic!("no call {file}"))
            .1
    };
    let root_path = root.path().canonicalize().unwrap();
    let s = Server::start(
        &db.url,
        &[
            "--models",
            models.path().to_str().unwrap(),
            "--data-root",
            root_path.to_str().unwrap(),
        ],
    )
    .with_token(&admin);

    // No fixed threshold: nothing is auto-accepted before the first fit.
    // The fit needs about 25 error-free audit recordings at target 0.9 and
    // δ 0.1 (each multiplies the betting e-value by 1.1; see
    // calibrate::boxes), hence 80 calls audited at 0.5.
    let (code, p) = s
        .post(
            "/v1/projects",
            &json!({"name": "calls", "model": "vad", "precision_target": TARGET,
                    "settings": {"audit_rate": 0.5, "calibrate_every": 0, "delta": 0.1}}),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_i64().unwrap();
    let calls: Vec<Value> = truth
        .iter()
        .take(80)
        .map(|(f, _)| json!({"id": f, "path": f}))
        .collect();
    ingest(&s, project, &calls).await;
    let (code, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 80);
    let audit: Vec<&Value> = items.iter().filter(|i| i["audit"] == true).collect();
    assert!(
        (25..=55).contains(&audit.len()),
        "a uniform draw at 0.5 of 80 recordings: {} audit",
        audit.len()
    );
    for it in &items {
        let id = it["id"].as_i64().unwrap();
        let (_, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        // Uncalibrated: every segment waits; an audit recording always.
        assert!(machine(&r).iter().all(|m| m["status"] == "review"), "{r}");
        if it["audit"] == true {
            assert_eq!(it["status"], "needs_review", "{it}");
        }
    }

    // A reviewer returns the true segments of every audit recording.
    let mut audit_truths = 0;
    for it in &audit {
        let id = it["id"].as_i64().unwrap();
        let segs: Vec<Value> = truth_of(it["client_id"].as_str().unwrap())
            .iter()
            .map(|(a, b)| json!({"label": "Speech", "segment": [a, b]}))
            .collect();
        audit_truths += segs.len();
        let (code, body) = send(
            s.client
                .put(format!(
                    "{}/v1/projects/{project}/items/{id}/regions",
                    s.url
                ))
                .bearer_auth(&admin)
                .json(&json!({ "regions": segs })),
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
        .wait_job(
            body["id"].as_i64().unwrap(),
            std::time::Duration::from_secs(120),
        )
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["errors"], 0, "{job}");

    let (code, cal) = s.get(&format!("/v1/projects/{project}/calibration")).await;
    assert_eq!(code, 200, "{cal}");
    eprintln!("segment calibration: {cal:#}");
    let version = cal["version"].as_i64().expect("a version");
    assert_eq!(cal["kind"], "segments", "{cal}");
    assert_eq!(cal["target"], TARGET, "{cal}");
    assert_eq!(cal["audit_images"], audit.len(), "{cal}");
    // Missed speech, beside the threshold: the true segments of the audit
    // recordings no machine segment matched.
    assert_eq!(cal["miss"]["truths"], audit_truths, "{cal}");
    let missed = cal["miss"]["missed"].as_u64().unwrap() as usize;
    assert!(missed < audit_truths, "{cal}");
    let upper = cal["miss"]["upper"].as_f64().unwrap();
    assert!(
        cal["miss"]["mean"].as_f64().unwrap() <= upper && upper <= 1.0,
        "{cal}"
    );
    let threshold = cal["classes"][0]["threshold"].as_f64().unwrap_or_else(|| {
        panic!(
            "no threshold at {TARGET} on {} audit recordings: {cal}",
            audit.len()
        )
    });
    assert_eq!(cal["classes"][0]["label"], "Speech", "{cal}");

    // Every other recording is re-routed under the version, and what it
    // accepts meets the target against the truth.
    let (mut accepted_all, mut correct_all, mut machine_all, mut auto) = (0, 0, 0, 0);
    for it in items.iter().filter(|i| i["audit"] == false) {
        let id = it["id"].as_i64().unwrap();
        let (code, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        assert_eq!(code, 200, "{r}");
        let segs = machine(&r);
        let mut accepted = Vec::new();
        for m in &segs {
            assert_eq!(m["calibration_version"], version, "{m}");
            let should = m["score"].as_f64().unwrap() >= threshold;
            assert_eq!(
                m["status"],
                if should { "accepted" } else { "review" },
                "{m}"
            );
            if should {
                accepted.push(segment(m));
            }
        }
        if accepted.len() < segs.len() {
            assert_eq!(r["status"], "needs_review", "{r}");
        }
        if r["status"] == "auto_accepted" {
            auto += 1;
        }
        machine_all += segs.len();
        accepted_all += accepted.len();
        correct_all += correct(&accepted, truth_of(it["client_id"].as_str().unwrap()));
    }
    eprintln!(
        "non-audit recordings: {accepted_all} of {machine_all} machine segments auto-accepted, \
         {correct_all} correct against the truth; {auto} recordings auto-accepted"
    );
    assert!(accepted_all > 0, "the version accepted no segment");
    assert!(auto > 0, "no recording was settled");
    let coverage = cal["coverage"].as_f64().unwrap();
    assert!(
        (coverage - accepted_all as f64 / machine_all as f64).abs() < 1e-12,
        "{coverage}"
    );
    let realised = correct_all as f64 / accepted_all as f64;
    assert!(
        realised >= TARGET,
        "realised precision {realised:.3} of auto-accepted segments is below {TARGET}"
    );

    // Recordings ingested after the fit are routed by it (the audit draw
    // applies to them as to any recording).
    let later: Vec<Value> = truth
        .iter()
        .skip(80)
        .map(|(f, _)| json!({"id": f, "path": f}))
        .collect();
    ingest(&s, project, &later).await;
    let (_, list) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let mut routed = 0;
    for it in list["items"].as_array().unwrap() {
        let cid = it["client_id"].as_str().unwrap();
        if calls.iter().any(|c| c["id"] == cid) || it["audit"] == true {
            continue;
        }
        let id = it["id"].as_i64().unwrap();
        let (_, r) = s
            .get(&format!("/v1/projects/{project}/items/{id}/regions"))
            .await;
        for m in machine(&r) {
            assert_eq!(m["calibration_version"], version, "{m}");
            let should = m["score"].as_f64().unwrap() >= threshold;
            assert_eq!(
                m["status"],
                if should { "accepted" } else { "review" },
                "{m}"
            );
            routed += 1;
        }
    }
    assert!(routed > 0, "no segment routed after the fit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrated_segments_sqlite() {
    calibrated_segments(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrated_segments_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    calibrated_segments(db).await;
}

/// `labelloop simulate --segments` on 60 calls (real prompts, the truth
/// written beside them): the seeds' realised precision of auto-accepted
/// segments meets the target, the report names recordings and segments;
/// a bad truth line is refused naming the line and the flag.
#[test]
fn speech_simulate_meets_its_target() {
    let Some(dir) = asterisk() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(common::model_dir("vad"), models.join("vad")).unwrap();
    let mut lines = String::new();
    for i in 0..60 {
        let (file, truth) = write_call(&dir, tmp.path(), i);
        let segs: Vec<[f64; 2]> = truth.iter().map(|(a, b)| [*a, *b]).collect();
        lines.push_str(&format!(
            "{}\n",
            json!({"id": file, "audio": file, "segments": segs})
        ));
    }
    let truth = tmp.path().join("truth.jsonl");
    std::fs::write(&truth, &lines).unwrap();
    let out_dir = tmp.path().join("out");
    let run = |truth: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_labelloop"))
            .args(["simulate", "--models-dir", models.to_str().unwrap()])
            .args(["--model", "vad", "--segments", truth.to_str().unwrap()])
            .args(["--target", &TARGET.to_string(), "--delta", "0.1"])
            .args(["--audit-rate", "0.5", "--seeds", "3"])
            .args(["--out", out_dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run(&truth);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("simulation-segments.json")).unwrap())
            .unwrap();
    assert_eq!(report["task"], "segments", "{report}");
    assert_eq!(report["images"], 60, "{report}");
    assert_eq!(report["audit_images"], 30, "{report}");
    assert_eq!(report["summary"]["meets_target"], 3, "{report}");
    assert!(
        report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["accepted_boxes"].as_u64().unwrap() > 0),
        "every seed accepts segments on clean calls: {stdout}"
    );
    assert!(stdout.contains("recordings touched"), "{stdout}");
    // An inverted segment on line 2 is named.
    let bad = tmp.path().join("bad.jsonl");
    let mut it = lines.lines();
    let first = it.next().unwrap();
    std::fs::write(
        &bad,
        format!(
            "{first}\n{}\n",
            json!({"id": "x", "audio": "call-000.wav", "segments": [[2.0, 1.0]]})
        ),
    )
    .unwrap();
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--segments") && err.contains("line 2"),
        "{err}"
    );
}
