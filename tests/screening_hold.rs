//! A screen's holds close every path to `auto_accepted` (issue 25), at the
//! store's own API (no models, no HTTP), on SQLite and PostgreSQL:
//! - an item a worker was labeling when the screen held it (an outlier) is
//!   recorded `needs_review` whatever its score, and a calibration's
//!   re-routing leaves it there;
//! - a duplicate member a worker was labeling when a person labeled its
//!   group's representative takes the person's label (`propagated`) when
//!   the worker records it, not the machine's; an unflagged item beside
//!   them is auto-accepted as before;
//! - undoing the person's label before the worker records takes the mark
//!   back: the member is decided by the machine again.

mod common;

use std::time::Duration;

use common::server::TestDb;
use labelloop::store::{
    Content, NewIssue, NewItem, NewProject, Outcome, ProjectSettings, Reroute, ScreenRun, Store,
    StoredPrediction,
};

fn project() -> NewProject {
    NewProject {
        name: "holds".into(),
        model: "m".into(),
        labels: vec!["a".into(), "b".into()],
        precision_target: 0.95,
        threshold: Some(0.5),
        settings: ProjectSettings::default(),
        committee: Vec::new(),
    }
}

fn items(names: &[&str]) -> Vec<NewItem> {
    names
        .iter()
        .map(|n| NewItem {
            client_id: n.to_string(),
            content: Content::Text(format!("the text of {n}")),
        })
        .collect()
}

/// The machine's confident label `a`, auto-accepted unless `accept` is false.
fn machine(accept: bool) -> Outcome {
    Outcome::Predicted(StoredPrediction {
        label: Some("a".into()),
        score: Some(0.99),
        scores_json: Some(r#"{"a":0.99,"b":0.01}"#.into()),
        embedding: Some(vec![0.5, 0.5]),
        model_version: "m@1".into(),
        auto_accept: accept,
        ..StoredPrediction::default()
    })
}

fn issue(item_id: i64, kind: &str, group: Option<i64>, of_item: Option<i64>) -> NewIssue {
    NewIssue {
        item_id,
        kind: kind.into(),
        score: 1.0,
        group,
        of_item,
        of_reference: None,
        hold: kind == "outlier",
    }
}

fn run(project_id: i64, held: i64) -> ScreenRun {
    ScreenRun {
        project_id,
        job_id: None,
        model: "m".into(),
        rule: Some("within_pool".into()),
        reference: None,
        alpha: 0.01,
        items: 4,
        held,
        summary: "{}".into(),
        created_at: 0,
    }
}

async fn state(store: &Store, id: i64) -> (String, Option<String>, Option<String>, Option<i64>) {
    let it = store.get_item(id).await.unwrap();
    (
        it.status,
        it.final_label,
        it.final_source,
        it.propagated_from,
    )
}

async fn holds(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let p = store.create_project(&project()).await.unwrap();
    // The representative is predicted first and waits for a person.
    store.ingest(p.id, &items(&["rep"])).await.unwrap();
    let first = store
        .claim("w1", 10, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let rep = first.items[0].id;
    store
        .complete("w1", first.job_id, &[(rep, machine(false))])
        .await
        .unwrap();
    // The rest are with a worker when the screen and the person act.
    store
        .ingest(p.id, &items(&["outlier", "member", "plain", "late"]))
        .await
        .unwrap();
    let claim = store
        .claim("w2", 10, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = claim.items.iter().map(|i| i.id).collect();
    let [outlier, member, plain, late] = ids[..] else {
        panic!("claimed {ids:?}");
    };
    assert_eq!(state(&store, outlier).await.0, "pending");

    store.annotate(rep, "b", "alice").await.unwrap();
    let issues = [
        issue(outlier, "outlier", None, None),
        issue(rep, "exact_duplicate", Some(1), None),
        issue(member, "exact_duplicate", Some(1), Some(rep)),
        issue(late, "exact_duplicate", Some(1), Some(rep)),
    ];
    store
        .replace_screening(&run(p.id, 1), &issues, &[rep, outlier, member, plain, late])
        .await
        .unwrap();
    // The person's label reaches the members a worker holds as a mark.
    let done = store.propagate_label(p.id, rep, "b", 0.9).await.unwrap();
    assert!(done.items.is_empty(), "{done:?}");
    assert_eq!(done.marked, vec![member, late], "{done:?}");
    // Taking the person's label back takes the marks back.
    store.withdraw_propagation(rep).await.unwrap();
    assert_eq!(state(&store, late).await.3, None, "mark taken back");
    let again = store.propagate_label(p.id, rep, "b", 0.9).await.unwrap();
    assert_eq!(again.marked, vec![member, late]);

    // The worker records every item with a confident machine label.
    let recorded = store
        .complete(
            "w2",
            claim.job_id,
            &[
                (outlier, machine(true)),
                (member, machine(true)),
                (plain, machine(true)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(recorded, 3);
    assert_eq!(
        state(&store, outlier).await,
        ("needs_review".into(), None, None, None),
        "a held item is never auto-accepted"
    );
    assert_eq!(
        state(&store, member).await,
        (
            "labeled".into(),
            Some("b".into()),
            Some("propagated".into()),
            Some(rep)
        ),
        "the member takes the person's label, not the machine's"
    );
    assert_eq!(
        state(&store, plain).await,
        (
            "auto_accepted".into(),
            Some("a".into()),
            Some("machine".into()),
            None
        )
    );

    // `late`: the person's label is deleted before the worker records it.
    let annotation = store.get_item(rep).await.unwrap().annotations[0].id;
    store
        .delete_annotation(annotation, "alice", 60_000)
        .await
        .unwrap();
    store.withdraw_propagation(rep).await.unwrap();
    assert_eq!(state(&store, member).await.0, "needs_review");
    store
        .complete("w2", claim.job_id, &[(late, machine(true))])
        .await
        .unwrap();
    assert_eq!(
        state(&store, late).await,
        (
            "auto_accepted".into(),
            Some("a".into()),
            Some("machine".into()),
            None
        ),
        "no person's label left to copy: the machine decides"
    );

    // A calibration's re-routing cannot auto-accept the held item either.
    store
        .reroute(
            1,
            &[
                Reroute {
                    id: outlier,
                    auto_accept: true,
                    label: "a".into(),
                    score: 0.999,
                    scores_json: r#"{"a":0.999,"b":0.001}"#.into(),
                },
                Reroute {
                    id: plain,
                    auto_accept: true,
                    label: "a".into(),
                    score: 0.999,
                    scores_json: r#"{"a":0.999,"b":0.001}"#.into(),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(state(&store, outlier).await.0, "needs_review");
    assert_eq!(state(&store, plain).await.0, "auto_accepted");
    assert_eq!(store.held_items(p.id).await.unwrap(), vec![outlier]);

    // A new screen that no longer holds it lets the machine decide again.
    store
        .replace_screening(
            &run(p.id, 0),
            &[issue(rep, "exact_duplicate", Some(1), None)],
            &[],
        )
        .await
        .unwrap();
    store
        .reroute(
            2,
            &[Reroute {
                id: outlier,
                auto_accept: true,
                label: "a".into(),
                score: 0.999,
                scores_json: r#"{"a":0.999,"b":0.001}"#.into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(state(&store, outlier).await.0, "auto_accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_on_sqlite() {
    holds(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    holds(db).await;
}
