//! Label Studio's labeling config (XML), read for what a classifier needs:
//! the `<Choices>` tag to answer with, the object tag it labels, the task
//! data key that object reads (`value="$key"`), and how each project label
//! is spelled among the choices.
//!
//! Labels are matched to choices by the choice's `value`, then its `alias`,
//! then any of its comma-separated `predicted_values`: exactly first, then
//! case-insensitively, so `Spam` in the config matches the model's `spam`.

use std::collections::HashMap;

use super::super::error::{Code, ServiceError, ServiceResult};

/// What the project's model answers, and so which control tag it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// A class per text: `<Choices>` on `<Text>`.
    TextChoices,
    /// A class per image: `<Choices>` on `<Image>`.
    ImageChoices,
    /// Boxes on an image: `<RectangleLabels>` on `<Image>`.
    ImageBoxes,
    /// Time segments of a recording: `<Labels>` on `<Audio>` (or `<AudioPlus>`).
    AudioSegments,
    /// Text lines of a page (an OCR project): a shape tag (`<Rectangle>`,
    /// `<Polygon>`, or their `…Labels` forms) and a `<TextArea
    /// perRegion="true">` on one `<Image>` (see [`parse_lines`]).
    PageLines,
}

impl Wanted {
    fn text(self) -> bool {
        self == Wanted::TextChoices
    }

    fn tag(self) -> &'static str {
        match self {
            Wanted::ImageBoxes => "RectangleLabels",
            Wanted::AudioSegments => "Labels",
            Wanted::PageLines => "TextArea",
            Wanted::TextChoices | Wanted::ImageChoices => "Choices",
        }
    }

    fn option_tag(self) -> &'static str {
        match self {
            Wanted::ImageBoxes | Wanted::AudioSegments | Wanted::PageLines => "Label",
            Wanted::TextChoices | Wanted::ImageChoices => "Choice",
        }
    }
}

/// What the object tag shows: decides how task data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Text,
    Image,
    /// `<Audio>` or `<AudioPlus>`: a recording, read like an image (a URL
    /// or a path), segmented by a voice-activity model.
    Audio,
}

/// The control tag (`<Choices>`, or `<RectangleLabels>` for boxes) that
/// predictions fill and annotations are read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicesTarget {
    /// Which kind of control tag this is.
    pub wanted: Wanted,
    /// The control tag's name: the `from_name` of results.
    pub from_name: String,
    /// The object tag's name: the `to_name` of results.
    pub to_name: String,
    /// The task data key the object tag reads (`value="$text"` → `text`).
    pub data_key: String,
    pub kind: ObjectKind,
    /// `choice="multiple"`.
    pub multiple: bool,
    /// For each project label (in project order), the choice value to send.
    pub choice_for_label: Vec<String>,
    /// Every spelling of each choice (value, alias, predicted values) with
    /// the project label it stands for, for reading annotations back.
    spellings: Vec<(String, usize)>,
    /// An OCR config's per-region text and the shape it belongs to.
    pub lines: Option<LinesTarget>,
}

/// The shape tag an OCR config draws lines with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rectangle,
    RectangleLabels,
    Polygon,
    PolygonLabels,
}

impl Shape {
    fn of_tag(tag: &str) -> Option<Shape> {
        Some(match tag {
            "Rectangle" => Shape::Rectangle,
            "RectangleLabels" => Shape::RectangleLabels,
            "Polygon" => Shape::Polygon,
            "PolygonLabels" => Shape::PolygonLabels,
            _ => return None,
        })
    }

    /// The `type` of its results: the tag's name in lower case.
    pub fn result_type(self) -> &'static str {
        match self {
            Shape::Rectangle => "rectangle",
            Shape::RectangleLabels => "rectanglelabels",
            Shape::Polygon => "polygon",
            Shape::PolygonLabels => "polygonlabels",
        }
    }

    /// A `…Labels` tag carries the label in its results under this key.
    pub fn labels_key(self) -> Option<&'static str> {
        match self {
            Shape::RectangleLabels => Some("rectanglelabels"),
            Shape::PolygonLabels => Some("polygonlabels"),
            Shape::Rectangle | Shape::Polygon => None,
        }
    }

    pub fn is_polygon(self) -> bool {
        matches!(self, Shape::Polygon | Shape::PolygonLabels)
    }
}

