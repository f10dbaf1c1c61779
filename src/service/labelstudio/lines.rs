//! OCR projects in Label Studio (issue 23): a `<TextArea perRegion="true">`
//! with a `<Rectangle>` or `<Polygon>` (or their `…Labels` forms) on an
//! `<Image>` ([`super::config::parse_lines`]).
//!
//! `/predict` answers from the **stored** machine lines, as for speech
//! (`segments::pre_labeled`): a task labelloop has not seen is read,
//! ingested and pre-labeled by the usual workers, which route its lines
//! (`regions::lines_outcome`) and store them once. Each line goes to Label
//! Studio as **results sharing one region id** `m<region id>`: the shape
//! (percent of the original image with `original_width/height`, the
//! conversion of [`BoxPx::to_label_studio`]), a `textarea` with the same
//! geometry and the line's text, and a `labels` result when the config has
//! a `<Labels>` for the project's label; each with the line's `score`. The
//! same page predicted twice gets the same ids, and an annotation that
//! keeps a line names the region it came from.
//!
//! An annotation is the annotator's full set of lines for the page: each
//! shape result with the text of the `textarea` result sharing its id,
//! recorded through the one review use case (`regions::put`): a kept line
//! with its text accepts the machine region, a moved box or a changed text
//! corrects it, a missing line deletes it, a new one is added. A set is not
//! an increment, so a redelivered webhook writes nothing twice.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::config::{ChoicesTarget, LinesTarget};
use crate::region::{BoxPx, LabelStudioRect};
use crate::service::error::{Code, ServiceError, ServiceResult};
use crate::service::regions::{BoxIn, ItemRegions, MAX_LINE_TEXT};
use crate::store::{ItemRecord, RegionRecord};

/// A drawn box (no `m<id>`) is taken for the machine line it overlaps
/// most at IoU at least this, as for boxes: a nudged line is a correction,
/// not a delete and an add.
const MATCH_IOU: f64 = 0.9;

/// One stored machine line, as `/predict` sends it.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: i64,
    pub bbox: BoxPx,
    pub text: String,
    pub score: f64,
}

/// A pre-labeled page: its size and its machine lines (those a reviewer
/// did not delete), in reading order.
#[derive(Debug, Clone)]
pub struct Page {
    pub width: u32,
    pub height: u32,
    pub lines: Vec<Line>,
}

impl Page {
    /// The page of a pre-labeled item with its regions attached; `None`
    /// before the pre-label (no size yet).
    pub fn of(item: &ItemRecord) -> Option<Page> {
        let width = u32::try_from(item.width?).ok()?;
        let height = u32::try_from(item.height?).ok()?;
        let lines = item
            .regions
            .as_deref()?
            .iter()
            .filter(|r| r.source == "machine" && r.status != "deleted")
            .filter_map(|r| {
                Some(Line {
                    id: r.id,
                    bbox: r.bbox?,
                    text: r.text.clone().unwrap_or_default(),
                    score: r.score.filter(|s| s.is_finite()).unwrap_or(0.0),
                })
            })
            .collect();
        Some(Page {
            width,
            height,
            lines,
        })
    }

    /// The prediction's overall score: its weakest line's (the one that
    /// decides whether a person reads the page); 0 for a page with no line,
    /// which always goes to a person (`regions::route_lines`).
    pub fn score(&self) -> f64 {
        self.lines
            .iter()
            .map(|l| l.score)
            .reduce(f64::min)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    }
}

/// The geometry of a line as the shape tag holds it: a rectangle's
/// top-left and size in percent, or a polygon's four corners in percent.
/// `None` for an image of size 0, where percent means nothing.
fn geometry(polygon: bool, bbox: &BoxPx, width: u32, height: u32) -> Option<Map<String, Value>> {
    let r = bbox.to_label_studio(width, height).ok()?;
    let mut v = Map::new();
    if polygon {
        let (x1, y1) = (r.x + r.width, r.y + r.height);
        v.insert(
            "points".into(),
            json!([[r.x, r.y], [x1, r.y], [x1, y1], [r.x, y1]]),
        );
        v.insert("closed".into(), json!(true));
    } else {
        v.insert("x".into(), json!(r.x));
        v.insert("y".into(), json!(r.y));
        v.insert("width".into(), json!(r.width));
        v.insert("height".into(), json!(r.height));
        v.insert("rotation".into(), json!(0.0));
    }
    Some(v)
}

