//! Pre-labeling jobs end, at the store's own API (no models, no HTTP), even
//! when some of their items leave `pending` by another path than the job's
//! workers (issue #28, M4: a re-predict job stopped at 16,039 of 16,049
//! after 10 of its pending items were annotated, and stayed `running` for
//! good, across restarts).

mod common;

use std::time::Duration;

use common::server::TestDb;
use labelloop::store::{Content, NewItem, NewProject, Outcome, ProjectSettings, Store};

fn new_project() -> NewProject {
    NewProject {
        name: "jobs".into(),
        model: "m".into(),
        labels: vec!["a".into(), "b".into()],
        precision_target: 0.95,
        threshold: Some(0.5),
        settings: ProjectSettings::default(),
        committee: Vec::new(),
    }
}

fn items(n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            client_id: format!("it-{i}"),
            content: Content::Text(format!("item {i}")),
        })
        .collect()
}

fn predicted() -> Outcome {
    Outcome::Predicted(labelloop::store::StoredPrediction {
        label: Some("a".into()),
        score: Some(0.9),
        scores_json: Some(r#"{"a":0.9,"b":0.1}"#.into()),
        model_version: "m@1".into(),
        auto_accept: true,
        ..Default::default()
    })
}

/// Claim and record every batch on offer, as a worker would.
async fn drain(store: &Store, worker: &str, batch: i64) {
    while let Some(claim) = store
        .claim(worker, batch, Duration::from_secs(60))
        .await
        .unwrap()
    {
        let outcomes: Vec<(i64, Outcome)> =
            claim.items.iter().map(|i| (i.id, predicted())).collect();
        store
            .complete(worker, claim.job_id, &outcomes)
            .await
            .unwrap();
    }
}

async fn a_job_ends_when_its_pending_items_are_annotated_meanwhile(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let project = store.create_project(&new_project()).await.unwrap().id;

    // Job 1: the first batch is labeled, then 10 of the 12 items still
    // pending are annotated by a human before any worker reaches them.
    let job = store.ingest(project, &items(20)).await.unwrap().job_id;
    let first = store
        .claim("w1", 8, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let outcomes: Vec<(i64, Outcome)> = first.items.iter().map(|i| (i.id, predicted())).collect();
    store.complete("w1", job, &outcomes).await.unwrap();
    let pending: Vec<i64> = store
        .list_items(project, Some(labelloop::store::Status::Pending), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(pending.len(), 12);
    for id in &pending[..10] {
        store.annotate(*id, "b", "ann").await.unwrap();
    }

    // The last two are leased: the job is not over while they are out.
    let last = store
        .claim("w1", 8, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.items.len(), 2);
    assert!(store
        .claim("w2", 8, Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.get_job(job).await.unwrap().state, "running");
    let outcomes: Vec<(i64, Outcome)> = last.items.iter().map(|i| (i.id, predicted())).collect();
    store.complete("w1", job, &outcomes).await.unwrap();

    // Nothing of the job is pending any more: the next look for work ends it.
    drain(&store, "w2", 8).await;
    let j = store.get_job(job).await.unwrap();
    assert_eq!(j.state, "done", "{j:?}");
    assert_eq!((j.done, j.errors, j.total), (10, 0, 20), "{j:?}");
    assert!(j.finished_at.is_some(), "{j:?}");

    // Job 2: every pending item annotated before any worker ran (a server
    // stopped meanwhile): the job still ends, with nothing labeled by it.
    let job2 = store
        .ingest(project, &items(26)[20..])
        .await
        .unwrap()
        .job_id;
    let pending: Vec<i64> = store
        .list_items(project, Some(labelloop::store::Status::Pending), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(pending.len(), 6);
    for id in &pending {
        store.annotate(*id, "a", "ann").await.unwrap();
    }
    drain(&store, "w3", 8).await;
    let j = store.get_job(job2).await.unwrap();
    assert_eq!(j.state, "done", "{j:?}");
    assert_eq!((j.done, j.errors, j.total), (0, 0, 6), "{j:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ends_when_its_pending_items_are_annotated_meanwhile_sqlite() {
    a_job_ends_when_its_pending_items_are_annotated_meanwhile(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ends_when_its_pending_items_are_annotated_meanwhile_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_job_ends_when_its_pending_items_are_annotated_meanwhile(db).await;
}
