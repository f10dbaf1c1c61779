//! A task's data, turned into something the model can read.
//!
//! - text is text;
//! - `data:` URIs are decoded;
//! - `/data/local-files/?d=…` (relative, or on Label Studio's host) and plain
//!   paths are files under `--data-root`, read like any `path` item;
//! - `/data/upload/…`, `/storage-data/…` and any URL on Label Studio's own
//!   host are fetched from it with the token `/setup` gave: `Token …` for a
//!   legacy token; a personal access token (a JWT refresh token) is first
//!   exchanged at `/api/token/refresh` for an access token sent as `Bearer`;
//! - a URL on any other host is refused, and never fetched, unless the host
//!   is in `ls_image_hosts` (a backend that fetches whatever URL a task holds
//!   is an SSRF hole).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Url;

use super::LabelStudio;
use crate::model::Input;
use crate::service::ingest::{lexical_path, resolve_path};
use crate::store::{Content, LsConnection};

/// Largest image or recording fetched from Label Studio (a recording's
/// length is bounded again when it is decoded: `--max-audio-seconds`).
const MAX_FETCH_BYTES: usize = 64 * 1024 * 1024;
/// How long an exchanged access token is re-used (Label Studio's last 5 minutes).
const ACCESS_TTL: Duration = Duration::from_secs(240);

/// A task's content, ready to predict on and to store.
#[derive(Debug, Clone)]
pub enum TaskData {
    Text(String),
    Bytes(Vec<u8>),
    /// A path under the data root, checked as [`PathCheck`] says; opened
    /// beneath the root when staged, and resolved again by ingest.
    Path(PathBuf),
}

/// How a task's local path is checked when the task is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PathCheck {
    /// Resolved now, links and all (`resolve_path`): for tasks that are
    /// stored and read later, and whose bad paths must fail here, alone.
    Resolve,
    /// By its spelling only (`lexical_path`): for a file staged at once,
    /// whose open checks the rest (`Input::ImageUnderRoot`).
    Spelling,
}

/// A task's value: read, or to be fetched.
#[derive(Debug)]
pub enum Read {
    Ready(TaskData),
    Fetch(Fetch),
}

/// An image to GET, with Label Studio's token or (an allow-listed host) without.
#[derive(Debug)]
pub struct Fetch {
    url: Url,
    with_token: bool,
}

/// Whether an image reference may point at Label Studio's host (a URL or a
/// Label Studio path), so that reading it needs the connection `/setup` kept.
pub fn may_be_on_label_studio(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("/data/")
        || s.starts_with("/storage-data/")
}

impl TaskData {
    /// The model's input, moving the content (see [`TaskData::input`]).
    pub fn into_input(self, root: Option<&Arc<Path>>) -> Input {
        match (self, root) {
            (TaskData::Text(t), _) => Input::Text(t),
            (TaskData::Bytes(b), _) => Input::Image(b),
            (TaskData::Path(path), Some(root)) => Input::ImageUnderRoot {
                root: root.clone(),
                path,
            },
            (TaskData::Path(p), None) => Input::ImagePath(p),
        }
    }

    /// The model's input, keeping the content for the store.
    pub fn input(&self, root: Option<&Arc<Path>>) -> Input {
        self.clone().into_input(root)
    }

    pub fn content(self) -> Content {
        match self {
            TaskData::Text(t) => Content::Text(t),
            TaskData::Bytes(b) => Content::Image(b),
            TaskData::Path(p) => Content::Path(p.to_string_lossy().into_owned()),
        }
    }
}

/// Where an image reference points.
#[derive(Debug, PartialEq)]
enum Target {
    Inline(Vec<u8>),
    Local(PathBuf),
    /// On Label Studio's host: sent with its token.
    LabelStudio(Url),
    /// On an allow-listed host: sent without credentials.
    Allowed(Url),
}

