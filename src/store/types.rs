//! Records the store reads and writes.

use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A project as stored; its JSON columns (labels, settings, committee) decode
/// straight into their types (`jsonb` on PostgreSQL, text on SQLite).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub model: String,
    #[sqlx(json)]
    pub labels: Vec<String>,
    pub precision_target: f64,
    /// An explicit fixed auto-accept threshold on the top raw score, used
    /// until the first calibration, with no guarantee; `null` (the default):
    /// nothing is auto-accepted before a calibration has earned it.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    pub created_at: i64,
    #[sqlx(json)]
    pub settings: ProjectSettings,
    /// The trained head in use, if any: predictions then come from it.
    pub head_version: Option<i64>,
    /// Extra models with the same label set; with any, every item also gets
    /// the committee's disagreement (vote entropy, mean KL).
    #[sqlx(json)]
    pub committee: Vec<String>,
    /// The calibration in force (see `GET /v1/projects/{id}/calibration`);
    /// none yet: nothing is auto-accepted, or an explicit fixed `threshold`
    /// decides with no guarantee.
    pub calibration_version: Option<i64>,
    /// What the project labels, from its model's manifest: `classify` (one
    /// label per item) or `detect` (boxes, stored as regions).
    #[schema(value_type = String, example = "classify")]
    pub task: String,
    /// What vouches for the auto-accepted labels now (derived from
    /// `calibration_version` and `threshold`; see `Guarantee`).
    #[sqlx(skip)]
    pub guarantee: Guarantee,
}

impl Project {
    /// Fill in the derived [`Project::guarantee`]; every read of a project
    /// from the store goes through here.
    pub(crate) fn derive(mut self) -> Project {
        self.guarantee = Guarantee::of(self.calibration_version, self.threshold);
        self
    }
}

/// What vouches for a project's auto-accepted labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// No calibration yet and no fixed threshold: nothing is auto-accepted
    /// (every item waits for review) until the first calibration.
    #[default]
    AwaitingCalibration,
    /// A calibration is in force: P(precision of the auto-accepted ≥
    /// target) ≥ 1 − δ, under its assumptions.
    Calibrated,
    /// No calibration yet, and the project's explicit fixed `threshold`
    /// auto-accepts on raw scores: nothing vouches for those labels.
    NoGuarantee,
}

impl Guarantee {
    pub fn of(calibration_version: Option<i64>, threshold: Option<f64>) -> Guarantee {
        match (calibration_version, threshold) {
            (Some(_), _) => Guarantee::Calibrated,
            (None, Some(_)) => Guarantee::NoGuarantee,
            (None, None) => Guarantee::AwaitingCalibration,
        }
    }

