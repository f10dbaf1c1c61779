//! OCR on the real PP-OCRv6 models (models/ocr, from rapidocr's wheel) and
//! real rendered pages (data/ocr-pages: scripts/render_layout_pages.py
//! --lines, seed 23; both installed by scripts/setup.sh): the text of clean
//! pages within a CER bound, a two-column page read column by column, an
//! empty page as a valid empty answer, an oversized page refused from its
//! header without failing the rest of the batch, and a recognition graph
//! whose dictionary does not fit its output refused with both numbers.

mod common;

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, Luma};
use labelloop::model::ocr::OcrPage;
use labelloop::model::{Input, ItemError, LoadOptions, Model, ModelError};

fn pages_dir() -> PathBuf {
    common::root().join("data/ocr-pages")
}

#[derive(serde::Deserialize)]
struct TruthPage {
    id: String,
    columns: u32,
    lines: Vec<TruthLine>,
}

#[derive(serde::Deserialize)]
struct TruthLine {
    text: String,
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

fn truth(id: &str) -> TruthPage {
    let path = pages_dir().join("lines.json");
    let text = std::fs::read_to_string(common::require(&path)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pages: Vec<TruthPage> = serde_json::from_value(v["pages"].clone()).unwrap();
    pages.into_iter().find(|p| p.id == id).unwrap()
}

/// The OCR model, loaded once for the test binary (two graphs: det.onnx and
/// rec.onnx, not the model.onnx that `common::load` looks for).
fn ocr_model() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = common::model_dir("ocr");
        common::require(&dir.join("det.onnx"));
        common::require(&dir.join("rec.onnx"));
        Model::load(
            &dir,
            LoadOptions {
                sessions: 2,
                ..LoadOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("loading ocr: {e}"))
    })
}

