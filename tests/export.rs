//! `service::export` on a real store: the CSV round-trips through a CSV
//! reader whatever the ids and labels hold, Label Studio output is one JSON
//! array, and paging neither drops nor repeats items.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use labelloop::service::export::{self, ExportFormat, CSV_HEADER};
use labelloop::store::{
    Content, NewItem, NewProject, Outcome, ProjectSettings, Store, StoredPrediction,
};

use common::server::TestDb;

/// Client ids that break naive CSV: delimiter, quote, CR, LF, CRLF, and
/// leading/trailing spaces a reader would keep only if quoted or left alone.
const TRICKY: [&str; 6] = [
    "a,b",
    "say \"hi\"",
    "cr\rhere",
    "lf\nhere",
    "both\r\n,\"all\"",
    " padded ",
];

async fn collect(store: &Store, project: i64, format: ExportFormat) -> String {
    let mut s = Box::pin(export::start(store, project, format).await.unwrap());
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// A project of `n` plain items plus the tricky ones; every item predicted
/// (label `x,"y"` and a model version with a newline), the first annotated.
async fn seed(store: &Store, n: usize) -> i64 {
    let project = store
        .create_project(&NewProject {
            name: format!("export-{n}"),
            model: "m".into(),
            labels: vec!["x,\"y\"".into(), "z".into()],
            precision_target: 0.95,
            threshold: Some(0.9),
            settings: ProjectSettings::default(),
            committee: vec![],
        })
        .await
        .unwrap();
    let mut items: Vec<NewItem> = TRICKY
        .iter()
        .map(|id| NewItem {
            client_id: id.to_string(),
            content: Content::Text("t".into()),
        })
        .collect();
    items.extend((0..n).map(|i| NewItem {
        client_id: format!("item-{i}"),
        content: Content::Text(format!("text {i}")),
    }));
    let ingested = store.ingest(project.id, &items).await.unwrap();
    assert_eq!(ingested.inserted as usize, items.len());
    while let Some(claim) = store
        .claim("w", 500, Duration::from_secs(60))
        .await
        .unwrap()
    {
        let outcomes: Vec<_> = claim
            .items
            .iter()
            .map(|i| {
                (
                    i.id,
                    Outcome::Predicted(StoredPrediction {
                        label: Some("x,\"y\"".into()),
                        score: Some(0.625),
                        scores_json: Some("[0.625,0.375]".into()),
                        uncertainty: None,
                        embedding: None,
                        disagreement: None,
                        model_version: "v1\nbuild".into(),
                        auto_accept: false,
                        ..StoredPrediction::default()
                    }),
                )
            })
            .collect();
        store.complete("w", claim.job_id, &outcomes).await.unwrap();
    }
    let first = store.list_items(project.id, None, None, 1).await.unwrap();
    store
        .annotate(first[0].id, "z", "ann,\"one\"")
        .await
        .unwrap();
    project.id
}

async fn check(store: &Store) {
    // 1003 + 6 items: three pages, the last one partial.
    let project = seed(store, 1003).await;
    let items = {
        let mut all = Vec::new();
        let mut cursor = 0;
        loop {
            let page = store
                .list_items(project, None, Some(cursor), 1000)
                .await
                .unwrap();
            match page.last() {
                Some(last) => cursor = last.id,
                None => break,
            }
            all.extend(page);
        }
        all
    };
    assert_eq!(items.len(), 1009);

    // CSV: the reader gets back exactly the strings the store holds.
    let text = collect(store, project, ExportFormat::Csv).await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        &csv::StringRecord::from(CSV_HEADER.to_vec())
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), items.len());
    for (row, item) in rows.iter().zip(&items) {
        assert_eq!(row.len(), CSV_HEADER.len());
        assert_eq!(row[0].parse::<i64>().unwrap(), item.id);
        assert_eq!(&row[1], item.client_id, "{item:?}");
        assert_eq!(&row[2], item.status);
        assert_eq!(&row[3], item.final_label.as_deref().unwrap_or(""));
        assert_eq!(&row[4], item.final_source.as_deref().unwrap_or(""));
        assert_eq!(&row[5], "x,\"y\"");
        assert_eq!(&row[6], "0.625");
        assert_eq!(&row[7], "v1\nbuild");
    }
    for id in TRICKY {
        assert!(rows.iter().any(|r| &r[1] == id), "{id:?} lost");
    }
    assert_eq!(&rows[0][2], "labeled");
    assert_eq!(&rows[0][3], "z");
    assert_eq!(&rows[0][4], "human");

    // Label Studio: one JSON array, one task per item, in order.
    let text = collect(store, project, ExportFormat::LabelStudio).await;
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(tasks.len(), items.len());
    for (t, item) in tasks.iter().zip(&items) {
        assert_eq!(t["id"], item.id);
        assert_eq!(t["data"]["id"], item.client_id.as_str());
        assert_eq!(
            t["predictions"][0]["result"][0]["value"]["choices"][0],
            "x,\"y\""
        );
    }
    assert_eq!(tasks[0]["annotations"][0]["completed_by"], "ann,\"one\"");
    assert_eq!(
        tasks[0]["annotations"][0]["result"][0]["value"]["choices"][0],
        "z"
    );

    // JSON Lines: one record per line.
    let text = collect(store, project, ExportFormat::Jsonl).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), items.len());
    assert_eq!(lines[1]["client_id"], items[1].client_id.as_str());
}

/// A project whose item count is an exact multiple of the page size, and one
/// with no items at all: the closing bracket still comes, in its own chunk.
async fn check_edges(store: &Store) {
    let empty = store
        .create_project(&NewProject {
            name: "empty".into(),
            model: "m".into(),
            labels: vec!["a".into(), "b".into()],
            precision_target: 0.95,
            threshold: Some(0.9),
            settings: ProjectSettings::default(),
            committee: vec![],
        })
        .await
        .unwrap()
        .id;
    assert_eq!(
        collect(store, empty, ExportFormat::Csv).await,
        format!("{}\n", CSV_HEADER.join(","))
    );
    assert_eq!(collect(store, empty, ExportFormat::LabelStudio).await, "[]");
    assert_eq!(collect(store, empty, ExportFormat::Jsonl).await, "");

    // 494 + 6 tricky = 500 items, exactly one page.
    let full = seed(store, 494).await;
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&collect(store, full, ExportFormat::LabelStudio).await).unwrap();
    assert_eq!(tasks.len(), 500);
    let rows = csv::Reader::from_reader(collect(store, full, ExportFormat::Csv).await.as_bytes())
        .records()
        .count();
    assert_eq!(rows, 500);

    // A missing project fails before any byte.
    assert!(export::start(store, 999_999, ExportFormat::Csv)
        .await
        .is_err());
}

#[test]
fn format_names_and_content_types() {
    for f in ExportFormat::ALL {
        assert_eq!(ExportFormat::parse(f.as_str()), Some(f));
    }
    assert_eq!(ExportFormat::parse("xml"), None);
    assert_eq!(ExportFormat::Csv.content_type(), "text/csv");
    assert_eq!(ExportFormat::Jsonl.content_type(), "application/x-ndjson");
    assert_eq!(ExportFormat::LabelStudio.content_type(), "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_on_sqlite() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    check(&store).await;
    check_edges(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    check(&store).await;
    check_edges(&store).await;
}
