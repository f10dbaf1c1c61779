//! Near-duplicate texts: character n-gram shingles, MinHash signatures, LSH
//! banding for candidates, then an exact Jaccard check on the shingle sets.
//! Groups are the connected components of the pairs at or above the threshold.
//!
//! With `b` bands of `r` rows, a pair of Jaccard similarity `s` becomes a
//! candidate with probability `1 − (1 − s^r)^b`: the defaults (40 × 3)
//! give 0.995 at s = 0.5 and 0.93 at s = 0.4, so the exact check, not the
//! sketch, decides nearly every pair above the threshold.
//!
//! Cost: each shingle is hashed once (a rolling polynomial over the
//! characters, mixed once); each of the `b·r` permutations is then one
//! multiply-add of that 64-bit hash (`a_p·h + c_p` mod 2⁶⁴, `a_p` odd, a
//! bijection), not a fresh hash. LSH buckets are a sorted array of
//! (band key, text), not a hash map of vectors. Texts are sketched in
//! parallel, with scratch buffers reused per thread.

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
    let mut chars = Vec::new();
    normalise_into(text, &mut chars);
    out.extend(chars);
    out
}

/// [`normalise`] into a reused buffer of characters.
fn normalise_into(text: &str, out: &mut Vec<char>) {
    out.clear();
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
    if out.last() == Some(&' ') {
        out.pop();
    }
}

/// Odd multiplier of the rolling shingle hash.
const ROLL: u64 = 0x100_0000_01b3;

/// The sorted, distinct hashes of a text's character n-grams (a text shorter
/// than n is one shingle; an empty text has none).
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let mut chars = Vec::new();
    let mut out = Vec::new();
    shingles_into(text, n, &mut chars, &mut out);
    out
}

/// [`shingles`] with reused buffers: `chars` is scratch, `out` the result.
fn shingles_into(text: &str, n: usize, chars: &mut Vec<char>, out: &mut Vec<u64>) {
    normalise_into(text, chars);
    out.clear();
    if chars.is_empty() {
        return;
    }
    let w = n.min(chars.len());
    // h = Σ c_i·ROLL^(w−1−i) over the window, rolled one character at a time.
    let top = (1..w).fold(1u64, |p, _| p.wrapping_mul(ROLL));
    let mut h = 0u64;
    for &c in &chars[..w] {
        h = h.wrapping_mul(ROLL).wrapping_add(c as u64 + 1);
    }
    out.push(mix(h ^ w as u64));
    for i in w..chars.len() {
        h = h
            .wrapping_sub((chars[i - w] as u64 + 1).wrapping_mul(top))
            .wrapping_mul(ROLL)
            .wrapping_add(chars[i] as u64 + 1);
        out.push(mix(h ^ w as u64));
    }
    out.sort_unstable();
    out.dedup();
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
    /// `bands` band keys per text (none for an empty text: never a candidate).
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
        // Permutation p: h ↦ a_p·h + c_p (mod 2⁶⁴), a_p odd.
        let mul: Vec<u64> = (0..perms as u64)
            .map(|p| mix(opts.seed ^ mix(2 * p)) | 1)
            .collect();
        let add: Vec<u64> = (0..perms as u64)
            .map(|p| mix(opts.seed ^ mix(2 * p + 1)))
            .collect();
        let (shingles, bands): (Vec<_>, Vec<_>) = texts
            .par_iter()
            .map_init(
                || (Vec::new(), vec![0u64; perms]),
                |(chars, sig), t| {
                    let mut sh = Vec::new();
                    shingles_into(t.as_ref(), opts.ngram, chars, &mut sh);
                    if sh.is_empty() {
                        return (sh, Vec::new());
                    }
                    sig.fill(u64::MAX);
                    for &h in &sh {
                        for ((s, &a), &c) in sig.iter_mut().zip(&mul).zip(&add) {
                            *s = (*s).min(a.wrapping_mul(h).wrapping_add(c));
                        }
                    }
                    let bands = sig
                        .chunks_exact(opts.rows)
                        .enumerate()
                        .map(|(b, rows)| rows.iter().fold(mix(b as u64), |h, &v| mix(h ^ v)))
                        .collect();
                    (sh, bands)
                },
            )
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

    /// Every (band key, text) pair, sorted: a bucket is a run of equal keys.
    /// A band key mixes in its band's number, so keys of different bands do
    /// not meet (short of a 64-bit collision, which the exact check catches).
    fn buckets(&self) -> Vec<(u64, u32)> {
        let mut keys: Vec<(u64, u32)> = self
            .bands
            .iter()
            .enumerate()
            .flat_map(|(i, bands)| bands.iter().map(move |&k| (k, i as u32)))
            .collect();
        keys.par_sort_unstable();
        keys
    }

    /// Pairs within this set at or above the threshold, each once (a < b).
    pub fn pairs_within(&self) -> Vec<NearPair> {
        let keys = self.buckets();
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for run in keys.chunk_by(|x, y| x.0 == y.0) {
            for (x, &(_, a)) in run.iter().enumerate() {
                for &(_, b) in &run[x + 1..] {
                    if a != b {
                        candidates.push((a.min(b), a.max(b)));
                    }
                }
            }
        }
        self.verify(candidates, &self.shingles)
    }

    /// Pairs (query in `self`, item in `reference`) at or above the threshold.
    pub fn pairs_across(&self, reference: &Sketches) -> Vec<NearPair> {
        let keys = reference.buckets();
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for (i, bands) in self.bands.iter().enumerate() {
            for &key in bands {
                let from = keys.partition_point(|x| x.0 < key);
                candidates.extend(
                    keys[from..]
                        .iter()
                        .take_while(|x| x.0 == key)
                        .map(|&(_, r)| (i as u32, r)),
                );
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
    fn rolling_shingle_hashes_depend_on_the_window_only() {
        let whole = shingles("xx Abcde, yy", 5);
        let alone = shingles("abcde", 5);
        assert_eq!(alone.len(), 1);
        assert!(whole.contains(&alone[0]));
        // "xx abcde yy" has 7 windows of 5, all distinct.
        assert_eq!(whole.len(), 7);
        assert_eq!(shingles("aaaaaaa", 5).len(), 1);
        assert!(shingles(" ,; ", 5).is_empty());
        assert_ne!(shingles("abc", 5), shingles("abd", 5));
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
