//! An item's content as stored, for people to look at (the review page shows
//! the image or text being labeled): the bytes sent at ingest, the text, or
//! the file under the data root, with its content type.

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
    match extension.map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("txt") => "text/plain; charset=utf-8",
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
