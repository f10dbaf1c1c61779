//! Property tests for the three parsers that read client or user input
//! directly: the ingest body (`api::ingest_body`), the model manifest
//! (`model::manifest`) and the project settings (`store::ProjectSettings`
//! through `api::extract::parse_json`). Each gets "arbitrary input never
//! panics" and "generated valid input parses to what was generated"; the
//! AFL++ harnesses under fuzz/ check the same invariants for longer.
//!
//! 256 cases per property keeps the file at a few seconds; raise it with
//! `PROPTEST_CASES=10000` for a longer local run.

use base64::Engine as _;
use labelloop::api::error::ApiError;
use labelloop::api::error::Code;
use labelloop::api::extract::parse_json;
use labelloop::api::ingest_body::{self, BodyError, IngestItem, ItemContent};
use labelloop::model::manifest::{InputSpec, Manifest, OutputKind, Task, MANIFEST_FILE};
use labelloop::store::{ProjectSettings, Tier, MAX_REVIEW_LEASE_SECS};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

// ---- ingest body ------------------------------------------------------------

const CONTENT_TYPES: [&str; 4] = ["", "application/json", "application/x-ndjson", "text/plain"];

/// JSON-ish fragments, so random bodies get past the first byte often.
fn json_fragments() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\n"),
        Just("\r\n"),
        Just(" "),
        Just("\"id\""),
        Just("\"text\""),
        Just("\"image\""),
        Just("\"path\""),
        Just("\"other\""),
        Just("\"\""),
        Just("\"a\""),
        Just("\"aGk=\""),
        Just("\"!!\""),
        Just("7"),
        Just("-1.5e3"),
        Just("null"),
        Just("true"),
        Just("\"\\u00e9\\n\""),
    ];
    prop::collection::vec(frag, 0..48).prop_map(|v| v.concat())
}

fn content() -> impl Strategy<Value = ItemContent> {
    prop_oneof![
        any::<String>().prop_map(ItemContent::Text),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(ItemContent::Image),
        any::<String>().prop_map(ItemContent::Path),
    ]
}

fn item() -> impl Strategy<Value = IngestItem> {
    (
        any::<String>().prop_filter("ids are non-empty", |s| !s.is_empty()),
        content(),
    )
        .prop_map(|(id, content)| IngestItem {
            id,
            content,
            split: None,
        })
}

fn item_json(it: &IngestItem) -> serde_json::Value {
    match &it.content {
        ItemContent::Text(t) => json!({"id": it.id, "text": t}),
        ItemContent::Image(b) => json!({
            "id": it.id,
            "image": base64::engine::general_purpose::STANDARD.encode(b),
        }),
        ItemContent::Path(p) => json!({"id": it.id, "path": p}),
    }
}

fn check_body_error(e: &BodyError) {
    assert!(
        [
            Code::MalformedJson,
            Code::InvalidBody,
            Code::InvalidField,
            Code::EmptyBatch
        ]
        .contains(&e.code),
        "unexpected code {}",
        e.code
    );
    assert_eq!(e.status() == 400, e.code == Code::MalformedJson, "{e:?}");
    assert!(!e.message.is_empty());
}

