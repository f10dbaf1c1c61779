//! Store defects, at the store's own API (no models, no HTTP):
//! - `lease_ids` (random, k-center, cluster-margin) never hands out an item
//!   someone already labeled, and two annotators never share an item;
//! - `release_review` gives back exactly the given ids;
//! - a full SQLite disk gives `StoreError::Full`, never a write reported Ok
//!   that was not committed, and the store recovers by itself once space is back;
//! - every write to a project row moves `project_writes`, which kept copies
//!   of project rows (Label Studio's `/predict`) rely on to see them at once;
//! - a batch larger than one statement can bind (SQLite: 32,766 values) is
//!   recorded whole, failures included, and counted once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::server::TestDb;
use labelloop::select::Uncertainty;
use labelloop::store::{
    ConnectOptions, Content, NewItem, NewProject, Outcome, ProjectSettings, Store, StoreError,
    StoredPrediction,
};

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        model: "m".into(),
        labels: vec!["a".into(), "b".into()],
        precision_target: 0.95,
        threshold: Some(1.0),
        settings: ProjectSettings::default(),
        committee: Vec::new(),
    }
}

fn text_items(prefix: &str, n: usize, bytes: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            client_id: format!("{prefix}-{i}"),
            content: Content::Text(format!("{prefix} {i} {}", "x".repeat(bytes))),
        })
        .collect()
}

fn predicted(margin: f32) -> Outcome {
    Outcome::Predicted(StoredPrediction {
        label: Some("a".into()),
        score: Some(0.6),
        scores_json: Some(r#"{"a":0.6,"b":0.4}"#.into()),
        uncertainty: Some(Uncertainty {
            least_confidence: 0.4,
            margin,
            entropy: 0.9,
        }),
        embedding: Some(vec![margin, 1.0 - margin]),
        disagreement: None,
        model_version: "m@1".into(),
        auto_accept: false,
        ..StoredPrediction::default()
    })
}

/// A project with `n` items, all predicted and waiting for review; their ids.
async fn review_items(store: &Store, n: usize) -> (i64, Vec<i64>) {
    let project = store.create_project(&new_project("lease")).await.unwrap();
    let ingest = store
        .ingest(project.id, &text_items("it", n, 8))
        .await
        .unwrap();
    let claim = store
        .claim("w", n as i64, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.items.len(), n);
    let outcomes: Vec<(i64, Outcome)> = claim
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id, predicted(i as f32 / n as f32)))
        .collect();
    store.complete("w", ingest.job_id, &outcomes).await.unwrap();
    (project.id, claim.items.iter().map(|i| i.id).collect())
}

