//! AFL++ target: `api::ingest_body::parse` on arbitrary bytes.
//!
//! The first byte picks the content type (odd: NDJSON, even: JSON), so the
//! fuzzer reaches both branches; the rest is the body. Besides "never
//! panics", every accepted body is checked: no empty batch, no empty id,
//! and re-encoding the items as NDJSON parses back to the same items.

use base64::Engine as _;
use labelloop::api::ingest_body::{self, IngestItem, ItemContent};

fn to_ndjson(items: &[IngestItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        let v = match &it.content {
            ItemContent::Text(t) => serde_json::json!({"id": it.id, "text": t}),
            ItemContent::Image(b) => serde_json::json!({
                "id": it.id,
                "image": base64::engine::general_purpose::STANDARD.encode(b),
            }),
            ItemContent::Path(p) => serde_json::json!({"id": it.id, "path": p}),
        };
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&sel, body)) = data.split_first() else {
            return;
        };
        let ct = if sel & 1 == 1 {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        match ingest_body::parse(body, ct) {
            Ok(items) => {
                assert!(!items.is_empty(), "accepted an empty batch");
                assert!(
                    items.iter().all(|i| !i.id.is_empty()),
                    "accepted an empty id"
                );
                let again = ingest_body::parse(&to_ndjson(&items), "application/x-ndjson")
                    .expect("re-encoded items must parse");
                assert_eq!(again, items, "NDJSON re-encoding changed the items");
                let n = items.len();
                let (kept, dropped) = ingest_body::dedup(items);
                assert_eq!(kept.len() + dropped, n);
            }
            Err(e) => {
                assert!(e.status() == 400 || e.status() == 422);
                assert!(!e.message.is_empty());
            }
        }
    });
}
