//! Bad input gets a clear error per item (or at load time), never a panic,
//! and the other items of the batch are still labeled.

mod common;

use std::path::Path;

use labelloop::model::{Input, ItemError, LoadOptions, Model, ModelError};

fn fashion_png(i: usize) -> Vec<u8> {
    std::fs::read(&common::fashion_mnist_test()[i].1).unwrap()
}

/// A PNG claiming the given size, with a little real pixel data: what a
/// decompression bomb looks like before it is inflated.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc.to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 16]).unwrap();
    let idat = z.finish().unwrap();
    for (kind, data) in [(&b"IDAT"[..], idat.as_slice()), (&b"IEND"[..], &[][..])] {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn corrupt_truncated_and_empty_images_fail_alone() {
    let model = common::shared("fashion-mnist-cnn");
    let good = fashion_png(0);
    let truncated = good[..good.len() / 2].to_vec();
    let mut garbage = good.clone();
    for b in garbage.iter_mut().skip(40) {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    let inputs = vec![
        Input::Image(good.clone()),
        Input::Image(Vec::new()),
        Input::Image(truncated),
        Input::Image(b"this is not an image at all".to_vec()),
        Input::Image(garbage),
        Input::ImagePath("/no/such/file.png".into()),
        Input::Image(fashion_png(1)),
    ];
    let preds = model.predict(&inputs);
    assert!(preds[0].is_ok());
    assert!(matches!(preds[1], Err(ItemError::Empty)));
    assert!(
        matches!(preds[2], Err(ItemError::Decode(_))),
        "{:?}",
        preds[2]
    );
    assert!(
        matches!(preds[3], Err(ItemError::Decode(_))),
        "{:?}",
        preds[3]
    );
    assert!(preds[4].is_err(), "scrambled PNG must not decode");
    assert!(matches!(preds[5], Err(ItemError::Io { .. })));
    assert!(preds[6].is_ok());
    // The good items got the same answer they get alone.
    let alone = model.predict(&[Input::Image(good)]);
    assert_eq!(
        alone[0].as_ref().unwrap().class.as_ref().unwrap().index,
        preds[0].as_ref().unwrap().class.as_ref().unwrap().index
    );
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    let dir = common::model_dir("fashion-mnist-cnn");
    let model = Model::load(
        &dir,
        LoadOptions {
            max_pixels: 1_000_000,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    // A header claiming 100,000 x 100,000 pixels: 10 gigapixels, 10 GB once decoded.
    let bomb = png_header(100_000, 100_000);
    // A real, valid 2000 x 1000 image that compresses to a few KB.
    let big = common::png_bytes(&image::DynamicImage::ImageLuma8(image::GrayImage::new(
        2000, 1000,
    )));
    assert!(big.len() < 50_000);
    let preds = model.predict(&[
        Input::Image(bomb),
        Input::Image(big),
        Input::Image(fashion_png(2)),
    ]);
    match &preds[0] {
        Err(ItemError::TooLarge { pixels, limit, .. }) => {
            assert_eq!(*pixels, 10_000_000_000);
            assert_eq!(*limit, 1_000_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(preds[1], Err(ItemError::TooLarge { .. })));
    assert!(preds[2].is_ok());
    assert!(preds[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("--max-pixels"));
}

/// Copy a model folder with an edited manifest into a temp dir.
fn model_variant(name: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let src = common::model_dir(name);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("model.onnx"), tmp.path().join("model.onnx")).unwrap();
    let manifest = std::fs::read_to_string(src.join("model.toml")).unwrap();
    std::fs::write(tmp.path().join("model.toml"), edit(manifest)).unwrap();
    tmp
}

#[test]
fn wrong_channel_count_is_converted_or_refused_as_declared() {
    let rgb = common::png_bytes(&image::DynamicImage::ImageRgb8(
        image::RgbImage::from_pixel(28, 28, image::Rgb([200, 10, 10])),
    ));
    // Default policy: convert to grey, like PIL's convert("L").
    let model = common::shared("fashion-mnist-cnn");
    assert!(model.predict(&[Input::Image(rgb.clone())])[0].is_ok());

    let strict = model_variant("fashion-mnist-cnn", |m| {
        m.replace("channels = 1", "channels = 1\nchannel_policy = \"strict\"")
    });
    let model = Model::load(strict.path(), LoadOptions::default()).unwrap();
    let preds = model.predict(&[Input::Image(rgb), Input::Image(fashion_png(3))]);
    match &preds[0] {
        Err(
            e @ ItemError::Channels {
                found: 3,
                expected: 1,
                ..
            },
        ) => {
            assert!(e.to_string().contains("strict"), "{e}")
        }
        other => panic!("expected a channel error, got {other:?}"),
    }
    assert!(preds[1].is_ok());
}

#[test]
fn manifest_that_disagrees_with_the_graph_names_both_sides() {
    let wrong_channels = model_variant("fashion-mnist-cnn", |m| {
        m.replace("channels = 1", "channels = 3")
    });
    let err = Model::load(wrong_channels.path(), LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("channels 3") && msg.contains("[?, 1, 28, 28]"),
        "{msg}"
    );

    let wrong_name = model_variant("fashion-mnist-cnn", |m| {
        m.replace("name = \"image\"", "name = \"pixels\"")
    });
    let msg = Model::load(wrong_name.path(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"pixels\"") && msg.contains("image (f32 [?, 1, 28, 28])"),
        "{msg}"
    );

    let wrong_labels = model_variant("fashion-mnist-cnn", |m| m.replace("\"Bag\", ", ""));
    let msg = Model::load(wrong_labels.path(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("9 labels") && msg.contains("probabilities"),
        "{msg}"
    );

    let wrong_dtype = model_variant("fashion-mnist-cnn-fp16", |m| {
        m.replace("float16", "float32")
    });
    let msg = Model::load(wrong_dtype.path(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Float32") && msg.contains("image (f16"),
        "{msg}"
    );

    let wrong_output = model_variant("fashion-mnist-cnn", |m| {
        m.replace("name = \"embedding\"", "name = \"features\"")
    });
    let msg = Model::load(wrong_output.path(), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"features\"") && msg.contains("embedding"),
        "{msg}"
    );
}

#[test]
fn unknown_model_folder_and_missing_onnx_are_clear() {
    let err = Model::load(Path::new("/no/such/model"), LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::NotAModel { .. }));
    assert!(err.to_string().contains("models list"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let manifest =
        std::fs::read_to_string(common::model_dir("fashion-mnist-cnn").join("model.toml")).unwrap();
    std::fs::write(tmp.path().join("model.toml"), manifest).unwrap();
    let err = Model::load(tmp.path(), LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::OnnxMissing { .. }));
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");

    std::fs::write(tmp.path().join("model.toml"), "name = \"x\"\nversion = 1\n").unwrap();
    let err = Model::load(tmp.path(), LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Manifest { .. }), "{err}");
}

#[test]
fn text_sent_to_an_image_model_is_refused_clearly() {
    let model = common::shared("fashion-mnist-cnn");
    let preds = model.predict(&[Input::Text("hello".into()), Input::Image(fashion_png(4))]);
    assert!(matches!(
        preds[0],
        Err(ItemError::WrongKind {
            expected: "image",
            ..
        })
    ));
    assert!(preds[1].is_ok());
}
