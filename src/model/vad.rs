//! Voice activity: speech segments from a stateful streaming model
//! (Silero VAD's interface).
//!
//! The model is called once per window of new samples (512 at 16 kHz), fed
//! the last `context` samples of the previous window in front, and a
//! recurrent state it returned the call before. Nothing in that interface
//! ties one call to one recording: the waveform input is `[B, context +
//! window]` and the state `[2, B, 128]`, so [`run_streams`] runs up to
//! `streams` recordings side by side as the rows of one batch, each row
//! with its own state. When a recording ends its row is handed to the next
//! waiting recording (with a zero state), so the batch stays full until
//! the last recordings drain. A call costs about the same at batch 1 as a
//! few rows, so this is what keeps a core busy (measured on this machine:
//! 0.33–0.57 ms per window at batch 1, about 0.14 ms per stream-window at 16).
//!
//! The frame probabilities become segments exactly as silero-vad 6.2.3's
//! `get_speech_timestamps` does with `max_speech_duration_s = inf` (its
//! default): see [`timestamps`].

use ort::session::{Session, SessionInputValue};
use ort::value::{Outlet, TensorElementType, TensorRef};
use serde::Serialize;

use super::graph::{describe, list, tensor};
use super::manifest::{AudioInput, Manifest, VadSpec};
use super::{ItemError, ModelError};

/// One speech segment, in seconds from the start of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// Mean speech probability of the frames that start inside the segment.
    pub score: f32,
}

/// Every speech segment of one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segments {
    /// Seconds of audio, as decoded.
    pub duration: f64,
    pub segments: Vec<Segment>,
    /// The speech probability of each window, in order.
    #[serde(skip)]
    pub frames: Vec<f32>,
    /// Seconds per frame.
    #[serde(skip)]
    pub frame_seconds: f64,
}

impl Segments {
    /// Share of frames the model could not decide on: probability in [lo, hi].
    pub fn undecided_share(&self, lo: f32, hi: f32) -> f64 {
        if self.frames.is_empty() {
            return 0.0;
        }
        let n = self
            .frames
            .iter()
            .filter(|p| (lo..=hi).contains(*p))
            .count();
        n as f64 / self.frames.len() as f64
    }
}

/// Check the graph has the streaming interface the manifest declares.
/// Errors are `(manifest side, graph side)`.
pub(crate) fn check_graph(
    manifest: &Manifest,
    audio: &AudioInput,
    inputs: &[Outlet],
    outputs: &[Outlet],
) -> Result<(), (String, String)> {
    fn find<'o>(outlets: &'o [Outlet], name: &str) -> Option<&'o Outlet> {
        outlets.iter().find(|o| o.name() == name)
    }
    let f32_rank = |outlets: &[Outlet], name: &str, rank: usize, what: &str| {
        let Some(o) = find(outlets, name) else {
            return Err((format!("{what} {name:?}"), list(outlets)));
        };
        match tensor(o) {
            Some((TensorElementType::Float32, shape)) if shape.len() == rank => Ok(shape.to_vec()),
            _ => Err((
                format!("{what} {name:?} as float32 of rank {rank}"),
                describe(o),
            )),
        }
    };
    f32_rank(inputs, &audio.name, 2, "waveform input [batch, samples]")?;
    let state = f32_rank(inputs, &audio.state, 3, "state input [2, batch, size]")?;
    let size = audio.state_size as i64;
    if !(state[0] < 0 || state[0] == 2) || !(state[2] < 0 || state[2] == size) {
        return Err((
            format!("state input {:?} as [2, batch, {size}]", audio.state),
            format!("{state:?}"),
        ));
    }
    if let Some(sr) = &audio.sample_rate_input {
        let Some(o) = find(inputs, sr) else {
            return Err((format!("sample-rate input {sr:?}"), list(inputs)));
        };
        if !matches!(tensor(o), Some((TensorElementType::Int64, s)) if s.len() <= 1) {
            return Err((
                format!("sample-rate input {sr:?} as an int64 scalar"),
                describe(o),
            ));
        }
    }
    let Some(vad) = &manifest.vad else {
        return Err(("a [vad] section".into(), "nothing to check".into()));
    };
    let prob = f32_rank(
        outputs,
        &vad.output,
        2,
        "speech probability output [batch, 1]",
    )?;
    if prob[1] >= 0 && prob[1] != 1 {
        return Err((
            format!("output {:?} as [batch, 1]", vad.output),
            format!("{prob:?}"),
        ));
    }
    f32_rank(outputs, &vad.state_output, 3, "next-state output").or_else(|e| {
        // Silero exports its next state with unnamed dynamic dims; any
        // float tensor will do as long as it exists.
        find(outputs, &vad.state_output)
            .map(|_| Vec::new())
            .ok_or(e)
    })?;
    Ok(())
}