impl LabelStudio {
    /// One task's value for `key` if it is at hand (text as it is, `data:`
    /// URIs decoded, files under the data root); else what to fetch.
    pub fn read_at_hand(
        &self,
        data: &serde_json::Value,
        key: &str,
        text: bool,
        conn: Option<&LsConnection>,
        root: Option<&Path>,
        check: PathCheck,
    ) -> Result<Read, String> {
        let value = data
            .get(key)
            .ok_or_else(|| format!("the task's data has no key {key:?}"))?;
        let s = value
            .as_str()
            .ok_or_else(|| format!("the task's data.{key} is not a string"))?;
        if text {
            return Ok(Read::Ready(TaskData::Text(s.to_string())));
        }
        Ok(match self.target(s, conn, root, check)? {
            Target::Inline(b) => Read::Ready(TaskData::Bytes(b)),
            Target::Local(p) => Read::Ready(TaskData::Path(p)),
            Target::LabelStudio(url) => Read::Fetch(Fetch {
                url,
                with_token: true,
            }),
            Target::Allowed(url) => Read::Fetch(Fetch {
                url,
                with_token: false,
            }),
        })
    }

    /// GET what [`LabelStudio::read_at_hand`] could not read.
    pub async fn fetch_task(
        &self,
        f: Fetch,
        conn: Option<&LsConnection>,
    ) -> Result<TaskData, String> {
        let conn = match (f.with_token, conn) {
            (true, None) => return Err("no Label Studio connection (call /setup first)".into()),
            (true, c) => c,
            (false, _) => None,
        };
        self.fetch(f.url, conn).await.map(TaskData::Bytes)
    }

    fn target(
        &self,
        s: &str,
        conn: Option<&LsConnection>,
        root: Option<&Path>,
        check: PathCheck,
    ) -> Result<Target, String> {
        let local = |raw: &str| {
            match check {
                PathCheck::Resolve => resolve_path(root, raw, 0).map(PathBuf::from),
                PathCheck::Spelling => lexical_path(root, raw, 0),
            }
            .map(Target::Local)
            .map_err(|e| e.message.replace("item [0]: ", ""))
        };
        if let Some(rest) = s.strip_prefix("data:") {
            let (meta, payload) = rest.split_once(',').ok_or("a data: URI without a comma")?;
            if !meta.ends_with(";base64") {
                return Err("a data: URI that is not base64".into());
            }
            return base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map(Target::Inline)
                .map_err(|e| format!("a data: URI that is not valid base64: {e}"));
        }
        let ls_host = conn.and_then(|c| Url::parse(&c.hostname).ok());
        let url = if s.starts_with("http://") || s.starts_with("https://") {
            Url::parse(s).map_err(|e| format!("a malformed URL: {e}"))?
        } else if s.starts_with("/data/") || s.starts_with("/storage-data/") {
            let base = ls_host.clone().ok_or(
                "a Label Studio path, and no Label Studio host is known (call /setup first)",
            )?;
            base.join(s).map_err(|e| format!("a malformed path: {e}"))?
        } else {
            return local(s);
        };
        let same_origin = ls_host.as_ref().is_some_and(|h| {
            h.scheme() == url.scheme()
                && h.host_str() == url.host_str()
                && h.port_or_known_default() == url.port_or_known_default()
        });
        if same_origin && url.path().starts_with("/data/local-files") {
            let d = url
                .query_pairs()
                .find(|(k, _)| k == "d")
                .map(|(_, v)| v.into_owned())
                .ok_or("a /data/local-files/ URL without ?d=")?;
            return local(&d);
        }
        if same_origin {
            return Ok(Target::LabelStudio(url));
        }
        if super::host_listed(&self.settings.image_hosts, &url) {
            return Ok(Target::Allowed(url));
        }
        Err(format!(
            "refused to fetch from {:?}: it is neither Label Studio's host nor in ls_image_hosts",
            super::shown_host(&url)
        ))
    }

