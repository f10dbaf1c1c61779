//! An item's content as stored, for people to look at (the review page shows
//! the image or text being labeled, or plays the recording): the bytes sent
//! at ingest, the text, or the file under the data root, with its content
//! type; a part of it for an HTTP `Range` request ([`byte_range`]), so that
//! a player can seek in a long recording.

use std::path::Path;

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use crate::model::beneath::read_beneath;
use crate::model::ItemError;
use crate::store::Content;

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemContent {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// The content of `item_id`. With `project`, an item of another project is
/// `not_found`, exactly like a missing one, so a client scoped to a project
/// learns nothing about others. A path is checked against the data root
/// before anything is opened (see [`check_path`]) and read without following
/// links ([`read_beneath`]), so a path outside the root is never read.
pub async fn content(app: &App, item_id: i64, project: Option<i64>) -> ServiceResult<ItemContent> {
    let (owner, content) = app.store.item_content(item_id).await?;
    if project.is_some_and(|p| p != owner) {
        return Err(ServiceError::not_found(format!("item {item_id}")));
    }
    match content {
        Content::Text(t) => Ok(ItemContent {
            content_type: "text/plain; charset=utf-8",
            bytes: t.into_bytes(),
        }),
        Content::Image(b) => Ok(ItemContent {
            content_type: sniff(&b, None),
            bytes: b,
        }),
        Content::Path(p) => {
            let root = app.data_root.clone().ok_or_else(|| {
                ServiceError::forbidden(format!(
                    "item {item_id} is a file under a data root, and this server has no --data-root"
                ))
            })?;
            let real = check_path(&root, &p)
                .map_err(|e| ServiceError::new(e.code, format!("item {item_id}: {}", e.message)))?;
            let read_root = root.clone();
            let bytes = tokio::task::spawn_blocking(move || read_beneath(&read_root, &real))
                .await
                .map_err(|e| ServiceError::internal(format!("reading item content: {e}")))?
                .map_err(|e| match e {
                    ItemError::OutsideRoot { .. } => ServiceError::forbidden(format!(
                        "item {item_id}: its file is outside the data root"
                    )),
                    other => {
                        tracing::warn!(item = item_id, error = %other, "item file unreadable");
                        ServiceError::new(
                            Code::PathNotFound,
                            format!("item {item_id}: its file cannot be read under the data root"),
                        )
                    }
                })?;
            Ok(ItemContent {
                content_type: sniff(&bytes, Path::new(&p).extension().and_then(|e| e.to_str())),
                bytes,
            })
        }
    }
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