/// What an OCR config adds to its target: the shape tag (`from_name` of
/// the target) is the line's geometry, `text_name` its `<TextArea
/// perRegion="true">`, and `labels_name` a `<Labels>` on the same image
/// whose label covers the project's, when the config has one (Label
/// Studio's own OCR template does): a line is then also a `labels` result.
#[derive(Debug, Clone, PartialEq)]
pub struct LinesTarget {
    pub shape: Shape,
    pub text_name: String,
    pub labels_name: Option<(String, String)>,
}

impl ChoicesTarget {
    /// The project label index an annotated choice stands for.
    pub fn label_index(&self, choice: &str) -> Option<usize> {
        self.spellings
            .iter()
            .find(|(s, _)| s == choice)
            .or_else(|| {
                self.spellings
                    .iter()
                    .find(|(s, _)| s.eq_ignore_ascii_case(choice))
            })
            .map(|(_, i)| *i)
    }
}

/// One `<Choice>`: its value and every other spelling it answers to.
struct Choice {
    value: String,
    names: Vec<String>,
}

/// The largest labeling config read, in bytes. Label Studio's own configs
/// are a few kilobytes; a thousand-class `<Choices>` is about 50 KB.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The deepest element nesting read. Real configs nest under ten deep;
/// the cap is checked by a linear scan before the XML parser runs, so no
/// input can make parsing deep or slow.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// How many non-matching `<Choices>` tags an error names.
const MISSES_SHOWN: usize = 5;

fn too_big(why: String) -> ServiceError {
    ServiceError::new(Code::LabelsMismatch, why)
}

/// Refuse a config over `MAX_CONFIG_BYTES` or nested deeper than
/// `MAX_CONFIG_DEPTH`, in one pass over the bytes. Comments, CDATA,
/// processing instructions and declarations are skipped; quoted attribute
/// values may hold `>`. The scan never under-counts depth for input the
/// parser would accept.
pub fn check_bounds(xml: &str) -> ServiceResult<()> {
    if xml.len() > MAX_CONFIG_BYTES {
        return Err(too_big(format!(
            "the labeling config is {} bytes; at most {MAX_CONFIG_BYTES} are read",
            xml.len()
        )));
    }
    let b = xml.as_bytes();
    let skip_to = |from: usize, end: &[u8]| -> usize {
        b[from..]
            .windows(end.len())
            .position(|w| w == end)
            .map_or(b.len(), |p| from + p + end.len())
    };
    let (mut i, mut depth) = (0usize, 0usize);
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = skip_to(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_to(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = skip_to(i + 2, b"?>");
        } else if rest.starts_with(b"<!") {
            i = skip_to(i + 2, b">");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = skip_to(i + 2, b">");
        } else {
            // An opening tag: find its end outside quotes, and whether it closes itself.
            let (mut j, mut quote, mut self_closing) = (i + 1, 0u8, false);
            while j < b.len() {
                let c = b[j];
                if quote != 0 {
                    if c == quote {
                        quote = 0;
                    }
                } else if c == b'"' || c == b'\'' {
                    quote = c;
                } else if c == b'>' {
                    self_closing = b[j - 1] == b'/';
                    break;
                }
                j += 1;
            }
            if !self_closing {
                depth += 1;
                if depth > MAX_CONFIG_DEPTH {
                    return Err(too_big(format!(
                        "the labeling config nests elements more than {MAX_CONFIG_DEPTH} deep"
                    )));
                }
            }
            i = j + 1;
        }
    }
    Ok(())
}

/// `parse` on a blocking thread: a config may be up to a megabyte, and
/// parsing it must not stall the async workers that answer `/healthz`.
pub async fn parse_off_thread(
    xml: &str,
    labels: &[String],
    wanted: Wanted,
) -> ServiceResult<ChoicesTarget> {
    check_bounds(xml)?;
    if xml.len() < 16 * 1024 {
        return parse(xml, labels, wanted);
    }
    let (xml, labels) = (xml.to_string(), labels.to_vec());
    tokio::task::spawn_blocking(move || parse(&xml, &labels, wanted))
        .await
        .map_err(|_| ServiceError::internal("parsing a labeling config failed"))?
}

