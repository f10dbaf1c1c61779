//! Near-duplicate texts: character n-gram shingles, MinHash signatures, LSH
//! banding for candidates, then an exact Jaccard check on the shingle sets.
//! Groups are the connected components of the pairs at or above the threshold.
//!
//! With `b` bands of `r` rows, a pair of Jaccard similarity `s` becomes a
//! candidate with probability `1 − (1 − s^r)^b`: the defaults (40 × 3)
//! give 0.995 at s = 0.5 and 0.93 at s = 0.4, so the exact check, not the
//! sketch, decides nearly every pair above the threshold.

use std::collections::HashMap;

use rayon::prelude::*;

use super::ScreenError;

/// Settings of the text near-duplicate screen.
#[derive(Debug, Clone, Copy)]
pub struct TextNearOptions {
    /// Characters per shingle.
    pub ngram: usize,
    pub bands: usize,
    pub rows: usize,
    /// Jaccard similarity of shingle sets at or above which two texts are near duplicates.
    pub threshold: f64,
    pub seed: u64,
}

impl Default for TextNearOptions {
    fn default() -> Self {
        TextNearOptions {
            ngram: 5,
            bands: 40,
            rows: 3,
            threshold: 0.5,
            seed: 0x5eed,
        }
    }
}

impl TextNearOptions {
    fn check(&self) -> Result<(), ScreenError> {
        if self.ngram == 0 || self.bands == 0 || self.rows == 0 {
            return Err(ScreenError::Setting(
                "ngram, bands and rows must be at least 1".into(),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ScreenError::Setting(format!(
                "the text similarity threshold must lie in (0, 1], got {}",
                self.threshold
            )));
        }
        Ok(())
    }
}

/// Two texts and the Jaccard similarity of their shingle sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearPair {
    pub a: usize,
    pub b: usize,
    pub similarity: f64,
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Text as the shingler sees it: lower case, anything that is not a letter
/// or digit a space, runs of spaces one.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The sorted, distinct hashes of a text's character n-grams (a text shorter
/// than n is one shingle; an empty text has none).
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let norm = normalise(text);
    let chars: Vec<char> = norm.chars().collect();
    let hash = |w: &[char]| {
        w.iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &c| mix(h ^ c as u64))
    };
    let mut out: Vec<u64> = if chars.is_empty() {
        Vec::new()
    } else if chars.len() < n {
        vec![hash(&chars)]
    } else {
        chars.windows(n).map(hash).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Shingles and MinHash signatures of a set of texts.
pub struct Sketches {
    shingles: Vec<Vec<u64>>,
    /// `bands` band keys per text (0 for an empty text: never a candidate).
    bands: Vec<Vec<u64>>,
    opts: TextNearOptions,
}

impl Sketches {
    pub fn new<S: AsRef<str> + Sync>(
        texts: &[S],
        opts: TextNearOptions,
    ) -> Result<Self, ScreenError> {
        opts.check()?;
        let perms = opts.bands * opts.rows;
        let seeds: Vec<u64> = (0..perms as u64).map(|p| mix(opts.seed ^ mix(p))).collect();
        let (shingles, bands): (Vec<_>, Vec<_>) = texts
            .par_iter()
            .map(|t| {
                let sh = shingles(t.as_ref(), opts.ngram);
                if sh.is_empty() {
                    return (sh, Vec::new());
                }
                let mut sig = vec![u64::MAX; perms];
                for &h in &sh {
                    for (s, seed) in sig.iter_mut().zip(&seeds) {
                        let v = mix(h ^ seed);
                        if v < *s {
                            *s = v;
                        }
                    }
                }
                let bands = sig
                    .chunks_exact(opts.rows)
                    .enumerate()
                    .map(|(b, rows)| rows.iter().fold(mix(b as u64), |h, &v| mix(h ^ v)))
                    .collect();
                (sh, bands)
            })
            .unzip();
        Ok(Sketches {
            shingles,
            bands,
            opts,
        })
    }

    pub fn len(&self) -> usize {
        self.shingles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.shingles.is_empty()
    }

    fn buckets(&self) -> HashMap<(usize, u64), Vec<u32>> {
        let mut buckets: HashMap<(usize, u64), Vec<u32>> = HashMap::new();
        for (i, bands) in self.bands.iter().enumerate() {
            for (b, &key) in bands.iter().enumerate() {
                buckets.entry((b, key)).or_default().push(i as u32);
            }
        }
        buckets
    }

    /// Pairs within this set at or above the threshold, each once (a < b).
    pub fn pairs_within(&self) -> Vec<NearPair> {
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for members in self.buckets().into_values() {
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    candidates.push((a, b));
                }
            }
        }
        self.verify(candidates, &self.shingles)
    }

    /// Pairs (query in `self`, item in `reference`) at or above the threshold.
    pub fn pairs_across(&self, reference: &Sketches) -> Vec<NearPair> {
        let buckets = reference.buckets();
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for (i, bands) in self.bands.iter().enumerate() {
            for (b, &key) in bands.iter().enumerate() {
                if let Some(members) = buckets.get(&(b, key)) {
                    candidates.extend(members.iter().map(|&r| (i as u32, r)));
                }
            }
        }
        self.verify(candidates, &reference.shingles)
    }

    fn verify(&self, mut candidates: Vec<(u32, u32)>, other: &[Vec<u64>]) -> Vec<NearPair> {
        candidates.par_sort_unstable();
        candidates.dedup();
        let threshold = self.opts.threshold;
        candidates
            .par_iter()
            .filter_map(|&(a, b)| {
                let s = jaccard(&self.shingles[a as usize], &other[b as usize]);
                (s >= threshold).then_some(NearPair {
                    a: a as usize,
                    b: b as usize,
                    similarity: s,
                })
            })
            .collect()
    }
}

/// Near-duplicate pairs among `texts` (see [`Sketches::pairs_within`]).
pub fn near_pairs<S: AsRef<str> + Sync>(
    texts: &[S],
    opts: TextNearOptions,
) -> Result<Vec<NearPair>, ScreenError> {
    Ok(Sketches::new(texts, opts)?.pairs_within())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_found_and_strangers_are_not() {
        let texts = [
            "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
            "FREE entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005!!",
            "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight",
            "Free entry in 2 a weekly comp to win FA Cup final tkts 21st May 2005",
            "",
            "",
        ];
        let pairs = near_pairs(&texts, TextNearOptions::default()).unwrap();
        let got: Vec<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        assert!(got.contains(&(0, 1)), "{got:?}");
        assert!(got.contains(&(0, 3)) || got.contains(&(1, 3)), "{got:?}");
        assert!(!got
            .iter()
            .any(|&(a, b)| a == 2 || b == 2 || a == 4 || b == 5));
        let groups = super::super::components(texts.len(), got);
        assert_eq!(groups, vec![vec![0, 1, 3]]);
    }

    #[test]
    fn jaccard_is_exact() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(normalise("  Hello,   WORLD!! "), "hello world");
    }

    #[test]
    fn bad_settings_are_refused() {
        let o = TextNearOptions {
            threshold: 1.5,
            ..Default::default()
        };
        assert!(near_pairs(&["a"], o).is_err());
    }
}
