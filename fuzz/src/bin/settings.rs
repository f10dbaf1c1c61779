//! AFL++ target: `ProjectSettings` from JSON, as `PUT
//! /v1/projects/{id}/settings` reads it (`api::extract::parse_json`).
//!
//! On every accepted body: the settings round-trip through JSON, the tiers
//! sort from the most uncertain band down, every tier has a band, any
//! uncertainty at or above the lowest tier's minimum falls in exactly one
//! band, and the review lease in milliseconds is positive.

use labelloop::api::extract::parse_json;
use labelloop::store::ProjectSettings;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(s) = parse_json::<ProjectSettings>(data) else {
            return;
        };
        let json = serde_json::to_vec(&s).expect("settings serialise");
        let back: ProjectSettings = parse_json(&json).expect("serialised settings parse");
        assert_eq!(back, s);
        let desc = s.tiers_desc();
        assert_eq!(desc.len(), s.tiers.len());
        assert!(desc
            .windows(2)
            .all(|w| w[0].min_uncertainty >= w[1].min_uncertainty));
        for t in &s.tiers {
            assert!(s.band(&t.name).is_some());
        }
        // Bands by position (names may repeat before validation).
        for t in &desc {
            let u = t.min_uncertainty;
            let hits = (0..desc.len())
                .filter(|&i| {
                    let hi = if i == 0 {
                        f64::INFINITY
                    } else {
                        desc[i - 1].min_uncertainty
                    };
                    desc[i].min_uncertainty <= u && u < hi
                })
                .count();
            assert_eq!(hits, 1, "uncertainty {u} in {hits} bands");
        }
        assert!(s.review_lease_ms() > 0 || s.review_lease_secs == Some(0));
    });
}