    /// GET an image, with Label Studio's credentials when `conn` is given.
    async fn fetch(&self, url: Url, conn: Option<&LsConnection>) -> Result<Vec<u8>, String> {
        let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
        for attempt in 0..2 {
            let mut req = self.http.get(url.clone()).timeout(Duration::from_secs(20));
            if let Some(c) = conn {
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    self.authorization(c, attempt > 0).await?,
                );
            }
            let mut resp = req
                .send()
                .await
                .map_err(|e| format!("fetching {shown} failed: {}", without_url(&e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                && attempt == 0
                && conn.is_some_and(|c| is_jwt(&c.access_token))
            {
                // The cached access token may have expired: exchange again once.
                continue;
            }
            if !status.is_success() {
                return Err(format!("fetching {shown} answered {status}"));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_FETCH_BYTES as u64)
            {
                return Err(format!("{shown} is larger than {MAX_FETCH_BYTES} bytes"));
            }
            // Streamed with a running limit: a body without Content-Length
            // (chunked) is cut off at the limit, never read whole first.
            let mut bytes =
                Vec::with_capacity(resp.content_length().unwrap_or(0).min(1 << 20) as usize);
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("reading {shown} failed: {}", without_url(&e)))?
            {
                if bytes.len() + chunk.len() > MAX_FETCH_BYTES {
                    return Err(format!("{shown} is larger than {MAX_FETCH_BYTES} bytes"));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(bytes);
        }
        Err(format!("fetching {shown} answered 401 Unauthorized"))
    }

    /// The `Authorization` header for Label Studio: `Token` for a legacy
    /// token, `Bearer` with an access token exchanged for a personal one.
    pub async fn authorization(&self, conn: &LsConnection, fresh: bool) -> Result<String, String> {
        let token = conn.access_token.trim();
        if !is_jwt(token) {
            return Ok(format!("Token {token}"));
        }
        let key = (
            conn.hostname.clone(),
            crate::service::secret::hash_token(token),
        );
        if !fresh {
            let cache = self.access.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((access, at)) = cache.get(&key) {
                if at.elapsed() < ACCESS_TTL {
                    return Ok(format!("Bearer {access}"));
                }
            }
        }
        let url = Url::parse(&conn.hostname)
            .and_then(|u| u.join("/api/token/refresh"))
            .map_err(|e| format!("Label Studio's hostname is not a URL: {e}"))?;
        let resp = self
            .http
            .post(url)
            .timeout(Duration::from_secs(10))
            .json(&serde_json::json!({ "refresh": token }))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "exchanging the personal access token failed: {}",
                    without_url(&e)
                )
            })?;
        if !resp.status().is_success() {
            return Err(format!(
                "Label Studio refused the personal access token ({}); give the backend a valid token",
                resp.status()
            ));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| {
            format!(
                "Label Studio's token answer is not JSON: {}",
                without_url(&e)
            )
        })?;
        let access = body
            .get("access")
            .and_then(|a| a.as_str())
            .ok_or("Label Studio's token answer has no `access`")?
            .to_string();
        self.access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (access.clone(), Instant::now()));
        Ok(format!("Bearer {access}"))
    }
}

impl LabelStudio {
    /// A Label Studio user's e-mail, by id (webhooks carry only the id);
    /// cached, since annotators are few.
    pub async fn user_email(&self, conn: &LsConnection, id: i64) -> Option<String> {
        let key = (conn.hostname.clone(), id);
        if let Some(e) = self
            .emails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Some(e.clone());
        }
        let url = Url::parse(&conn.hostname)
            .ok()?
            .join(&format!("/api/users/{id}/"))
            .ok()?;
        let auth = self.authorization(conn, false).await.ok()?;
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            tracing::debug!(status = %resp.status(), user = id, "Label Studio did not give the user's e-mail");
            return None;
        }
        let body: serde_json::Value = resp.json().await.ok()?;
        let email = body.get("email")?.as_str()?.to_string();
        self.emails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, email.clone());
        Some(email)
    }
}

