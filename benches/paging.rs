//! Paging through 1,000,000 stored items on SQLite: p50/p99 per page
//! (target p99 < 20 ms), and ranking them for a review page of 50 by stored
//! uncertainty, leases included (target p99 < 50 ms).
//! `cargo bench --bench paging` (prints a table).
//! Items are inserted once per run into a temporary database (about 20 s).

use std::time::Instant;

use labelloop::store::{Content, Measure, NewItem, NewProject, ReviewFilter, Status, Store};

const ITEMS: usize = 1_000_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("paging.db").display());
        let store = Store::connect(&url).await.unwrap();
        let project = store
            .create_project(&NewProject {
                name: "paging".into(),
                model: "fashion-mnist-cnn".into(),
                labels: vec!["a".into(), "b".into()],
                precision_target: 0.95,
                threshold: Some(0.9),
                settings: Default::default(),
                committee: Vec::new(),
            })
            .await
            .unwrap();
        let t = Instant::now();
        for chunk in 0..ITEMS / 10_000 {
            let items: Vec<NewItem> = (0..10_000)
                .map(|i| NewItem {
                    client_id: format!("item-{:07}", chunk * 10_000 + i),
                    content: Content::Text(format!("text number {}", chunk * 10_000 + i)),
                })
                .collect();
            store.ingest(project.id, &items).await.unwrap();
        }
        // A realistic mix of statuses, so the status filter has work to do.
        if let Store::Sqlite(pool) = &store {
            sqlx::query(
                "UPDATE items SET status = CASE id % 3 WHEN 0 THEN 'needs_review' WHEN 1 THEN 'auto_accepted' ELSE 'pending' END, \
                 unc_margin = ((id * 7919) % 100003) / 100003.0, unc_entropy = ((id * 104729) % 100003) / 100003.0, \
                 unc_least_confidence = ((id * 15485863) % 100003) / 100003.0",
            )
                .execute(pool)
                .await
                .unwrap();
        }
        eprintln!("inserted {ITEMS} items in {:.1}s", t.elapsed().as_secs_f64());

        println!("| page query (limit 100, 2,000 pages) | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|");
        for (name, status) in [("all items", None), ("status=needs_review", Some(Status::NeedsReview))] {
            // Walk pages from random cursors spread over the whole table.
            let mut times = Vec::with_capacity(2000);
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let cursor = (x % ITEMS as u64) as i64;
                let t = Instant::now();
                let page = store.list_items(project.id, status, Some(cursor), 100).await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                std::hint::black_box(page);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | {:.2} | {:.2} | {:.2} |",
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                times[times.len() - 1]
            );
        }

        println!();
        println!("| review page (50 items, leased) over {ITEMS} stored predictions | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|");
        for (name, measure) in [("margin", Measure::Margin), ("entropy", Measure::Entropy)] {
            let mut times = Vec::with_capacity(500);
            for i in 0..500 {
                let annotator = format!("annotator-{i}");
                let t = Instant::now();
                let page = store
                    .lease_review(project.id, &annotator, measure, ReviewFilter { band: None, confirmations: false }, 50, 600_000)
                    .await
                    .unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(page.len(), 50);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | {:.2} | {:.2} | {:.2} |",
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                times[times.len() - 1]
            );
        }
    });
}