    /// What vouches for one item's label: only an auto-accepted item has
    /// a machine label in force, accepted by a version or by the fixed
    /// threshold (no version).
    pub fn of_item(status: &str, calibration_version: Option<i64>) -> Option<Guarantee> {
        (status == Status::AutoAccepted.as_str()).then_some(match calibration_version {
            Some(_) => Guarantee::Calibrated,
            None => Guarantee::NoGuarantee,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AwaitingCalibration => "awaiting_calibration",
            Guarantee::Calibrated => "calibrated",
            Guarantee::NoGuarantee => "no_guarantee",
        }
    }
}

/// A tier of annotators and the band of uncertainty routed to it: items whose
/// uncertainty (by `ProjectSettings::tier_measure`) is at least `min_uncertainty`
/// and below the next higher tier's minimum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Not blank; distinct within a project's tiers.
    #[schema(min_length = 1, pattern = "\\S")]
    pub name: String,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_uncertainty: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectSettings {
    /// Empty: one queue for everybody. Names are distinct and not blank,
    /// minimums distinct.
    #[serde(deserialize_with = "crate::json_shape::objects")]
    pub tiers: Vec<Tier>,
    /// Which stored uncertainty decides the band: least_confidence, margin (default) or entropy.
    #[schema(schema_with = tier_measure_schema)]
    pub tier_measure: Option<String>,
    /// A label from a lower tier on an item in the top tier's band waits for a top-tier confirmation.
    pub require_expert_confirmation: bool,
    /// Retrain the head after this many new annotations (0 or unset: only on request).
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub train_every: Option<u64>,
    /// Review lease length in seconds (default 600).
    #[schema(minimum = 1, maximum = 86_400)]
    pub review_lease_secs: Option<u64>,
    /// Share of pre-labeled items drawn into the audit sample, in [0, 1] (default 0.05).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub audit_rate: Option<f64>,
    /// Audit every item of a predicted class until it has this many audit items (default 0).
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub audit_min: Option<u64>,
    /// Risk δ of the precision guarantee, in (0, 0.5] (default 0.05).
    #[schema(exclusive_minimum = 0.0, maximum = 0.5)]
    pub delta: Option<f64>,
    /// Refit the calibration after this many new audit labels (default 50; 0: only on request).
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub calibrate_every: Option<u64>,
    /// `global` (default: one threshold on calibrated scores), `per-class` (Bonferroni) or `pooled` (per-class thresholds from one scan at δ over class curves fitted on review labels).
    /// For boxes: `global` is one score threshold shared by every class.
    #[schema(schema_with = threshold_method_schema)]
    pub threshold_method: Option<String>,
    /// Detection: a machine box is correct when it matches a person's box of
    /// its class at IoU ≥ this, in (0, 1] (default 0.5).
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub iou_threshold: Option<f64>,
    /// How disagreeing annotations settle an item: `majority` (default) or `expert`
    /// (the top tier's latest label wins).
    #[schema(schema_with = conflict_resolution_schema)]
    pub conflict_resolution: Option<String>,
    /// Zero-shot: short descriptions per label, embedded in place of the bare
    /// label names when an embedding model has no head yet.
    #[schema(schema_with = label_descriptions_schema)]
    pub label_descriptions: Option<std::collections::BTreeMap<String, String>>,
    /// OCR: when a machine line's text counts as a person's: `exact`
    /// (default: equal after Unicode NFC) or `relaxed` (also ignoring case
    /// and runs of white space). Left out when unset, so that other
    /// projects' settings read as before.
    #[schema(schema_with = text_match_schema)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_match: Option<String>,
    /// How a ranked review list picks its items: `top-k` (default: strictly
    /// the strategy's most uncertain) or `proportional` (drawn at random with
    /// probability proportional to the model's chance of being wrong, plus
    /// `uniform_share` spread over every unlabeled item; each item's
    /// inclusion probability is stored when it is drawn). Left out when unset.
    #[schema(schema_with = review_sampling_schema)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_sampling: Option<String>,
    /// `proportional` review: the share of each draw spread uniformly over
    /// every unlabeled item, in [0, 1] (default 0.2; 0 is read as 0.01 so
    /// every item keeps a positive probability). Left out when unset.
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uniform_share: Option<f64>,
    /// OCR: two transcriptions of a line agreeing (character level, 1 −
    /// normalised edit distance) below this, in [0, 1], are a conflict
    /// that goes to the top tier (default 0.9). Left out when unset.
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_agreement_min: Option<f64>,
}

fn review_sampling_schema() -> utoipa::openapi::Object {
    crate::json_shape::nullable_enum(
        ["top-k".to_string(), "proportional".to_string()],
        "`top-k` (default: the strategy's most uncertain, strictly) or `proportional` (drawn with probability proportional to the chance of being wrong, plus `uniform_share` over every unlabeled item; probabilities stored).",
    )
}

fn text_match_schema() -> utoipa::openapi::Object {
    crate::json_shape::nullable_enum(
        ["exact".to_string(), "relaxed".to_string()],
        "OCR: `exact` (default: equal after Unicode NFC) or `relaxed` (also case- and white-space-insensitive).",
    )
}

fn tier_measure_schema() -> utoipa::openapi::Object {
    let mut names: Vec<String> = Vec::new();
    for m in crate::select::Measure::ALL {
        for name in [m.key().to_string(), m.key().replace('_', "-")] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    crate::json_shape::nullable_enum(
        names,
        "Which stored uncertainty decides the band (default margin); `-` may stand for `_`.",
    )
}

fn threshold_method_schema() -> utoipa::openapi::Object {
    crate::json_shape::nullable_enum(
        [
            "global".to_string(),
            "per-class".to_string(),
            "pooled".to_string(),
        ],
        "`global` (default: one threshold on calibrated scores), `per-class` (Bonferroni) or `pooled` (per-class thresholds from one scan at δ over class curves fitted on review labels).",
    )
}

fn conflict_resolution_schema() -> utoipa::openapi::Object {
    crate::json_shape::nullable_enum(
        ["majority".to_string(), "expert".to_string()],
        "How disagreeing annotations settle an item: `majority` (default) or `expert` (the top tier's latest label wins).",
    )
}

/// At most 1,000 labels, each description at most 2,000 characters (as
/// `service::calibration::validate` checks).
fn label_descriptions_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(1_000))
        .additional_properties(Some(AdditionalProperties::RefOr(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(2_000))
                .into(),
        )))
        .description(Some(
            "Zero-shot: short descriptions per label (at most 1,000, each at most 2,000 characters), embedded in place of the bare label names when an embedding model has no head yet.",
        ))
        .build()
}

