//! A real `labelloop serve` process on a free loopback port, for the service
//! tests, against SQLite or PostgreSQL.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub url: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Server {
    /// Start with extra args; waits until it prints its address.
    pub fn start(db: &str, extra: &[&str]) -> Server {
        Server::start_env(db, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(db: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labelloop"));
        cmd.envs(env.iter().copied());
        cmd.current_dir(super::root())
            .args([
                "-q",
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--db",
                db,
                "--threads",
                "1",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start labelloop serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            assert!(Instant::now() < deadline, "server did not start");
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(u) = line.strip_prefix("labelloop listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait().unwrap();
                    panic!("server exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            client: reqwest::Client::new(),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Server {
        self.token = Some(token.to_string());
        self
    }

    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token.or(self.token.as_deref()) {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, None)).await
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .req(reqwest::Method::GET, path, None)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path, None).json(body)).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        send(
            self.req(reqwest::Method::POST, path, None)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::POST, path, Some(token))
                .json(body),
        )
        .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, Some(token))).await
    }

    /// Poll a job until it is done.
    pub async fn wait_job(&self, job: i64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.get(&format!("/v1/jobs/{job}")).await;
            assert_eq!(code, 200, "{body}");
            if body["state"] == "done" {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not finish: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_term(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unsafe_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = r.send().await.expect("request");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {code}: body is not JSON: {text:?}"));
    (code, body)
}

/// A fresh database for one test: an SQLite file, or a new schema in the
/// PostgreSQL test database. PostgreSQL tests never skip under CI=true.
pub struct TestDb {
    pub url: String,
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        TestDb {
            url,
            kind: "sqlite",
            _dir: Some(dir),
            schema: None,
        }
    }

    /// None (after a loud message) when PostgreSQL is not reachable and CI is not set.
    pub async fn postgres() -> Option<TestDb> {
        let base = std::env::var("LABELLOOP_TEST_PG").unwrap_or_else(|_| PG_BASE.to_string());
        let admin = match sqlx::PgPool::connect(&base).await {
            Ok(p) => p,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {base} is required under CI=true: {e}");
                }
                eprintln!("\n!!! SKIPPING PostgreSQL test: cannot connect to {base}: {e}\n");
                return None;
            }
        };
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let schema = format!(
            "lltest_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(TestDb {
            url: format!("{base}?options=-csearch_path%3D{schema}"),
            kind: "postgres",
            _dir: None,
            schema: Some(schema),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            let base = std::env::var("LABELLOOP_TEST_PG").unwrap_or_else(|_| PG_BASE.to_string());
            let _ = Command::new("psql")
                .args([
                    &base,
                    "-q",
                    "-c",
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `n` Fashion-MNIST test images as ingest items, ids fmnist-0…
pub fn fashion_items(n: usize) -> Vec<Value> {
    super::fashion_mnist_test()[..n]
        .iter()
        .map(|(id, path, _)| serde_json::json!({"id": id, "image": b64(&std::fs::read(path).unwrap())}))
        .collect()
}

/// A token of `role` named `name`, made by the real CLI (`labelloop tokens create`).
pub fn create_token(db: &str, role: &str, name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .args([
            "tokens", "create", "--role", role, "--db", db, "--name", name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
