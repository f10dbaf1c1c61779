//! A YOLO dataset zip for a detection project, streamed.
//!
//! - `labels/<stem>.txt`: one line `class cx cy w h` per box, the class the
//!   label's position in the project's label set (0-based), the box through
//!   [`BoxPx::to_yolo`] (centre and size normalised by the image's size),
//!   floats written in full;
//! - `data.yaml`: `names` in class order, `nc`, and `train`/`val` naming
//!   `train.txt`;
//! - `train.txt`: one `images/<stem><ext>` line per exported image, so a
//!   trainer reads exactly the images whose boxes are final (an image
//!   without a label file would count as background);
//! - `items.csv`: `item_id, client_id, image, labels, width, height,
//!   status, boxes`, which image each label file is.
//!
//! The stem is the item id's file name without its extension (`scans/p1.png`
//! → `p1`); characters a file system refuses become `_`. Two items with the
//! same stem (compared case-insensitively, for case-insensitive file
//! systems) keep the first name; the next gets `<stem>_<item id>`.
//!
//! The zip is written as it goes (local headers with data descriptors, no
//! seeking), page by page; what it keeps until the end is the zip's
//! central directory (about 300 bytes an entry in the `zip` crate) and the
//! stems, train.txt and items.csv lines: roughly 0.5 KB an image.

use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::boxes::{self, BoxSet};
use super::{produce, store_error, ByteStream, Sink, PAGE};
use crate::store::{Exclude, Project, Store};

pub fn stream(store: Store, project: Project, set: BoxSet, exclude: Exclude) -> ByteStream {
    produce(move |sink| write(store, project, set, exclude, sink))
}

/// The zip's output, shared with the producer, which takes what was
/// written after each page.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut b) => b.extend_from_slice(buf),
            Err(poisoned) => poisoned.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn zip_error(e: zip::result::ZipError) -> io::Error {
    io::Error::other(e)
}

fn entry(zip: &mut ZipWriter<StreamWriter<Shared>>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    zip.start_file(name, options).map_err(zip_error)?;
    zip.write_all(bytes)
}

async fn write(
    store: Store,
    project: Project,
    set: BoxSet,
    exclude: Exclude,
    sink: Sink,
) -> io::Result<()> {
    let shared = Shared::default();
    let mut zip = ZipWriter::new_stream(shared.clone());
    let mut stems = Stems::default();
    let mut train = Vec::new();
    let mut index = csv::Writer::from_writer(Vec::new());
    index.write_record([
        "item_id",
        "client_id",
        "image",
        "labels",
        "width",
        "height",
        "status",
        "boxes",
    ])?;
    let mut cursor = 0i64;
    loop {
        let mut page = store
            .export_items(project.id, &exclude, cursor, PAGE)
            .await
            .map_err(store_error)?;
        let next = page
            .last()
            .map(|i| i.id)
            .filter(|_| page.len() as i64 == PAGE);
        page.retain(|i| boxes::image_exported(i, set).is_some());
        store.attach_regions(&mut page).await.map_err(store_error)?;
        for item in &page {
            let Some((width, height)) = boxes::image_exported(item, set) else {
                continue;
            };
            let mut text = String::new();
            let mut count = 0usize;
            for r in boxes::exported(item.regions.as_deref().unwrap_or_default(), set) {
                let (Some(class), Some(b)) = (
                    project.labels.iter().position(|l| *l == r.label),
                    r.bbox.as_ref(),
                ) else {
                    continue;
                };
                let Ok([cx, cy, w, h]) = b.to_yolo(width, height) else {
                    continue;
                };
                text.push_str(&format!("{class} {cx} {cy} {w} {h}\n"));
                count += 1;
            }
            let (stem, ext) = stems.claim(&item.client_id, item.id);
            let labels = format!("labels/{stem}.txt");
            let image = format!("images/{stem}{ext}");
            entry(&mut zip, &labels, text.as_bytes())?;
            train.extend_from_slice(format!("{image}\n").as_bytes());
            index.write_record([
                item.id.to_string(),
                item.client_id.clone(),
                image,
                labels,
                width.to_string(),
                height.to_string(),
                item.status.clone(),
                count.to_string(),
            ])?;
        }
        sink.send(shared.take()).await?;
        match next {
            Some(last) => cursor = last,
            None => break,
        }
    }
    let names: Vec<&str> = project.labels.iter().map(String::as_str).collect();
    let yaml = format!(
        "# labelloop project {} ({}), {} boxes: see items.csv for which image each label file is.\n\
         # One set, not split: train and val name the same list; split it before training.\n\
         path: .\ntrain: train.txt\nval: train.txt\nnc: {}\nnames: {}\n",
        project.id,
        serde_json::to_string(&project.name)?,
        set.as_str(),
        names.len(),
        // A JSON array of strings is a YAML flow sequence of double-quoted scalars.
        serde_json::to_string(&names)?,
    );
    entry(&mut zip, "data.yaml", yaml.as_bytes())?;
    entry(&mut zip, "train.txt", &train)?;
    let index = index.into_inner().map_err(|e| e.into_error())?;
    entry(&mut zip, "items.csv", &index)?;
    zip.finish().map_err(zip_error)?;
    sink.send(shared.take()).await
}

