//! An item's content as stored, for people to look at (the review page shows
//! the image or text being labeled, or plays the recording): the bytes sent
//! at ingest, the text, or the file under the data root, with its content
//! type; a part of it for an HTTP `Range` request ([`byte_range`]), so that
//! a player can seek in a long recording.

use std::path::Path;

use serde::Serialize;

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use crate::model::audio::decode_mono;
use crate::model::beneath::open_beneath;
use crate::model::peaks::{min_max, MAX_BINS};
use crate::model::ItemError;
use crate::store::Content;

/// What to send back: the content, or the part of it a `Range` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemContent {
    pub content_type: &'static str,
    /// The whole content, or only the bytes of `range`.
    pub bytes: Vec<u8>,
    /// The whole content's length in bytes.
    pub len: u64,
    /// `start..end` (end exclusive) of the part in `bytes`; `None`: all of it.
    pub range: Option<(u64, u64)>,
}

/// The content of `item_id`, or the part of it the `Range` header `range`
/// asks for ([`byte_range`]). With `project`, an item of another project is
/// `not_found`, exactly like a missing one, so a client scoped to a project
/// learns nothing about others. A path is checked against the data root
/// before anything is opened (see [`check_path`]) and opened without
/// following links ([`open_beneath`]), so a path outside the root is never
/// read; of a file, only the asked part is read, so a player seeking in an
/// hour-long recording reads a few kilobytes each time, not the file.
pub async fn content(
    app: &App,
    item_id: i64,
    project: Option<i64>,
    range: Option<&str>,
) -> ServiceResult<ItemContent> {
    Ok(owned_content(app, item_id, project, range).await?.1)
}

/// [`content`], with the id of the project the item belongs to.
async fn owned_content(
    app: &App,
    item_id: i64,
    project: Option<i64>,
    range: Option<&str>,
) -> ServiceResult<(i64, ItemContent)> {
    let (owner, content) = app.store.item_content(item_id).await?;
    if project.is_some_and(|p| p != owner) {
        return Err(ServiceError::not_found(format!("item {item_id}")));
    }
    let stored = |content_type: &'static str, bytes: Vec<u8>| -> ServiceResult<ItemContent> {
        let len = bytes.len() as u64;
        let part = byte_range(range, len)?;
        let bytes = match part {
            Some((start, end)) => bytes[start as usize..end as usize].to_vec(),
            None => bytes,
        };
        Ok(ItemContent {
            content_type,
            bytes,
            len,
            range: part,
        })
    };
    let content = match content {
        Content::Text(t) => stored("text/plain; charset=utf-8", t.into_bytes())?,
        Content::Image(b) => stored(sniff(&b, None), b)?,
        Content::Path(p) => {
            let root = app.data_root.clone().ok_or_else(|| {
                ServiceError::forbidden(format!(
                    "item {item_id} is a file under a data root, and this server has no --data-root"
                ))
            })?;
            let real = check_path(&root, &p)
                .map_err(|e| ServiceError::new(e.code, format!("item {item_id}: {}", e.message)))?;
            let extension = Path::new(&p)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_owned);
            let range = range.map(str::to_owned);
            tokio::task::spawn_blocking(move || {
                read_file(&root, &real, range.as_deref(), extension.as_deref())
            })
            .await
            .map_err(|e| ServiceError::internal(format!("reading item content: {e}")))?
            .map_err(|e| match e {
                FileError::Range(e) => e,
                FileError::Item(ItemError::OutsideRoot { .. }) => ServiceError::forbidden(format!(
                    "item {item_id}: its file is outside the data root"
                )),
                FileError::Item(other) => {
                    tracing::warn!(item = item_id, error = %other, "item file unreadable");
                    ServiceError::new(
                        Code::PathNotFound,
                        format!("item {item_id}: its file cannot be read under the data root"),
                    )
                }
            })?
        }
    };
    Ok((owner, content))
}

