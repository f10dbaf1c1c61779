//! A recording's waveform overview: per bin, the lowest and highest sample.
//!
//! The review page draws a recording from these pairs, so an hour of sound
//! reaches the browser as a few thousand numbers instead of its samples;
//! drawing each bin as a vertical line from its minimum to its maximum shows
//! every click and every silence at any zoom the bins allow (an average or
//! an RMS per bin would hide a short peak).

/// The most bins one request may ask for: more than any screen is wide in
/// device pixels, and small enough that the answer stays under 200 KB.
pub const MAX_BINS: usize = 8192;

/// Per bin, the minimum and the maximum of `samples`, for `bins` bins of
/// (nearly) equal length covering the whole signal in order. Bin `b` holds
/// samples `⌊b·n/bins⌋ .. ⌊(b+1)·n/bins⌋`, so the bins tile the signal
/// exactly with no sample counted twice or left out. When there are fewer
/// samples than bins, only `n` bins are made (a bin is never empty, so no
/// made-up zero appears). One pass, no copy of the signal.
pub fn min_max(samples: &[f32], bins: usize) -> (Vec<f32>, Vec<f32>) {
    let n = samples.len();
    let bins = bins.min(n);
    let mut lo = Vec::with_capacity(bins);
    let mut hi = Vec::with_capacity(bins);
    for b in 0..bins {
        // b < bins <= n, so these products fit in u128 and the ends are <= n.
        let start = (b as u128 * n as u128 / bins as u128) as usize;
        let end = ((b as u128 + 1) * n as u128 / bins as u128) as usize;
        let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in &samples[start..end] {
            // A NaN sample (a float WAV may hold one) is left out.
            if v < mn {
                mn = v;
            }
            if v > mx {
                mx = v;
            }
        }
        if mn > mx {
            (mn, mx) = (0.0, 0.0);
        }
        lo.push(mn);
        hi.push(mx);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_tile_the_signal() {
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let (lo, hi) = min_max(&x, 3);
        // Bins 0..3, 3..6, 6..10.
        assert_eq!(lo, vec![0.0, 3.0, 6.0]);
        assert_eq!(hi, vec![2.0, 5.0, 9.0]);
        let (lo, hi) = min_max(&x, 10);
        assert_eq!(lo, x);
        assert_eq!(hi, x);
    }

    #[test]
    fn a_short_peak_survives() {
        let mut x = vec![0.01f32; 100_000];
        x[54_321] = -0.9;
        x[54_322] = 0.8;
        let (lo, hi) = min_max(&x, 100);
        assert_eq!(lo[54], -0.9);
        assert_eq!(hi[54], 0.8);
        assert_eq!(lo.iter().filter(|&&v| v < 0.0).count(), 1);
        assert!(hi.iter().enumerate().all(|(i, &v)| i == 54 || v == 0.01));
    }

    #[test]
    fn fewer_samples_than_bins_and_nothing_at_all() {
        let (lo, hi) = min_max(&[0.5, -0.5], 2000);
        assert_eq!((lo, hi), (vec![0.5, -0.5], vec![0.5, -0.5]));
        let (lo, hi) = min_max(&[], 2000);
        assert!(lo.is_empty() && hi.is_empty());
        let (lo, hi) = min_max(&[1.0, 2.0], 0);
        assert!(lo.is_empty() && hi.is_empty());
    }

    #[test]
    fn nan_is_left_out() {
        let (lo, hi) = min_max(&[f32::NAN, 0.25, f32::NAN, f32::NAN], 2);
        assert_eq!((lo, hi), (vec![0.25, 0.0], vec![0.25, 0.0]));
    }
}
