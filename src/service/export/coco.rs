//! COCO instances JSON for a detection project, streamed.
//!
//! `images` and `annotations` are two arrays, so the items are read twice,
//! page by page: the first pass writes the exported images and keeps their
//! ids (8 bytes an image, in id order from the keyset paging), the second
//! writes the boxes of exactly those images, so an image reviewed between
//! the passes never leaves an annotation without its image. Ids are
//! labelloop's: an image's `id` is its item id, an annotation's its region
//! id, a category's the label's position in the project's label set plus
//! one (stable: a project's labels do not change).
//!
//! Boxes are COCO `[x, y, w, h]` through [`BoxPx::to_coco`], floats as
//! stored, never rounded. Every annotation keeps its provenance in an extra
//! `labelloop` object, which pycocotools and the COCO tools that only read
//! the keys they know ignore; under `boxes=machine` each also has a
//! top-level `score`, so the list loads as detections (`COCO.loadRes`).

use std::io;

use serde_json::{json, Value};

use super::boxes::{self, BoxSet};
use super::{produce, store_error, ByteStream, Sink, PAGE};
use crate::region::BoxPx;
use crate::store::{Exclude, Project, Store};

pub fn stream(store: Store, project: Project, set: BoxSet, exclude: Exclude) -> ByteStream {
    produce(move |sink| write(store, project, set, exclude, sink))
}

async fn write(
    store: Store,
    project: Project,
    set: BoxSet,
    exclude: Exclude,
    sink: Sink,
) -> io::Result<()> {
    let categories: Vec<Value> = project
        .labels
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": i + 1, "name": name, "supercategory": ""}))
        .collect();
    let info = json!({
        "description": format!("labelloop project {} ({:?}), {} boxes", project.id, project.name, set.as_str()),
        "contributor": "labelloop",
        "version": env!("CARGO_PKG_VERSION"),
    });
    let mut out = b"{\"info\":".to_vec();
    serde_json::to_writer(&mut out, &info)?;
    out.extend_from_slice(b",\"licenses\":[],\"categories\":");
    serde_json::to_writer(&mut out, &categories)?;
    out.extend_from_slice(b",\"images\":[");
    sink.send(out).await?;

    // Pass 1: the images.
    let mut kept: Vec<i64> = Vec::new();
    let mut left_out = 0u64;
    let mut cursor = 0i64;
    loop {
        let page = store
            .export_items(project.id, &exclude, cursor, PAGE)
            .await
            .map_err(store_error)?;
        let mut out = Vec::new();
        for item in &page {
            let Some((width, height)) = boxes::image_exported(item, set) else {
                left_out += 1;
                continue;
            };
            if !kept.is_empty() {
                out.push(b',');
            }
            kept.push(item.id);
            serde_json::to_writer(
                &mut out,
                &json!({
                    "id": item.id, "file_name": item.client_id, "width": width, "height": height,
                    "labelloop": {"status": item.status},
                }),
            )?;
        }
        sink.send(out).await?;
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => cursor = last.id,
            _ => break,
        }
    }
    sink.send(b"],\"annotations\":[".to_vec()).await?;

    // Pass 2: the boxes of the images written.
    let mut written = 0u64;
    let mut cursor = 0i64;
    while !kept.is_empty() {
        let mut page = store
            .export_items(project.id, &exclude, cursor, PAGE)
            .await
            .map_err(store_error)?;
        let next = page
            .last()
            .map(|i| i.id)
            .filter(|_| page.len() as i64 == PAGE);
        page.retain(|i| kept.binary_search(&i.id).is_ok());
        store.attach_regions(&mut page).await.map_err(store_error)?;
        let mut out = Vec::new();
        for item in &page {
            for r in boxes::exported(item.regions.as_deref().unwrap_or_default(), set) {
                let Some(annotation) = annotation(&project.labels, item.id, r, set) else {
                    tracing::warn!(project = project.id, region = r.id, label = %r.label,
                        "box with a label outside the project's set left out of the COCO export");
                    continue;
                };
                if written > 0 {
                    out.push(b',');
                }
                written += 1;
                serde_json::to_writer(&mut out, &annotation)?;
            }
        }
        sink.send(out).await?;
        match next {
            Some(last) if kept.last().is_some_and(|k| *k > last) => cursor = last,
            _ => break,
        }
    }
    let summary = json!({
        "project_id": project.id,
        "task": project.task,
        "boxes": set.as_str(),
        "images": kept.len(),
        "annotations": written,
        "images_left_out": left_out,
        "left_out_why": match set {
            BoxSet::Final => "awaiting review, pending or failed: no final boxes yet",
            BoxSet::Machine => "pending or failed: no machine boxes",
        },
    });
    let mut out = b"],\"labelloop\":".to_vec();
    serde_json::to_writer(&mut out, &summary)?;
    out.push(b'}');
    sink.send(out).await
}

/// One COCO annotation, or None for a label outside the project's set.
fn annotation(
    labels: &[String],
    image_id: i64,
    r: &crate::store::RegionRecord,
    set: BoxSet,
) -> Option<Value> {
    let category = labels.iter().position(|l| *l == r.label)? + 1;
    let b: &BoxPx = r.bbox.as_ref()?;
    let mut a = json!({
        "id": r.id,
        "image_id": image_id,
        "category_id": category,
        "bbox": b.to_coco(),
        "area": b.area(),
        "iscrowd": 0,
        "labelloop": boxes::provenance(r),
    });
    if set == BoxSet::Machine {
        a["score"] = json!(r.score.unwrap_or(0.0));
    }
    Some(a)
}
