//! Query by committee: how much the members of a model committee disagree
//! on an item (vote entropy; mean KL divergence to the consensus).

use super::*;

/// Entropy of the members' argmax votes, normalised by ln(min(members, classes)) to [0, 1].
/// Members with an empty distribution do not vote; fewer than two votes (or
/// fewer than two classes) give 0.
pub fn vote_entropy(member_probs: &[&[f32]]) -> f32 {
    let mut votes: Vec<usize> = member_probs.iter().filter_map(|p| argmax(p)).collect();
    let classes = member_probs.iter().map(|p| p.len()).max().unwrap_or(0);
    let voters = votes.len();
    let norm = voters.min(classes);
    if norm < 2 {
        return 0.0;
    }
    votes.sort_unstable();
    let mut h = 0.0f64;
    for run in votes.chunk_by(|a, b| a == b) {
        let q = run.len() as f64 / voters as f64;
        h -= q * q.ln();
    }
    ((h / (norm as f64).ln()) as f32).clamp(0.0, 1.0)
}

/// Mean KL(member || consensus), consensus = mean distribution; clamp probabilities with eps.
/// Members with an empty distribution are left out; a shorter distribution
/// counts its missing classes as 0. Fewer than two members give 0.
pub fn mean_kl(member_probs: &[&[f32]]) -> f32 {
    const EPS: f64 = 1e-10;
    let members = member_probs.iter().filter(|p| !p.is_empty()).count();
    if members < 2 {
        return 0.0;
    }
    let classes = member_probs.iter().map(|p| p.len()).max().unwrap_or(0);
    let prob = |p: &[f32], c: usize| -> f64 {
        // `max` also maps NaN to EPS.
        p.get(c).map_or(0.0, |&x| f64::from(x)).max(EPS)
    };
    let mut total = 0.0f64;
    for c in 0..classes {
        let present = || member_probs.iter().filter(|p| !p.is_empty());
        let consensus = present().map(|p| prob(p, c)).sum::<f64>() / members as f64;
        for p in present() {
            let q = prob(p, c);
            total += q * (q / consensus).ln();
        }
    }
    // Jensen makes the true value >= 0; rounding can dip just below.
    ((total / members as f64) as f32).max(0.0)
}