/// The stems given so far (lowercased), so that no two label files share
/// a name.
#[derive(Default)]
struct Stems(HashSet<String>);

impl Stems {
    /// A unique stem for the item, and the extension of its id's file name
    /// (with its dot; empty without one).
    fn claim(&mut self, client_id: &str, item_id: i64) -> (String, String) {
        let (stem, ext) = split_name(client_id);
        let stem = if stem.is_empty() {
            format!("item-{item_id}")
        } else {
            stem
        };
        let mut name = stem.clone();
        let mut n = 1;
        while !self.0.insert(name.to_lowercase()) {
            name = if n == 1 {
                format!("{stem}_{item_id}")
            } else {
                format!("{stem}_{item_id}_{n}")
            };
            n += 1;
        }
        (name, ext)
    }
}

/// The file name's stem and extension of an item id: its last path
/// component, split at the last dot; characters outside what every file
/// system takes become `_`.
fn split_name(client_id: &str) -> (String, String) {
    let base = client_id.rsplit(['/', '\\']).next().unwrap_or(client_id);
    if base.chars().all(|c| c == '.') {
        return (String::new(), String::new());
    }
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 => (&base[..i], &base[i..]),
        _ => (base, ""),
    };
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    (clean(stem), clean(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past 65,535 entries the streamed zip needs zip64 records: a reader
    /// still finds every entry.
    #[test]
    fn a_streamed_zip_of_many_entries_reads_back() {
        let shared = Shared::default();
        let mut zip = ZipWriter::new_stream(shared.clone());
        let mut out = Vec::new();
        let n = 70_000;
        for i in 0..n {
            entry(
                &mut zip,
                &format!("labels/p{i}.txt"),
                b"0 0.5 0.5 0.25 0.25\n",
            )
            .unwrap();
            if i % 10_000 == 0 {
                out.extend(shared.take());
            }
        }
        zip.finish().unwrap();
        out.extend(shared.take());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(out)).unwrap();
        assert_eq!(archive.len(), n);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("labels/p69999.txt").unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "0 0.5 0.5 0.25 0.25\n");
    }

    #[test]
    fn stems_are_unique_and_safe() {
        let mut s = Stems::default();
        assert_eq!(s.claim("scans/p1.png", 1), ("p1".into(), ".png".into()));
        assert_eq!(s.claim("other/P1.jpg", 2), ("P1_2".into(), ".jpg".into()));
        assert_eq!(s.claim("p1", 3), ("p1_3".into(), "".into()));
        assert_eq!(s.claim("p1_3.png", 4), ("p1_3_4".into(), ".png".into()));
        assert_eq!(s.claim("..", 5), ("item-5".into(), "".into()));
        assert_eq!(s.claim("a\\b\nc:d.tif", 6), ("b_c_d".into(), ".tif".into()));
        assert_eq!(s.claim(".hidden", 7), (".hidden".into(), "".into()));
        assert_eq!(s.claim("dir/", 8), ("item-8".into(), "".into()));
    }
}
