//! Exact duplicates: a hash of the decoded pixels (with the image's size)
//! or of the normalised text, and the groups of equal hashes.

use sha2::{Digest, Sha256};

/// A 256-bit content key.
pub type Key = [u8; 32];

/// Text as compared for exact duplicates: trimmed, every run of white space
/// one space. Case and punctuation are kept (they can change meaning); the
/// near-duplicate screen is the one that forgives them.
pub fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Key of a text after [`normalise_text`].
pub fn text_key(text: &str) -> Key {
    let mut h = Sha256::new();
    h.update(b"text\0");
    h.update(normalise_text(text).as_bytes());
    h.finalize().into()
}

/// Key of decoded pixels: width, height, channels and the bytes, so two
/// encodings (PNG, lossless re-saves) of one image share a key.
pub fn pixel_key(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(b"pixels\0");
    h.update(width.to_le_bytes());
    h.update(height.to_le_bytes());
    h.update([channels]);
    h.update(pixels);
    h.finalize().into()
}

/// Groups of items sharing a key (two or more members, members in input
/// order, groups ordered by their first member). `None` keys (items that
/// could not be read) never group.
pub fn groups(keys: &[Option<Key>]) -> Vec<Vec<usize>> {
    let mut first: std::collections::HashMap<&Key, usize> = Default::default();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let Some(k) = k else { continue };
        match first.get(k) {
            Some(&g) => members[g].push(i),
            None => {
                first.insert(k, members.len());
                members.push(vec![i]);
            }
        }
    }
    members.retain(|g| g.len() > 1);
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_is_forgiven_case_is_not() {
        assert_eq!(text_key(" Ok  lar\n"), text_key("Ok lar"));
        assert_ne!(text_key("Ok lar"), text_key("ok lar"));
        let keys: Vec<Option<Key>> = ["a", "b", "a ", "c", "b", "a"]
            .iter()
            .map(|t| Some(text_key(t)))
            .chain([None, None])
            .collect();
        assert_eq!(groups(&keys), vec![vec![0, 2, 5], vec![1, 4]]);
    }

    #[test]
    fn pixel_keys_see_the_shape() {
        let px = [0u8; 12];
        assert_ne!(pixel_key(3, 4, 1, &px), pixel_key(4, 3, 1, &px));
        assert_eq!(pixel_key(3, 4, 1, &px), pixel_key(3, 4, 1, &px));
    }
}
