//! Ingesting items into a project: each item's content must suit the
//! project's model, `path` items must lie inside the data root, duplicate ids
//! are counted rather than stored twice, and the batch becomes one job.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use super::app::App;
use super::error::{Code, ServiceError, ServiceResult};
use crate::store::{Content, Job, NewItem};

/// One item as a client sent it; `Path` is still the client's raw path.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    pub id: String,
    pub content: Content,
}

/// What an ingest did.
#[derive(Debug)]
pub struct Ingested {
    pub job: Job,
    pub inserted: u64,
    /// Items already in the project, and ids repeated within the request.
    pub duplicates: u64,
}

/// The longest split name an item may carry.
pub const MAX_SPLIT: usize = 32;

/// A split name must be short and plain (it is a filter value and an export
/// column, never free text): 1 to [`MAX_SPLIT`] characters of
/// `[A-Za-z0-9_.-]`.
pub fn check_split(split: &str, i: usize) -> ServiceResult<()> {
    let plain = split
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if split.is_empty() || split.len() > MAX_SPLIT || !plain {
        return Err(ServiceError::invalid(
            &format!("[{i}].split"),
            format!(
                "must be 1 to {MAX_SPLIT} characters of letters, digits, `_`, `.` or `-` (such as `train` or `test`), got {split:?}"
            ),
        ));
    }
    Ok(())
}

pub async fn ingest(app: &App, project_id: i64, items: Vec<IngestItem>) -> ServiceResult<Ingested> {
    ingest_in_splits(
        app,
        project_id,
        items.into_iter().map(|i| (i, None)).collect(),
    )
    .await
}

/// [`ingest`], each item with the split it belongs to (`None`: no split).
pub async fn ingest_in_splits(
    app: &App,
    project_id: i64,
    items: Vec<(IngestItem, Option<String>)>,
) -> ServiceResult<Ingested> {
    let project = app.store.get_project(project_id).await?;
    let model = app.model_of(&project)?;
    if items.is_empty() {
        return Err(ServiceError::new(
            Code::EmptyBatch,
            "the body holds no items",
        ));
    }
    let text_model = model.model.is_text();
    let audio_model = model.model.is_audio();
    let mut new_items = Vec::with_capacity(items.len());
    let mut splits = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    let mut repeated = 0u64;
    for (i, (item, split)) in items.into_iter().enumerate() {
        if item.id.is_empty() {
            return Err(ServiceError::invalid(
                &format!("[{i}].id"),
                "must not be empty",
            ));
        }
        if let Some(s) = &split {
            check_split(s, i)?;
        }
        let content = match item.content {
            Content::Path(p) => Content::Path(resolve_path(app.data_root.as_deref(), &p, i)?),
            other => other,
        };
        // A recording is a `path` under the data root, or (fetched from
        // Label Studio's uploads) its encoded bytes, kept like an image's.
        if audio_model && matches!(content, Content::Text(_)) {
            return Err(ServiceError::new(
                Code::WrongContent,
                format!(
                    "item [{i}] ({:?}): the project's model {:?} takes recordings by `path` under \
                     the data root (WAV, FLAC, OGG/Vorbis or MP3)",
                    item.id, project.model
                ),
            ));
        }
        if matches!(content, Content::Text(_)) != text_model {
            return Err(ServiceError::new(
                Code::WrongContent,
                format!(
                    "item [{i}] ({:?}): the project's model {:?} takes {}",
                    item.id,
                    project.model,
                    if text_model {
                        "`text`"
                    } else {
                        "images (`image` or `path`)"
                    }
                ),
            ));
        }
        if seen.insert(item.id.clone()) {
            new_items.push(NewItem {
                client_id: item.id,
                content,
            });
            splits.push(split);
        } else {
            repeated += 1;
        }
    }
    let result = app
        .store
        .ingest_in_splits(project_id, &new_items, &splits)
        .await?;
    app.wake_workers.notify_waiters();
    let job = app.store.get_job(result.job_id).await?;
    Ok(Ingested {
        job,
        inserted: result.inserted as u64,
        duplicates: result.duplicates as u64 + repeated,
    })
}

