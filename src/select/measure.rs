//! The stored uncertainty measures: one table of their names, the store
//! column each lives in and the JSON key each is shown under, so that the
//! store, the review use case and the API cannot disagree.

use serde::{Deserialize, Serialize};

/// Which stored uncertainty orders a review list or bands a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    LeastConfidence,
    Margin,
    Entropy,
    /// Committee projects only: entropy of the members' votes.
    VoteEntropy,
    /// Committee projects only: mean KL divergence from the consensus.
    MeanKl,
}

impl Measure {
    /// Every measure, in declaration order.
    pub const ALL: [Measure; 5] = [
        Measure::LeastConfidence,
        Measure::Margin,
        Measure::Entropy,
        Measure::VoteEntropy,
        Measure::MeanKl,
    ];

    /// The items column that stores it.
    pub fn column(self) -> &'static str {
        match self {
            Measure::LeastConfidence => "unc_least_confidence",
            Measure::Margin => "unc_margin",
            Measure::Entropy => "unc_entropy",
            Measure::VoteEntropy => "unc_vote_entropy",
            Measure::MeanKl => "unc_mean_kl",
        }
    }

    /// The JSON key it is shown under (and its settings name).
    pub fn key(self) -> &'static str {
        match self {
            Measure::LeastConfidence => "least_confidence",
            Measure::Margin => "margin",
            Measure::Entropy => "entropy",
            Measure::VoteEntropy => "vote_entropy",
            Measure::MeanKl => "mean_kl",
        }
    }

    /// Stored only for committee projects' items.
    pub fn needs_committee(self) -> bool {
        matches!(self, Measure::VoteEntropy | Measure::MeanKl)
    }

    /// The measure named by its JSON key, or by the kebab-case strategy name.
    pub fn parse(s: &str) -> Option<Measure> {
        let snake = s.replace('-', "_");
        Measure::ALL.into_iter().find(|m| m.key() == snake)
    }

    /// The names [`Measure::parse`] accepts, for error messages.
    pub fn names() -> String {
        Measure::ALL.map(Measure::key).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Measure::ALL {
            assert_eq!(Measure::parse(m.key()), Some(m));
            assert_eq!(Measure::parse(&m.key().replace('_', "-")), Some(m));
            assert!(m.column().ends_with(m.key()));
        }
        assert_eq!(Measure::parse("k-center"), None);
    }
}