fn check_accepted(items: &[IngestItem]) {
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| !i.id.is_empty()));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ingest_arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256),
        ct in prop::sample::select(&CONTENT_TYPES[..]),
    ) {
        match ingest_body::parse(&body, ct) {
            Ok(items) => check_accepted(&items),
            Err(e) => check_body_error(&e),
        }
    }

    #[test]
    fn ingest_json_fragments_never_panic(
        body in json_fragments(),
        ct in prop::sample::select(&CONTENT_TYPES[..]),
    ) {
        match ingest_body::parse(body.as_bytes(), ct) {
            Ok(items) => check_accepted(&items),
            Err(e) => check_body_error(&e),
        }
    }

    #[test]
    fn ingest_valid_bodies_round_trip_and_formats_agree(
        items in prop::collection::vec(item(), 1..12),
        crlf in any::<bool>(),
        blank_every in 0usize..4,
    ) {
        let array = serde_json::to_vec(&items.iter().map(item_json).collect::<Vec<_>>()).unwrap();
        let from_array = ingest_body::parse(&array, "application/json").unwrap();
        prop_assert_eq!(&from_array, &items);

        let eol = if crlf { "\r\n" } else { "\n" };
        let mut ndjson = String::new();
        for (i, it) in items.iter().enumerate() {
            if blank_every > 0 && i % blank_every == 0 {
                ndjson.push_str("  ");
                ndjson.push_str(eol);
            }
            ndjson.push_str(&item_json(it).to_string());
            ndjson.push_str(eol);
        }
        let from_lines = ingest_body::parse(ndjson.as_bytes(), "application/x-ndjson").unwrap();
        prop_assert_eq!(&from_lines, &from_array);
        // Without a content type, a body of objects is read as NDJSON too.
        let sniffed = ingest_body::parse(ndjson.as_bytes(), "").unwrap();
        prop_assert_eq!(&sniffed, &from_array);
    }

    #[test]
    fn ingest_duplicates_are_kept_in_order_and_dedup_counts_them(
        ids in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 1..20),
    ) {
        let items: Vec<IngestItem> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| IngestItem { id: id.to_string(), content: ItemContent::Text(i.to_string()), split: None })
            .collect();
        let body = serde_json::to_vec(&items.iter().map(item_json).collect::<Vec<_>>()).unwrap();
        let parsed = ingest_body::parse(&body, "").unwrap();
        prop_assert_eq!(&parsed, &items);
        let (kept, dropped) = ingest_body::dedup(parsed);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(kept.len(), distinct.len());
        prop_assert_eq!(dropped, ids.len() - distinct.len());
        // The first occurrence of each id wins.
        for k in &kept {
            let first = ids.iter().position(|id| *id == k.id).unwrap();
            prop_assert_eq!(&k.content, &ItemContent::Text(first.to_string()));
        }
    }

    #[test]
    fn ingest_a_numeric_id_is_refused_naming_its_index(
        n in 1usize..8,
        at in 0usize..8,
        id in any::<i64>(),
    ) {
        let at = at % n;
        let body: Vec<serde_json::Value> = (0..n)
            .map(|i| if i == at {
                json!({"id": id, "text": "t"})
            } else {
                json!({"id": id.to_string(), "text": "t"})
            })
            .collect();
        let e = ingest_body::parse(&serde_json::to_vec(&body).unwrap(), "").unwrap_err();
        prop_assert_eq!((e.code, e.status()), (Code::InvalidField, 422));
        let field = format!("`[{at}].id`");
        prop_assert!(e.message.contains(&field), "{}", e.message);
    }
}

// ---- manifest ---------------------------------------------------------------

fn load_text(text: &str) -> Result<Manifest, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MANIFEST_FILE), text).unwrap();
    Manifest::load(dir.path()).map_err(|e| e.to_string())
}

/// TOML-ish lines built from the manifest's own keys and values.
fn toml_fragments() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "version",
        "task",
        "labels",
        "kind",
        "width",
        "height",
        "channels",
        "mean",
        "std",
        "scale",
        "layout",
        "resize_mode",
        "resize_short",
        "tokenizer",
        "max_length",
        "activation",
        "pooling",
        "dtype",
        "onnx",
        "bogus",
    ]);
    let value = prop::sample::select(vec![
        "\"x\"",
        "\"image\"",
        "\"text\"",
        "\"image-classification\"",
        "\"text-classification\"",
        "\"text-embedding\"",
        "\"logits\"",
        "\"softmax\"",
        "\"embedding\"",
        "\"short-side-center-crop\"",
        "\"NHWC\"",
        "0",
        "1",
        "3",
        "28",
        "-1",
        "4294967296",
        "0.0",
        "1e39",
        "nan",
        "inf",
        "[]",
        "[\"a\", \"b\"]",
        "[0.5, 0.5, 0.5]",
        "[0.0]",
        "true",
        "{}",
        "\"\\u0000\"",
    ]);
    let line = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[input]".to_string()),
        Just("[[outputs]]".to_string()),
        Just("[[input]]".to_string()),
        Just("".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(line, 0..24).prop_map(|v| v.join("\n"))
}

