//! `simulate --screen` (issue 25): the loop with screening on, beside the
//! same loop without it, on the same embeddings and seeds.
//!
//! Screening collapses the texts into duplicate groups: exact duplicates
//! (the key of [`crate::screen::exact`]) and near duplicates
//! ([`crate::screen::text_near`]) at the similarity from which the service
//! propagates a person's label inside a group
//! ([`crate::service::screening::PROPAGATE_NEAR`]), joined into connected
//! components; each group's representative is its first row. The loop then
//! runs on the representatives only ([`super::run`] on a smaller
//! [`Dataset`]): the seed set, the review batches and the audit sample are
//! drawn from them, so the guarantee is over representatives. Every other
//! row takes its representative's final label — a person's (propagated) or
//! the machine's (auto-accepted with it) — and precision is measured over
//! all rows against each row's own truth (a near duplicate may differ).
//!
//! Without screening, [`super::run`] runs on every row, as plain `simulate`.
//! Both are summarised by [`summarise`]: human labels spent to finish
//! (`--finish`), coverage and precision over all pool rows, and whether the
//! auto-accepted items (representatives, with screening) reached the
//! target.

use std::collections::HashMap;

use serde::Serialize;

use super::{Dataset, SimOptions, SimReport};
use crate::screen::{self, exact, text_near};
use crate::select::strategies::Strategy;

/// The rows' duplicate groups.
#[derive(Debug, Clone, Serialize)]
pub struct Groups {
    /// For each row, its group's representative (itself for a row in no group).
    #[serde(skip)]
    pub rep: Vec<usize>,
    pub rows: usize,
    /// Rows left after collapsing each group into its representative.
    pub representatives: usize,
    /// Exact-duplicate groups and the rows in them.
    pub exact_groups: usize,
    pub exact_rows: usize,
    /// Near-duplicate pairs at or above `near_threshold` (character 5-gram
    /// Jaccard), and the groups after joining them with the exact ones.
    pub near_pairs: usize,
    pub near_threshold: f64,
    pub groups: usize,
    pub grouped_rows: usize,
}

