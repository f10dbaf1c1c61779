//! Inter-annotator agreement: Cohen's κ for a pair of annotators and
//! Krippendorff's α (nominal) for any number of annotators with missing
//! values. Both are chance-corrected: 1 is perfect agreement, 0 what
//! independent annotators with the same label frequencies would reach.
//! For transcriptions, character-level agreement ([`char_agreement`]):
//! 1 − normalised edit distance between two texts of one line.
//!
//! Definitions follow scikit-learn's `cohen_kappa_score` (unweighted) and
//! the `krippendorff` package (`level_of_measurement="nominal"`); the
//! fixtures in `tests/fixtures/calibration_reference.json` check both to
//! 1e-9.

use super::CalibrateError;
use crate::region::BoxPx;
use std::collections::BTreeMap;
use unicode_normalization::UnicodeNormalization;

/// Cohen's κ = (p_o − p_e) / (1 − p_e) over the items both annotators
/// labeled (`a[i]`, `b[i]` are their labels of item i). The categories are
/// those either annotator used. Undefined (an error) when p_e = 1: both
/// used one and the same single label.
pub fn cohen_kappa(a: &[usize], b: &[usize]) -> Result<f64, CalibrateError> {
    if a.len() != b.len() {
        return Err(CalibrateError::LengthMismatch {
            what: "annotator a vs annotator b",
            left: a.len(),
            right: b.len(),
        });
    }
    if a.is_empty() {
        return Err(CalibrateError::Empty("items"));
    }
    let n = a.len() as f64;
    let mut ca: BTreeMap<usize, f64> = BTreeMap::new();
    let mut cb: BTreeMap<usize, f64> = BTreeMap::new();
    let mut agree = 0.0;
    for (&x, &y) in a.iter().zip(b) {
        *ca.entry(x).or_default() += 1.0;
        *cb.entry(y).or_default() += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let po = agree / n;
    let pe: f64 = ca
        .iter()
        .map(|(k, &na)| na * cb.get(k).copied().unwrap_or(0.0))
        .sum::<f64>()
        / (n * n);
    if 1.0 - pe <= 0.0 {
        return Err(CalibrateError::Undefined(
            "κ: both annotators used one and the same label (expected agreement 1)",
        ));
    }
    Ok((po - pe) / (1.0 - pe))
}

/// Krippendorff's α, nominal: `data[annotator][unit]`, `None` where that
/// annotator did not label that unit. Units with fewer than two values are
/// not pairable and are skipped. α = 1 − D_o / D_e with the coincidence
/// matrix o_ck = Σ_units (pairs (c, k) in the unit) / (m_u − 1):
/// α = 1 − (n − 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k.
/// Undefined (an error) when fewer than two values are pairable or when
/// every pairable value is the same category (D_e = 0).
pub fn krippendorff_alpha_nominal(data: &[Vec<Option<usize>>]) -> Result<f64, CalibrateError> {
    if data.is_empty() {
        return Err(CalibrateError::Empty("annotators"));
    }
    let units = data[0].len();
    for row in data {
        if row.len() != units {
            return Err(CalibrateError::LengthMismatch {
                what: "units per annotator",
                left: units,
                right: row.len(),
            });
        }
    }
    // Category index of each distinct label.
    let mut index: BTreeMap<usize, usize> = BTreeMap::new();
    for v in data.iter().flatten().flatten() {
        let next = index.len();
        index.entry(*v).or_insert(next);
    }
    let k = index.len();
    let mut o = vec![vec![0.0f64; k]; k];
    let mut counts = vec![0.0f64; k];
    for u in 0..units {
        counts.iter_mut().for_each(|c| *c = 0.0);
        let mut m = 0.0;
        for row in data {
            if let Some(v) = row[u] {
                if let Some(&c) = index.get(&v) {
                    counts[c] += 1.0;
                    m += 1.0;
                }
            }
        }
        if m < 2.0 {
            continue;
        }
        for c in 0..k {
            if counts[c] == 0.0 {
                continue;
            }
            for d in 0..k {
                let pairs = if c == d {
                    counts[c] * (counts[c] - 1.0)
                } else {
                    counts[c] * counts[d]
                };
                o[c][d] += pairs / (m - 1.0);
            }
        }
    }
    let n_c: Vec<f64> = o.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    if n < 2.0 {
        return Err(CalibrateError::Undefined(
            "α: fewer than two pairable values",
        ));
    }
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..k {
        for d in 0..k {
            if c != d {
                observed += o[c][d];
                expected += n_c[c] * n_c[d];
            }
        }
    }
    if expected <= 0.0 {
        return Err(CalibrateError::Undefined(
            "α: every pairable value is the same category",
        ));
    }
    Ok(1.0 - (n - 1.0) * observed / expected)
}

/// Two annotators' boxes on one image, matched **regardless of class**:
/// pairs at IoU ≥ `iou` taken greedily, highest IoU first, each box at most
/// once (ties: lower indices first, so the result does not depend on a
/// sort's stability). The labels of matched pairs then say whether the two
/// agree on *what* a region is; unmatched boxes, that they disagree on
/// *where* one is.
pub fn match_box_sets(a: &[BoxPx], b: &[BoxPx], iou: f64) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            let v = x.iou(y);
            if v >= iou && v > 0.0 {
                candidates.push((v, i, j));
            }
        }
    }
    candidates.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)).then(p.2.cmp(&q.2)));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut out = Vec::new();
    for (_, i, j) in candidates {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            out.push((i, j));
        }
    }
    out
}

