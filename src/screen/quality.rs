//! Bad items. Images: dark, light, constant, blurry, odd-sized and
//! low-information; texts: empty, garbage and odd length.
//!
//! Thresholds come from the screened items themselves, not absolute
//! constants (absolute thresholds do not transfer: cleanvision's
//! low-information rule flags 15% of clean Fashion-MNIST). Each measure gets
//! Tukey-style fences at `FENCE` interquartile ranges beyond the quartiles.
//! An interquartile range narrower than a floor (stated per measure, in the
//! measure's own unit) is widened to it, because on uniform data (every
//! image 28 × 28, every background black) a zero range would make any
//! difference an issue. "Constant" is a definition, not a fence: no pixel
//! differs from the mean by more than one grey level.

use serde::Serialize;

use super::quantile_sorted;

/// Interquartile ranges beyond the quartiles at which an item is flagged.
pub const FENCE: f64 = 3.0;

/// One image's measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageStats {
    pub width: u32,
    pub height: u32,
    /// 99th percentile of grey levels (a dark image has no bright pixels).
    pub p99: f64,
    /// 1st percentile of grey levels (a light image has no dark pixels).
    pub p01: f64,
    /// Standard deviation of grey levels.
    pub std: f64,
    /// log10 of the Laplacian's variance over the image's variance: sharpness
    /// independent of contrast.
    pub log_sharpness: f64,
    /// Shannon entropy (bits) of the 32-bin grey histogram.
    pub entropy: f64,
}

/// Measure a grey image (`width × height` bytes).
pub fn image_stats(grey: &[u8], width: u32, height: u32) -> ImageStats {
    let (w, h) = (width as usize, height as usize);
    let n = grey.len().min(w * h).max(1);
    let mut hist = [0u64; 256];
    for &p in &grey[..n.min(grey.len())] {
        hist[p as usize] += 1;
    }
    let pct = |q: f64| {
        let target = (q * n as f64).ceil().max(1.0) as u64;
        let mut c = 0;
        for (v, &k) in hist.iter().enumerate() {
            c += k;
            if c >= target {
                return v as f64;
            }
        }
        255.0
    };
    let mean = grey.iter().map(|&p| p as f64).sum::<f64>() / n as f64;
    let var = grey.iter().map(|&p| (p as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let mut lap = Vec::with_capacity(n);
    if w >= 3 && h >= 3 {
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let c = grey[y * w + x] as f64;
                let v = grey[(y - 1) * w + x] as f64
                    + grey[(y + 1) * w + x] as f64
                    + grey[y * w + x - 1] as f64
                    + grey[y * w + x + 1] as f64
                    - 4.0 * c;
                lap.push(v);
            }
        }
    }
    let lap_var = if lap.is_empty() {
        0.0
    } else {
        let m = lap.iter().sum::<f64>() / lap.len() as f64;
        lap.iter().map(|v| (v - m).powi(2)).sum::<f64>() / lap.len() as f64
    };
    let log_sharpness = if var > 1e-9 && lap_var > 1e-12 {
        (lap_var / var).log10()
    } else {
        f64::NAN
    };
    let mut bins = [0u64; 32];
    for (v, &k) in hist.iter().enumerate() {
        bins[v / 8] += k;
    }
    let entropy = bins
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    ImageStats {
        width,
        height,
        p99: pct(0.99),
        p01: pct(0.01),
        std: var.sqrt(),
        log_sharpness,
        entropy,
    }
}

/// A quality issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Dark,
    Light,
    Blurry,
    Constant,
    OddSize,
    LowInformation,
    Empty,
    Garbage,
    OddLength,
}

impl Quality {
    pub fn name(self) -> &'static str {
        match self {
            Quality::Dark => "dark",
            Quality::Light => "light",
            Quality::Blurry => "blurry",
            Quality::Constant => "constant",
            Quality::OddSize => "odd_size",
            Quality::LowInformation => "low_information",
            Quality::Empty => "empty",
            Quality::Garbage => "garbage",
            Quality::OddLength => "odd_length",
        }
    }
}

/// Fences on one measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fences {
    pub low: f64,
    pub high: f64,
}

fn fences(values: impl Iterator<Item = f64>, floor: f64) -> Fences {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Fences {
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
        };
    }
    v.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile_sorted(&v, 0.25), quantile_sorted(&v, 0.75));
    let iqr = (q3 - q1).max(floor);
    Fences {
        low: q1 - FENCE * iqr,
        high: q3 + FENCE * iqr,
    }
}

/// The thresholds one image screen used (reported beside the counts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageThresholds {
    /// dark: p99 below `p99.low`.
    pub p99: Fences,
    /// light: p01 above `p01.high`.
    pub p01: Fences,
    /// blurry: log sharpness below `log_sharpness.low`.
    pub log_sharpness: Fences,
    /// low information: entropy below `entropy.low`.
    pub entropy: Fences,
    /// odd size: log10 of the pixel count outside.
    pub log_area: Fences,
    /// odd size: log10 of width / height outside.
    pub log_aspect: Fences,
}

