//! PostgreSQL scale-out and faults: two servers share one database; one is
//! killed with SIGKILL mid-job; every item is still labeled exactly once.
//! And a database that goes away mid-flight gives 503s, not half-writes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{fashion_items, Server, TestDb};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_one_killed_every_item_labeled_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Claims of 128 (not the default 512): the kill must land while the
    // killed server holds leases on part of the 2,400 items.
    let args = [
        "--no-auth",
        "--lease-secs",
        "3",
        "--workers",
        "2",
        "--claim-batch",
        "128",
    ];
    let a = Server::start(&db.url, &args);
    let mut b = Server::start(&db.url, &args);
    let (code, body) = a
        .post(
            "/v1/projects",
            &json!({"name": "scale", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();
    let items = fashion_items(2400);
    let (code, body) = a
        .post(&format!("/v1/projects/{project}/items"), &json!(items))
        .await;
    assert_eq!(code, 202, "{body}");
    let job = body["job"]["id"].as_i64().unwrap();

    // Wait until both servers have recorded work, then SIGKILL one of them.
    let store = labelloop::store::Store::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = a.get(&format!("/v1/jobs/{job}")).await;
        let done = j["done"].as_i64().unwrap();
        assert!(
            done < 2400,
            "the job finished before the kill; make it bigger"
        );
        let workers = worker_count(&db.url).await;
        if workers >= 2 && done >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "servers did not share the work");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.kill9();
    let done = a.wait_job(job, Duration::from_secs(120)).await;
    assert_eq!(done["done"], 2400, "{done}");
    assert_eq!(done["errors"], 0);
    let counts = store.prediction_counts(project).await.unwrap();
    assert_eq!(counts.len(), 2400);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        twice.is_empty(),
        "labeled other than once: {:?}",
        &twice[..twice.len().min(10)]
    );
    assert!(worker_count(&db.url).await >= 2);
}

async fn worker_count(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT worker) FROM predictions")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// A TCP proxy in front of PostgreSQL that the test can cut, so the server's
/// database really goes away (connections reset, new ones refused).
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                                if flag.load(Ordering::SeqCst) { return; }
                            }
                        }
                    }
                });
            }
        });
        Proxy { port, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_going_away_gives_503_and_writes_nothing() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let proxy = Proxy::start().await;
    let proxied = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let s = Server::start(&proxied, &["--no-auth"]);
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "before", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();

    proxy.cut.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, body) = s
        .post(
            "/v1/projects",
            &json!({"name": "during", "model": "fashion-mnist-cnn"}),
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (code, _) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!(fashion_items(20)),
        )
        .await;
    assert_eq!(code, 503);
    let (code, _) = s.get("/readyz").await;
    assert_eq!(code, 503, "not ready without a database");
    assert_eq!(s.get("/healthz").await.0, 200, "but alive");

    // Nothing was written half-way: no project "during", no items, no job.
    let direct = labelloop::store::Store::connect(&db.url).await.unwrap();
    let names: Vec<String> = direct
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["before".to_string()]);
    assert!(direct
        .list_items(project, None, None, 10)
        .await
        .unwrap()
        .is_empty());

    // And it recovers when the database comes back.
    proxy.cut.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = s
            .post(
                "/v1/projects",
                &json!({"name": "after", "model": "fashion-mnist-cnn"}),
            )
            .await;
        if code == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