/// A personal access token is a JWT (three base64url parts); legacy tokens are hex.
pub fn is_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// reqwest's error text without the URL (which could carry a query secret).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() {
        "could not decode the answer"
    } else {
        "request failed"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(hosts: &[&str]) -> LabelStudio {
        LabelStudio::new(super::super::LsSettings {
            image_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    fn conn() -> LsConnection {
        LsConnection {
            hostname: "http://localhost:8080".into(),
            access_token: "abc".into(),
            ls_project: None,
        }
    }

    #[test]
    fn targets() {
        let l = ls(&["images.example.org"]);
        let c = conn();
        let t = |s: &str| l.target(s, Some(&c), None, PathCheck::Resolve);
        assert!(
            matches!(t("/data/upload/1/x.png"), Ok(Target::LabelStudio(u)) if u.as_str() == "http://localhost:8080/data/upload/1/x.png")
        );
        assert!(matches!(
            t("http://localhost:8080/storage-data/a.png"),
            Ok(Target::LabelStudio(_))
        ));
        assert!(matches!(
            t("https://images.example.org/a.png"),
            Ok(Target::Allowed(_))
        ));
        let e = t("http://169.254.169.254/latest/meta-data").unwrap_err();
        assert!(
            e.contains("refused") && e.contains("169.254.169.254"),
            "{e}"
        );
        assert!(t("http://localhost:9999/data/upload/x.png")
            .unwrap_err()
            .contains("refused"));
        assert_eq!(
            t("data:image/png;base64,AAEC").unwrap(),
            Target::Inline(vec![0, 1, 2])
        );
        assert!(t("/data/local-files/?d=x.png")
            .unwrap_err()
            .contains("--data-root"));
        assert!(t("x/y.png").unwrap_err().contains("--data-root"));
        assert!(l
            .target("/data/upload/1/x.png", None, None, PathCheck::Resolve)
            .unwrap_err()
            .contains("/setup"));
    }

    #[test]
    fn a_missing_file_passes_a_spelling_check_only() {
        let l = ls(&[]);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let t = |s: &str, check| l.target(s, None, Some(&root), check);
        assert_eq!(
            t("./a//missing.png", PathCheck::Spelling).unwrap(),
            Target::Local(root.join("a/missing.png"))
        );
        let e = t("a/missing.png", PathCheck::Resolve).unwrap_err();
        assert!(e.contains("no file"), "{e}");
        for check in [PathCheck::Spelling, PathCheck::Resolve] {
            let e = t("../x.png", check).unwrap_err();
            assert!(e.contains("outside the data root"), "{check:?}: {e}");
        }
    }

    #[test]
    fn allow_lists_carry_the_port() {
        let l = ls(&["127.0.0.1:18080", "images.example.org"]);
        let t = |s: &str| l.target(s, None, None, PathCheck::Resolve);
        assert!(matches!(
            t("http://127.0.0.1:18080/a.png"),
            Ok(Target::Allowed(_))
        ));
        assert!(t("http://127.0.0.1:18090/internal-admin?x=1")
            .unwrap_err()
            .contains("127.0.0.1:18090"));
        assert!(t("http://127.0.0.1/a.png").is_err());
        // No port in the entry: the scheme's default port only.
        assert!(matches!(
            t("https://images.example.org/a.png"),
            Ok(Target::Allowed(_))
        ));
        assert!(matches!(
            t("http://images.example.org:80/a.png"),
            Ok(Target::Allowed(_))
        ));
        assert!(t("http://images.example.org:8080/a.png").is_err());
        let hosts = ls(&[]);
        let mut settings = hosts.settings.clone();
        settings.ls_hosts = vec!["[::1]:8080".into(), "localhost:8080".into()];
        let l = LabelStudio::new(settings);
        assert!(l.host_allowed("http://[::1]:8080").is_ok());
        assert!(l.host_allowed("http://localhost:8080/").is_ok());
        assert!(l.host_allowed("http://localhost:18090").is_err());
        assert!(l.host_allowed("http://localhost").is_err());
    }

    #[test]
    fn jwt_detection() {
        assert!(is_jwt(
            "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.sig"
        ));
        assert!(!is_jwt("0123456789abcdef0123456789abcdef01234567"));
    }
}