/// Floors on the interquartile ranges: 2% of the grey range (5 levels),
/// 0.1 decade of sharpness, 0.25 bit of entropy, a quarter of a decade of
/// area (×1.8), a tenth of a decade of aspect (×1.26).
pub fn image_thresholds(stats: &[ImageStats]) -> ImageThresholds {
    let varied: Vec<&ImageStats> = stats.iter().filter(|s| s.std >= 1.0).collect();
    ImageThresholds {
        p99: fences(stats.iter().map(|s| s.p99), 5.0),
        p01: fences(stats.iter().map(|s| s.p01), 5.0),
        log_sharpness: fences(varied.iter().map(|s| s.log_sharpness), 0.1),
        entropy: fences(varied.iter().map(|s| s.entropy), 0.25),
        log_area: fences(
            stats
                .iter()
                .map(|s| ((s.width as f64) * (s.height as f64)).max(1.0).log10()),
            0.25,
        ),
        log_aspect: fences(
            stats
                .iter()
                .map(|s| (s.width.max(1) as f64 / s.height.max(1) as f64).log10()),
            0.1,
        ),
    }
}

/// The issues of one image under `t`.
pub fn image_issues(s: &ImageStats, t: &ImageThresholds) -> Vec<Quality> {
    let mut out = Vec::new();
    let constant = s.std < 1.0;
    if s.p99 < t.p99.low {
        out.push(Quality::Dark);
    }
    if s.p01 > t.p01.high {
        out.push(Quality::Light);
    }
    if constant {
        out.push(Quality::Constant);
    } else {
        if s.log_sharpness.is_finite() && s.log_sharpness < t.log_sharpness.low {
            out.push(Quality::Blurry);
        }
        if s.entropy < t.entropy.low {
            out.push(Quality::LowInformation);
        }
    }
    let area = ((s.width as f64) * (s.height as f64)).max(1.0).log10();
    let aspect = (s.width.max(1) as f64 / s.height.max(1) as f64).log10();
    if area < t.log_area.low
        || area > t.log_area.high
        || aspect < t.log_aspect.low
        || aspect > t.log_aspect.high
    {
        out.push(Quality::OddSize);
    }
    out
}

/// Text thresholds: fences on log10 of the length in characters (floor a
/// tenth of a decade).
pub fn text_thresholds<S: AsRef<str>>(texts: &[S]) -> Fences {
    fences(
        texts
            .iter()
            .map(|t| t.as_ref().trim())
            .filter(|t| !t.is_empty())
            .map(|t| (t.chars().count() as f64).log10()),
        0.1,
    )
}

/// The issues of one text: empty (nothing but white space), garbage (a
/// replacement character or a control character other than tab and line
/// breaks), odd length (outside the length fences).
pub fn text_issues(text: &str, t: &Fences) -> Vec<Quality> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return vec![Quality::Empty];
    }
    let mut out = Vec::new();
    if text
        .chars()
        .any(|c| c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r')))
    {
        out.push(Quality::Garbage);
    }
    let len = (trimmed.chars().count() as f64).log10();
    if len < t.low || len > t.high {
        out.push(Quality::OddLength);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::rng::Rng;

    fn textured(rng: &mut Rng) -> Vec<u8> {
        (0..28 * 28)
            .map(|i| {
                let (x, y) = (i % 28, i / 28);
                if (6..22).contains(&x) && (4..24).contains(&y) {
                    (120 + rng.below(120)) as u8
                } else {
                    0
                }
            })
            .collect()
    }

    #[test]
    fn planted_defects_are_flagged_clean_items_are_not() {
        let mut rng = Rng::new(3);
        let mut images: Vec<Vec<u8>> = (0..300).map(|_| textured(&mut rng)).collect();
        let clean = images.len();
        images.push(vec![0; 784]);
        images.push(vec![255; 784]);
        images.push(vec![128; 784]);
        let dim: Vec<u8> = images[0].iter().map(|&p| p / 4).collect();
        images.push(dim);
        let mut blurred = images[1].clone();
        for _ in 0..3 {
            let src = blurred.clone();
            for y in 1..27 {
                for x in 1..27 {
                    let s: u32 = [(0, 0), (1, 0), (0, 1), (2, 1), (1, 2), (1, 1)]
                        .iter()
                        .map(|&(dx, dy)| src[(y + dy - 1) * 28 + x + dx - 1] as u32)
                        .sum();
                    blurred[y * 28 + x] = (s / 6) as u8;
                }
            }
        }
        images.push(blurred);
        let stats: Vec<ImageStats> = images.iter().map(|g| image_stats(g, 28, 28)).collect();
        let t = image_thresholds(&stats);
        let issues: Vec<Vec<Quality>> = stats.iter().map(|s| image_issues(s, &t)).collect();
        assert!(issues[..clean].iter().all(|i| i.is_empty()));
        assert!(
            issues[clean].contains(&Quality::Dark) && issues[clean].contains(&Quality::Constant)
        );
        assert!(issues[clean + 1].contains(&Quality::Light));
        assert!(issues[clean + 2].contains(&Quality::Constant));
        assert!(
            issues[clean + 3].contains(&Quality::Dark),
            "{:?}",
            issues[clean + 3]
        );
        assert!(
            issues[clean + 4].contains(&Quality::Blurry),
            "{:?}",
            issues[clean + 4]
        );
        let odd = image_stats(&vec![100; 100 * 10], 100, 10);
        assert!(image_issues(&odd, &t).contains(&Quality::OddSize));
    }

    #[test]
    fn text_rules() {
        let texts = [
            "hello there, how are you",
            "fine thanks and you",
            "ok see you at six then",
        ];
        let t = text_thresholds(&texts);
        assert_eq!(text_issues("   ", &t), vec![Quality::Empty]);
        assert_eq!(
            text_issues("caf\u{FFFD} at noon, see you", &t),
            vec![Quality::Garbage]
        );
        assert_eq!(text_issues("ok", &t), vec![Quality::OddLength]);
        assert!(text_issues("we meet at the cafe", &t).is_empty());
    }
}