/// A TOML basic string for any text.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[derive(Debug, Clone)]
struct GenImage {
    width: u32,
    height: u32,
    channels: u32,
    nhwc: bool,
    mean: Vec<f32>,
    std: Vec<f32>,
    scale: f32,
    crop: Option<u32>,
}

#[derive(Debug, Clone)]
struct GenManifest {
    name: String,
    version: String,
    description: Option<String>,
    labels: Vec<String>,
    /// None: text input.
    image: Option<GenImage>,
    max_length: usize,
    embedding: bool,
    logits: bool,
}

/// A float with few decimals, so its TOML text reads back bit for bit.
fn small_f32(lo: i32, hi: i32) -> impl Strategy<Value = f32> {
    (lo..hi).prop_map(|k| k as f32 / 1000.0)
}

fn gen_image() -> impl Strategy<Value = GenImage> {
    (
        1u32..1024,
        1u32..1024,
        prop::sample::select(vec![1u32, 3]),
        any::<bool>(),
    )
        .prop_flat_map(|(width, height, channels, nhwc)| {
            let len = prop::sample::select(vec![0usize, 1, channels as usize]);
            (
                len.clone()
                    .prop_flat_map(|n| prop::collection::vec(small_f32(-2000, 2000), n)),
                len.prop_flat_map(|n| prop::collection::vec(small_f32(1, 5000), n)),
                small_f32(1, 2000),
                prop::option::of(width.min(height)..4096),
            )
                .prop_map(move |(mean, std, scale, crop)| GenImage {
                    width,
                    height,
                    channels,
                    nhwc,
                    mean,
                    std,
                    scale,
                    crop,
                })
        })
}

fn gen_manifest() -> impl Strategy<Value = GenManifest> {
    (
        "\\PC{1,24}",
        "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        prop::option::of(any::<String>()),
        prop::collection::btree_set("\\PC{1,12}", 2..12),
        prop::option::of(gen_image()),
        1usize..4096,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, version, description, labels, image, max_length, embedding, logits)| {
                GenManifest {
                    name,
                    version,
                    description,
                    labels: labels.into_iter().collect(),
                    image,
                    max_length,
                    embedding,
                    logits,
                }
            },
        )
}

fn f32_list(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", parts.join(", "))
}