/// Silero's `get_speech_timestamps_from_probs` with `max_speech_duration_s
/// = inf`: segments as `[start, end)` sample offsets at `rate`. `probs[i]`
/// is the probability of the window starting at sample `i · window`;
/// `samples` is the recording's length.
pub fn timestamps(
    probs: &[f32],
    samples: usize,
    rate: u32,
    window: usize,
    spec: &VadSpec,
) -> Vec<(usize, usize)> {
    let sr = f64::from(rate);
    let min_speech = sr * f64::from(spec.min_speech_ms) / 1000.0;
    let pad = sr * f64::from(spec.pad_ms) / 1000.0;
    let min_silence = sr * f64::from(spec.min_silence_ms) / 1000.0;
    let (threshold, neg) = (spec.threshold, spec.neg_threshold);

    let mut speeches: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut temp_end: usize = 0;
    for (i, &p) in probs.iter().enumerate() {
        let cur = window * i;
        if p >= threshold && temp_end != 0 {
            temp_end = 0;
        }
        if p >= threshold && start.is_none() {
            start = Some(cur);
            continue;
        }
        if let (true, Some(s)) = (p < neg, start) {
            if temp_end == 0 {
                temp_end = cur;
            }
            if ((cur - temp_end) as f64) < min_silence {
                continue;
            }
            if (temp_end.saturating_sub(s)) as f64 > min_speech {
                speeches.push((s, temp_end));
            }
            start = None;
            temp_end = 0;
        }
    }
    if let Some(s) = start {
        if (samples.saturating_sub(s)) as f64 > min_speech {
            speeches.push((s, samples));
        }
    }
    // Padding, as silero does it: the first start moves left by the pad;
    // between two segments each side takes the pad, or half the gap when
    // the gap is shorter than two pads; the last end moves right.
    let n = speeches.len();
    let trunc = |v: f64| v.max(0.0).trunc() as usize;
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = trunc(speeches[0].0 as f64 - pad);
        }
        if i + 1 != n {
            let gap = speeches[i + 1].0 as i64 - speeches[i].1 as i64;
            if (gap as f64) < 2.0 * pad {
                let half = gap.div_euclid(2);
                speeches[i].1 = (speeches[i].1 as i64 + half).max(0) as usize;
                speeches[i + 1].0 = (speeches[i + 1].0 as i64 - half).max(0) as usize;
            } else {
                speeches[i].1 = trunc((samples as f64).min(speeches[i].1 as f64 + pad));
                speeches[i + 1].0 = trunc(speeches[i + 1].0 as f64 - pad);
            }
        } else {
            speeches[i].1 = trunc((samples as f64).min(speeches[i].1 as f64 + pad));
        }
    }
    speeches
}

/// Segments in seconds, each scored by the mean probability of the windows
/// that start inside it.
pub fn segments(probs: &[f32], samples: usize, audio: &AudioInput, spec: &VadSpec) -> Segments {
    let rate = f64::from(audio.sample_rate);
    let w = audio.window;
    let segments = timestamps(probs, samples, audio.sample_rate, w, spec)
        .into_iter()
        .map(|(s, e)| {
            let first = s.div_ceil(w).min(probs.len().saturating_sub(1));
            let last = e.div_ceil(w).clamp(first + 1, probs.len().max(first + 1));
            let frames = &probs[first.min(probs.len())..last.min(probs.len())];
            let score = if frames.is_empty() {
                0.0
            } else {
                frames.iter().sum::<f32>() / frames.len() as f32
            };
            Segment {
                start: s as f64 / rate,
                end: e as f64 / rate,
                score,
            }
        })
        .collect();
    Segments {
        duration: samples as f64 / rate,
        segments,
        frames: probs.to_vec(),
        frame_seconds: w as f64 / rate,
    }
}

/// A recording waiting for, or holding, a row of the batch.
struct Stream<K> {
    key: K,
    samples: Vec<f32>,
    /// Windows done.
    done: usize,
    probs: Vec<f32>,
}

impl<K> Stream<K> {
    fn windows(&self, w: usize) -> usize {
        self.samples.len().div_ceil(w)
    }
}

/// What the source of recordings has for [`run_streams`].
pub enum Feed<K> {
    /// The next recording, mono at the model's rate.
    Ready(K, Vec<f32>),
    /// None staged yet (only when asked not to wait).
    Later,
    /// No more recordings.
    Done,
}