/// Group `texts` by exact key and by near-duplicate pairs at `near_threshold`.
pub fn groups<S: AsRef<str> + Sync>(texts: &[S], near_threshold: f64) -> Result<Groups, String> {
    let n = texts.len();
    let keys: Vec<Option<exact::Key>> = texts
        .iter()
        .map(|t| Some(exact::text_key(t.as_ref())))
        .collect();
    let exact_groups = exact::groups(&keys);
    let near = text_near::near_pairs(
        texts,
        text_near::TextNearOptions {
            threshold: near_threshold,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let pairs = exact_groups
        .iter()
        .flat_map(|g| g.windows(2).map(|w| (w[0], w[1])))
        .chain(near.iter().map(|p| (p.a, p.b)));
    let joined = screen::components(n, pairs);
    let mut rep: Vec<usize> = (0..n).collect();
    for g in &joined {
        // Members are sorted: the first row represents the group.
        for &m in g {
            rep[m] = g[0];
        }
    }
    Ok(Groups {
        representatives: (0..n).filter(|&i| rep[i] == i).count(),
        rows: n,
        exact_rows: exact_groups.iter().map(Vec::len).sum(),
        exact_groups: exact_groups.len(),
        near_pairs: near.len(),
        near_threshold,
        groups: joined.len(),
        grouped_rows: joined.iter().map(Vec::len).sum(),
        rep,
    })
}

/// The data set of the representatives only, in row order, and each
/// representative's row.
pub fn representatives(data: &Dataset, g: &Groups) -> (Dataset, Vec<usize>) {
    let keep: Vec<usize> = (0..g.rep.len()).filter(|&i| g.rep[i] == i).collect();
    let k = data.labels.len();
    let d = Dataset {
        ids: keep.iter().map(|&i| data.ids[i].clone()).collect(),
        x: super::rows(&data.x, data.dim, &keep),
        dim: data.dim,
        y: keep.iter().map(|&i| data.y[i]).collect(),
        labels: data.labels.clone(),
        model_probs: data.model_probs.as_ref().map(|p| super::rows(p, k, &keep)),
        prototypes: data.prototypes.clone(),
    };
    (d, keep)
}

/// One (seed, strategy) run's cost and quality over all pool rows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub strategy: String,
    /// Rows the run decides: the pool's items and, with screening, their
    /// groups' other rows.
    pub rows: usize,
    /// Items the loop saw (representatives with screening).
    pub items: usize,
    /// Human labels spent: seed + review + audit.
    pub human_labels: usize,
    pub audit_labels: usize,
    /// Every row has a person's label, a propagated one, or an accepted one.
    pub complete: bool,
    /// Rows that took a person's label from their representative.
    pub propagated: usize,
    /// Rows auto-accepted (with screening: members of an auto-accepted
    /// representative too), their share of all rows, and their precision
    /// against each row's truth.
    pub auto_accepted: usize,
    pub coverage: f64,
    pub auto_precision: Option<f64>,
    /// The precision the guarantee is about: of the auto-accepted items the
    /// loop decided (representatives, with screening).
    pub guaranteed_precision: Option<f64>,
    /// `guaranteed_precision` ≥ target (true when nothing was accepted).
    pub guarantee_met: bool,
    /// Precision of the finished set over all rows (every label against
    /// each row's truth; a person's answer counts as given).
    pub precision: f64,
}

/// Summarise a run's final predictions over the rows of `data`. `rep_row`:
/// for a screened run, the representative of each row (row indices of
/// `data`); `None` for a run over every row.
pub fn summarise(
    report: &SimReport,
    data: &Dataset,
    rep_row: Option<&[usize]>,
    target: f64,
) -> Vec<Summary> {
    let mut out = Vec::new();
    let index: HashMap<&str, usize> = data
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // Rows behind each representative's row.
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..data.ids.len() {
        let r = rep_row.map_or(i, |reps| reps[i]);
        members.entry(r).or_default().push(i);
    }
    for run in &report.runs {
        for r in &run.results {
            let (mut rows, mut propagated, mut auto, mut auto_right) = (0, 0, 0, 0);
            let (mut rep_auto, mut rep_right, mut right, mut human) = (0, 0, 0, 0);
            let mut complete = true;
            for p in &r.predictions {
                let Some(&row) = index.get(p.id.as_str()) else {
                    continue;
                };
                let by_person = p.human_label.is_some();
                human += usize::from(by_person);
                complete &= by_person || p.status == "auto_accepted";
                if p.status == "auto_accepted" {
                    rep_auto += 1;
                    rep_right += usize::from(p.label == p.true_label);
                }
                for &m in members.get(&row).map(Vec::as_slice).unwrap_or(&[]) {
                    rows += 1;
                    let truth = &data.labels[data.y[m]];
                    // A person's answer on the representative itself is
                    // what they gave; copies are checked against their own truth.
                    let ok = if m == row {
                        p.label == p.true_label
                    } else {
                        &p.label == truth
                    };
                    right += usize::from(ok);
                    if m != row && by_person {
                        propagated += 1;
                    }
                    if p.status == "auto_accepted" {
                        auto += 1;
                        auto_right += usize::from(ok);
                    }
                }
            }
            let share = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
            let guaranteed = share(rep_right, rep_auto);
            out.push(Summary {
                seed: run.seed,
                strategy: r.strategy.clone(),
                rows,
                items: r.predictions.len(),
                human_labels: human,
                audit_labels: r.finish.as_ref().map_or_else(
                    || r.rounds.last().map_or(0, |x| x.audit_labels),
                    |f| f.audit_labels,
                ),
                complete,
                propagated,
                auto_accepted: auto,
                coverage: share(auto, rows).unwrap_or(0.0),
                auto_precision: share(auto_right, auto),
                guaranteed_precision: guaranteed,
                guarantee_met: guaranteed.is_none_or(|p| p >= target),
                precision: share(right, rows).unwrap_or(0.0),
            });
        }
    }
    out
}

/// Both sides of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub groups: Groups,
    pub target: f64,
    pub delta: f64,
    /// Every row in the loop (plain `simulate`).
    pub without: Vec<Summary>,
    /// Representatives in the loop, labels propagated to their groups.
    pub with: Vec<Summary>,
    /// The screened run's report (the representatives' loop), for the plot.
    #[serde(skip)]
    pub screened: Option<SimReport>,
}

/// Run the loop over every row and over the representatives of `texts`'
/// duplicate groups (rows of `data`, in order), with the same options and
/// seeds; `opts.finish` should be set (the cost of a finished set).
pub fn compare(
    data: &Dataset,
    texts: &[String],
    opts: &SimOptions,
    mut progress: impl FnMut(Strategy, usize),
) -> Result<Comparison, String> {
    if texts.len() != data.ids.len() {
        return Err(format!(
            "{} texts for {} embedded rows",
            texts.len(),
            data.ids.len()
        ));
    }
    let g = groups(texts, crate::service::screening::PROPAGATE_NEAR)?;
    let (reps, _) = representatives(data, &g);
    let plain = super::run(data, opts, &mut progress)?;
    let screened = super::run(&reps, opts, &mut progress)?;
    Ok(Comparison {
        without: summarise(&plain, data, None, opts.target),
        with: summarise(&screened, data, Some(&g.rep), opts.target),
        target: opts.target,
        delta: opts.delta,
        groups: g,
        screened: Some(screened),
    })
}