fn manifest_text(g: &GenManifest) -> String {
    let task = if g.image.is_some() {
        "image-classification"
    } else {
        "text-classification"
    };
    let labels: Vec<String> = g.labels.iter().map(|l| q(l)).collect();
    let mut t = format!(
        "name = {}\nversion = {}\ntask = \"{task}\"\nlabels = [{}]\n",
        q(&g.name),
        q(&g.version),
        labels.join(", ")
    );
    if let Some(d) = &g.description {
        t += &format!("description = {}\n", q(d));
    }
    match &g.image {
        Some(img) => {
            t += &format!(
                "\n[input]\nkind = \"image\"\nname = \"pixels\"\nwidth = {}\nheight = {}\nchannels = {}\nlayout = \"{}\"\nscale = {:?}\nmean = {}\nstd = {}\n",
                img.width,
                img.height,
                img.channels,
                if img.nhwc { "NHWC" } else { "nchw" },
                img.scale,
                f32_list(&img.mean),
                f32_list(&img.std),
            );
            if let Some(s) = img.crop {
                t += &format!("resize_mode = \"short-side-center-crop\"\nresize_short = {s}\n");
            }
        }
        None => {
            t += &format!(
                "\n[input]\nkind = \"text\"\ntokenizer = \"tokenizer.json\"\nmax_length = {}\n",
                g.max_length
            );
        }
    }
    if g.logits {
        t += "\n[[outputs]]\nname = \"scores\"\nkind = \"logits\"\nactivation = \"softmax\"\n";
    } else {
        t += "\n[[outputs]]\nname = \"scores\"\nkind = \"probabilities\"\n";
    }
    if g.embedding {
        t += "\n[[outputs]]\nname = \"emb\"\nkind = \"embedding\"\nnormalize = true\n";
    }
    t
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = load_text(&text);
    }

    #[test]
    fn manifest_toml_fragments_never_panic(text in toml_fragments()) {
        if let Ok(m) = load_text(&text) {
            // Whatever got through passed the consistency checks.
            prop_assert!(!m.outputs.is_empty());
        }
    }

    #[test]
    fn manifest_generated_valid_parses_to_its_values(g in gen_manifest()) {
        let text = manifest_text(&g);
        let m = load_text(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&m.name, &g.name);
        prop_assert_eq!(&m.version, &g.version);
        prop_assert_eq!(&m.description, &g.description.clone().unwrap_or_default());
        prop_assert_eq!(&m.labels, &g.labels);
        prop_assert_eq!(m.outputs.len(), 1 + g.embedding as usize);
        prop_assert_eq!(
            m.outputs[0].kind,
            if g.logits { OutputKind::Logits } else { OutputKind::Probabilities }
        );
        match (&m.input, &g.image) {
            (InputSpec::Image(got), Some(want)) => {
                prop_assert_eq!(m.task, Task::ImageClassification);
                prop_assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels));
                prop_assert_eq!(&got.mean, &want.mean);
                prop_assert_eq!(&got.std, &want.std);
                prop_assert_eq!(got.scale, want.scale);
                prop_assert_eq!(got.resize_short, want.crop);
                for c in 0..got.channels as usize {
                    let (mean, std) = got.channel_norm(c);
                    let pick = |v: &[f32], d: f32| match v.len() { 0 => d, 1 => v[0], _ => v[c] };
                    prop_assert_eq!((mean, std), (pick(&want.mean, 0.0), pick(&want.std, 1.0)));
                }
            }
            (InputSpec::Text(got), None) => {
                prop_assert_eq!(m.task, Task::TextClassification);
                prop_assert_eq!(got.max_length, g.max_length);
            }
            _ => prop_assert!(false, "input kind changed"),
        }
    }

    #[test]
    fn manifest_check_refuses_a_repeated_label(g in gen_manifest(), which in any::<prop::sample::Index>()) {
        let mut g = g;
        let dup = g.labels[which.index(g.labels.len())].clone();
        g.labels.push(dup);
        let e = load_text(&manifest_text(&g)).unwrap_err();
        prop_assert!(e.contains("appears twice"), "{}", e);
    }

    #[test]
    fn manifest_check_refuses_a_std_of_zero(g in gen_manifest(), img in gen_image()) {
        let mut g = g;
        let mut img = img;
        img.std = vec![0.0];
        g.image = Some(img);
        let e = load_text(&manifest_text(&g)).unwrap_err();
        prop_assert!(e.contains("std must not contain 0"), "{}", e);
    }
}

// ---- project settings -------------------------------------------------------