/// Find the `<Choices>` tag (`<RectangleLabels>` for a detector) whose
/// options cover every project label. A config without one is a 422 naming
/// each such tag and the labels it lacks: Label Studio stores predictions
/// without checking them against the config, so a mismatch found later
/// would be boxes silently missing from its editor.
pub fn parse(xml: &str, labels: &[String], wanted: Wanted) -> ServiceResult<ChoicesTarget> {
    let text_model = wanted.text();
    let (control, option) = (wanted.tag(), wanted.option_tag());
    check_bounds(xml)?;
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        ServiceError::new(
            Code::LabelsMismatch,
            format!("the labeling config is not valid XML: {e}"),
        )
    })?;
    // Every named element, indexed once: the first two of each name (a
    // `<Choices>` may share its name with its object). Looking objects up
    // by scanning the document per `<Choices>` was quadratic.
    let mut by_name: HashMap<&str, [Option<roxmltree::Node>; 2]> = HashMap::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        if let Some(name) = n.attribute("name") {
            let slot = by_name.entry(name).or_insert([None, None]);
            if slot[0].is_none() {
                slot[0] = Some(n);
            } else if slot[1].is_none() {
                slot[1] = Some(n);
            }
        }
    }
    if wanted == Wanted::PageLines {
        return parse_lines(&doc, labels);
    }
    let mut misses: Vec<String> = Vec::new();
    let mut missed = 0usize;
    let mut miss = |why: String| {
        missed += 1;
        if misses.len() < MISSES_SHOWN {
            misses.push(why);
        }
    };
    for node in doc.descendants().filter(|n| n.has_tag_name(control)) {
        let name = node.attribute("name").unwrap_or("").to_string();
        let to_name = node.attribute("toName").unwrap_or("").to_string();
        let multiple = node.attribute("choice") == Some("multiple");
        let choices: Vec<Choice> = node
            .descendants()
            .filter(|n| n.has_tag_name(option))
            .filter_map(|c| {
                let value = c.attribute("value")?.to_string();
                let mut names = vec![value.clone()];
                names.extend(c.attribute("alias").map(str::to_string));
                if let Some(pv) = c.attribute("predicted_values") {
                    names.extend(
                        pv.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    );
                }
                Some(Choice { value, names })
            })
            .collect();
        let mut choice_for_label = Vec::with_capacity(labels.len());
        let mut unmatched = Vec::new();
        for label in labels {
            match match_label(&choices, label) {
                Some(c) => choice_for_label.push(c.value.clone()),
                None => unmatched.push(label.clone()),
            }
        }
        let tag = format!("<{control} name={name:?} toName={to_name:?}>");
        if !unmatched.is_empty() {
            let noun = option.to_lowercase();
            miss(format!("{tag} has no {noun} for {unmatched:?}"));
            continue;
        }
        // toName may list several objects ("a,b"); the first one is labeled.
        let first_to = to_name.split(',').next().unwrap_or("").trim().to_string();
        let Some(object) = by_name
            .get(first_to.as_str())
            .and_then(|slot| slot.iter().flatten().find(|n| **n != node).copied())
        else {
            miss(format!("{tag}: no object tag named {first_to:?}"));
            continue;
        };
        let kind = match object.tag_name().name() {
            "Image" => ObjectKind::Image,
            "Text" | "HyperText" | "Paragraphs" => ObjectKind::Text,
            "Audio" | "AudioPlus" => ObjectKind::Audio,
            other => {
                miss(format!(
                    "{tag} labels a <{other}>, and labelloop reads <Text>, <Image> or <Audio>"
                ));
                continue;
            }
        };
        if (kind == ObjectKind::Audio) != (wanted == Wanted::AudioSegments) {
            miss(if kind == ObjectKind::Audio {
                format!("{tag} labels an <Audio>, and the project's model does not take recordings")
            } else {
                format!(
                    "{tag} labels a <{}>, and speech segments are cut from an <Audio>",
                    object.tag_name().name()
                )
            });
            continue;
        }
        if wanted == Wanted::ImageBoxes && kind != ObjectKind::Image {
            miss(format!(
                "{tag} labels a <{}>, and boxes are drawn on an <Image>",
                object.tag_name().name()
            ));
            continue;
        }
        if (kind == ObjectKind::Text) != text_model {
            miss(format!(
                "{tag} labels a <{}>, and the project's model takes {}",
                object.tag_name().name(),
                if text_model { "text" } else { "images" }
            ));
            continue;
        }
        let Some(data_key) = object
            .attribute("value")
            .and_then(|v| v.strip_prefix('$'))
            .filter(|k| !k.is_empty())
        else {
            miss(format!(
                "{tag}: the object tag {first_to:?} has no value=\"$key\""
            ));
            continue;
        };
        let spellings = spellings_of(&choices, &choice_for_label, labels);
        return Ok(ChoicesTarget {
            wanted,
            from_name: name,
            to_name: first_to,
            data_key: data_key.to_string(),
            kind,
            multiple,
            choice_for_label,
            spellings,
            lines: None,
        });
    }
    let why = if misses.is_empty() {
        format!("the labeling config has no <{control}> tag")
    } else if missed > misses.len() {
        format!("{}; and {} more", misses.join("; "), missed - misses.len())
    } else {
        misses.join("; ")
    };
    Err(ServiceError::new(
        Code::LabelsMismatch,
        format!("no <{control}> tag matches the project's labels {labels:?}: {why}"),
    ))
}

