//! AFL++ target: Label Studio labeling configs, as `/validate`, `/setup`,
//! `/predict` and `/webhook` read them (`service::labelstudio::config`).
//!
//! The first byte picks the model's kind (odd: text, even: image); the
//! rest is the XML. On every input: no panic, no stack overflow (a config
//! nested past `MAX_CONFIG_DEPTH` or larger than `MAX_CONFIG_BYTES` is an
//! error before parsing). On every accepted config: one choice per project
//! label, each choice read back as its label, and the object kind fits.

use labelloop::service::labelstudio::config::{
    check_bounds, parse, ObjectKind, Wanted, MAX_CONFIG_BYTES,
};

fn main() {
    let labels: Vec<String> = ["a", "B", "ham"].iter().map(|s| s.to_string()).collect();
    afl::fuzz!(|data: &[u8]| {
        let Some((&kind, rest)) = data.split_first() else {
            return;
        };
        let Ok(xml) = std::str::from_utf8(rest) else {
            return;
        };
        let wanted = match kind % 3 {
            0 => Wanted::ImageChoices,
            1 => Wanted::TextChoices,
            _ => Wanted::ImageBoxes,
        };
        let text = wanted == Wanted::TextChoices;
        let bounded = check_bounds(xml).is_ok();
        if xml.len() > MAX_CONFIG_BYTES {
            assert!(!bounded);
        }
        let Ok(t) = parse(xml, &labels, wanted) else {
            return;
        };
        assert!(bounded, "a config past the bounds was accepted");
        assert_eq!(t.choice_for_label.len(), labels.len());
        for (i, c) in t.choice_for_label.iter().enumerate() {
            let back = t.label_index(c).expect("a chosen value reads back");
            // Two labels may share one choice only by spelling.
            assert!(back == i || t.choice_for_label[back] == *c);
        }
        assert_eq!(t.kind == ObjectKind::Text, text);
        assert!(!t.data_key.is_empty());
    });
}
