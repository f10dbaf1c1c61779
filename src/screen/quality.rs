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
    /// log10 of the re-blur ratio ([`reblur_sharpness`]): sharpness
    /// independent of contrast and of how much edge the content has.
    pub log_sharpness: f64,
    /// Shannon entropy (bits) of the 32-bin grey histogram.
    pub entropy: f64,
}

/// Sharpness as the re-blur ratio (after Crete et al. 2007, "The blur
/// effect"): blur the image again with the 3 × 3 binomial kernel
/// (`[1 2 1]/4` each way) and measure the energy that changed, over the
/// image's gradient energy (forward differences):
/// `log10(Σ (I − B(I))² / Σ |∇I|²)` over the interior. A sharp image loses
/// much of its fine detail to the re-blur; an image that was blurred already
/// has little left to lose. Dividing by the gradient energy takes out the
/// content (how many edges, how much contrast), which the Laplacian's
/// variance over the image's variance did not: on Fashion-MNIST test that
/// measure left a Gaussian blur of radius 1 inside the clean items' spread
/// (recall 0.68), this one puts it 2.6 to 3.7 interquartile ranges below the
/// lower quartile. NaN for an image under 3 × 3 or without gradient.
pub fn reblur_sharpness(grey: &[u8], w: usize, h: usize) -> f64 {
    if w < 3 || h < 3 || grey.len() < w * h {
        return f64::NAN;
    }
    let px = |x: usize, y: usize| grey[y * w + x] as f64;
    let mut grad = 0f64;
    for y in 0..h {
        for x in 0..w {
            if x + 1 < w {
                grad += (px(x + 1, y) - px(x, y)).powi(2);
            }
            if y + 1 < h {
                grad += (px(x, y + 1) - px(x, y)).powi(2);
            }
        }
    }
    // Vertical pass (border rows kept), then horizontal on the interior.
    let mut vert = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            vert[y * w + x] = if y == 0 || y + 1 == h {
                px(x, y)
            } else {
                (px(x, y - 1) + 2.0 * px(x, y) + px(x, y + 1)) / 4.0
            };
        }
    }
    let mut lost = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let b = (vert[y * w + x - 1] + 2.0 * vert[y * w + x] + vert[y * w + x + 1]) / 4.0;
            lost += (px(x, y) - b).powi(2);
        }
    }
    if grad > 1e-9 && lost > 1e-12 {
        (lost / grad).log10()
    } else {
        f64::NAN
    }
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
    let log_sharpness = reblur_sharpness(&grey[..n.min(grey.len())], w, h);
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
    fences_at(values, floor, FENCE)
}

/// Interquartile ranges below the lower quartile at which an image is
/// blurry. Measured on Fashion-MNIST test (seed 25): the sharpest blurred
/// copy (Gaussian, radius 1) lies 2.6 ranges below, the least sharp clean
/// item 1.8; 2 sits between them.
pub const BLUR_FENCE: f64 = 2.0;

fn fences_at(values: impl Iterator<Item = f64>, floor: f64, fence: f64) -> Fences {
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
        low: q1 - fence * iqr,
        high: q3 + fence * iqr,
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
/// 0.05 decade of sharpness (fenced at [`BLUR_FENCE`], not [`FENCE`]), 0.25 bit of entropy, a quarter of a decade of
/// area (×1.8), a tenth of a decade of aspect (×1.26).
pub fn image_thresholds(stats: &[ImageStats]) -> ImageThresholds {
    let varied: Vec<&ImageStats> = stats.iter().filter(|s| s.std >= 1.0).collect();
    ImageThresholds {
        p99: fences(stats.iter().map(|s| s.p99), 5.0),
        p01: fences(stats.iter().map(|s| s.p01), 5.0),
        log_sharpness: fences_at(varied.iter().map(|s| s.log_sharpness), 0.05, BLUR_FENCE),
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

    /// Separable Gaussian blur, σ = 1 (the kernel of PIL's GaussianBlur(1)).
    fn gaussian(img: &[u8], w: usize, h: usize) -> Vec<u8> {
        let k = [0.0545, 0.2442, 0.4026, 0.2442, 0.0545];
        let get = |v: &[f64], x: isize, y: isize| {
            let (x, y) = (x.clamp(0, w as isize - 1), y.clamp(0, h as isize - 1));
            v[y as usize * w + x as usize]
        };
        let src: Vec<f64> = img.iter().map(|&p| p as f64).collect();
        let mut tmp = vec![0f64; w * h];
        let mut out = vec![0u8; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                tmp[y as usize * w + x as usize] = (0..5)
                    .map(|i| k[i] * get(&src, x + i as isize - 2, y))
                    .sum();
            }
        }
        for y in 0..h as isize {
            for x in 0..w as isize {
                let v: f64 = (0..5)
                    .map(|i| k[i] * get(&tmp, x, y + i as isize - 2))
                    .sum();
                out[y as usize * w + x as usize] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    /// The re-blur ratio falls for a Gaussian blur of radius 1 by more than
    /// it varies between sharp images of different content and contrast.
    #[test]
    fn reblur_ratio_separates_blur_from_content_and_contrast() {
        let mut rng = Rng::new(9);
        let mut sharp = Vec::new();
        let mut blurred = Vec::new();
        for i in 0..40 {
            let mut img = textured(&mut rng);
            if i % 2 == 0 {
                // Half the images at a third of the contrast, a smooth ramp added.
                for (j, p) in img.iter_mut().enumerate() {
                    *p = (*p / 3).saturating_add((j % 28) as u8);
                }
            }
            sharp.push(reblur_sharpness(&img, 28, 28));
            blurred.push(reblur_sharpness(&gaussian(&img, 28, 28), 28, 28));
        }
        let lo_sharp = sharp.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi_blur = blurred.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let hi_sharp = sharp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            lo_sharp - hi_blur > 2.0 * (hi_sharp - lo_sharp),
            "sharp {lo_sharp}..{hi_sharp}, blurred up to {hi_blur}"
        );
        // Contrast alone does not move it (up to rounding of grey levels).
        let img = textured(&mut rng);
        let half: Vec<u8> = img.iter().map(|&p| p / 2).collect();
        assert!((reblur_sharpness(&img, 28, 28) - reblur_sharpness(&half, 28, 28)).abs() < 0.05);
        assert!(reblur_sharpness(&[7; 784], 28, 28).is_nan());
        assert!(reblur_sharpness(&[1, 2, 3, 4], 2, 2).is_nan());
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