/// Defaults of the calibration settings.
pub const DEFAULT_AUDIT_RATE: f64 = 0.05;
pub const DEFAULT_DELTA: f64 = 0.05;
pub const DEFAULT_CALIBRATE_EVERY: u64 = 50;
pub const DEFAULT_UNIFORM_SHARE: f64 = 0.2;

/// The longest review lease honoured, in seconds (a year). Leases end at
/// `now_ms + lease_ms` in an `i64`; without a bound, `review_lease_secs` near
/// `u64::MAX` overflowed that sum (a panic in debug, a lease already expired
/// in release).
pub const MAX_REVIEW_LEASE_SECS: u64 = 86_400;

impl ProjectSettings {
    /// The review lease in milliseconds: `review_lease_secs` (600 when unset),
    /// capped at [`MAX_REVIEW_LEASE_SECS`].
    pub fn review_lease_ms(&self) -> i64 {
        // The cap keeps the product far below i64::MAX.
        (self
            .review_lease_secs
            .unwrap_or(600)
            .min(MAX_REVIEW_LEASE_SECS)
            * 1000) as i64
    }

    /// Tiers sorted from the most uncertain band down.
    pub fn tiers_desc(&self) -> Vec<Tier> {
        let mut t = self.tiers.clone();
        t.sort_by(|a, b| b.min_uncertainty.total_cmp(&a.min_uncertainty));
        t
    }

    /// The [lo, hi) band of a tier, if the tier exists.
    pub fn band(&self, tier: &str) -> Option<(f64, f64)> {
        let tiers = self.tiers_desc();
        let i = tiers.iter().position(|t| t.name == tier)?;
        let hi = if i == 0 {
            f64::INFINITY
        } else {
            tiers[i - 1].min_uncertainty
        };
        Some((tiers[i].min_uncertainty, hi))
    }

    pub fn top_tier(&self) -> Option<String> {
        self.tiers_desc().first().map(|t| t.name.clone())
    }

    pub fn lowest_tier(&self) -> Option<String> {
        self.tiers_desc().last().map(|t| t.name.clone())
    }
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub model: String,
    pub labels: Vec<String>,
    pub precision_target: f64,
    /// An explicit fixed threshold (no guarantee); `None`: nothing
    /// auto-accepted before the first calibration.
    pub threshold: Option<f64>,
    pub settings: ProjectSettings,
    pub committee: Vec<String>,
}

/// What an item holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    Image(Vec<u8>),
    /// A file under the server's data root, read when the item is labeled.
    Path(String),
}

