//! Label Studio's labeling config (XML), read for what a classifier needs:
//! the `<Choices>` tag to answer with, the object tag it labels, the task
//! data key that object reads (`value="$key"`), and how each project label
//! is spelled among the choices.
//!
//! Labels are matched to choices by the choice's `value`, then its `alias`,
//! then any of its comma-separated `predicted_values`: exactly first, then
//! case-insensitively, so `Spam` in the config matches the model's `spam`.

use super::super::error::{Code, ServiceError, ServiceResult};

/// What the object tag shows: decides how task data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Text,
    Image,
}

/// The `<Choices>` tag that predictions fill and annotations are read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicesTarget {
    /// The `<Choices name>`: the `from_name` of results.
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

/// Find the `<Choices>` tag whose choices cover every project label. A
/// config without one is a 422 naming each `<Choices>` tag and the labels
/// it lacks.
pub fn parse(xml: &str, labels: &[String], text_model: bool) -> ServiceResult<ChoicesTarget> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        ServiceError::new(
            Code::LabelsMismatch,
            format!("the labeling config is not valid XML: {e}"),
        )
    })?;
    let mut misses: Vec<String> = Vec::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("Choices")) {
        let name = node.attribute("name").unwrap_or("").to_string();
        let to_name = node.attribute("toName").unwrap_or("").to_string();
        let multiple = node.attribute("choice") == Some("multiple");
        let choices: Vec<Choice> = node
            .descendants()
            .filter(|n| n.has_tag_name("Choice"))
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
        let tag = format!("<Choices name={name:?} toName={to_name:?}>");
        if !unmatched.is_empty() {
            misses.push(format!("{tag} has no choice for {unmatched:?}"));
            continue;
        }
        // toName may list several objects ("a,b"); the first one is labeled.
        let first_to = to_name.split(',').next().unwrap_or("").trim().to_string();
        let Some(object) = doc
            .descendants()
            .find(|n| n.attribute("name") == Some(first_to.as_str()) && n != &node)
        else {
            misses.push(format!("{tag}: no object tag named {first_to:?}"));
            continue;
        };
        let kind = match object.tag_name().name() {
            "Image" => ObjectKind::Image,
            "Text" | "HyperText" | "Paragraphs" => ObjectKind::Text,
            other => {
                misses.push(format!(
                    "{tag} labels a <{other}>, and labelloop reads <Text> or <Image>"
                ));
                continue;
            }
        };
        if (kind == ObjectKind::Text) != text_model {
            misses.push(format!(
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
            misses.push(format!(
                "{tag}: the object tag {first_to:?} has no value=\"$key\""
            ));
            continue;
        };
        let spellings = choices
            .iter()
            .filter_map(|c| {
                let i = labels
                    .iter()
                    .position(|l| match_label(std::slice::from_ref(c), l).is_some())?;
                Some(c.names.iter().map(move |n| (n.clone(), i)))
            })
            .flatten()
            .collect();
        return Ok(ChoicesTarget {
            from_name: name,
            to_name: first_to,
            data_key: data_key.to_string(),
            kind,
            multiple,
            choice_for_label,
            spellings,
        });
    }
    let why = if misses.is_empty() {
        "the labeling config has no <Choices> tag".to_string()
    } else {
        misses.join("; ")
    };
    Err(ServiceError::new(
        Code::LabelsMismatch,
        format!("no <Choices> tag matches the project's labels {labels:?}: {why}"),
    ))
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
        let t = parse(xml, &labels(&["ham", "spam"]), true).unwrap();
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
        let t = parse(xml, &labels(&["cat"]), false).unwrap();
        assert_eq!(t.choice_for_label, ["cat"]);
        assert_eq!(t.kind, ObjectKind::Image);
    }

    #[test]
    fn no_match_names_the_tag_and_the_labels() {
        let xml = r#"<View><Text name="t" value="$text"/>
          <Choices name="sentiment" toName="t"><Choice value="pos"/><Choice value="ham"/></Choices></View>"#;
        let e = parse(xml, &labels(&["ham", "spam"]), true).unwrap_err();
        assert_eq!(e.code, Code::LabelsMismatch);
        assert!(e.message.contains("sentiment"), "{}", e.message);
        assert!(e.message.contains("\"spam\""), "{}", e.message);
        assert!(!e.message.contains("[\"ham\"]"), "{}", e.message);
        let e = parse(
            "<View><Text name=\"t\" value=\"$t\"/></View>",
            &labels(&["a"]),
            true,
        )
        .unwrap_err();
        assert!(e.message.contains("no <Choices>"), "{}", e.message);
        let e = parse("<View", &labels(&["a"]), true).unwrap_err();
        assert_eq!(e.code, Code::LabelsMismatch);
    }

    #[test]
    fn object_kind_must_fit_the_model() {
        let xml = r#"<View><Image name="i" value="$image"/>
          <Choices name="c" toName="i"><Choice value="a"/></Choices></View>"#;
        let e = parse(xml, &labels(&["a"]), true).unwrap_err();
        assert!(e.message.contains("takes text"), "{}", e.message);
    }
}