/// `raw` joined to `root`, if it stays inside it before any link is
/// resolved: no `..`, and an absolute path must already lie under `root`.
/// Callers canonicalise next and check again (links may point out).
pub fn lexically_inside(root: &Path, raw: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(raw);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    joined.starts_with(root).then_some(joined)
}

/// A `path` item must name a regular file inside the data root. Anything
/// else outside the root is refused the same way whether or not it exists,
/// so the answer reveals nothing about files outside; messages show the
/// client's own path, never the server's root.
pub fn resolve_path(root: Option<&Path>, raw: &str, i: usize) -> ServiceResult<String> {
    let root = root_for_paths(root, i)?;
    let outside = || outside_root(raw, i);
    let not_a_file = || {
        ServiceError::new(
            Code::PathNotFound,
            format!("item [{i}]: {raw:?} is not a file under the data root (a folder?)"),
        )
    };
    let joined = lexically_inside(root, raw).ok_or_else(outside)?;
    // The common case, in one system call: no link anywhere on the way, so
    // the path (with `.` and doubled `/` dropped) is already canonical.
    let clean: PathBuf = joined.components().collect();
    let rel = clean.strip_prefix(root).unwrap_or(&clean);
    match crate::model::beneath::regular_file_beneath(root, rel) {
        Some(true) => return Ok(clean.to_string_lossy().into_owned()),
        Some(false) => return Err(not_a_file()),
        None => {}
    }
    // Resolve symlinks; a link pointing out of the root is refused like any
    // outside path, before we look at whether its target exists.
    let real = match joined.canonicalize() {
        Ok(real) => real,
        Err(_) => {
            // A dangling link or a missing file: refuse links out of the root
            // the same way as existing ones.
            if let Ok(target) = std::fs::read_link(&joined) {
                let target = joined.parent().map(|d| d.join(&target)).unwrap_or(target);
                if !target.starts_with(root) {
                    return Err(outside());
                }
            }
            return Err(ServiceError::new(
                Code::PathNotFound,
                format!("item [{i}]: no file at {raw:?} under the data root"),
            ));
        }
    };
    if !real.starts_with(root) {
        return Err(outside());
    }
    if !real.is_file() {
        return Err(not_a_file());
    }
    Ok(real.to_string_lossy().into_owned())
}

/// A path a client named, under the data root by its spelling alone (no
/// `..`, no other root), with `.` and doubled `/` dropped: for a file read
/// at once, whose open then checks the rest (see
/// [`crate::model::beneath::read_under_root`]). It touches no file system.
pub fn lexical_path(root: Option<&Path>, raw: &str, i: usize) -> ServiceResult<PathBuf> {
    let root = root_for_paths(root, i)?;
    let joined = lexically_inside(root, raw).ok_or_else(|| outside_root(raw, i))?;
    Ok(joined.components().collect())
}

fn root_for_paths(root: Option<&Path>, i: usize) -> ServiceResult<&Path> {
    root.ok_or_else(|| {
        ServiceError::forbidden(format!(
            "item [{i}]: `path` items are disabled; start the server with --data-root to allow a folder"
        ))
    })
}

fn outside_root(raw: &str, i: usize) -> ServiceError {
    ServiceError::forbidden(format!("item [{i}]: path {raw:?} is outside the data root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_answer_alike_whether_or_not_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.png"), b"x").unwrap();
        std::fs::write(root.join("ok.png"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.png"), root.join("to-existing")).unwrap();
        std::os::unix::fs::symlink(outside.join("missing.png"), root.join("to-missing")).unwrap();
        let root = root.canonicalize().unwrap();
        let code = |raw: &str| resolve_path(Some(&root), raw, 0).map_err(|e| e.code);
        assert_eq!(code("to-existing"), Err(Code::Forbidden));
        assert_eq!(code("to-missing"), Err(Code::Forbidden));
        assert_eq!(code("../outside/secret.png"), Err(Code::Forbidden));
        assert_eq!(
            code("sub"),
            Err(Code::PathNotFound),
            "a folder is not an item"
        );
        assert_eq!(code("nothing.png"), Err(Code::PathNotFound));
        assert!(code("ok.png").is_ok());
        let msg = resolve_path(Some(&root), "sub", 0).unwrap_err().message;
        assert!(!msg.contains(root.to_str().unwrap()), "{msg}");
    }
}