enum FileError {
    /// The range asked for lies outside the file (416).
    Range(ServiceError),
    Item(ItemError),
}

/// Bytes the content type is told from, read first whatever the range.
const SNIFF_BYTES: usize = 16;

/// The file at `real` (under `root`), or the part `range` asks for: opened
/// without following links, its size from the open file, then only the
/// part read (and its first bytes, for the content type).
fn read_file(
    root: &Path,
    real: &Path,
    range: Option<&str>,
    extension: Option<&str>,
) -> Result<ItemContent, FileError> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut file, len) = open_beneath(root, real).map_err(FileError::Item)?;
    let io = |e: std::io::Error| {
        FileError::Item(ItemError::Io {
            path: real.display().to_string(),
            message: e.to_string(),
        })
    };
    let part = byte_range(range, len).map_err(FileError::Range)?;
    let (start, end) = part.unwrap_or((0, len));
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    // Never reserve more than the file holds, whatever its size claimed.
    let want = end.saturating_sub(start);
    let mut bytes = Vec::with_capacity(usize::try_from(want.min(64 << 20)).unwrap_or(0));
    file.take(want).read_to_end(&mut bytes).map_err(io)?;
    Ok(ItemContent {
        content_type: sniff(&head, extension),
        bytes,
        len,
        range: part,
    })
}

/// A recording's waveform overview (see [`crate::model::peaks`]).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Peaks {
    /// The recording's length in seconds.
    pub duration: f64,
    /// The file's own sample rate in Hz (the overview is of the file as
    /// stored, mixed to mono, not resampled for the model).
    pub sample_rate: u32,
    /// How many bins follow: the number asked for, or the number of samples
    /// when the recording is shorter than that.
    pub bins: usize,
    /// Per bin, the lowest sample, from -1 to 1.
    pub min: Vec<f32>,
    /// Per bin, the highest sample, from -1 to 1.
    pub max: Vec<f32>,
}

/// Bins when a request names none: about the width of a screen.
pub const DEFAULT_BINS: usize = 2000;

/// Recordings decoded for overviews at once: a decode holds the whole
/// recording in memory (an hour of 48 kHz audio is 690 MB of f32), so
/// callers beyond this wait their turn rather than exhaust memory.
static DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The waveform overview of `item_id`, a recording of a speech project, in
/// `bins` bins (1..=[`MAX_BINS`]; checked before anything is read). The
/// recording is decoded on a blocking thread with the length bound of the
/// project's model (`--max-audio-seconds`), so a file that claims ten
/// hours is refused from its header. An item of another kind of project,
/// or a file that does not decode, is `wrong_content` (422), named.
pub async fn peaks(
    app: &App,
    item_id: i64,
    project: Option<i64>,
    bins: usize,
) -> ServiceResult<Peaks> {
    if !(1..=MAX_BINS).contains(&bins) {
        return Err(ServiceError::invalid(
            "bins",
            format!("{bins} is not between 1 and {MAX_BINS}"),
        ));
    }
    let (owner, content) = owned_content(app, item_id, project, None).await?;
    let p = app.store.get_project(owner).await?;
    if p.task != super::regions::SEGMENTS {
        return Err(ServiceError::new(
            Code::WrongContent,
            format!(
                "item {item_id} belongs to project {owner}, a {:?} project: only the recordings of \
                 speech projects have a waveform",
                p.task
            ),
        ));
    }
    let max_seconds = app
        .hub
        .get(&p.model)
        .and_then(|m| m.model.max_audio_seconds())
        .unwrap_or(crate::model::LoadOptions::default().max_audio_seconds);
    let _turn = DECODES
        .acquire()
        .await
        .map_err(|e| ServiceError::internal(format!("peaks semaphore: {e}")))?;
    let bytes = content.bytes;
    let (mono, rate) = tokio::task::spawn_blocking(move || {
        decode_mono(&bytes, max_seconds).map(|(mono, rate, _)| (mono, rate))
    })
    .await
    .map_err(|e| ServiceError::internal(format!("decoding for peaks: {e}")))?
    .map_err(|e| ServiceError::new(Code::WrongContent, format!("item {item_id}: {e}")))?;
    let duration = mono.len() as f64 / f64::from(rate);
    let (min, max) = min_max(&mono, bins);
    Ok(Peaks {
        duration,
        sample_rate: rate,
        bins: min.len(),
        min,
        max,
    })
}