/// **The results of one line**, sharing the region id `id`: the shape,
/// the `textarea` with the same geometry and `text`, and a `labels` result
/// when the config has a `<Labels>` for the project's label. `score` is
/// the model's (absent on a person's line). Empty for a page of size 0.
pub fn line_results(
    target: &ChoicesTarget,
    lines: &LinesTarget,
    id: &str,
    bbox: &BoxPx,
    text: &str,
    (width, height): (u32, u32),
    score: Option<f64>,
) -> Vec<Value> {
    let Some(geo) = geometry(lines.shape.is_polygon(), bbox, width, height) else {
        return Vec::new();
    };
    let label = target.choice_for_label.first().map_or("", String::as_str);
    let result = |from: &str, kind: &str, extra: Option<(&str, Value)>| {
        let mut value = geo.clone();
        if let Some((k, v)) = extra {
            value.insert(k.into(), v);
        }
        let mut r = json!({
            "id": id, "from_name": from, "to_name": target.to_name, "type": kind,
            "origin": if score.is_some() { "prediction" } else { "manual" },
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": value,
        });
        if let Some(s) = score {
            r["score"] = json!(if s.is_finite() { s } else { 0.0 });
        }
        r
    };
    let mut out = Vec::with_capacity(3);
    let shape = lines.shape;
    // A plain shape has no label of its own: the geometry alone.
    let own = shape.labels_key().map(|key| (key, json!([label])));
    out.push(result(&target.from_name, shape.result_type(), own));
    out.push(result(
        &lines.text_name,
        "textarea",
        Some(("text", json!([text]))),
    ));
    if let Some((name, choice)) = &lines.labels_name {
        out.push(result(name, "labels", Some(("labels", json!([choice])))));
    }
    out
}

/// A page's stored machine lines as one prediction's results.
pub fn page_results(target: &ChoicesTarget, page: &Page) -> Vec<Value> {
    let Some(lines) = &target.lines else {
        return Vec::new();
    };
    page.lines
        .iter()
        .flat_map(|l| {
            line_results(
                target,
                lines,
                &format!("m{}", l.id),
                &l.bbox,
                &l.text,
                (page.width, page.height),
                Some(l.score),
            )
        })
        .collect()
}

/// One line of an annotation, checked: its shape's box in pixels and the
/// text of the `textarea` result sharing its id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Drawn {
    /// The shape result's own id (`m<region id>` when it came from a prediction).
    pub id: Option<String>,
    pub label: String,
    pub bbox: BoxPx,
    pub text: String,
}

