//! `labelloop simulate --coco instances.json --model <detector>`: the
//! detection loop (see [`crate::simulate::boxes`]) on a COCO file whose
//! boxes are the truth. Every image is pre-labeled once by the engine
//! (batched, as `labelloop label` does); the seeds replay audit,
//! calibration and routing on those proposals.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use super::super::{EXIT_MODEL_LOAD, EXIT_NOTHING_LABELED, EXIT_OUTPUT, EXIT_USAGE};
use super::{cache, usage, SimulateArgs};
use crate::calibrate::{BoxDesign, BoxOptions, RiskBound};
use crate::model::pipeline::PipelineOptions;
use crate::model::{registry, Input, LoadOptions, Model, Task};
use crate::region::BoxPx;
use crate::runtime::SessionOptions;
use crate::service::calibration::{validate, validate_target};
use crate::simulate::boxes::{self as sim, BoxDataset, BoxImage, BoxSimOptions, BoxSimReport};
use crate::store::ProjectSettings;

/// `--audit-rate`'s default for detection: share of the images audited.
const DETECT_AUDIT_RATE: f64 = 0.3;

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImageEntry>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImageEntry {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// One proposal as cached: (class, score, [x0, y0, x1, y1]).
type Proposal = (usize, f64, [f64; 4]);
/// One image of the COCO file: its `file_name` and true boxes.
type TruthImage = (String, Vec<(BoxPx, usize)>);

/// The COCO file read into images with true boxes, classes in the model's
/// label order. Errors name what is wrong.
fn read_coco(path: &Path, labels: &[String]) -> Result<(Vec<TruthImage>, Vec<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let coco: CocoFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut class_of: HashMap<u64, usize> = HashMap::new();
    let mut unknown = Vec::new();
    for c in &coco.categories {
        match labels.iter().position(|l| *l == c.name) {
            Some(k) => {
                class_of.insert(c.id, k);
            }
            None => unknown.push(c.name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "categories [{}] are not labels of the model ([{}])",
            unknown.join(", "),
            labels.join(", ")
        ));
    }
    let index: HashMap<u64, usize> = coco
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    if index.len() != coco.images.len() {
        return Err("two images share an id".into());
    }
    let mut truth: Vec<Vec<(BoxPx, usize)>> = vec![Vec::new(); coco.images.len()];
    for (i, a) in coco.annotations.iter().enumerate() {
        let image = index
            .get(&a.image_id)
            .ok_or_else(|| format!("annotations[{i}]: image_id {} is not an image", a.image_id))?;
        let class = class_of.get(&a.category_id).ok_or_else(|| {
            format!(
                "annotations[{i}]: category_id {} is not a category",
                a.category_id
            )
        })?;
        let [x, y, w, h] = a.bbox;
        if !(a.bbox.iter().all(|v| v.is_finite()) && w >= 0.0 && h >= 0.0) {
            return Err(format!(
                "annotations[{i}]: bbox {:?} is not [x, y, w ≥ 0, h ≥ 0]",
                a.bbox
            ));
        }
        truth[*image].push((BoxPx::from_coco([x, y, w, h]), *class));
    }
    let files = coco.images.iter().map(|im| im.file_name.clone());
    Ok((files.zip(truth).collect(), labels.to_vec()))
}

pub(super) fn options(args: &SimulateArgs) -> Result<(BoxDesign, RiskBound, f64), ExitCode> {
    validate_target(args.target).map_err(|e| usage("--target", e.message))?;
    let settings = |s: ProjectSettings| validate(&s);
    settings(ProjectSettings {
        delta: Some(args.delta),
        ..ProjectSettings::default()
    })
    .map_err(|e| usage("--delta", e.message))?;
    let rate = args.audit_rate.unwrap_or(DETECT_AUDIT_RATE);
    settings(ProjectSettings {
        audit_rate: Some(rate),
        ..ProjectSettings::default()
    })
    .map_err(|e| usage("--audit-rate", e.message))?;
    if !(args.iou.is_finite() && args.iou > 0.0 && args.iou <= 1.0) {
        return Err(usage("--iou", format!("{} is not in (0, 1]", args.iou)));
    }
    if args.seeds == 0 || args.seeds > 1000 {
        return Err(usage(
            "--seeds",
            format!("{} is not in [1, 1000]", args.seeds),
        ));
    }
    let design = BoxDesign::parse(&args.design).ok_or_else(|| {
        usage(
            "--design",
            format!("{:?} is not one of shared, per-class", args.design),
        )
    })?;
    let bound = RiskBound::parse(&args.bound).ok_or_else(|| {
        usage(
            "--bound",
            format!("{:?} is not one of betting, hoeffding-bentkus", args.bound),
        )
    })?;
    Ok((design, bound, rate))
}

/// The model `--model` names, loaded with the `--threads` budget; a usage
/// error when it is not a model of `task`.
pub(super) fn load_model(args: &SimulateArgs, task: Task, flag: &str) -> Result<Model, ExitCode> {
    let dir = registry::resolve(&args.model, &args.models_dir);
    let threads = threads(args);
    let sessions = threads.min(4);
    let model = Model::load(
        &dir,
        LoadOptions {
            session: SessionOptions {
                intra_threads: (threads / sessions).max(1),
                spinning: false,
            },
            sessions,
            embeddings: false,
            ..LoadOptions::default()
        },
    )
    .map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_MODEL_LOAD)
    })?;
    if model.manifest().task != task {
        return Err(usage(
            "--model",
            format!(
                "{} is not a {} model ({flag} needs one)",
                model.name(),
                task.as_str()
            ),
        ));
    }
    Ok(model)
}

