//! Leaks: items of one split (or project) that copy an item of another.
//! The same two stages as the duplicate screens, with the queries on one
//! side and the reference on the other: exact keys first, then the
//! near-duplicate verification. Each leaked query names the reference item
//! it copies (the best-scoring one).

use std::collections::HashMap;

use super::exact::Key;
use super::image_near::{self, ImageNearOptions, ImageSet};
use super::text_near::{Sketches, TextNearOptions};
use super::ScreenError;

/// A query item that copies a reference item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leak {
    pub query: usize,
    /// The reference item it copies.
    pub of: usize,
    /// 1 for an exact copy, otherwise the verified similarity.
    pub score: f64,
    pub exact: bool,
}

fn best_per_query(mut hits: Vec<Leak>) -> Vec<Leak> {
    let mut best: HashMap<usize, Leak> = HashMap::new();
    for h in hits.drain(..) {
        best.entry(h.query)
            .and_modify(|b| {
                if (h.exact, h.score) > (b.exact, b.score)
                    || ((h.exact, h.score) == (b.exact, b.score) && h.of < b.of)
                {
                    *b = h
                }
            })
            .or_insert(h);
    }
    let mut out: Vec<Leak> = best.into_values().collect();
    out.sort_by_key(|l| l.query);
    out
}

fn exact_hits(queries: &[Option<Key>], reference: &[Option<Key>]) -> Vec<Leak> {
    let mut first: HashMap<&Key, usize> = HashMap::new();
    for (i, k) in reference.iter().enumerate() {
        if let Some(k) = k {
            first.entry(k).or_insert(i);
        }
    }
    queries
        .iter()
        .enumerate()
        .filter_map(|(q, k)| {
            let of = *first.get(k.as_ref()?)?;
            Some(Leak {
                query: q,
                of,
                score: 1.0,
                exact: true,
            })
        })
        .collect()
}

/// Image leaks: exact pixel keys, then near copies verified by shifted NCC.
pub fn image_leaks(
    query_keys: &[Option<Key>],
    queries: &ImageSet,
    reference_keys: &[Option<Key>],
    reference: &ImageSet,
    opts: ImageNearOptions,
) -> Result<Vec<Leak>, ScreenError> {
    let mut hits = exact_hits(query_keys, reference_keys);
    hits.extend(
        image_near::pairs_across(queries, reference, opts)?
            .into_iter()
            .map(|p| Leak {
                query: p.a,
                of: p.b,
                score: p.score,
                exact: false,
            }),
    );
    Ok(best_per_query(hits))
}

/// Text leaks: exact normalised-text keys, then MinHash-LSH + Jaccard.
pub fn text_leaks<S: AsRef<str> + Sync>(
    queries: &[S],
    reference: &[S],
    opts: TextNearOptions,
) -> Result<Vec<Leak>, ScreenError> {
    let qk: Vec<Option<Key>> = queries
        .iter()
        .map(|t| Some(super::exact::text_key(t.as_ref())))
        .collect();
    let rk: Vec<Option<Key>> = reference
        .iter()
        .map(|t| Some(super::exact::text_key(t.as_ref())))
        .collect();
    let mut hits = exact_hits(&qk, &rk);
    let qs = Sketches::new(queries, opts)?;
    let rs = Sketches::new(reference, opts)?;
    hits.extend(qs.pairs_across(&rs).into_iter().map(|p| Leak {
        query: p.a,
        of: p.b,
        score: p.similarity,
        exact: false,
    }));
    Ok(best_per_query(hits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_leaks_name_the_copied_item() {
        let train = [
            "Had your mobile 11 months or more? U R entitled to Update to the latest colour mobiles",
            "Ok lar... Joking wif u oni...",
            "Nah I don't think he goes to usf, he lives around here though",
        ];
        let test = [
            "Ok lar...  Joking wif u oni...",
            "Where are you? I'm waiting at the station since an hour",
            "Had your mobile 11 months or more? U R entitled to update to the latest colour mobiles!",
        ];
        let leaks = text_leaks(&test, &train, TextNearOptions::default()).unwrap();
        assert_eq!(leaks.len(), 2);
        assert_eq!((leaks[0].query, leaks[0].of, leaks[0].exact), (0, 1, true));
        assert_eq!((leaks[1].query, leaks[1].of, leaks[1].exact), (2, 0, false));
    }
}