/// Per-class box agreement between two annotators over the images both
/// annotated, accumulated: for class c, `agreed[c]` matched pairs where both
/// said c, and `boxes[c]` the boxes either drew as c. F1_c = 2·agreed /
/// boxes (symmetric: each annotator is the other's truth).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoxAgreementCounts {
    pub agreed: Vec<usize>,
    pub boxes: Vec<usize>,
    /// Matched pairs' labels, `(a, b)`: the units of Krippendorff's α.
    pub matched: Vec<(usize, usize)>,
}

impl BoxAgreementCounts {
    pub fn new(num_classes: usize) -> BoxAgreementCounts {
        BoxAgreementCounts {
            agreed: vec![0; num_classes],
            boxes: vec![0; num_classes],
            matched: Vec::new(),
        }
    }

    /// Add one image both annotated: `(box, class)` each. Classes must be
    /// below `num_classes`.
    pub fn add(
        &mut self,
        a: &[(BoxPx, usize)],
        b: &[(BoxPx, usize)],
        iou: f64,
    ) -> Result<(), CalibrateError> {
        let k = self.boxes.len();
        for (_, c) in a.iter().chain(b) {
            if *c >= k {
                return Err(CalibrateError::ClassOutOfRange {
                    what: "box class",
                    index: 0,
                    class: *c,
                    num_classes: k,
                });
            }
            self.boxes[*c] += 1;
        }
        let boxes_a: Vec<BoxPx> = a.iter().map(|(x, _)| *x).collect();
        let boxes_b: Vec<BoxPx> = b.iter().map(|(x, _)| *x).collect();
        for (i, j) in match_box_sets(&boxes_a, &boxes_b, iou) {
            let (ca, cb) = (a[i].1, b[j].1);
            if ca == cb {
                self.agreed[ca] += 1;
            }
            self.matched.push((ca, cb));
        }
        Ok(())
    }

    /// F1 of class c; `None` when neither annotator drew one.
    pub fn f1(&self, class: usize) -> Option<f64> {
        let n = *self.boxes.get(class)?;
        (n > 0).then(|| 2.0 * self.agreed[class] as f64 / n as f64)
    }

    /// F1 over all classes (micro): 2·Σ agreed / Σ boxes.
    pub fn f1_all(&self) -> Option<f64> {
        let n: usize = self.boxes.iter().sum();
        (n > 0).then(|| 2.0 * self.agreed.iter().sum::<usize>() as f64 / n as f64)
    }
}