impl Content {
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&[u8]>, Option<&str>) {
        match self {
            Content::Text(t) => ("text", Some(t), None, None),
            Content::Image(b) => ("image", None, Some(b), None),
            Content::Path(p) => ("path", None, None, Some(p)),
        }
    }

    pub(crate) fn from_columns(
        kind: String,
        text: Option<String>,
        image: Option<Vec<u8>>,
        path: Option<String>,
    ) -> Content {
        match (kind.as_str(), text, image, path) {
            ("image", _, Some(b), _) => Content::Image(b),
            ("path", _, _, Some(p)) => Content::Path(p),
            (_, Some(t), _, _) => Content::Text(t),
            _ => Content::Text(String::new()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewItem {
    pub client_id: String,
    pub content: Content,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestResult {
    pub job_id: i64,
    pub inserted: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub project_id: i64,
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub errors: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// When a worker first claimed items of this job.
    pub started_at: Option<i64>,
    /// Why a job that failed gave up (a Label Studio sync); read by `get_job` only.
    #[sqlx(default)]
    pub error: Option<String>,
}

/// Items leased to one worker, all from one job.
#[derive(Debug)]
pub struct Claim {
    pub job_id: i64,
    pub project_id: i64,
    pub items: Vec<ClaimedItem>,
}

#[derive(Debug)]
pub struct ClaimedItem {
    pub id: i64,
    pub content: Content,
    /// The last screen found it a duplicate member (not its group's
    /// representative) or leaked: never drawn into the audit sample. Read by
    /// the claim itself, so a batch costs no extra statement.
    pub off_audit: bool,
}

/// The result of labeling one claimed item.
///
/// Not boxed although `Predicted` is ~230 bytes and `Failed` 24: outcomes
/// live one per item in a batch's `Vec`, and boxing would add an
/// allocation per predicted item on the classification path, which is
/// benchmarked; a failure is the rare case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outcome {
    Predicted(StoredPrediction),
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub struct StoredPrediction {
    /// None when the model only embedded the item (no head trained yet).
    pub label: Option<String>,
    pub score: Option<f64>,
    pub scores_json: Option<String>,
    pub uncertainty: Option<crate::select::Uncertainty>,
    pub embedding: Option<Vec<f32>>,
    /// How much the project's committee disagrees on the item, when it has one.
    pub disagreement: Option<Disagreement>,
    pub model_version: String,
    pub auto_accept: bool,
    /// The model's (or head's) own top score and `{label: p}` JSON; `score`
    /// and `scores_json` are the calibrated ones.
    pub raw_score: Option<f64>,
    pub raw_scores_json: Option<String>,
    /// Drawn into the audit sample (with probability `audit_p`).
    pub audit: bool,
    pub audit_p: Option<f64>,
    /// The calibration that decided `auto_accept` (None: the fixed threshold).
    pub calibration_version: Option<i64>,
    /// A detection model's boxes for the item (None for classification):
    /// written as machine regions in the same transaction as the item.
    pub regions: Option<Box<MachineRegions>>,
    /// A voice-activity model's segments for a recording (None otherwise):
    /// written as machine regions of kind `span` in the same transaction.
    pub segments: Option<Box<MachineSegments>>,
}

/// A recording's machine segments, routed one by one, with its length.
#[derive(Debug, Clone, Default)]
pub struct MachineSegments {
    /// Seconds of audio, as decoded.
    pub duration: f64,
    /// Seconds of frames the model left undecided (speech probability in
    /// [0.3, 0.7]).
    pub undecided: f64,
    /// The longest unbroken stretch of those, in seconds: what sends a
    /// recording to review whatever its segments' scores.
    pub undecided_run: f64,
    pub segments: Vec<MachineSpan>,
}

/// One proposed speech segment and its route.
#[derive(Debug, Clone)]
pub struct MachineSpan {
    pub label: String,
    pub span: crate::region::Span,
    /// The mean speech probability over the segment.
    pub score: f64,
    pub uncertainty: Option<f64>,
    /// Auto-accepted (status `accepted`) or left for review (`review`).
    pub accepted: bool,
}

/// A detection's machine regions for one image, routed box by box.
#[derive(Debug, Clone, Default)]
pub struct MachineRegions {
    /// The image's size in pixels (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<MachineBox>,
}

/// One proposed box and its route.
#[derive(Debug, Clone)]
pub struct MachineBox {
    pub label: String,
    pub bbox: crate::region::BoxPx,
    pub score: f64,
    pub uncertainty: Option<f64>,
    /// Auto-accepted (status `accepted`) or left for review (`review`).
    pub accepted: bool,
    /// An OCR line's recognised text (None for a detection's box).
    pub text: Option<String>,
    /// An OCR line's per-character probabilities, one per character of
    /// `text` (None for a detection's box, or when they do not line up).
    pub char_scores: Option<Vec<f32>>,
}

/// Committee disagreement on one item (see `select::strategies`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Disagreement {
    /// Entropy of the members' votes, in [0, 1].
    pub vote_entropy: f32,
    /// Mean KL divergence of each member from the consensus (0 = full agreement).
    pub mean_kl: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    AutoAccepted,
    NeedsReview,
    Labeled,
    /// A lower tier's label awaiting a top-tier confirmation.
    NeedsConfirmation,
    Failed,
    /// A screen's outlier a person rejected (issue 25): out of the data,
    /// neither accepted nor waiting for review.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::AutoAccepted => "auto_accepted",
            Status::NeedsReview => "needs_review",
            Status::Labeled => "labeled",
            Status::NeedsConfirmation => "needs_confirmation",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "auto_accepted" => Status::AutoAccepted,
            "needs_review" => Status::NeedsReview,
            "labeled" => Status::Labeled,
            "needs_confirmation" => Status::NeedsConfirmation,
            "failed" => Status::Failed,
            "rejected" => Status::Rejected,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Annotation {
    /// For `DELETE /v1/annotations/{id}` (undo).
    pub id: i64,
    pub label: String,
    pub annotator: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PredictionView {
    pub label: String,
    pub score: f64,
    /// `{label: probability}` in the model's label order.
    #[schema(value_type = Object)]
    pub scores: serde_json::Value,
    /// `{measure: value}`: least_confidence, margin, entropy (and for
    /// committee projects vote_entropy, mean_kl), each in [0, 1].
    #[schema(value_type = Object)]
    pub uncertainty: serde_json::Value,
    pub model_version: String,
    /// The model's (or head's) own top score before calibration; `score`
    /// and `scores` are calibrated.
    pub raw_score: Option<f64>,
    /// The raw `{label: probability}`.
    #[schema(value_type = Object)]
    pub raw_scores: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemRecord {
    pub id: i64,
    pub project_id: i64,
    pub client_id: String,
    pub kind: String,
    pub status: String,
    pub error: Option<String>,
    pub prediction: Option<PredictionView>,
    pub final_label: Option<String>,
    /// `human`, `machine` or `propagated` (a person's label on a duplicate
    /// of this item, see `propagated_from`): who decided `final_label`.
    pub final_source: Option<String>,
    pub annotations: Vec<Annotation>,
    pub created_at: i64,
    /// Drawn into the audit sample: its human label tests the thresholds.
    pub audit: bool,
    /// The calibration version that decided the machine label (None: the
    /// project's fixed threshold, before any calibration).
    pub calibration_version: Option<i64>,
    /// An auto-accepted item: `calibrated` (a calibration version accepted
    /// it) or `no_guarantee` (a fixed threshold did, before any
    /// calibration); `null` for every other status.
    pub guarantee: Option<Guarantee>,
    /// How annotators' disagreement was settled: `majority` or `expert`.
    pub resolution: Option<String>,
    /// Listed as a suspected label error (`strategy=suspect`).
    pub suspect: bool,
    /// Detection projects: the image's width in pixels, once pre-labeled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Detection projects: the image's height in pixels, once pre-labeled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Speech projects: the recording's length in seconds, once pre-labeled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Speech projects: seconds the model left undecided (speech
    /// probability between 0.3 and 0.7), once pre-labeled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<f64>,
    /// Speech projects: the longest unbroken stretch of those seconds; a
    /// recording with one of 0.5 s or more waits for a person whatever its
    /// segments' scores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided_run: Option<f64>,
    /// Detection and speech projects: the item's regions (machine and human, with
    /// provenance), where a listing includes them (review lists, export).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<RegionRecord>>,
    /// The split the item was ingested into (`train`, `test`, …), if any:
    /// a screen reports copies across splits as leaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// A propagated label (`final_source = "propagated"`): the item of its
    /// duplicate group whose human label it copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagated_from: Option<i64>,
}

/// A stored region with its provenance (see `GET
/// /v1/projects/{id}/items/{item}/regions`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RegionRecord {
    pub id: i64,
    /// `machine` (a model's proposal) or `human` (a reviewer's box).
    pub source: String,
    /// `box` or `span` (a speech segment).
    pub kind: String,
    pub label: String,
    /// A box: `[x0, y0, x1, y1]` in pixels of the original image; null for
    /// a segment.
    #[serde(rename = "box")]
    #[schema(value_type = Option<Vec<f64>>)]
    pub bbox: Option<crate::region::BoxPx>,
    /// A speech segment: `[start, end]` in seconds from the recording's
    /// start; absent for a box.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)]
    pub segment: Option<crate::region::Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A machine OCR line: each character's probability (CTC decoding's
    /// max probability of the kept character, rounded to 4 decimals), one
    /// per character of `text`, in order; absent for boxes, segments and a
    /// person's lines (a corrected or added line's text is the person's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f64>>)]
    pub char_scores: Option<Vec<f32>>,
    pub score: Option<f64>,
    pub uncertainty: Option<f64>,
    /// Machine: `accepted`, `review`, `corrected` or `deleted`; human:
    /// `added` or `corrected`.
    pub status: String,
    /// A human `corrected` region: the machine region it replaces.
    pub replaces: Option<i64>,
    pub model_version: Option<String>,
    pub calibration_version: Option<i64>,
    /// Who accepted, corrected, added or deleted it (None: the machine,
    /// or not reviewed yet).
    pub annotator: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ItemRecord {
    pub(crate) fn from_row<R: Row>(r: &R) -> Result<ItemRecord, sqlx::Error>
    where
        for<'a> &'a str: sqlx::ColumnIndex<R>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<f64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        let label: Option<String> = r.try_get("pred_label")?;
        let prediction = match label {
            Some(label) => {
                let scores: Option<String> = r.try_get("pred_scores")?;
                // The measures live once, in their ranking columns.
                let mut unc = serde_json::Map::new();
                for m in crate::select::Measure::ALL {
                    let v: Option<f64> = r.try_get(m.column())?;
                    if let Some(v) = v {
                        unc.insert(m.key().to_string(), serde_json::json!(v));
                    }
                }
                let score: Option<f64> = r.try_get("pred_score")?;
                let version: Option<String> = r.try_get("model_version")?;
                let raw_scores: Option<String> = r.try_get("raw_scores")?;
                Some(PredictionView {
                    label,
                    score: score.unwrap_or_default(),
                    scores: scores
                        .and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or_default(),
                    uncertainty: serde_json::Value::Object(unc),
                    model_version: version.unwrap_or_default(),
                    raw_score: r.try_get("raw_score")?,
                    raw_scores: raw_scores
                        .and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or_default(),
                })
            }
            None => None,
        };
        let status: String = r.try_get("status")?;
        let calibration_version: Option<i64> = r.try_get("calibration_version")?;
        Ok(ItemRecord {
            guarantee: Guarantee::of_item(&status, calibration_version),
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            client_id: r.try_get("client_id")?,
            kind: r.try_get("kind")?,
            status,
            error: r.try_get("error")?,
            prediction,
            final_label: r.try_get("final_label")?,
            final_source: r.try_get("final_source")?,
            annotations: Vec::new(),
            created_at: r.try_get("created_at")?,
            audit: r.try_get::<i64, _>("audit")? != 0,
            calibration_version,
            resolution: r.try_get("resolution")?,
            suspect: false,
            width: r.try_get("width")?,
            height: r.try_get("height")?,
            duration: r.try_get("duration")?,
            undecided: r.try_get("undecided")?,
            undecided_run: r.try_get("undecided_run")?,
            regions: None,
            split: r.try_get("split")?,
            propagated_from: r.try_get("propagated_from")?,
        })
    }
}