/// How long a signed content link lasts, in seconds. Short, because a link
/// is a bearer credential for one item's bytes (it may end up in a log or a
/// browser's history); the page asks for a fresh one when it is half spent.
pub const LINK_SECONDS: i64 = 600;

/// The key signed content links are made with (HMAC-SHA-256). Its Debug
/// form shows nothing.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    /// From a configured secret (any string, the same on every server that
    /// shares one address), or random for this process when none is set.
    pub fn new(secret: Option<&str>) -> Result<LinkKey, String> {
        use sha2::{Digest, Sha256};
        let mut key = [0u8; 32];
        match secret {
            Some(s) => key.copy_from_slice(&Sha256::digest(s.as_bytes())),
            None => getrandom::fill(&mut key)
                .map_err(|e| format!("no randomness for the link key: {e}"))?,
        }
        Ok(LinkKey(key))
    }

    fn mac(&self, item_id: i64, user: &str, expires: i64) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        // The key is 32 bytes; HMAC takes a key of any length.
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        // Unambiguous: two integers and the user last (a name may hold dots).
        m.update(format!("labelloop-content\n{item_id}\n{expires}\n{user}").as_bytes());
        m
    }

    /// The signature (lowercase hex) of a link to `item_id`'s content for
    /// `user`, good until `expires` (Unix seconds).
    pub fn sign(&self, item_id: i64, user: &str, expires: i64) -> String {
        use hmac::Mac;
        let tag = self.mac(item_id, user, expires).finalize().into_bytes();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Check a link at time `now`: a signature that does not match (a
    /// changed item, user or expiry, or a forged one) and a spent link are
    /// `forbidden`, named; an expiry further ahead than any link this server
    /// makes is refused as forged. Compared in constant time.
    pub fn check(
        &self,
        item_id: i64,
        user: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> ServiceResult<()> {
        use hmac::Mac;
        let forged = || {
            ServiceError::forbidden(
                "this content link's signature does not match; ask for a new link with \
                 GET /v1/items/{id}/content-link",
            )
        };
        let tag = hex32(signature).ok_or_else(forged)?;
        self.mac(item_id, user, expires)
            .verify_slice(&tag)
            .map_err(|_| forged())?;
        if expires > now.saturating_add(LINK_SECONDS) {
            return Err(forged());
        }
        if expires < now {
            return Err(ServiceError::forbidden(format!(
                "this content link expired {} s ago; ask for a new one with \
                 GET /v1/items/{{id}}/content-link",
                now.saturating_sub(expires)
            )));
        }
        Ok(())
    }
}

/// 64 hex digits as 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// A signed link to an item's content, for a player that cannot send the
/// bearer token (an `<audio>` element): see [`LinkKey`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContentLink {
    /// The path to `GET` (on this server), with its signature; it answers
    /// `Range` requests like `GET /v1/items/{id}/content`.
    pub url: String,
    /// Unix seconds after which the link is refused (403).
    pub expires_at: i64,
}

/// A link to `item_id`'s content for `user`, after checking the item exists
/// (in `project`, when named): the caller may read it now, so the link
/// grants nothing the caller lacks, for [`LINK_SECONDS`].
pub async fn link(
    app: &App,
    key: &LinkKey,
    item_id: i64,
    project: Option<i64>,
    user: &str,
    now: i64,
) -> ServiceResult<ContentLink> {
    let (owner, _) = app.store.item_content(item_id).await?;
    if project.is_some_and(|p| p != owner) {
        return Err(ServiceError::not_found(format!("item {item_id}")));
    }
    let expires = now + LINK_SECONDS;
    let sig = key.sign(item_id, user, expires);
    let user_q: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
    Ok(ContentLink {
        url: format!(
            "/v1/items/{item_id}/content/signed?user={user_q}&expires={expires}&sig={sig}"
        ),
        expires_at: expires,
    })
}

/// The bytes a `Range` header asks for, as `start..end` (end exclusive), of
/// content `len` bytes long: `Ok(None)` to send it whole (no header, or one
/// this server does not serve in part: another unit, several ranges, or a
/// malformed one, which RFC 9110 lets a server ignore), `Err` when the one
/// range asked for starts past the end (416, with the length in the
/// message). Forms: `bytes=a-b`, `bytes=a-`, `bytes=-n` (the last n bytes).
pub fn byte_range(header: Option<&str>, len: u64) -> ServiceResult<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let unsatisfiable = || {
        ServiceError::new(
            Code::RangeNotSatisfiable,
            format!("the range {spec:?} lies outside the content of {len} bytes"),
        )
    };
    if a.is_empty() {
        // The last n bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || len == 0 {
            return Err(unsatisfiable());
        }
        return Ok(Some((len - n.min(len), len)));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    let end = if b.is_empty() {
        len
    } else {
        match b.parse::<u64>() {
            Ok(last) if last >= start => last.saturating_add(1).min(len),
            _ => return Ok(None),
        }
    };
    if start >= len {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// The canonical file a stored path names, if it lies inside `root`
/// (canonical). Nothing is opened: the stored path is checked lexically
/// (no `..`, under the root), then its links are resolved and checked
/// again; the root a server was started with may differ from the one the
/// item was ingested under, so the ingest check alone is not enough. The
/// message names no server path.
pub fn check_path(root: &Path, stored: &str) -> ServiceResult<std::path::PathBuf> {
    let outside = || ServiceError::forbidden("its file is outside the data root");
    let joined = super::ingest::lexically_inside(root, stored).ok_or_else(outside)?;
    let real = joined.canonicalize().map_err(|_| {
        ServiceError::new(
            Code::PathNotFound,
            "its file is no longer under the data root",
        )
    })?;
    if !real.starts_with(root) {
        return Err(outside());
    }
    Ok(real)
}

/// The content type of stored bytes, from their magic number (the stored
/// bytes are what was sent, whatever a file name says), else from the
/// extension, else opaque bytes. Only raster types are named: an SVG or
/// HTML upload is served as `application/octet-stream`, never as a
/// document a browser would run.
pub fn sniff(bytes: &[u8], extension: Option<&str>) -> &'static str {
    const MAGIC: [(&[u8], &str); 5] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"BM", "image/bmp"),
        (b"II*\0", "image/tiff"),
    ];
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return t;
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return "audio/wav";
    }
    const SOUND: [(&[u8], &str); 3] = [
        (b"fLaC", "audio/flac"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
    ];
    if let Some((_, t)) = SOUND.iter().find(|(m, _)| bytes.starts_with(m)) {
        return t;
    }
    match extension.map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("txt") => "text/plain; charset=utf-8",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nxxxx", Some("jpg")), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0", None), "image/jpeg");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", None), "image/webp");
        assert_eq!(
            sniff(b"<svg onload=alert(1)>", Some("svg")),
            "application/octet-stream"
        );
        assert_eq!(sniff(b"", None), "application/octet-stream");
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt ", Some("png")), "audio/wav");
        assert_eq!(sniff(b"fLaC\0\0\0\x22", None), "audio/flac");
    }

    #[test]
    fn ranges_are_served_or_ignored_or_refused() {
        let r = |h: &str| byte_range(Some(h), 1000).map_err(|e| e.code);
        assert_eq!(byte_range(None, 1000).unwrap(), None);
        assert_eq!(r("bytes=0-99"), Ok(Some((0, 100))));
        assert_eq!(r("bytes=900-"), Ok(Some((900, 1000))));
        assert_eq!(r("bytes=990-2000"), Ok(Some((990, 1000))));
        assert_eq!(r("bytes=-10"), Ok(Some((990, 1000))));
        assert_eq!(r("bytes=-5000"), Ok(Some((0, 1000))));
        assert_eq!(r("bytes=1000-"), Err(Code::RangeNotSatisfiable));
        assert_eq!(r("bytes=-0"), Err(Code::RangeNotSatisfiable));
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=x-",
            "bytes=0",
        ] {
            assert_eq!(r(ignored), Ok(None), "{ignored}");
        }
    }

    #[test]
    fn links_hold_only_as_signed_and_only_until_they_expire() {
        let key = LinkKey::new(Some("k")).unwrap();
        let now = 1_000_000;
        let exp = now + LINK_SECONDS;
        let sig = key.sign(7, "alice", exp);
        assert_eq!(sig.len(), 64);
        let code = |item, user: &str, e, sig: &str, at| {
            key.check(item, user, e, sig, at)
                .map_err(|e| (e.code, e.message))
        };
        assert_eq!(code(7, "alice", exp, &sig, now), Ok(()));
        assert_eq!(code(7, "alice", exp, &sig.to_uppercase(), now), Ok(()));
        assert_eq!(
            code(7, "alice", exp, &sig, exp),
            Ok(()),
            "good to the second"
        );
        let refused = |r: Result<(), (Code, String)>, says: &str| {
            let (c, m) = r.unwrap_err();
            assert_eq!(c, Code::Forbidden);
            assert!(m.contains(says), "{m}");
        };
        refused(code(7, "alice", exp, &sig, exp + 1), "expired 1 s ago");
        refused(code(8, "alice", exp, &sig, now), "does not match");
        refused(code(7, "alicf", exp, &sig, now), "does not match");
        refused(code(7, "alice", exp + 1, &sig, now), "does not match");
        refused(code(7, "alice", exp, &sig[..63], now), "does not match");
        refused(
            code(7, "alice", exp, &format!("{}zz", &sig[..62]), now),
            "does not match",
        );
        refused(code(7, "alice", exp, "", now), "does not match");
        // Another server's key, and one signed too far ahead.
        let other = LinkKey::new(Some("other")).unwrap();
        refused(
            code(7, "alice", exp, &other.sign(7, "alice", exp), now),
            "does not match",
        );
        let far = now + 10 * LINK_SECONDS;
        refused(
            code(7, "alice", far, &key.sign(7, "alice", far), now),
            "does not match",
        );
        // Random keys differ; the Debug form shows no key.
        let (a, b) = (LinkKey::new(None).unwrap(), LinkKey::new(None).unwrap());
        assert_ne!(a.sign(1, "x", 1), b.sign(1, "x", 1));
        assert_eq!(format!("{a:?}"), "LinkKey(…)");
    }

    #[test]
    fn paths_outside_the_root_are_refused_before_opening() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret.png"), b"x").unwrap();
        std::fs::write(root.join("ok.png"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("link.png")).unwrap();
        let root = root.canonicalize().unwrap();
        let code = |p: &str| check_path(&root, p).map(|_| ()).map_err(|e| e.code);
        assert_eq!(code("ok.png"), Ok(()));
        assert_eq!(code(root.join("ok.png").to_str().unwrap()), Ok(()));
        assert_eq!(code("link.png"), Err(Code::Forbidden));
        assert_eq!(code("../secret.png"), Err(Code::Forbidden));
        assert_eq!(
            code(dir.path().join("secret.png").to_str().unwrap()),
            Err(Code::Forbidden)
        );
        assert_eq!(code("missing.png"), Err(Code::PathNotFound));
    }
}