fn gen_settings() -> impl Strategy<Value = ProjectSettings> {
    (
        prop::collection::vec(
            ("\\PC{1,12}", (0u32..=1000).prop_map(|k| k as f64 / 1000.0)).prop_map(
                |(name, min_uncertainty)| Tier {
                    name,
                    min_uncertainty,
                },
            ),
            0..6,
        ),
        prop::option::of(prop::sample::select(vec![
            "least_confidence".to_string(),
            "margin".to_string(),
            "entropy".to_string(),
        ])),
        any::<bool>(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        // Calibration numbers, in and out of their domains.
        prop::option::of((-500i32..=1500).prop_map(|k| k as f64 / 1000.0)),
        prop::option::of((-500i32..=1500).prop_map(|k| k as f64 / 1000.0)),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(
                tiers,
                tier_measure,
                require_expert_confirmation,
                train_every,
                review_lease_secs,
                audit_rate,
                delta,
                audit_min,
                calibrate_every,
            )| {
                ProjectSettings {
                    tiers,
                    tier_measure,
                    require_expert_confirmation,
                    train_every,
                    review_lease_secs,
                    audit_rate,
                    delta,
                    audit_min,
                    calibrate_every,
                    ..ProjectSettings::default()
                }
            },
        )
}

fn settings_json(s: &ProjectSettings) -> serde_json::Value {
    // Written by hand, not by Serialize, so a renamed field shows up here.
    let tiers: Vec<_> = s
        .tiers
        .iter()
        .map(|t| json!({"name": t.name, "min_uncertainty": t.min_uncertainty}))
        .collect();
    json!({
        "tiers": tiers,
        "tier_measure": s.tier_measure,
        "require_expert_confirmation": s.require_expert_confirmation,
        "train_every": s.train_every,
        "review_lease_secs": s.review_lease_secs,
        "audit_rate": s.audit_rate,
        "delta": s.delta,
        "audit_min": s.audit_min,
        "calibrate_every": s.calibrate_every,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn settings_arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        match parse_json::<ProjectSettings>(&body) {
            Ok(s) => { let _ = (s.tiers_desc(), s.review_lease_ms()); }
            Err(e) if matches!(e.status().as_u16(), 400 | 422) => {}
            Err(other) => prop_assert!(false, "unexpected error kind {other:?}"),
        }
    }

    #[test]
    fn settings_generated_parse_to_their_values(s in gen_settings()) {
        let body = serde_json::to_vec(&settings_json(&s)).unwrap();
        let got: ProjectSettings = parse_json(&body).unwrap();
        prop_assert_eq!(&got, &s);
    }

    #[test]
    fn settings_unset_fields_take_their_defaults(s in gen_settings(), drop_mask in 0u8..32) {
        let mut v = settings_json(&s);
        let obj = v.as_object_mut().unwrap();
        let keys = ["tiers", "tier_measure", "require_expert_confirmation", "train_every", "review_lease_secs"];
        for (bit, key) in keys.iter().enumerate() {
            if drop_mask & (1 << bit) != 0 {
                obj.remove(*key);
            }
        }
        let got: ProjectSettings = parse_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        let d = ProjectSettings::default();
        let pick = |bit: usize| drop_mask & (1 << bit) != 0;
        prop_assert_eq!(&got.tiers, if pick(0) { &d.tiers } else { &s.tiers });
        prop_assert_eq!(&got.tier_measure, if pick(1) { &d.tier_measure } else { &s.tier_measure });
        prop_assert_eq!(got.require_expert_confirmation, if pick(2) { d.require_expert_confirmation } else { s.require_expert_confirmation });
        prop_assert_eq!(got.train_every, if pick(3) { d.train_every } else { s.train_every });
        prop_assert_eq!(got.review_lease_secs, if pick(4) { d.review_lease_secs } else { s.review_lease_secs });
    }

    #[test]
    fn settings_unknown_field_is_refused_by_name(s in gen_settings(), key in "[a-z_]{1,16}") {
        let mut v = settings_json(&s);
        prop_assume!(v.get(&key).is_none());
        v[&key] = json!(1);
        match parse_json::<ProjectSettings>(&serde_json::to_vec(&v).unwrap()) {
            Err(ApiError { code: Code::InvalidBody | Code::InvalidField, message }) => prop_assert!(message.contains(&key), "{}", message),
            other => prop_assert!(false, "expected 422, got {other:?}"),
        }
    }

    #[test]
    fn settings_bands_partition_the_uncertainties(s in gen_settings(), u in 0.0f64..=1.0) {
        let desc = s.tiers_desc();
        prop_assert!(desc.windows(2).all(|w| w[0].min_uncertainty >= w[1].min_uncertainty));
        let mut names: Vec<&str> = s.tiers.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        names.dedup();
        // Bands are only meaningful with distinct names (validate_settings enforces it).
        prop_assume!(names.len() == s.tiers.len());
        if let (Some(top), Some(low)) = (s.top_tier(), s.lowest_tier()) {
            let max = s.tiers.iter().map(|t| t.min_uncertainty).fold(f64::MIN, f64::max);
            let min = s.tiers.iter().map(|t| t.min_uncertainty).fold(f64::MAX, f64::min);
            prop_assert_eq!(s.band(&top).unwrap(), (max, f64::INFINITY));
            prop_assert_eq!(s.band(&low).unwrap().0, min);
            let holding: Vec<&str> = s
                .tiers
                .iter()
                .filter(|t| {
                    let (lo, hi) = s.band(&t.name).unwrap();
                    lo <= u && u < hi
                })
                .map(|t| t.name.as_str())
                .collect();
            // Every uncertainty at or above the lowest minimum is routed to exactly one tier.
            prop_assert_eq!(holding.len(), usize::from(u >= min), "{:?} at {}", holding, u);
        } else {
            prop_assert!(s.tiers.is_empty());
        }
        let missing = s.band("no such tier \u{1}");
        prop_assert!(missing.is_none());
    }

    #[test]
    fn settings_review_lease_never_overflows(secs in prop::option::of(any::<u64>())) {
        let s = ProjectSettings { review_lease_secs: secs, ..ProjectSettings::default() };
        let ms = s.review_lease_ms();
        let want = secs.unwrap_or(600).min(MAX_REVIEW_LEASE_SECS) as i64 * 1000;
        prop_assert_eq!(ms, want);
        prop_assert!(ms >= 0);
        // A lease starts now and ends `ms` later, in i64 milliseconds.
        let now_ms: i64 = 4_102_444_800_000; // 2100-01-01
        prop_assert!(now_ms.checked_add(ms).is_some());
    }
}

/// The overflow the lease cap fixes: `u64::MAX as i64 * 1000` was a panic
/// in debug builds and a lease in the past in release builds.
#[test]
fn settings_huge_review_lease_is_capped_not_wrapped() {
    let s: ProjectSettings = parse_json(br#"{"review_lease_secs": 18446744073709551615}"#).unwrap();
    assert_eq!(s.review_lease_ms(), MAX_REVIEW_LEASE_SECS as i64 * 1000);
    let s: ProjectSettings = parse_json(br#"{"review_lease_secs": 9223372036854775}"#).unwrap();
    assert_eq!(s.review_lease_ms(), MAX_REVIEW_LEASE_SECS as i64 * 1000);
    assert_eq!(ProjectSettings::default().review_lease_ms(), 600_000);
}

/// Found by the AFL++ settings target: serde_json's default float parser is
/// best-effort, so `0.40900993826735515e-6` read as one f64, written back
/// and read again came out one ulp away. Settings (and trained heads) are
/// stored as JSON text and read back, so thresholds drifted on every
/// round trip. `serde_json/float_roundtrip` makes parsing correctly rounded.
#[test]
fn settings_float_survives_the_json_round_trip() {
    let body = br#"{"tiers":[{"name":"a","min_uncertainty":0.40900993826735515e-6}]}"#;
    let s: ProjectSettings = parse_json(body).unwrap();
    assert_eq!(
        s.tiers[0].min_uncertainty,
        "0.40900993826735515e-6".parse::<f64>().unwrap()
    );
    let back: ProjectSettings = parse_json(&serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}
