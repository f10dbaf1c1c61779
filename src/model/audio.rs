//! Sound files to model-ready waveforms: decode, mix to mono, resample.
//!
//! WAV is read with `hound`; FLAC, OGG/Vorbis, MP3 (and the WAV encodings
//! `hound` does not read, such as μ-law) with `symphonia`. Every channel is
//! averaged into one, and the result is resampled to the model's rate with
//! `rubato`'s FFT resampler (telephone audio at 8 kHz scores better on
//! Silero VAD resampled to 16 kHz than run at 8 kHz).
//!
//! The length is bounded before decoding: the duration a header declares is
//! checked against `max_seconds` first, so a 40-byte WAV claiming ten hours
//! is refused without allocating for it; a stream that declares no length is
//! stopped as soon as its decoded length passes the bound.

use std::io::Cursor;

use super::ItemError;

/// One recording, mono, at the model's rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub samples: Vec<f32>,
    /// Length in seconds of the source (before resampling).
    pub duration: f64,
    pub source_rate: u32,
    pub channels: u16,
}

fn decode_error(why: impl std::fmt::Display) -> ItemError {
    ItemError::AudioDecode(why.to_string())
}

/// Decode `bytes` (WAV, FLAC, OGG/Vorbis or MP3) into mono samples at `rate` Hz.
pub fn decode(bytes: &[u8], rate: u32, max_seconds: f64) -> Result<Decoded, ItemError> {
    let (mono, source_rate, channels) = decode_mono(bytes, max_seconds)?;
    let duration = mono.len() as f64 / f64::from(source_rate);
    let samples = resample(mono, source_rate, rate)?;
    Ok(Decoded {
        samples,
        duration,
        source_rate,
        channels,
    })
}

/// Decode `bytes` into mono samples at the file's own rate (no resampling:
/// what a waveform overview needs), with that rate and the channel count.
/// Bounded by `max_seconds` exactly as [`decode`] is; never empty.
pub fn decode_mono(bytes: &[u8], max_seconds: f64) -> Result<(Vec<f32>, u32, u16), ItemError> {
    if bytes.is_empty() {
        return Err(ItemError::Empty);
    }
    let (mono, source_rate, channels) = if is_wav(bytes) {
        match hound::WavReader::new(Cursor::new(bytes)) {
            Ok(reader) => read_wav(reader, max_seconds)?,
            // Encodings hound leaves out (μ-law, A-law, ADPCM…): symphonia.
            Err(hound::Error::Unsupported) => read_symphonia(bytes, max_seconds)?,
            Err(e) => return Err(decode_error(format!("not a readable WAV file ({e})"))),
        }
    } else {
        read_symphonia(bytes, max_seconds)?
    };
    if mono.is_empty() {
        return Err(ItemError::AudioEmpty);
    }
    Ok((mono, source_rate, channels))
}

fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

fn too_long(frames: u64, rate: u32, max_seconds: f64) -> Result<(), ItemError> {
    let seconds = frames as f64 / f64::from(rate.max(1));
    if seconds > max_seconds {
        return Err(ItemError::AudioTooLong {
            seconds,
            limit: max_seconds,
        });
    }
    Ok(())
}

fn read_wav(
    mut reader: hound::WavReader<Cursor<&[u8]>>,
    max_seconds: f64,
) -> Result<(Vec<f32>, u32, u16), ItemError> {
    let spec = reader.spec();
    if spec.sample_rate == 0 || spec.channels == 0 {
        return Err(decode_error("WAV header declares 0 Hz or 0 channels"));
    }
    let frames = u64::from(reader.duration());
    too_long(frames, spec.sample_rate, max_seconds)?;
    if frames == 0 {
        return Err(ItemError::AudioEmpty);
    }
    let channels = usize::from(spec.channels);
    let mut mono = Vec::with_capacity(frames as usize);
    let mut acc = 0.0f32;
    let mut k = 0usize;
    let mut push = |v: f32, mono: &mut Vec<f32>| {
        acc += v;
        k += 1;
        if k == channels {
            mono.push(acc / channels as f32);
            acc = 0.0;
            k = 0;
        }
    };
    let truncated = |got: usize| {
        decode_error(format!(
            "truncated WAV: the header declares {frames} frames but the data ends after {got}"
        ))
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let v = s.map_err(|_| truncated(mono.len()))?;
                push(v, &mut mono);
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            for s in reader.samples::<i32>() {
                let v = s.map_err(|_| truncated(mono.len()))?;
                push(v as f32 * scale, &mut mono);
            }
        }
    }
    if (mono.len() as u64) < frames {
        return Err(truncated(mono.len()));
    }
    Ok((mono, spec.sample_rate, spec.channels))
}

