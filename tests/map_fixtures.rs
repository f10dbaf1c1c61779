//! labelloop's COCO mAP (`calibrate::matching::coco_map`) against
//! pycocotools' `COCOeval` on the cases of
//! `tests/fixtures/detect/map_cases.json` (made by
//! `scripts/make_map_fixtures.py`): every per-class AP at every IoU
//! threshold, mAP@0.5 and mAP@[.5:.95] equal to 1e-9.

use labelloop::calibrate::matching::{
    coco_iou_thresholds, coco_map, coco_recall_thresholds, CocoImage, CocoSummary,
};
use labelloop::region::BoxPx;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    iou_thresholds: Vec<f64>,
    recall_thresholds: Vec<f64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    num_classes: usize,
    images: Vec<Image>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Image {
    /// `[x0, y0, x1, y1, class]`
    truth: Vec<(f64, f64, f64, f64, usize)>,
    /// `[x0, y0, x1, y1, class, score]`
    preds: Vec<(f64, f64, f64, f64, usize, f64)>,
}

/// pycocotools' numbers; −1 where a class has no truth box.
#[derive(Deserialize)]
struct Expected {
    class_ap: Vec<Vec<f64>>,
    map_50: f64,
    map_50_95: f64,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/detect/map_cases.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture (scripts/make_map_fixtures.py)");
    serde_json::from_str(&text).expect("fixture parses")
}

fn coco_image(image: &Image) -> CocoImage {
    CocoImage {
        truth: image
            .truth
            .iter()
            .map(|&(x0, y0, x1, y1, class)| (BoxPx::new(x0, y0, x1, y1), class))
            .collect(),
        preds: image
            .preds
            .iter()
            .map(|&(x0, y0, x1, y1, class, score)| (BoxPx::new(x0, y0, x1, y1), class, score))
            .collect(),
    }
}

/// pycocotools' −1 is labelloop's `None`.
fn as_coco(value: Option<f64>) -> f64 {
    value.unwrap_or(-1.0)
}

fn assert_close(name: &str, what: &str, ours: f64, theirs: f64) {
    assert!(
        (ours - theirs).abs() <= 1e-9,
        "{name}: {what}: labelloop {ours} vs pycocotools {theirs}"
    );
}

fn check_case(case: &Case, summary: &CocoSummary) {
    let name = &case.name;
    assert_eq!(
        summary.class_ap.len(),
        case.expected.class_ap.len(),
        "{name}"
    );
    for (k, (ours, theirs)) in summary
        .class_ap
        .iter()
        .zip(&case.expected.class_ap)
        .enumerate()
    {
        for (t, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
            assert_close(
                name,
                &format!("class {k} AP at IoU index {t}"),
                as_coco(a),
                b,
            );
        }
        assert_close(
            name,
            &format!("class {k} AP@0.5"),
            as_coco(summary.class_ap_50[k]),
            theirs[0],
        );
    }
    assert_close(
        name,
        "mAP@0.5",
        as_coco(summary.map_50),
        case.expected.map_50,
    );
    assert_close(
        name,
        "mAP@[.5:.95]",
        as_coco(summary.map_50_95),
        case.expected.map_50_95,
    );
}

#[test]
fn thresholds_are_pycocotools_to_the_bit() {
    let f = fixture();
    assert_eq!(coco_iou_thresholds(), f.iou_thresholds);
    assert_eq!(coco_recall_thresholds(), f.recall_thresholds);
}

#[test]
fn coco_map_equals_pycocotools_on_every_case() {
    let f = fixture();
    assert!(f.cases.len() >= 6);
    for case in &f.cases {
        let images: Vec<CocoImage> = case.images.iter().map(coco_image).collect();
        let summary = coco_map(&images, case.num_classes).expect("valid fixture");
        check_case(case, &summary);
    }
}

#[test]
fn the_fixtures_cover_what_they_claim() {
    let f = fixture();
    let over_100_in_one_image_and_class = f.cases.iter().any(|c| {
        c.images.iter().any(|img| {
            (0..c.num_classes).any(|k| img.preds.iter().filter(|p| p.4 == k).count() > 100)
        })
    });
    assert!(over_100_in_one_image_and_class);
    let class_without_truth = f
        .cases
        .iter()
        .any(|c| c.expected.class_ap.iter().any(|row| row[0] == -1.0));
    assert!(class_without_truth);
    let image_without_preds = f
        .cases
        .iter()
        .any(|c| c.images.iter().any(|i| i.preds.is_empty()));
    assert!(image_without_preds);
}