/// An OCR project's config: a `<TextArea>` that is **per region**
/// (`perRegion="true"`: each line's text belongs to its shape, the two
/// results sharing one region `id`) on an `<Image>` with `value="$key"`,
/// and a shape tag on the same image: `<Rectangle>` or `<RectangleLabels>`
/// first (a line is a box), else `<Polygon>` or `<PolygonLabels>`. A
/// `…Labels` shape (and an optional `<Labels>`) must hold the project's
/// label. Anything else is a 422 naming each `<TextArea>` and what it
/// lacks: Label Studio stores predictions without checking them against
/// the config, so lines that do not fit would be silently missing from its
/// editor.
fn parse_lines(doc: &roxmltree::Document, labels: &[String]) -> ServiceResult<ChoicesTarget> {
    let mut misses: Vec<String> = Vec::new();
    let first_to = |n: &roxmltree::Node| {
        n.attribute("toName")
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let options = |n: &roxmltree::Node| -> Vec<Choice> {
        n.descendants()
            .filter(|c| c.has_tag_name("Label"))
            .filter_map(|c| {
                let value = c.attribute("value")?.to_string();
                let mut names = vec![value.clone()];
                names.extend(c.attribute("alias").map(str::to_string));
                Some(Choice { value, names })
            })
            .collect()
    };
    for area in doc.descendants().filter(|n| n.has_tag_name("TextArea")) {
        let name = area.attribute("name").unwrap_or("").to_string();
        let to = first_to(&area);
        let tag = format!("<TextArea name={name:?} toName={to:?}>");
        if area.attribute("perRegion") != Some("true") {
            misses.push(format!(
                "{tag} is not per-region: add perRegion=\"true\", so that each line's text \
                 belongs to its shape (one region id for both)"
            ));
            continue;
        }
        let Some(object) = doc
            .descendants()
            .find(|n| n.is_element() && n.attribute("name") == Some(to.as_str()) && *n != area)
        else {
            misses.push(format!("{tag}: no object tag named {to:?}"));
            continue;
        };
        if !object.has_tag_name("Image") {
            misses.push(format!(
                "{tag} is on a <{}>, and text lines are read from an <Image>",
                object.tag_name().name()
            ));
            continue;
        }
        let Some(data_key) = object
            .attribute("value")
            .and_then(|v| v.strip_prefix('$'))
            .filter(|k| !k.is_empty())
        else {
            misses.push(format!(
                "{tag}: the object tag {to:?} has no value=\"$key\""
            ));
            continue;
        };
        let on_image = |n: &roxmltree::Node| first_to(n) == to;
        let shapes: Vec<(Shape, roxmltree::Node)> = doc
            .descendants()
            .filter(|n| n.is_element() && on_image(n))
            .filter_map(|n| Some((Shape::of_tag(n.tag_name().name())?, n)))
            .collect();
        let shape = shapes
            .iter()
            .find(|(s, _)| !s.is_polygon())
            .or_else(|| shapes.first());
        let Some((shape, node)) = shape else {
            misses.push(format!(
                "{tag}: no <Rectangle> or <Polygon> (or <RectangleLabels>, <PolygonLabels>) \
                 draws on the <Image name={to:?}>, so its lines have no shape"
            ));
            continue;
        };
        let shape_name = node.attribute("name").unwrap_or("").to_string();
        let choices = options(node);
        let mut choice_for_label = labels.to_vec();
        if shape.labels_key().is_some() {
            match labels
                .iter()
                .map(|l| match_label(&choices, l))
                .collect::<Option<Vec<_>>>()
            {
                Some(c) => choice_for_label = c.into_iter().map(|c| c.value.clone()).collect(),
                None => {
                    misses.push(format!(
                        "{tag}: <{} name={shape_name:?}> has no label for {labels:?}",
                        node.tag_name().name()
                    ));
                    continue;
                }
            }
        }
        // A <Labels> on the same image that holds the project's label.
        let labels_name = doc
            .descendants()
            .filter(|n| n.has_tag_name("Labels") && on_image(n))
            .find_map(|n| {
                let c = match_label(&options(&n), labels.first()?)?.value.clone();
                Some((n.attribute("name")?.to_string(), c))
            });
        let spellings = spellings_of(&choices, &choice_for_label, labels);
        return Ok(ChoicesTarget {
            wanted: Wanted::PageLines,
            from_name: shape_name,
            to_name: to.clone(),
            data_key: data_key.to_string(),
            kind: ObjectKind::Image,
            multiple: false,
            choice_for_label,
            spellings,
            lines: Some(LinesTarget {
                shape: *shape,
                text_name: name,
                labels_name,
            }),
        });
    }
    let why = if misses.is_empty() {
        "the labeling config has no <TextArea> tag: an OCR project needs a <TextArea \
         perRegion=\"true\"> with a <Rectangle> or <Polygon> on an <Image>"
            .to_string()
    } else {
        misses.truncate(MISSES_SHOWN);
        misses.join("; ")
    };
    Err(ServiceError::new(
        Code::LabelsMismatch,
        format!("no <TextArea> tag fits the project's text lines: {why}"),
    ))
}

/// How annotated choices read back as labels, most binding first (the
/// lookup takes the first exact, then the first case-insensitive match):
/// the value of each label's own choice, then that choice's other
/// spellings, then choices no label chose, to the first label they match.
/// Reading back must invert the choice each label is sent as: a choice
/// whose `predicted_values` also spell another label once read back as
/// that other label (found by fuzzing).
fn spellings_of(
    choices: &[Choice],
    choice_for_label: &[String],
    labels: &[String],
) -> Vec<(String, usize)> {
    let chosen = |c: &Choice| choice_for_label.contains(&c.value);
    let mut out: Vec<(String, usize)> = choice_for_label
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), i))
        .collect();
    for (i, v) in choice_for_label.iter().enumerate() {
        if let Some(c) = choices.iter().find(|c| &c.value == v) {
            out.extend(c.names.iter().skip(1).map(|n| (n.clone(), i)));
        }
    }
    for c in choices.iter().filter(|c| !chosen(c)) {
        if let Some(i) = labels
            .iter()
            .position(|l| match_label(std::slice::from_ref(c), l).is_some())
        {
            out.extend(c.names.iter().map(|n| (n.clone(), i)));
        }
    }
    out
}