async fn lease_ids_skips_labeled_and_leased(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let (project, ids) = review_items(&store, 40).await;

    // Labeled items never come back, whether they were leased before or not.
    store.annotate(ids[0], "a", "ann").await.unwrap();
    let got = store.lease_ids(&ids[..3], "bob", 60_000).await.unwrap();
    let got: Vec<i64> = got.iter().map(|i| i.id).collect();
    assert_eq!(got, vec![ids[1], ids[2]], "a labeled item was leased again");
    // Bob labels one of his: it is not his to lease any more either.
    store.annotate(ids[1], "b", "bob").await.unwrap();
    let again = store.lease_ids(&ids[..3], "bob", 60_000).await.unwrap();
    assert_eq!(
        again.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ids[2]],
        "bob got back an item he already labeled"
    );
    // Items awaiting a confirmation are still offered (as lease_review does).
    store
        .annotate_pending_confirmation(ids[3], "a", "junior")
        .await
        .unwrap();
    let conf = store.lease_ids(&[ids[3]], "expert", 60_000).await.unwrap();
    assert_eq!(conf.len(), 1);
    assert_eq!(conf[0].status, "needs_confirmation");

    // The result keeps the given order, not id order.
    let order: Vec<i64> = ids[10..16].iter().rev().copied().collect();
    let got = store.lease_ids(&order, "carol", 60_000).await.unwrap();
    assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), order);
    assert_eq!(
        store.release_review(project, "carol", None).await.unwrap(),
        6
    );

    // Two annotators asking at once for overlapping sets never share an item.
    let rest = &ids[4..];
    for round in 0..5 {
        let a_ids: Vec<i64> = rest[..24].to_vec();
        let b_ids: Vec<i64> = rest[12..].iter().rev().copied().collect();
        let (a, b) = tokio::join!(
            store.lease_ids(&a_ids, "ann", 60_000),
            store.lease_ids(&b_ids, "ben", 60_000)
        );
        let a: HashSet<i64> = a.unwrap().iter().map(|i| i.id).collect();
        let b: HashSet<i64> = b.unwrap().iter().map(|i| i.id).collect();
        assert!(
            a.is_disjoint(&b),
            "round {round}: both got {:?}",
            a.intersection(&b)
        );
        assert_eq!(
            a.len() + b.len(),
            rest.len(),
            "round {round}: a free item was not leased"
        );
        let back = store.release_review(project, "ann", None).await.unwrap()
            + store.release_review(project, "ben", None).await.unwrap();
        assert_eq!(back as usize, rest.len());
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ids_skips_labeled_and_leased_sqlite() {
    lease_ids_skips_labeled_and_leased(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ids_skips_labeled_and_leased_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    lease_ids_skips_labeled_and_leased(db).await;
}

async fn release_review_gives_back_exactly_the_ids(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let (project, ids) = review_items(&store, 12).await;
    assert_eq!(
        store
            .lease_ids(&ids[..8], "ann", 60_000)
            .await
            .unwrap()
            .len(),
        8
    );
    assert_eq!(
        store
            .lease_ids(&ids[8..], "ben", 60_000)
            .await
            .unwrap()
            .len(),
        4
    );
    // Ben's ids and an unknown id are not Ann's to release.
    let n = store
        .release_review(project, "ann", Some(&[ids[0], ids[2], ids[9], -1]))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        store
            .release_review(project, "ann", Some(&[]))
            .await
            .unwrap(),
        0
    );
    // The released ones are free again; the rest are still held.
    let got = store.lease_ids(&ids, "cat", 60_000).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_review_gives_back_exactly_the_ids_sqlite() {
    release_review_gives_back_exactly_the_ids(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_review_gives_back_exactly_the_ids_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    release_review_gives_back_exactly_the_ids(db).await;
}

/// 2,500 items in one claim: the record statement binds 21 values per item,
/// so a single statement (52,500 values) failed on SQLite and the batch was
/// retried forever; every item must be recorded, failures too, once.
async fn a_batch_larger_than_one_statement_is_recorded_whole(db: TestDb) {
    const N: usize = 2_500;
    let store = Store::connect(&db.url).await.unwrap();
    let project = store.create_project(&new_project("big")).await.unwrap();
    let ingest = store
        .ingest(project.id, &text_items("big", N, 8))
        .await
        .unwrap();
    let claim = store
        .claim("w", N as i64, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.items.len(), N);
    // Every seventh item failed; the rest were predicted.
    let outcomes: Vec<(i64, Outcome)> = claim
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let o = if i % 7 == 0 {
                Outcome::Failed(format!("bad item {i}"))
            } else {
                predicted(i as f32 / N as f32)
            };
            (it.id, o)
        })
        .collect();
    let failed = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .count();
    let recorded = store.complete("w", ingest.job_id, &outcomes).await.unwrap();
    assert_eq!(recorded as usize, N);
    // Sent again (a retried call): nothing is pending any more, nothing is written twice.
    assert_eq!(
        store.complete("w", ingest.job_id, &outcomes).await.unwrap(),
        0
    );
    let job = store.get_job(ingest.job_id).await.unwrap();
    assert_eq!(
        (job.done as usize, job.errors as usize),
        (N - failed, failed)
    );
    assert_eq!(job.state, "done");
    let counts = store.prediction_counts(project.id).await.unwrap();
    assert_eq!(
        counts.iter().map(|(_, n)| *n as usize).sum::<usize>(),
        N - failed,
        "one audit-trail row per predicted item"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_statement_is_recorded_whole_sqlite() {
    a_batch_larger_than_one_statement_is_recorded_whole(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_statement_is_recorded_whole_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_batch_larger_than_one_statement_is_recorded_whole(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_to_a_project_row_moves_project_writes() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let p = store.create_project(&new_project("writes")).await.unwrap();
    let before = labelloop::store::project_writes();
    store.save_head(p.id, "{}", 3).await.unwrap();
    let after_head = labelloop::store::project_writes();
    assert!(after_head > before, "a new head left project_writes alone");
    store.commit_calibration(p.id, "{}", 10, &[]).await.unwrap();
    let after_fit = labelloop::store::project_writes();
    assert!(
        after_fit > after_head,
        "a calibration left project_writes alone"
    );
    store.update_settings(p.id, &settings(1)).await.unwrap();
    assert!(
        labelloop::store::project_writes() > after_fit,
        "new settings left project_writes alone"
    );
    let row = store.get_project(p.id).await.unwrap();
    assert_eq!(
        (row.head_version, row.calibration_version),
        (Some(1), Some(1))
    );
}

fn settings(n: u64) -> ProjectSettings {
    ProjectSettings {
        train_every: Some(n),
        ..ProjectSettings::default()
    }
}

/// What the test expects to find after reopening: every write that was
/// acknowledged, and none that failed.
#[derive(Default)]
struct Ledger {
    settings: Option<u64>,
    tokens_ok: Vec<String>,
    tokens_failed: Vec<String>,
    jobs_ok: Vec<i64>,
    writes_failed_full: usize,
}

/// One round of assorted writes, several at once (so several pool
/// connections see the failures): single-row inserts, multi-row
/// transactions, autocommit updates.
async fn write_round(store: &Store, keep: i64, filler: i64, round: u64, ledger: &mut Ledger) {
    let t1 = format!("tok-{round}-a");
    let t2 = format!("tok-{round}-b");
    let (big, one) = (
        text_items(&format!("big{round}"), 20, 6000),
        text_items(&format!("one{round}"), 1, 6000),
    );
    let (h1, h2, s) = (token_hash(&t1), token_hash(&t2), settings(round));
    let (ing_big, ing_one, tok1, set, tok2) = tokio::join!(
        store.ingest(filler, &big),
        store.ingest(filler, &one),
        store.create_token(&t1, "annotator", &h1),
        store.update_settings(keep, &s),
        store.create_token(&t2, "annotator", &h2),
    );
    for r in [&ing_big, &ing_one] {
        match r {
            Ok(res) => ledger.jobs_ok.push(res.job_id),
            Err(e) => check_full(e, ledger),
        }
    }
    for (name, r) in [(t1, tok1), (t2, tok2)] {
        match r {
            Ok(()) => ledger.tokens_ok.push(name),
            Err(e) => {
                check_full(&e, ledger);
                ledger.tokens_failed.push(name);
            }
        }
    }
    match set {
        Ok(()) => ledger.settings = Some(round),
        Err(e) => check_full(&e, ledger),
    }
}

/// Long hashes: each token row needs overflow pages, so tokens also fill up.
fn token_hash(name: &str) -> String {
    format!("{}{name}", "h".repeat(3000))
}

fn check_full(e: &StoreError, ledger: &mut Ledger) {
    assert!(matches!(e, StoreError::Full(_)), "expected Full, got {e:?}");
    ledger.writes_failed_full += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_cleanly_and_recovers() {
    let db = TestDb::sqlite();
    let path = db.url.strip_prefix("sqlite://").unwrap().to_string();
    // 4 KiB pages: 2 MiB in all, of which the schema takes a few dozen pages.
    let capped = ConnectOptions {
        sqlite_max_page_count: Some(512),
    };
    let store = Store::connect_with(&db.url, &capped).await.unwrap();
    let keep = store.create_project(&new_project("keep")).await.unwrap().id;
    let filler = store
        .create_project(&new_project("filler"))
        .await
        .unwrap()
        .id;
    let mut ledger = Ledger::default();

    // Fill it.
    let mut round = 0;
    while ledger.writes_failed_full == 0 {
        round += 1;
        assert!(round < 100, "2 MiB never filled up");
        write_round(&store, keep, filler, round, &mut ledger).await;
    }
    // Keep writing while full: every answer is Ok (and then committed) or Full.
    let full_rounds = round + 10;
    while round < full_rounds {
        round += 1;
        write_round(&store, keep, filler, round, &mut ledger).await;
    }
    assert!(
        ledger.writes_failed_full >= 10,
        "only {} writes failed",
        ledger.writes_failed_full
    );
    let err = store.ping().await.expect_err("ready while full");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    // No SQL text in what the store says.
    assert!(!err.to_string().to_lowercase().contains("insert"), "{err}");

    // Free space from outside, as an operator would: another connection
    // (not capped) deletes the filler. The store's connections must not hold
    // a write lock, or this fails with "database is locked".
    {
        let other = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        sqlx::query("DELETE FROM items WHERE project_id = $1")
            .bind(filler)
            .execute(&other)
            .await
            .expect("the full store still holds the write lock");
        other.close().await;
    }

    // Without reconnecting, writes succeed again (on every pool connection:
    // several rounds of several writes at once).
    let failed_before = ledger.writes_failed_full;
    for _ in 0..5 {
        round += 1;
        write_round(&store, keep, filler, round, &mut ledger).await;
    }
    assert_eq!(
        ledger.writes_failed_full, failed_before,
        "writes still fail after freeing space"
    );
    assert_eq!(ledger.settings, Some(round));
    // Readiness comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = store.ping().await {
        assert!(Instant::now() < deadline, "still not ready: {e:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.close().await;

    // Everything acknowledged is there after reopening; nothing that failed is.
    let store = Store::connect(&db.url).await.unwrap();
    let project = store.get_project(keep).await.unwrap();
    assert_eq!(
        project.settings,
        settings(round),
        "an acknowledged settings write was lost"
    );
    for name in &ledger.tokens_ok {
        assert!(
            store
                .token_identity(&token_hash(name))
                .await
                .unwrap()
                .is_some(),
            "token {name} was acknowledged but is gone"
        );
    }
    for name in &ledger.tokens_failed {
        assert!(
            store
                .token_identity(&token_hash(name))
                .await
                .unwrap()
                .is_none(),
            "token {name} failed but was written"
        );
    }
    for job in &ledger.jobs_ok {
        store.get_job(*job).await.unwrap();
    }
    store.close().await;
}

/// Issue #28 L1: `/readyz` stayed ready while writes answered 507, because
/// a write that returns early through `?` inside `with_pool!` skipped the
/// store's bookkeeping. The webhook outbox's insert is such a write: once
/// it answers Full, the store is not ready.
#[tokio::test]
async fn a_write_failing_full_through_an_early_return_makes_the_store_unready() {
    let db = TestDb::sqlite();
    let capped = ConnectOptions {
        sqlite_max_page_count: Some(512),
    };
    let store = Store::connect_with(&db.url, &capped).await.unwrap();
    let project = store.create_project(&new_project("p")).await.unwrap().id;
    let body = "x".repeat(64 * 1024);
    let mut n = 0;
    let err = loop {
        n += 1;
        assert!(n < 100, "2 MiB never filled up");
        match store.ls_outbox_put(project, &format!("e{n}"), &body).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    let err = store.ping().await.expect_err("ready while full");
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
}