impl<K> Feed<K> {
    /// A source that never has to wait.
    pub fn from_items(mut it: impl Iterator<Item = (K, Vec<f32>)>) -> impl FnMut(bool) -> Feed<K> {
        move |_| match it.next() {
            Some((k, s)) => Feed::Ready(k, s),
            None => Feed::Done,
        }
    }
}

/// Run recordings through the model as a batch of up to `spec.streams`
/// streams. `next(wait)` gives the next recording in the order they should
/// start; with `wait` false it may answer [`Feed::Later`], and the batch
/// goes on with the streams it has (it is only asked to wait when no stream
/// is live). `emit` is called once per recording as it finishes, which is
/// not input order. A failed model call fails every recording in flight and
/// every one still to come.
pub(crate) fn run_streams<K>(
    session: &mut Session,
    audio: &AudioInput,
    spec: &VadSpec,
    next: &mut dyn FnMut(bool) -> Feed<K>,
    emit: &mut dyn FnMut(K, Result<Segments, ItemError>),
) {
    let (w, c, s) = (audio.window, audio.context, audio.state_size);
    let width = c + w;
    let max = spec.streams.max(1);
    let mut live: Vec<Stream<K>> = Vec::with_capacity(max);
    // [2, B, S], rows in `live` order.
    let mut state: Vec<f32> = Vec::new();
    let mut input: Vec<f32> = Vec::new();
    let sr = [i64::from(audio.sample_rate)];
    let mut exhausted = false;
    loop {
        // Fill free rows; each new row starts from a zero state.
        let before = live.len();
        while !exhausted && live.len() < max {
            match next(live.is_empty()) {
                Feed::Ready(key, samples) => live.push(Stream {
                    key,
                    probs: Vec::with_capacity(samples.len().div_ceil(w)),
                    samples,
                    done: 0,
                }),
                Feed::Later => break,
                Feed::Done => exhausted = true,
            }
        }
        if live.len() != before {
            state = resize_state(&state, before, live.len(), s);
        }
        if live.is_empty() {
            if exhausted {
                return;
            }
            continue;
        }
        let b = live.len();
        input.clear();
        input.resize(b * width, 0.0);
        for (row, st) in live.iter().enumerate() {
            let at = st.done * w;
            // Window i reads samples [i·w − c, i·w + w), zeros outside.
            let from = at as i64 - c as i64;
            let dst = &mut input[row * width..(row + 1) * width];
            let lo = from.max(0) as usize;
            let hi = (at + w).min(st.samples.len());
            if hi > lo {
                let off = (lo as i64 - from) as usize;
                dst[off..off + (hi - lo)].copy_from_slice(&st.samples[lo..hi]);
            }
        }
        match call(session, audio, spec, &input, &state, b, width, &sr) {
            Ok((probs, next_state)) => {
                state = next_state;
                for (st, p) in live.iter_mut().zip(probs) {
                    st.probs.push(p);
                    st.done += 1;
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for st in live.drain(..) {
                    emit(st.key, Err(ItemError::Inference(msg.clone())));
                }
                while !exhausted {
                    match next(true) {
                        Feed::Ready(key, _) => emit(key, Err(ItemError::Inference(msg.clone()))),
                        Feed::Later => {}
                        Feed::Done => exhausted = true,
                    }
                }
                return;
            }
        }
        // Retire finished streams, keeping the others' state rows.
        if live.iter().any(|st| st.done >= st.windows(w)) {
            let keep: Vec<bool> = live.iter().map(|st| st.done < st.windows(w)).collect();
            state = keep_rows(&state, &keep, s);
            let mut kept = Vec::with_capacity(live.len());
            for (st, k) in live.drain(..).zip(&keep) {
                if *k {
                    kept.push(st);
                } else {
                    let segs = segments(&st.probs, st.samples.len(), audio, spec);
                    emit(st.key, Ok(segs));
                }
            }
            live = kept;
        }
    }
}

/// One model call: probabilities per row and the next state.
#[allow(clippy::too_many_arguments)]
fn call(
    session: &mut Session,
    audio: &AudioInput,
    spec: &VadSpec,
    input: &[f32],
    state: &[f32],
    b: usize,
    width: usize,
    sr: &[i64; 1],
) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let infer = |e: ort::Error| ModelError::Inference(e.to_string());
    let mut feeds: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = vec![
        (
            audio.name.as_str().into(),
            TensorRef::from_array_view((vec![b, width], input))
                .map_err(infer)?
                .into(),
        ),
        (
            audio.state.as_str().into(),
            TensorRef::from_array_view((vec![2, b, audio.state_size], state))
                .map_err(infer)?
                .into(),
        ),
    ];
    if let Some(name) = &audio.sample_rate_input {
        feeds.push((
            name.as_str().into(),
            TensorRef::from_array_view((Vec::<usize>::new(), &sr[..]))
                .map_err(infer)?
                .into(),
        ));
    }
    let outputs = session.run(feeds).map_err(infer)?;
    let read = |name: &str| -> Result<Vec<f32>, ModelError> {
        let v = outputs
            .get(name)
            .ok_or_else(|| ModelError::Inference(format!("graph returned no output {name:?}")))?;
        let (_, data) = v
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Inference(format!("output {name}: {e}")))?;
        Ok(data.to_vec())
    };
    let probs = read(&spec.output)?;
    let next = read(&spec.state_output)?;
    if probs.len() != b || next.len() != 2 * b * audio.state_size {
        return Err(ModelError::Inference(format!(
            "expected {b} probabilities and a [2, {b}, {}] state, got {} and {} values",
            audio.state_size,
            probs.len(),
            next.len()
        )));
    }
    Ok((probs, next))
}