/// Per-seed rows of both sides, for the CLI's table.
pub fn rows_of(c: &Comparison) -> Vec<(&Summary, &Summary)> {
    c.without
        .iter()
        .filter_map(|w| {
            c.with
                .iter()
                .find(|s| s.seed == w.seed && s.strategy == w.strategy)
                .map(|s| (w, s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{PredictionRow, SeedResults, StrategyResult};

    fn row(seed: u64, id: &str, label: &str, truth: &str, status: &'static str) -> PredictionRow {
        PredictionRow {
            seed,
            id: id.into(),
            label: label.into(),
            predicted: label.into(),
            score: 0.99,
            raw_score: 0.99,
            true_label: truth.into(),
            status,
            human_label: matches!(status, "human" | "audit").then(|| label.into()),
        }
    }

    #[test]
    fn exact_and_close_copies_group_and_strangers_do_not() {
        let texts = [
            "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
            "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight",
            "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
            "Free  entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005!",
            "I'm gonna be home soon",
            "Ok lar... Joking wif u oni...",
        ];
        let g = groups(&texts, 0.9).unwrap();
        assert_eq!(g.rep, vec![0, 1, 0, 0, 4, 5]);
        assert_eq!((g.exact_groups, g.exact_rows), (1, 2));
        assert_eq!((g.groups, g.grouped_rows, g.representatives), (1, 3, 4));
    }

    fn strategy(preds: Vec<PredictionRow>) -> StrategyResult {
        StrategyResult {
            strategy: "random".into(),
            rounds: Vec::new(),
            labels_to_match_random: None,
            label_savings: None,
            drift_start_audit: None,
            alarms_at_audit: Vec::new(),
            drift_delay: None,
            finish: None,
            label_quality: None,
            predictions: preds,
            quality_rows: Vec::new(),
        }
    }

    fn report(preds: Vec<PredictionRow>) -> SimReport {
        let results = vec![strategy(preds)];
        SimReport {
            items: 0,
            pool: 0,
            test: 0,
            dim: 0,
            labels: Vec::new(),
            seed_size: 0,
            batch: 0,
            rounds: 0,
            seed: 0,
            threshold: None,
            predictor: super::super::Predictor::Head,
            target: 0.9,
            delta: 0.1,
            method: "global".into(),
            audit_design: super::super::AuditDesign::Uniform,
            review_sampling: super::super::ReviewSampling::TopK,
            audit_sample: 0,
            random_final_accuracy: None,
            results: results.clone(),
            runs: vec![SeedResults {
                seed: 0,
                random_final_accuracy: None,
                results,
            }],
        }
    }

    #[test]
    fn members_take_their_representatives_label_and_are_checked_on_their_own_truth() {
        let data = Dataset {
            ids: (0..5).map(|i| format!("r{i}")).collect(),
            x: vec![0.0; 5],
            dim: 1,
            // r2 copies r0 (same truth); r3 and r4 copy r1, r4 with another truth.
            y: vec![0, 1, 0, 1, 0],
            labels: vec!["ham".into(), "spam".into()],
            model_probs: None,
            prototypes: None,
        };
        let rep = [0, 1, 0, 1, 1];
        let preds = vec![
            row(0, "r0", "ham", "ham", "human"),
            row(0, "r1", "spam", "spam", "auto_accepted"),
        ];
        let s = &summarise(&report(preds), &data, Some(&rep), 0.9)[0];
        assert_eq!(
            (s.rows, s.items, s.human_labels, s.propagated),
            (5, 2, 1, 1)
        );
        assert_eq!(s.auto_accepted, 3);
        assert_eq!(s.coverage, 3.0 / 5.0);
        assert_eq!(s.auto_precision, Some(2.0 / 3.0));
        assert_eq!(s.guaranteed_precision, Some(1.0));
        assert!(s.guarantee_met && s.complete);
        assert_eq!(s.precision, 4.0 / 5.0);

        // Without screening every row is its own item.
        let preds = (0..5)
            .map(|i| {
                let t = &data.labels[data.y[i]];
                let (label, status) = if i == 4 {
                    ("spam", "auto_accepted")
                } else {
                    (t.as_str(), if i < 2 { "human" } else { "auto_accepted" })
                };
                row(0, &format!("r{i}"), label, t, status)
            })
            .collect();
        let s = &summarise(&report(preds), &data, None, 0.9)[0];
        assert_eq!(
            (s.rows, s.human_labels, s.propagated, s.auto_accepted),
            (5, 2, 0, 3)
        );
        assert_eq!(s.guaranteed_precision, Some(2.0 / 3.0));
        assert!(!s.guarantee_met);
    }
}