/// `--threads`, else every core.
pub(super) fn threads(args: &SimulateArgs) -> usize {
    args.threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

/// Pipeline options for pre-labeling on `threads` threads: as many
/// runners, each with its own session, up to 4.
pub(super) fn sessions(threads: usize) -> PipelineOptions {
    PipelineOptions {
        workers: threads,
        runners: threads.min(4),
        ..PipelineOptions::default()
    }
}

pub fn run(args: SimulateArgs) -> ExitCode {
    let (design, bound, audit_rate) = match options(&args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(coco_path) = args.coco.clone() else {
        return usage("--coco", "is required for detection");
    };
    let model = match load_model(&args, Task::ObjectDetection, "--coco") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let labels: Vec<String> = model.labels().iter().cloned().collect();
    let (images, labels) = match read_coco(&coco_path, &labels) {
        Ok(x) => x,
        Err(e) => return usage("--coco", e),
    };
    if images.is_empty() {
        eprintln!("error: {} holds no images", coco_path.display());
        return ExitCode::from(EXIT_NOTHING_LABELED);
    }
    let root: PathBuf = args.images.clone().unwrap_or_else(|| {
        coco_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let items = images
        .iter()
        .map(|(file, _)| (file.clone(), Input::ImagePath(root.join(file))))
        .collect();
    let opts = PipelineOptions {
        batch_size: 8,
        ..sessions(threads(&args))
    };
    let proposals = match cache::answers(&args, &model, &coco_path, items, opts, |p| {
        let d = p.detections.ok_or("no detections in the answer")?;
        Ok::<Vec<Proposal>, String>(
            d.boxes
                .iter()
                .map(|b| (b.class, f64::from(b.score), b.bbox))
                .collect(),
        )
    }) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let data = BoxDataset {
        images: images
            .into_iter()
            .zip(proposals)
            .map(|((id, truth), props)| BoxImage {
                id,
                preds: props
                    .into_iter()
                    .map(|(c, s, [x0, y0, x1, y1])| (BoxPx::new(x0, y0, x1, y1), c, s))
                    .collect(),
                truth,
                held: false,
                texts: None,
            })
            .collect(),
        labels,
    };
    let title = format!(
        "{} on {}",
        model.name(),
        coco_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    finish(&args, &data, (design, bound, audit_rate), "detect", &title)
}

/// Replays the seeds on `data`, writes `simulation-<task>.json` and the
/// per-image outcomes, prints the summary: the same for boxes and for
/// segments (as unit-height boxes, see `Span::as_box`).
pub(super) fn finish(
    args: &SimulateArgs,
    data: &BoxDataset,
    (design, bound, audit_rate): (BoxDesign, RiskBound, f64),
    task: &'static str,
    title: &str,
) -> ExitCode {
    let opts = BoxSimOptions {
        seed: args.seed,
        seeds: args.seeds,
        audit_images: args.audit_images,
        audit_rate,
        iou: args.iou,
        fit: BoxOptions {
            target: args.target,
            delta: args.delta,
            design,
            bound,
        },
    };
    // Detection keeps the names its scripts read.
    let (report_file, outcomes_file, unit, region) = if task == "detect" {
        (
            "simulation-boxes.json",
            "box-outcomes.jsonl",
            "images",
            "boxes",
        )
    } else if task == "lines" {
        (
            "simulation-lines.json",
            "line-outcomes.jsonl",
            "pages",
            "lines",
        )
    } else {
        (
            "simulation-segments.json",
            "segment-outcomes.jsonl",
            "recordings",
            "segments",
        )
    };
    let outcomes = match sim::outcomes(data, opts.iou) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = match sim::run(data, &opts) {
        Ok(r) => sim::BoxSimReport { task, ..r },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let written = std::fs::create_dir_all(&args.out).and_then(|_| {
        let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
        std::fs::write(args.out.join(report_file), json)?;
        // Per image: the matched proposals, for side-by-side checks
        // (scripts/box_calibration_reference.py).
        let mut lines = Vec::new();
        for (im, o) in data.images.iter().zip(&outcomes) {
            let row = serde_json::json!({
                "id": im.id,
                "truths": o.truths,
                "missed": o.missed,
                "boxes": o.boxes.iter().map(|b| (b.class, b.score, b.correct)).collect::<Vec<_>>(),
            });
            serde_json::to_writer(&mut lines, &row).map_err(std::io::Error::other)?;
            lines.push(b'\n');
        }
        std::fs::write(args.out.join(outcomes_file), lines)
    });
    if let Err(e) = written {
        eprintln!("error: writing {}: {e}", args.out.display());
        return ExitCode::from(EXIT_OUTPUT);
    }
    print_summary(title, &report, unit, region);
    eprintln!(
        "wrote {0}/{report_file} and {0}/{outcomes_file}",
        args.out.display()
    );
    ExitCode::SUCCESS
}

/// The table of seeds; `unit` and `region` name what was simulated
/// (images and boxes, or recordings and segments).
fn print_summary(title: &str, r: &BoxSimReport, unit: &str, region: &str) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    println!("{title}");
    println!(
        "{} {unit}, {} true {region}, {} proposals (mAP@0.5 {}, mAP@[.5:.95] {}); target {} at δ {}, IoU ≥ {}, design {:?}, bound {:?}, {} audit {unit}, {} seed(s)",
        r.images,
        r.truths,
        r.proposals,
        opt(r.map_50),
        opt(r.map_50_95),
        r.target,
        r.delta,
        r.iou,
        r.design,
        r.bound,
        r.audit_images,
        r.runs.len()
    );
    println!("| seed | accepted {region} | precision | mean FDP | accepted share (oracle) | coverage (oracle) | miss (mean) | miss bound | {unit} touched | finished P / R |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.runs {
        println!(
            "| {} | {} | {} | {:.4} | {:.3} ({:.3}) | {:.3} ({:.3}) | {} | {:.3} | {:.3} | {} / {} |",
            s.seed,
            s.accepted_boxes,
            opt(s.precision),
            s.mean_fdp,
            s.accepted_share,
            s.oracle_accepted_share,
            s.coverage,
            s.oracle_coverage,
            opt(s.miss_mean),
            s.miss_bound,
            s.touched_share,
            opt(s.finished_precision),
            opt(s.finished_recall),
        );
    }
    let m = &r.summary;
    println!(
        "summary: precision ≥ {} in {}/{} seeds (min {}, mean {}; {} accepted nothing); {region} auto-accepted {:.3} vs oracle {:.3}; coverage {:.3} vs oracle {:.3}; miss {} vs bound {:.3} (within in {}/{}); {unit} touched {:.3}; finished precision {} recall {}",
        r.target,
        m.meets_target,
        m.seeds,
        opt(m.precision_min),
        opt(m.precision_mean),
        m.accepted_nothing,
        m.accepted_share_mean,
        m.oracle_accepted_share_mean,
        m.coverage_mean,
        m.oracle_coverage_mean,
        opt(m.miss_mean),
        m.miss_bound_mean,
        m.miss_within_bound,
        m.seeds,
        m.touched_share_mean,
        opt(m.finished_precision_mean),
        opt(m.finished_recall_mean),
    );
    if let Some(s) = r.runs.first() {
        let rows: BTreeMap<&str, String> = s
            .classes
            .iter()
            .map(|c| {
                (
                    c.label.as_str(),
                    format!(
                        "threshold {} · audit {} {unit} / {} {region} · accepted {} ({} correct) of {} true",
                        opt(c.threshold),
                        c.audit_images,
                        c.audit_boxes,
                        c.accepted,
                        c.correct,
                        c.truths
                    ),
                )
            })
            .collect();
        println!("seed {} per class:", s.seed);
        for (label, row) in rows {
            println!("  {label}: {row}");
        }
    }
}