fn read_page(model: &Model, id: &str) -> OcrPage {
    let bytes = std::fs::read(common::require(&pages_dir().join(id))).unwrap();
    let mut preds = model.predict(&[Input::Image(bytes)]);
    preds.remove(0).unwrap().ocr.expect("an OCR answer")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j + 1] + 1)
                    .min(cur[j] + 1)
                    .min(prev[j] + usize::from(ca != cb)),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn centre(b: &[f64; 4]) -> [f64; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

fn inside(p: [f64; 2], b: &[f64; 4]) -> bool {
    b[0] <= p[0] && p[0] <= b[2] && b[1] <= p[1] && p[1] <= b[3]
}

/// For each predicted line, the true line it matches (centre in each other's box).
fn matches(page: &OcrPage, truth: &TruthPage) -> Vec<Option<usize>> {
    let mut used = vec![false; truth.lines.len()];
    page.lines
        .iter()
        .map(|l| {
            let hit = truth.lines.iter().enumerate().position(|(i, t)| {
                !used[i] && inside(centre(&l.bbox), &t.bbox) && inside(centre(&t.bbox), &l.bbox)
            });
            if let Some(i) = hit {
                used[i] = true;
            }
            hit
        })
        .collect()
}

/// Line-matched page CER (scripts/ocr_eval.py's definition).
fn page_cer(page: &OcrPage, truth: &TruthPage) -> f64 {
    let m = matches(page, truth);
    let mut edits = 0usize;
    let mut matched = vec![None; truth.lines.len()];
    for (k, t) in m.iter().enumerate() {
        match t {
            Some(i) => matched[*i] = Some(k),
            None => edits += page.lines[k].text.chars().count(),
        }
    }
    let mut chars = 0usize;
    for (i, t) in truth.lines.iter().enumerate() {
        chars += t.text.chars().count();
        edits += match matched[i] {
            Some(k) => edit_distance(&t.text, &page.lines[k].text),
            None => t.text.chars().count(),
        };
    }
    edits as f64 / chars.max(1) as f64
}

#[test]
fn clean_rendered_pages_are_read_within_two_percent_cer() {
    let model = ocr_model();
    for id in [
        "images/page_0004.png",
        "images/page_0011.png",
        "images/page_0013.png",
    ] {
        let t = truth(id);
        let page = read_page(model, id);
        let cer = page_cer(&page, &t);
        assert!(cer < 0.02, "{id}: page CER {cer:.4}");
        assert!(
            page.lines.len() * 10 >= t.lines.len() * 9,
            "{id}: {} lines found of {}",
            page.lines.len(),
            t.lines.len()
        );
        for l in &page.lines {
            assert!((0.5..=1.0).contains(&l.score), "{l:?}");
            assert_eq!(l.char_scores.len(), l.text.chars().count(), "{l:?}");
            let [x0, y0, x1, y1] = l.bbox;
            assert!(0.0 <= x0 && x0 < x1 && x1 <= f64::from(page.width), "{l:?}");
            assert!(
                0.0 <= y0 && y0 < y1 && y1 <= f64::from(page.height),
                "{l:?}"
            );
            for p in l.polygon {
                assert!(
                    x0 <= p[0] && p[0] <= x1 && y0 <= p[1] && p[1] <= y1,
                    "{l:?}"
                );
            }
        }
        assert_eq!(
            page.text(),
            page.lines
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_two_column_page_is_read_column_by_column() {
    let model = ocr_model();
    let id = "images/page_0020.png";
    let t = truth(id);
    assert_eq!(t.columns, 2);
    let page = read_page(model, id);
    let mid = f64::from(page.width) / 2.0;
    // The side of the page each column-wide line sits on (a paragraph's
    // line in one column: wider than a table cell, narrower than the page),
    // in the order read.
    let w = f64::from(page.width);
    let sides: Vec<bool> = page
        .lines
        .iter()
        .filter(|l| (0.3 * w..0.48 * w).contains(&(l.bbox[2] - l.bbox[0])))
        .map(|l| centre(&l.bbox)[0] > mid)
        .collect();
    let switches = sides.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(sides.len() > 20, "{} column lines", sides.len());
    assert_eq!(switches, 1, "left column, then right: {sides:?}");
    // PaddleOCR's band order would interleave them.
    let tl: Vec<[f64; 2]> = page.lines.iter().map(|l| [l.bbox[0], l.bbox[1]]).collect();
    let bands = labelloop::model::ocr::band_order(&tl);
    let band_switches = bands
        .windows(2)
        .filter(|w| {
            let (a, b) = (&page.lines[w[0]], &page.lines[w[1]]);
            (centre(&a.bbox)[0] > mid) != (centre(&b.bbox)[0] > mid)
        })
        .count();
    assert!(
        band_switches > 10,
        "bands switch columns {band_switches} times"
    );
}

#[test]
fn an_empty_page_is_a_valid_empty_answer_and_an_oversized_page_fails_alone() {
    let model = ocr_model();
    let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(1000, 1400, Luma([255])));
    let real = std::fs::read(pages_dir().join("images/page_0013.png")).unwrap();
    let preds = model.predict(&[
        Input::Image(common::png_bytes(&blank)),
        Input::Image(huge_png_header(6400, 6400)),
        Input::Image(real),
    ]);
    let empty = preds[0].as_ref().unwrap().ocr.as_ref().unwrap();
    assert_eq!((empty.width, empty.height), (1000, 1400));
    assert!(empty.lines.is_empty(), "{empty:?}");
    assert_eq!(empty.text(), "");
    match &preds[1] {
        Err(ItemError::TooLarge { pixels, .. }) => assert_eq!(*pixels, 6400 * 6400),
        other => panic!("a 41 M-pixel page must be refused from its header: {other:?}"),
    }
    let page = preds[2].as_ref().unwrap().ocr.as_ref().unwrap();
    assert!(page.lines.len() > 10, "the batch went on: {page:?}");
}

/// A PNG signature and IHDR for a `w`×`h` grey page, and nothing after:
/// what a client sends when the header alone must be refused.
fn huge_png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc.sum().to_be_bytes());
    // The decoder reads up to the first image data chunk before it reports
    // the size; the data itself never comes.
    let mut idat = b"IDAT".to_vec();
    idat.extend([0x78, 0x9c]);
    let mut crc = flate2::Crc::new();
    crc.update(&idat);
    png.extend(2u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc.sum().to_be_bytes());
    png
}

/// A copy of models/ocr whose recognition graph's dictionary lost a line:
/// the metadata bytes are edited in place (one `\n` becomes a tab), so the
/// protobuf lengths stay valid.
fn model_with_short_dictionary(dir: &Path) {
    let src = common::model_dir("ocr");
    std::fs::copy(src.join("model.toml"), dir.join("model.toml")).unwrap();
    std::fs::copy(src.join("det.onnx"), dir.join("det.onnx")).unwrap();
    let mut rec = std::fs::read(src.join("rec.onnx")).unwrap();
    let key = b"\x0a\x09character\x12";
    let at = rec
        .windows(key.len())
        .position(|w| w == key)
        .expect("the dictionary key in the graph")
        + key.len();
    let nl = rec[at..].iter().position(|&b| b == b'\n').unwrap() + at;
    rec[nl] = b'\t';
    std::fs::write(dir.join("rec.onnx"), rec).unwrap();
}

#[test]
fn a_dictionary_that_does_not_fit_the_output_names_both_numbers() {
    common::require(&common::model_dir("ocr").join("rec.onnx"));
    let dir = tempfile::tempdir().unwrap();
    model_with_short_dictionary(dir.path());
    let err = Model::load(dir.path(), LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("18707 characters") && msg.contains("18709 classes") && msg.contains("18710"),
        "{msg}"
    );
}

#[test]
fn the_cli_writes_one_line_per_page_in_the_ocr_shape() {
    ocr_model();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("pages.jsonl");
    let page = pages_dir().join("images/page_0011.png");
    std::fs::write(
        &list,
        format!(
            "{}\n",
            serde_json::json!({"id": "p11", "image": page.to_str().unwrap()})
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labelloop"))
        .args(["label", "--model"])
        .arg(common::model_dir("ocr"))
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "width",
            "height",
            "text",
            "regions",
            "model",
            "model_version"
        ]
    );
    let regions = v["regions"].as_array().unwrap();
    assert!(regions.len() > 10);
    let texts: Vec<&str> = regions
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(v["text"], texts.join("\n"));
    for r in regions {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["text", "score", "box", "polygon"]);
        assert_eq!(r["polygon"].as_array().unwrap().len(), 4);
    }
}