/// The lines of an annotation: each result of our shape tag, checked one
/// by one and named on error (a rectangle or polygon in percent of the
/// page, inside it; a label of the project for a `…Labels` shape), with
/// the text of the `textarea` result of our `<TextArea>` that shares its
/// region id (each of `value.text` a string, joined by line breaks, at most
/// [`MAX_LINE_TEXT`] characters; none: a line with nothing legible, the
/// empty text). `size` is the page's when labelloop knows it, else each
/// result's `original_width/height`. Results of other tags are left alone.
pub(super) fn drawn(
    target: &ChoicesTarget,
    result: &[Value],
    labels: &[String],
    size: Option<(u32, u32)>,
) -> ServiceResult<Vec<Drawn>> {
    let Some(lines) = &target.lines else {
        return Ok(Vec::new());
    };
    let field = |i: usize, f: &str| format!("annotation.result[{i}].{f}");
    let mut texts: HashMap<&str, String> = HashMap::new();
    for (i, r) in result.iter().enumerate() {
        if r.get("from_name").and_then(Value::as_str) != Some(lines.text_name.as_str()) {
            continue;
        }
        let Some(id) = r.get("id").and_then(Value::as_str) else {
            continue;
        };
        let parts = match r.get("value").and_then(|v| v.get("text")) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>(),
            Some(Value::String(t)) => Some(vec![t.clone()]),
            _ => None,
        }
        .ok_or_else(|| {
            ServiceError::invalid(&field(i, "value.text"), "must be a list of strings")
        })?;
        let text = parts.join("\n");
        let n = text.chars().count();
        if n > MAX_LINE_TEXT {
            return Err(ServiceError::invalid(
                &field(i, "value.text"),
                format!("{n} characters; a line holds at most {MAX_LINE_TEXT}"),
            ));
        }
        texts.insert(id, text);
    }
    let shape = lines.shape;
    let mut out = Vec::new();
    for (i, r) in result.iter().enumerate() {
        if r.get("from_name").and_then(Value::as_str) != Some(target.from_name.as_str())
            || r.get("type").and_then(Value::as_str) != Some(shape.result_type())
        {
            continue;
        }
        let value = r
            .get("value")
            .filter(|v| v.is_object())
            .ok_or_else(|| ServiceError::invalid(&field(i, "value"), "missing"))?;
        let rect = if shape.is_polygon() {
            polygon_rect(value).map_err(|e| ServiceError::invalid(&field(i, "value.points"), e))?
        } else {
            serde_json::from_value::<LabelStudioRect>(value.clone())
                .map_err(|e| ServiceError::invalid(&field(i, "value"), e))?
        };
        let dim = |k: &str| r.get(k)?.as_u64().and_then(|v| u32::try_from(v).ok());
        let (w, h) = size
            .or_else(|| Some((dim("original_width")?, dim("original_height")?)))
            .unwrap_or((0, 0));
        let bbox = BoxPx::from_label_studio(&rect, w, h)
            .map_err(|e| ServiceError::invalid(&field(i, "value"), e))?;
        let label = match shape.labels_key() {
            None => labels.first().cloned(),
            Some(key) => value
                .get(key)
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .and_then(Value::as_str)
                .and_then(|c| target.label_index(c))
                .and_then(|k| labels.get(k).cloned()),
        }
        .ok_or_else(|| {
            ServiceError::new(
                Code::UnknownLabel,
                format!(
                    "{}: no label of the project's <{}> {:?} ({labels:?})",
                    field(i, "value"),
                    shape.result_type(),
                    target.from_name
                ),
            )
        })?;
        let id = r.get("id").and_then(Value::as_str);
        out.push(Drawn {
            id: id.map(str::to_string),
            label,
            bbox,
            text: id.and_then(|id| texts.get(id)).cloned().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A polygon's points (percent of the page) as the rectangle around them.
fn polygon_rect(value: &Value) -> Result<LabelStudioRect, String> {
    let points = value
        .get("points")
        .and_then(Value::as_array)
        .ok_or("must be a list of [x, y] points in percent of the page")?;
    if points.len() < 3 {
        return Err(format!("{} points; a polygon has at least 3", points.len()));
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (k, p) in points.iter().enumerate() {
        let xy = p
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .ok_or_else(|| format!("point {k} is not [x, y] in percent of the page"))?;
        x0 = x0.min(xy.0);
        y0 = y0.min(xy.1);
        x1 = x1.max(xy.0);
        y1 = y1.max(xy.1);
    }
    Ok(LabelStudioRect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
        rotation: 0.0,
    })
}

/// The annotator's lines as the reviewer's set `regions::put` takes: a
/// line named `m<id>` after a machine line of the page stands for it;
/// otherwise a box over an unclaimed machine line at IoU ≥ [`MATCH_IOU`]
/// is taken for it. A kept box whose corners moved by rounding only (the
/// percent round trip) is the machine's own.
pub(super) fn lines_of(
    target: &ChoicesTarget,
    result: &[Value],
    current: &ItemRegions,
    labels: &[String],
) -> ServiceResult<Vec<BoxIn>> {
    let size = current
        .width
        .zip(current.height)
        .and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?)));
    let drawn = drawn(target, result, labels, size)?;
    let machine: Vec<(&RegionRecord, BoxPx)> = current
        .regions
        .iter()
        .filter(|r| r.source == "machine")
        .filter_map(|r| Some((r, r.bbox?)))
        .collect();
    let tol = 1e-9 * size.map_or(1.0, |(w, h)| f64::from(w.max(h)).max(1.0));
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut out = Vec::with_capacity(drawn.len());
    for d in drawn {
        let named = super::named_machine(d.id.as_deref(), &claimed, &machine);
        let found = named.or_else(|| {
            machine
                .iter()
                .filter(|(m, _)| !claimed.contains(&m.id))
                .map(|pair| (pair, pair.1.iou(&d.bbox)))
                .filter(|(_, iou)| *iou >= MATCH_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(m, _)| m)
        });
        let same = |m: &BoxPx| {
            [
                m.x0 - d.bbox.x0,
                m.y0 - d.bbox.y0,
                m.x1 - d.bbox.x1,
                m.y1 - d.bbox.y1,
            ]
            .iter()
            .all(|v| v.abs() <= tol)
        };
        let bbox = match found {
            Some((_, b)) if same(b) => *b,
            _ => d.bbox,
        };
        let id = found.map(|(m, _)| m.id);
        if let Some(id) = id {
            claimed.insert(id);
        }
        out.push(BoxIn {
            id,
            label: d.label,
            bbox: Some(bbox),
            segment: None,
            text: Some(d.text),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::config::{parse, Wanted};
    use super::*;
    use crate::service::error::Code;

    const XML: &str = r#"<View><Image name="image" value="$ocr"/>
      <Labels name="label" toName="image"><Label value="Text"/><Label value="Handwriting"/></Labels>
      <Rectangle name="bbox" toName="image"/>
      <Polygon name="poly" toName="image"/>
      <TextArea name="transcription" toName="image" editable="true" perRegion="true"/></View>"#;

    fn labels() -> Vec<String> {
        vec!["Text".to_string()]
    }

    fn machine(id: i64, b: [f64; 4], text: &str) -> RegionRecord {
        RegionRecord {
            id,
            source: "machine".into(),
            kind: "box".into(),
            label: "Text".into(),
            bbox: Some(BoxPx::from(b)),
            segment: None,
            text: Some(text.into()),
            char_scores: None,
            score: Some(0.9),
            uncertainty: None,
            status: "review".into(),
            replaces: None,
            model_version: None,
            calibration_version: None,
            annotator: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn page(regions: Vec<RegionRecord>) -> ItemRegions {
        ItemRegions {
            project_id: 1,
            item_id: 1,
            status: "needs_review".into(),
            width: Some(1000),
            height: Some(800),
            duration: None,
            regions,
        }
    }

    #[test]
    fn label_studios_ocr_template_is_read_as_rectangle_text_and_labels() {
        let t = parse(XML, &labels(), Wanted::PageLines).unwrap();
        assert_eq!(
            (t.from_name.as_str(), t.to_name.as_str()),
            ("bbox", "image")
        );
        assert_eq!(t.data_key, "ocr");
        let l = t.lines.as_ref().unwrap();
        assert_eq!(l.shape.result_type(), "rectangle");
        assert_eq!(l.text_name, "transcription");
        assert_eq!(l.labels_name, Some(("label".into(), "Text".into())));
        // Without the rectangle, the polygon draws the lines.
        let poly = XML.replace("<Rectangle name=\"bbox\" toName=\"image\"/>", "");
        let t = parse(&poly, &labels(), Wanted::PageLines).unwrap();
        assert_eq!(t.from_name, "poly");
        assert!(t.lines.unwrap().shape.is_polygon());
    }

    #[test]
    fn configs_that_do_not_fit_lines_are_refused_by_name() {
        for (bad, says) in [
            (XML.replace(" perRegion=\"true\"", ""), "is not per-region"),
            (
                XML.replace(" perRegion=\"true\"", " perRegion=\"false\""),
                "perRegion=\"true\"",
            ),
            (
                XML.replace("<Rectangle name=\"bbox\" toName=\"image\"/>", "")
                    .replace("<Polygon name=\"poly\" toName=\"image\"/>", ""),
                "no <Rectangle> or <Polygon>",
            ),
            (
                XML.replace("<Image name=\"image\" value=\"$ocr\"/>", "<Text name=\"image\" value=\"$ocr\"/>"),
                "read from an <Image>",
            ),
            (
                r#"<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="Text"/></Choices></View>"#.to_string(),
                "no <TextArea> tag",
            ),
            (
                r#"<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="Title"/></RectangleLabels><TextArea name="t" toName="i" perRegion="true"/></View>"#.to_string(),
                "has no label for [\"Text\"]",
            ),
            (XML.replace("value=\"$ocr\"", "value=\"ocr\""), "no value=\"$key\""),
        ] {
            let e = parse(&bad, &labels(), Wanted::PageLines).unwrap_err();
            assert_eq!(e.code, Code::LabelsMismatch, "{says}");
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
    }

    #[test]
    fn a_line_is_a_shape_and_a_textarea_sharing_one_id() {
        let t = parse(XML, &labels(), Wanted::PageLines).unwrap();
        let p = Page {
            width: 1000,
            height: 800,
            lines: vec![Line {
                id: 7,
                bbox: BoxPx::new(100.0, 80.0, 600.0, 120.0),
                text: "Hello, café".into(),
                score: 0.875,
            }],
        };
        let r = page_results(&t, &p);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|x| x["id"] == "m7" && x["score"] == 0.875));
        assert_eq!(r[0]["type"], "rectangle");
        assert_eq!(r[0]["value"]["x"], 10.0);
        assert_eq!(r[0]["value"]["width"], 50.0);
        assert_eq!(r[0]["original_width"], 1000);
        assert_eq!(r[1]["type"], "textarea");
        assert_eq!(r[1]["from_name"], "transcription");
        assert_eq!(r[1]["value"]["text"], json!(["Hello, café"]));
        assert_eq!(r[1]["value"]["y"], 10.0);
        assert_eq!(r[2]["type"], "labels");
        assert_eq!(r[2]["value"]["labels"], json!(["Text"]));
        // Read back, the kept line is the machine's own box and text.
        let cur = page(vec![machine(7, [100.0, 80.0, 600.0, 120.0], "Hello, café")]);
        let back = lines_of(&t, &r, &cur, &labels()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].id, Some(7));
        assert_eq!(back[0].bbox, Some(BoxPx::new(100.0, 80.0, 600.0, 120.0)));
        assert_eq!(back[0].text.as_deref(), Some("Hello, café"));
    }

    #[test]
    fn annotations_read_polygons_corrected_text_and_new_lines() {
        let xml = XML.replace("<Rectangle name=\"bbox\" toName=\"image\"/>", "");
        let t = parse(&xml, &labels(), Wanted::PageLines).unwrap();
        let cur = page(vec![
            machine(1, [100.0, 80.0, 600.0, 120.0], "first"),
            machine(2, [100.0, 200.0, 600.0, 240.0], "secnod"),
        ]);
        let poly = |id: &str, pts: Value, text: &str| {
            vec![
                json!({"id": id, "from_name": "poly", "to_name": "image", "type": "polygon",
                       "value": {"points": pts, "closed": true}}),
                json!({"id": id, "from_name": "transcription", "to_name": "image", "type": "textarea",
                       "value": {"points": pts, "text": [text]}}),
            ]
        };
        let mut result = poly(
            "m2",
            json!([[10, 25], [60, 25], [60, 30], [10, 30]]),
            "second",
        );
        // Drawn anew over line 1 (no m-id): taken for it.
        result.extend(poly(
            "x1",
            json!([[10, 10], [60, 10], [60, 15], [10, 15]]),
            "first",
        ));
        result.extend(poly("x2", json!([[10, 50], [30, 50], [30, 55]]), "added"));
        let got = lines_of(&t, &result, &cur, &labels()).unwrap();
        let ids: Vec<Option<i64>> = got.iter().map(|b| b.id).collect();
        assert_eq!(ids, [Some(2), Some(1), None]);
        assert_eq!(got[0].text.as_deref(), Some("second"));
        assert_eq!(got[1].bbox, Some(BoxPx::new(100.0, 80.0, 600.0, 120.0)));
        assert_eq!(got[2].bbox, Some(BoxPx::new(100.0, 400.0, 300.0, 440.0)));
        // Bad shapes and texts are named.
        let long = "x".repeat(MAX_LINE_TEXT + 1);
        for (bad, says) in [
            (
                poly("a", json!([[10, 10], [20, 10]]), "t"),
                "result[0].value.points",
            ),
            (
                poly("a", json!([[10, 10], [20, 10], ["x", 5]]), "t"),
                "point 2",
            ),
            (
                poly("a", json!([[10, 10], [20, 10], [20, 20]]), &long),
                "result[1].value.text",
            ),
        ] {
            let e = lines_of(&t, &bad, &cur, &labels()).unwrap_err();
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        let mut not_text = poly("a", json!([[10, 10], [20, 10], [20, 20]]), "t");
        not_text[1]["value"]["text"] = json!([3]);
        let e = lines_of(&t, &not_text, &cur, &labels()).unwrap_err();
        assert!(e.message.contains("list of strings"), "{}", e.message);
    }
}