/// The choice a label maps to: exact on any spelling first, then ignoring case.
fn match_label<'a>(choices: &'a [Choice], label: &str) -> Option<&'a Choice> {
    choices
        .iter()
        .find(|c| c.names.iter().any(|n| n == label))
        .or_else(|| {
            choices
                .iter()
                .find(|c| c.names.iter().any(|n| n.eq_ignore_ascii_case(label)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_the_choices_that_cover_the_labels() {
        let xml = r#"<View>
          <Text name="sms" value="$message"/>
          <Choices name="mood" toName="sms"><Choice value="happy"/><Choice value="sad"/></Choices>
          <Choices name="kind" toName="sms" choice="multiple">
            <Choice value="Ham" alias="ok"/><Choice value="Junk" predicted_values="spam, scam"/>
          </Choices></View>"#;
        let t = parse(xml, &labels(&["ham", "spam"]), Wanted::TextChoices).unwrap();
        assert_eq!(t.from_name, "kind");
        assert_eq!(t.to_name, "sms");
        assert_eq!(t.data_key, "message");
        assert!(t.multiple);
        assert_eq!(t.choice_for_label, ["Ham", "Junk"]);
        assert_eq!(t.label_index("Junk"), Some(1));
        assert_eq!(t.label_index("ok"), Some(0));
        assert_eq!(t.label_index("scam"), Some(1));
        assert_eq!(t.label_index("nothing"), None);
    }

    #[test]
    fn exact_beats_case_insensitive() {
        let xml = r#"<View><Image name="img" value="$image"/>
          <Choices name="c" toName="img"><Choice value="CAT"/><Choice value="cat"/></Choices></View>"#;
        let t = parse(xml, &labels(&["cat"]), Wanted::ImageChoices).unwrap();
        assert_eq!(t.choice_for_label, ["cat"]);
        assert_eq!(t.kind, ObjectKind::Image);
    }

    #[test]
    fn no_match_names_the_tag_and_the_labels() {
        let xml = r#"<View><Text name="t" value="$text"/>
          <Choices name="sentiment" toName="t"><Choice value="pos"/><Choice value="ham"/></Choices></View>"#;
        let e = parse(xml, &labels(&["ham", "spam"]), Wanted::TextChoices).unwrap_err();
        assert_eq!(e.code, Code::LabelsMismatch);
        assert!(e.message.contains("sentiment"), "{}", e.message);
        assert!(e.message.contains("\"spam\""), "{}", e.message);
        assert!(!e.message.contains("[\"ham\"]"), "{}", e.message);
        let e = parse(
            "<View><Text name=\"t\" value=\"$t\"/></View>",
            &labels(&["a"]),
            Wanted::TextChoices,
        )
        .unwrap_err();
        assert!(e.message.contains("no <Choices>"), "{}", e.message);
        let e = parse("<View", &labels(&["a"]), Wanted::TextChoices).unwrap_err();
        assert_eq!(e.code, Code::LabelsMismatch);
    }

    #[test]
    fn a_choice_reads_back_as_the_label_it_is_sent_for() {
        // From the fuzzer: "b" is sent for label "B", and its
        // predicted_values also spell "A" (label "a").
        let xml = r#"<View><Text name="sms" value="$text"/><Choices name="c" toName="sms" choice="multiple"><Choice value="A" alias="a"/><Choice value="b" predicted_values="A, x"/><Choice value="Ham"/></Choices></View>"#;
        let l = labels(&["a", "B", "ham"]);
        let t = parse(xml, &l, Wanted::TextChoices).unwrap();
        assert_eq!(t.choice_for_label, ["A", "b", "Ham"]);
        for (i, c) in t.choice_for_label.iter().enumerate() {
            assert_eq!(t.label_index(c), Some(i), "{c}");
        }
        assert_eq!(t.label_index("x"), Some(1));
    }

    #[test]
    fn labels_on_audio_for_a_speech_model() {
        let speech = labels(&["Speech"]);
        let xml = r#"<View><Audio name="rec" value="$audio"/>
          <Labels name="vad" toName="rec"><Label value="speech"/><Label value="Noise"/></Labels></View>"#;
        let t = parse(xml, &speech, Wanted::AudioSegments).unwrap();
        assert_eq!((t.from_name.as_str(), t.to_name.as_str()), ("vad", "rec"));
        assert_eq!(t.data_key, "audio");
        assert_eq!(t.kind, ObjectKind::Audio);
        assert_eq!(t.choice_for_label, ["speech"]);
        let plus = xml.replace("<Audio ", "<AudioPlus ");
        assert!(parse(&plus, &speech, Wanted::AudioSegments).is_ok());
        // A <Labels> without the project's label, on a <Text>, or no <Labels>.
        for (bad, says) in [
            (xml.replace("speech", "Music"), "no label for [\"Speech\"]"),
            (
                xml.replace("<Audio name=\"rec\"", "<Text name=\"rec\""),
                "cut from an <Audio>",
            ),
            (
                r#"<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="Speech"/></Choices></View>"#.to_string(),
                "no <Labels> tag",
            ),
            (xml.replace("value=\"$audio\"", "value=\"audio\""), "no value=\"$key\""),
        ] {
            let e = parse(&bad, &speech, Wanted::AudioSegments).unwrap_err();
            assert_eq!(e.code, Code::LabelsMismatch);
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        // An image or text model refuses an <Audio>.
        let audio_choices = r#"<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="x"/></Choices></View>"#;
        let e = parse(audio_choices, &labels(&["x"]), Wanted::ImageChoices).unwrap_err();
        assert!(
            e.message.contains("does not take recordings"),
            "{}",
            e.message
        );
    }

    #[test]
    fn object_kind_must_fit_the_model() {
        let xml = r#"<View><Image name="i" value="$image"/>
          <Choices name="c" toName="i"><Choice value="a"/></Choices></View>"#;
        let e = parse(xml, &labels(&["a"]), Wanted::TextChoices).unwrap_err();
        assert!(e.message.contains("takes text"), "{}", e.message);
    }
}
