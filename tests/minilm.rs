//! The int8 all-MiniLM-L6-v2 text embedding model.

mod common;

use labelloop::model::{Input, ItemError};

fn embed(texts: &[&str]) -> Vec<Vec<f32>> {
    let model = common::shared("minilm-l6");
    let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t.to_string())).collect();
    model
        .predict(&inputs)
        .into_iter()
        .map(|r| r.unwrap().embedding.unwrap())
        .collect()
}

#[test]
fn paraphrases_lie_closer_than_unrelated_sentences() {
    let e = embed(&[
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
        "How do I reset my password?",
        "I forgot my login password and need to change it.",
    ]);
    let para1 = common::cosine(&e[0], &e[1]);
    let para2 = common::cosine(&e[3], &e[4]);
    for unrelated in [
        common::cosine(&e[0], &e[2]),
        common::cosine(&e[1], &e[3]),
        common::cosine(&e[2], &e[4]),
    ] {
        assert!(para1 > unrelated + 0.3, "{para1} vs {unrelated}");
        assert!(para2 > unrelated + 0.3, "{para2} vs {unrelated}");
    }
    for v in &e {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalised, got {norm}");
        assert_eq!(v.len(), 384);
    }
}

#[test]
fn matches_python_onnxruntime_reference_within_1e4() {
    let path = common::root().join("tests/fixtures/minilm_reference.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let items = reference["items"].as_array().unwrap();
    assert!(items.len() >= 8);
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    // All in one batch: padding to the longest item must not change any embedding.
    let ours = embed(&texts);
    for (item, got) in items.iter().zip(&ours) {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let max_diff = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{:?}: max diff {max_diff}", item["text"]);
    }
}

#[test]
fn long_text_is_truncated_and_flagged() {
    let model = common::shared("minilm-l6");
    let long = "word ".repeat(2000);
    let preds = model.predict(&[Input::Text(long), Input::Text("short text".into())]);
    let long_pred = preds[0].as_ref().unwrap();
    assert!(long_pred.truncated);
    assert_eq!(long_pred.embedding.as_ref().unwrap().len(), 384);
    assert!(!preds[1].as_ref().unwrap().truncated);
}

#[test]
fn invalid_utf8_fails_alone() {
    let model = common::shared("minilm-l6");
    let preds = model.predict(&[
        Input::TextBytes(b"valid text".to_vec()),
        Input::TextBytes(vec![b'o', b'k', 0xff, 0xfe]),
        Input::Text("also valid".into()),
    ]);
    assert!(preds[0].is_ok());
    assert!(matches!(
        preds[1],
        Err(ItemError::InvalidUtf8 { offset: 2 })
    ));
    assert!(preds[2].is_ok());
}

#[test]
fn an_image_sent_to_a_text_model_is_refused_clearly() {
    let model = common::shared("minilm-l6");
    let preds = model.predict(&[Input::Image(vec![1, 2, 3])]);
    let err = preds[0].as_ref().unwrap_err();
    assert!(err.to_string().contains("takes text"), "{err}");
}