/// Grow a `[2, old, s]` state to `[2, new, s]` (new rows zero).
fn resize_state(state: &[f32], old: usize, new: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0.0; 2 * new * s];
    if old > 0 {
        for layer in 0..2 {
            out[layer * new * s..layer * new * s + old * s]
                .copy_from_slice(&state[layer * old * s..(layer + 1) * old * s]);
        }
    }
    out
}

/// Keep the rows of a `[2, B, s]` state marked in `keep`.
fn keep_rows(state: &[f32], keep: &[bool], s: usize) -> Vec<f32> {
    let b = keep.len();
    let kept = keep.iter().filter(|k| **k).count();
    let mut out = Vec::with_capacity(2 * kept * s);
    for layer in 0..2 {
        for (row, k) in keep.iter().enumerate() {
            if *k {
                let at = layer * b * s + row * s;
                out.extend_from_slice(&state[at..at + s]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VadSpec {
        toml::from_str("").unwrap()
    }

    #[test]
    fn silero_padding_and_minimums() {
        let spec = spec();
        // 16 kHz, 512-sample windows: speech in windows 10..30 and 33..60
        // (a 3-window dip, 96 ms, shorter than the 100 ms silence), then a
        // 5-window blip (160 ms, under the 250 ms minimum).
        let mut p = vec![0.0f32; 100];
        for v in p.iter_mut().take(30).skip(10) {
            *v = 0.9;
        }
        for v in p.iter_mut().take(60).skip(33) {
            *v = 0.9;
        }
        for v in p.iter_mut().take(85).skip(80) {
            *v = 0.9;
        }
        let ts = timestamps(&p, 100 * 512, 16000, 512, &spec);
        assert_eq!(ts, vec![(10 * 512 - 480, 60 * 512 + 480)]);
    }

    #[test]
    fn close_segments_split_the_gap() {
        let spec = spec();
        // Two segments 4 windows apart (128 ms): silence ends the first, and
        // the 128 ms gap minus... is split evenly since it is under two pads
        // once the end waits for 100 ms.
        let mut p = vec![0.0f32; 60];
        for v in p.iter_mut().take(20).skip(5) {
            *v = 0.9;
        }
        for v in p.iter_mut().take(50).skip(25) {
            *v = 0.9;
        }
        let ts = timestamps(&p, 60 * 512, 16000, 512, &spec);
        assert_eq!(ts.len(), 2);
        // Gap 5 windows = 2560 samples > 960: both sides padded by 480.
        assert_eq!(ts[0], (5 * 512 - 480, 20 * 512 + 480));
        assert_eq!(ts[1], (25 * 512 - 480, 50 * 512 + 480));
    }

    #[test]
    fn state_rows_move_with_their_streams() {
        let s = 2;
        // [2, 3, 2]: layer 0 rows a b c, layer 1 rows A B C.
        let st = vec![
            1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0,
        ];
        let kept = keep_rows(&st, &[true, false, true], s);
        assert_eq!(kept, vec![1.0, 1.0, 3.0, 3.0, 10.0, 10.0, 30.0, 30.0]);
        let grown = resize_state(&kept, 2, 3, s);
        assert_eq!(
            grown,
            vec![1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 10.0, 10.0, 30.0, 30.0, 0.0, 0.0]
        );
    }
}
