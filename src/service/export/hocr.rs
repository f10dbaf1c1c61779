//! An OCR project's final lines as **one hOCR document** (hOCR 1.2), one
//! `ocr_page` per settled page, streamed page by page.
//!
//! One document rather than a zip of one file per page: it is what
//! Tesseract writes for a multi-page input, what `hocr-tools`
//! (`hocr-check`, `hocr-lines`, `hocr-split` to cut it per page) and
//! OCRmyPDF's hOCR renderer read, it streams with constant memory like the
//! other item formats, and it opens in a browser as is. Each page's `title`
//! names its image (the item's client id) and `bbox 0 0 width height`;
//! each line is an `ocr_line` span whose `title` holds `bbox x0 y0 x1 y1`
//! (integer pixels, outward-rounded so the line stays inside its box) and
//! `x_wconf NN` (the model's line confidence in percent; 100 on a line a
//! person typed or corrected).
//!
//! Which lines are final is the boxes' rule ([`super::boxes::final_regions`]),
//! and only settled pages export (a person reviewed it, or the machine
//! auto-accepted every line): a page awaiting review has no final text
//! yet. Lines keep reading order: a person's corrected line takes the
//! place of the machine line it replaces; lines a person added follow.

use std::io::{self, Write};

use super::boxes::{final_regions, BoxSet};
use crate::store::{ItemRecord, RegionRecord, Status};

/// The document's start, up to the `<body>`.
pub fn header(out: &mut Vec<u8>) -> io::Result<()> {
    write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n\
         <head>\n<title></title>\n\
         <meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n\
         <meta name=\"ocr-system\" content=\"labelloop {}\"/>\n\
         <meta name=\"ocr-capabilities\" content=\"ocr_page ocr_line\"/>\n\
         </head>\n<body>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The document's end.
pub fn footer(out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(b"</body>\n</html>\n");
    Ok(())
}

/// Text escaped for an HTML element or a double-quoted attribute.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Title properties are `;`-separated: a file name with one
            // would cut the `image` property short.
            ';' => o.push_str("&#59;"),
            c if c.is_control() && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The settled page's final lines in reading order (see the module doc).
fn final_lines(regions: &[RegionRecord]) -> Vec<&RegionRecord> {
    let order: std::collections::HashMap<i64, usize> =
        regions.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let mut lines: Vec<(usize, &RegionRecord)> = final_regions(regions, BoxSet::Final)
        .filter(|r| r.kind == "box" && r.bbox.is_some())
        .map(|r| {
            let at = match (r.source.as_str(), r.replaces) {
                ("human", Some(m)) => order.get(&m).copied(),
                ("human", None) => None,
                _ => order.get(&r.id).copied(),
            };
            (at.unwrap_or(usize::MAX), r)
        })
        .collect();
    lines.sort_by_key(|(at, r)| (*at, r.id));
    lines.into_iter().map(|(_, r)| r).collect()
}

/// One settled page as an `ocr_page` div (nothing for any other page).
pub fn page(out: &mut Vec<u8>, item: &ItemRecord) -> io::Result<()> {
    let settled =
        item.status == Status::Labeled.as_str() || item.status == Status::AutoAccepted.as_str();
    let (Some(w), Some(h)) = (item.width, item.height) else {
        return Ok(());
    };
    if !settled {
        return Ok(());
    }
    writeln!(
        out,
        "<div class=\"ocr_page\" id=\"page_{id}\" title=\"image &quot;{image}&quot;; bbox 0 0 {w} {h}\">",
        id = item.id,
        image = escape(&item.client_id),
    )?;
    let regions = item.regions.as_deref().unwrap_or_default();
    for (n, r) in final_lines(regions).into_iter().enumerate() {
        let Some(b) = r.bbox else { continue };
        let conf = if r.source == "human" {
            100
        } else {
            (r.score.unwrap_or(0.0).clamp(0.0, 1.0) * 100.0).round() as i64
        };
        writeln!(
            out,
            " <span class=\"ocr_line\" id=\"line_{id}_{n}\" title=\"bbox {x0} {y0} {x1} {y1}; x_wconf {conf}\">{text}</span>",
            id = item.id,
            n = n + 1,
            x0 = b.x0.floor().max(0.0) as i64,
            y0 = b.y0.floor().max(0.0) as i64,
            x1 = (b.x1.ceil() as i64).min(w),
            y1 = (b.y1.ceil() as i64).min(h),
            text = escape(r.text.as_deref().unwrap_or("")),
        )?;
    }
    out.extend_from_slice(b"</div>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_title_separators_are_escaped() {
        assert_eq!(
            escape("a<b & \"c\"; d"),
            "a&lt;b &amp; &quot;c&quot;&#59; d"
        );
    }
}