fn read_symphonia(bytes: &[u8], max_seconds: f64) -> Result<(Vec<f32>, u32, u16), ItemError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|_| {
            decode_error("not a sound file labelloop reads (WAV, FLAC, OGG/Vorbis, MP3)")
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| decode_error("the file holds no audio track"))?;
    let params = track.codec_params.clone();
    let track_id = track.id;
    let rate = params
        .sample_rate
        .filter(|&r| r > 0)
        .ok_or_else(|| decode_error("the audio track declares no sample rate"))?;
    if let Some(frames) = params.n_frames {
        too_long(frames, rate, max_seconds)?;
    }
    let max_frames = (max_seconds * f64::from(rate)).ceil() as u64;
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| decode_error(format!("unsupported codec ({e})")))?;
    let mut mono: Vec<f32> = Vec::new();
    let mut channels = params.channels.map(|c| c.count() as u16).unwrap_or(0);
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(Error::ResetRequired) => break,
            Err(e) => return Err(decode_error(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as players do.
            Err(Error::DecodeError(_)) => continue,
            Err(e) => return Err(decode_error(e)),
        };
        let spec = *decoded.spec();
        let n = spec.channels.count().max(1);
        channels = n as u16;
        let buf = match &mut buffer {
            Some(b) if b.capacity() >= decoded.capacity() * n => b,
            _ => buffer.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks_exact(n) {
            mono.push(frame.iter().sum::<f32>() / n as f32);
        }
        if mono.len() as u64 > max_frames {
            return Err(ItemError::AudioTooLong {
                seconds: mono.len() as f64 / f64::from(rate),
                limit: max_seconds,
            });
        }
    }
    Ok((mono, rate, channels))
}

/// Resample mono `samples` from `from` Hz to `to` Hz, keeping the timing:
/// the resampler's delay is cut off and the length is `⌈n·to/from⌉`.
pub fn resample(samples: Vec<f32>, from: u32, to: u32) -> Result<Vec<f32>, ItemError> {
    use rubato::{FftFixedIn, Resampler};
    if from == to || samples.is_empty() {
        return Ok(samples);
    }
    let fail = |e: &dyn std::fmt::Display| ItemError::AudioDecode(format!("resampling: {e}"));
    let want = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut r =
        FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| fail(&e))?;
    let delay = r.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(want + delay + 2048);
    let mut buf = r.output_buffer_allocate(true);
    let mut pos = 0;
    while samples.len() - pos >= r.input_frames_next() {
        let need = r.input_frames_next();
        let (_, n) = r
            .process_into_buffer(&[&samples[pos..pos + need]], &mut buf, None)
            .map_err(|e| fail(&e))?;
        out.extend_from_slice(&buf[0][..n]);
        pos += need;
    }
    if pos < samples.len() {
        let (_, n) = r
            .process_partial_into_buffer(Some(&[&samples[pos..]]), &mut buf, None)
            .map_err(|e| fail(&e))?;
        out.extend_from_slice(&buf[0][..n]);
    }
    while out.len() < want + delay {
        let (_, n) = r
            .process_partial_into_buffer(None::<&[&[f32]]>, &mut buf, None)
            .map_err(|e| fail(&e))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[0][..n]);
    }
    let mut out = out.split_off(delay.min(out.len()));
    out.resize(want, 0.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, frames: &[Vec<i16>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(Cursor::new(&mut bytes), spec).unwrap();
        for f in frames {
            for &s in f {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
        bytes
    }

    #[test]
    fn a_sine_keeps_its_timing_through_resampling() {
        // 440 Hz at 8 kHz for 0.5 s, to 16 kHz: same length in seconds and
        // the same zero crossings (within a sample) after the delay is cut.
        let n = 4000;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 8000.0).sin())
            .collect();
        let y = resample(x, 8000, 16000).unwrap();
        assert_eq!(y.len(), 8000);
        for i in (400..7600).step_by(37) {
            let want = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin();
            assert!((y[i] - want).abs() < 0.02, "sample {i}: {} vs {want}", y[i]);
        }
    }

    #[test]
    fn stereo_is_mixed_down() {
        let frames: Vec<Vec<i16>> = (0..1600).map(|_| vec![16384, -16384]).collect();
        let d = decode(&wav(16000, 2, &frames), 16000, 3600.0).unwrap();
        assert_eq!(d.channels, 2);
        assert_eq!(d.samples.len(), 1600);
        assert!(d.samples.iter().all(|&v| v.abs() < 1e-6));
        assert!((d.duration - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_header_over_the_bound_is_refused_before_decoding() {
        let mut bytes = wav(8000, 1, &vec![vec![0i16]; 10]);
        // Claim ten hours of 16-bit mono at 8 kHz in the data chunk size.
        let claimed: u32 = 10 * 3600 * 8000 * 2;
        let at = bytes.windows(4).position(|w| w == b"data").unwrap() + 4;
        bytes[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
        match decode(&bytes, 16000, 3600.0) {
            Err(ItemError::AudioTooLong { seconds, .. }) => {
                assert!((seconds - 36000.0).abs() < 1.0)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_empty_and_garbage_are_item_errors() {
        let full = wav(8000, 1, &vec![vec![1000i16]; 800]);
        let cut = &full[..full.len() - 700];
        assert!(
            matches!(decode(cut, 16000, 3600.0), Err(ItemError::AudioDecode(m)) if m.contains("truncated"))
        );
        let empty = wav(8000, 1, &[]);
        assert_eq!(decode(&empty, 16000, 3600.0), Err(ItemError::AudioEmpty));
        assert!(matches!(
            decode(b"this is not a sound file at all", 16000, 3600.0),
            Err(ItemError::AudioDecode(_))
        ));
    }
}
