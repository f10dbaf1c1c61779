//! `simulate --screen`: the loop over every row and over the duplicate
//! groups' representatives, side by side ([`crate::simulate::screened`]).
//! Writes `screening.json` (both sides, per seed and strategy) and the
//! screened run's `simulation.json` / `simulation.svg` /
//! `predictions-<strategy>.jsonl` (representatives only), and prints a table.

use std::path::Path;
use std::process::ExitCode;

use super::super::{inputs, EXIT_OUTPUT, EXIT_USAGE};
use super::SimulateArgs;
use crate::model::Input;
use crate::simulate::screened::{self, Summary};
use crate::simulate::{Dataset, SimOptions};

pub fn run(args: &SimulateArgs, data: &Dataset, opts: &SimOptions, path: &Path) -> ExitCode {
    // The texts of the embedded rows, read again by id.
    let mut by_id = std::collections::HashMap::new();
    for item in inputs::expand(&[path.to_path_buf()]) {
        if let Ok(Input::Text(t)) = item.input {
            by_id.insert(item.id, t);
        }
    }
    let texts: Option<Vec<String>> = data.ids.iter().map(|id| by_id.remove(id)).collect();
    let Some(texts) = texts else {
        eprintln!(
            "error: --screen: {} has items that are not texts (--screen groups texts)",
            path.display()
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let pb = super::super::progress_bar(
        (2 * args.seeds * opts.strategies.len() * (args.rounds + 1)) as u64,
        "simulating {wide_bar} {pos} rounds {msg}",
    );
    let compared = match screened::compare(data, &texts, opts, |s, _| {
        pb.set_message(s.as_str());
        pb.inc(1);
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    pb.finish_and_clear();
    let written = std::fs::create_dir_all(&args.out)
        .and_then(|_| serde_json::to_vec_pretty(&compared).map_err(std::io::Error::other))
        .and_then(|b| std::fs::write(args.out.join("screening.json"), b))
        .and_then(|_| match &compared.screened {
            Some(r) => super::write_outputs(&args.out, r, "screened: representatives only", false),
            None => Ok(()),
        });
    if let Err(e) = written {
        eprintln!("error: writing {}: {e}", args.out.display());
        return ExitCode::from(EXIT_OUTPUT);
    }
    let g = &compared.groups;
    println!(
        "{} rows: {} exact-duplicate groups ({} rows), {} near pairs at ≥ {}; {} groups ({} rows) → {} representatives",
        g.rows, g.exact_groups, g.exact_rows, g.near_pairs, g.near_threshold, g.groups, g.grouped_rows, g.representatives
    );
    println!(
        "target {} at δ {}; without = every row in the loop, with = representatives in the loop, labels propagated",
        compared.target, compared.delta
    );
    println!("| seed | strategy | screen | rows | human labels | audit | propagated | auto-accepted | coverage | auto precision (all rows) | guaranteed precision | guarantee met | precision (all rows) |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into());
    let line = |s: &Summary, side: &str| {
        println!(
            "| {} | {} | {side} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {:.4} |",
            s.seed,
            s.strategy,
            s.rows,
            s.human_labels,
            s.audit_labels,
            s.propagated,
            s.auto_accepted,
            s.coverage,
            opt(s.auto_precision),
            opt(s.guaranteed_precision),
            if s.guarantee_met { "yes" } else { "no" },
            s.precision
        );
    };
    for (without, with) in screened::rows_of(&compared) {
        line(without, "off");
        line(with, "on");
    }
    eprintln!(
        "wrote {0}/screening.json, and the screened run's {0}/simulation.json",
        args.out.display()
    );
    ExitCode::SUCCESS
}