/// Levenshtein distance between two sequences: the fewest insertions,
/// deletions and substitutions that turn `a` into `b` (one row of the
/// table kept, O(|a|·|b|) time, O(|b|) memory).
pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let next = (diag + usize::from(x != y))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// **Character-level agreement** of two transcriptions of one line:
/// 1 − d / max(|a|, |b|), d the Levenshtein distance over Unicode scalar
/// values after NFC (so a precomposed `é` and `e` + combining accent are
/// the same character), lengths in scalar values after NFC. Two empty
/// texts agree fully (1); in [0, 1], symmetric.
pub fn char_agreement(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.nfc().collect();
    let b: Vec<char> = b.nfc().collect();
    let longer = a.len().max(b.len());
    if longer == 0 {
        return 1.0;
    }
    1.0 - levenshtein(&a, &b) as f64 / longer as f64
}

/// One matched line of two annotators' transcriptions of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePair {
    /// The line's index in each annotator's set.
    pub a: usize,
    pub b: usize,
    /// [`char_agreement`] of their texts.
    pub agreement: f64,
}

/// Two annotators' lines on one page (`(box, text)` each), matched by
/// place ([`match_box_sets`]: IoU ≥ `iou`, greedily), each matched pair
/// with its character-level agreement, in `a`'s order. Lines only one of
/// them drew are left out (the page's unmatched lines are
/// `a.len() + b.len() − 2·pairs`).
pub fn match_lines(a: &[(BoxPx, &str)], b: &[(BoxPx, &str)], iou: f64) -> Vec<LinePair> {
    let boxes_a: Vec<BoxPx> = a.iter().map(|(x, _)| *x).collect();
    let boxes_b: Vec<BoxPx> = b.iter().map(|(x, _)| *x).collect();
    let mut pairs: Vec<LinePair> = match_box_sets(&boxes_a, &boxes_b, iou)
        .into_iter()
        .map(|(i, j)| LinePair {
            a: i,
            b: j,
            agreement: char_agreement(a[i].1, b[j].1),
        })
        .collect();
    pairs.sort_by_key(|p| p.a);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_by_hand() {
        // 2×2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = 0.5·0.6 + 0.5·0.4 = 0.5.
        let mut a = vec![];
        let mut b = vec![];
        for (x, y, n) in [(0, 0, 20), (0, 1, 5), (1, 0, 10), (1, 1, 15)] {
            for _ in 0..n {
                a.push(x);
                b.push(y);
            }
        }
        assert!((cohen_kappa(&a, &b).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(cohen_kappa(&[1, 2, 3], &[1, 2, 3]).unwrap(), 1.0);
        assert!(cohen_kappa(&[1, 1], &[1, 1]).is_err());
        assert!(cohen_kappa(&[1], &[1, 2]).is_err());
        assert!(cohen_kappa(&[], &[]).is_err());
    }

    #[test]
    fn alpha_by_hand() {
        // Krippendorff (2011), "Computing Krippendorff's alpha", nominal
        // example with missing values: α = 0.743.
        let n = None;
        let s = Some;
        let data = vec![
            vec![
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(1),
                s(4),
                s(1),
                s(2),
                n,
                n,
                n,
            ],
            vec![
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(2),
                s(4),
                s(1),
                s(2),
                s(5),
                n,
                s(3),
            ],
            vec![
                n,
                s(3),
                s(3),
                s(3),
                s(2),
                s(3),
                s(4),
                s(2),
                s(2),
                s(5),
                s(1),
                n,
            ],
            vec![
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(4),
                s(4),
                s(1),
                s(2),
                s(5),
                s(1),
                n,
            ],
        ];
        let a = krippendorff_alpha_nominal(&data).unwrap();
        assert!((a - 0.743).abs() < 5e-4, "{a}");
        // Perfect agreement.
        let perfect = vec![vec![s(1), s(2)], vec![s(1), s(2)]];
        assert_eq!(krippendorff_alpha_nominal(&perfect).unwrap(), 1.0);
    }

    #[test]
    fn alpha_bad_input() {
        assert!(krippendorff_alpha_nominal(&[]).is_err());
        assert!(krippendorff_alpha_nominal(&[vec![Some(1)], vec![]]).is_err());
        assert!(krippendorff_alpha_nominal(&[vec![Some(1), None], vec![None, Some(1)]]).is_err());
        assert!(krippendorff_alpha_nominal(&[vec![Some(1)], vec![Some(1)]]).is_err());
    }

    #[test]
    fn boxes_match_by_place_and_agree_by_label() {
        let b = |x: f64| BoxPx::new(x, 0.0, x + 10.0, 10.0);
        // a: three boxes; b: the first two in place (one relabeled), the
        // third moved away, and one extra.
        let a = [(b(0.0), 0), (b(20.0), 1), (b(40.0), 1)];
        let bb = [(b(1.0), 0), (b(20.0), 0), (b(80.0), 1), (b(100.0), 2)];
        let mut c = BoxAgreementCounts::new(3);
        c.add(&a, &bb, 0.5).unwrap();
        assert_eq!(c.matched, vec![(1, 0), (0, 0)]);
        assert_eq!(c.agreed, vec![1, 0, 0]);
        assert_eq!(c.boxes, vec![3, 3, 1]);
        assert_eq!(c.f1(0), Some(2.0 / 3.0));
        assert_eq!(c.f1(1), Some(0.0));
        assert_eq!(c.f1_all(), Some(2.0 / 7.0));
        // Identical sets agree perfectly.
        let mut same = BoxAgreementCounts::new(3);
        same.add(&a, &a, 0.5).unwrap();
        assert_eq!(same.f1_all(), Some(1.0));
        assert!(same.add(&[(b(0.0), 3)], &[], 0.5).is_err());
    }

    #[test]
    fn edit_distance_by_hand() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(levenshtein(&c("kitten"), &c("sitting")), 3);
        assert_eq!(levenshtein(&c(""), &c("abc")), 3);
        assert_eq!(levenshtein(&c("abc"), &c("")), 3);
        assert_eq!(levenshtein(&c("flaw"), &c("lawn")), 2);
        assert_eq!(levenshtein(&c("same"), &c("same")), 0);
    }

    #[test]
    fn char_agreement_is_nfc_scalar_values_over_the_longer() {
        assert_eq!(char_agreement("", ""), 1.0);
        assert_eq!(char_agreement("abc", ""), 0.0);
        assert_eq!(char_agreement("kitten", "sitting"), 1.0 - 3.0 / 7.0);
        // A precomposed é and e + combining acute are one character after NFC.
        assert_eq!(char_agreement("caf\u{e9}", "cafe\u{301}"), 1.0);
        // Scalar values, not bytes: one substitution in four characters.
        assert_eq!(char_agreement("日本語!", "日本人!"), 0.75);
        assert_eq!(
            char_agreement("The quick fox", "The quack fox"),
            char_agreement("The quack fox", "The quick fox")
        );
    }

    #[test]
    fn lines_match_by_place_and_agree_by_text() {
        let b = |y: f64| BoxPx::new(0.0, y, 100.0, y + 10.0);
        let a = [
            (b(0.0), "first line"),
            (b(20.0), "second"),
            (b(40.0), "only a"),
        ];
        let bb = [
            (b(21.0), "secnd"),
            (b(1.0), "first line"),
            (b(80.0), "only b"),
        ];
        let pairs = match_lines(&a, &bb, 0.5);
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].a, pairs[0].b, pairs[0].agreement), (0, 1, 1.0));
        assert_eq!((pairs[1].a, pairs[1].b), (1, 0));
        assert!((pairs[1].agreement - 5.0 / 6.0).abs() < 1e-12);
    }
}
