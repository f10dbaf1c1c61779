//! Calls for the voice-activity tests: real Asterisk prompts (Debian's
//! asterisk-core-sounds-en-wav, unpacked by `scripts/setup.sh` into
//! data/asterisk/) strung together with gaps, and their ground truth, each
//! prompt's extent trimmed at 40 dB below its peak; and segment matching at
//! IoU >= 0.5. Shared by tests/vad.rs (the engine) and
//! tests/audio_project.rs (through the loop).
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The prompts' sample rate.
pub const RATE: u32 = 8000;

/// data/asterisk, or None after a loud message (outside CI only).
pub fn asterisk() -> Option<PathBuf> {
    let dir = super::root().join("data/asterisk");
    if dir.join(".complete").is_file() && super::model_dir("vad").join("model.onnx").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("data/asterisk or models/vad/model.onnx is missing under CI=true: scripts/setup.sh must install them");
    }
    eprintln!("\n*** SKIPPED: data/asterisk or models/vad/model.onnx is missing; run scripts/setup.sh ***\n");
    None
}

pub fn read_prompt(dir: &Path, name: &str) -> Vec<i16> {
    let r = hound::WavReader::open(dir.join("sounds").join(format!("{name}.wav"))).unwrap();
    assert_eq!(r.spec().sample_rate, RATE);
    r.into_samples::<i16>().map(Result::unwrap).collect()
}

/// First and last sample at or above 40 dB below the peak.
pub fn extent(x: &[i16]) -> (usize, usize) {
    let peak = x.iter().map(|v| i32::from(*v).abs()).max().unwrap_or(0);
    let hot = |v: &i16| i32::from(*v).abs() * 100 >= peak;
    let s = x.iter().position(hot).unwrap_or(0);
    let e = x.iter().rposition(hot).map_or(0, |e| e + 1);
    (s, e)
}

pub fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(Cursor::new(&mut out), spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    out
}

/// A call: prompts `picks` with gaps between them, the gaps filled by
/// `noise` (0: silence) as a fraction of the speech RMS. Returns the 8 kHz
/// samples and the true segments in seconds.
pub fn call(dir: &Path, picks: &[&str], seed: u64, noise: f64) -> (Vec<i16>, Vec<(f64, f64)>) {
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let prompts: Vec<Vec<i16>> = picks.iter().map(|p| read_prompt(dir, p)).collect();
    let speech: Vec<f64> = prompts
        .iter()
        .flat_map(|x| {
            let (s, e) = extent(x);
            x[s..e].iter().map(|v| f64::from(*v))
        })
        .collect();
    let rms = (speech.iter().map(|v| v * v).sum::<f64>() / speech.len() as f64).sqrt();
    let mut out: Vec<i16> = Vec::new();
    let mut truth = Vec::new();
    let gap = |out: &mut Vec<i16>, next: &mut dyn FnMut() -> f64| {
        let n = ((0.6 + 1.4 * next()) * f64::from(RATE)) as usize;
        for _ in 0..n {
            // Uniform noise of the given RMS (sqrt(3) * rms amplitude).
            let v = (next() * 2.0 - 1.0) * 3f64.sqrt() * rms * noise;
            out.push(v.clamp(-32768.0, 32767.0) as i16);
        }
    };
    for x in &prompts {
        gap(&mut out, &mut next);
        let (s, e) = extent(x);
        let at = out.len();
        truth.push((
            (at + s) as f64 / f64::from(RATE),
            (at + e) as f64 / f64::from(RATE),
        ));
        out.extend_from_slice(x);
    }
    gap(&mut out, &mut next);
    (out, truth)
}

pub fn iou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let union = a.1.max(b.1) - a.0.min(b.0);
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// (true positives, predicted, true) with one-to-one matching at IoU >= 0.5.
pub fn matched(truth: &[(f64, f64)], pred: &[(f64, f64)]) -> (usize, usize, usize) {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        for (j, p) in pred.iter().enumerate() {
            pairs.push((iou(*t, *p), i, j));
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut ti, mut pj) = (vec![false; truth.len()], vec![false; pred.len()]);
    let mut tp = 0;
    for (v, i, j) in pairs {
        if v < 0.5 {
            break;
        }
        if !ti[i] && !pj[j] {
            ti[i] = true;
            pj[j] = true;
            tp += 1;
        }
    }
    (tp, pred.len(), truth.len())
}

pub fn f1(tp: usize, pred: usize, truth: usize) -> f64 {
    2.0 * tp as f64 / (pred + truth).max(1) as f64
}
