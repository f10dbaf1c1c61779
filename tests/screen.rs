//! Screening on real data: the raw SMS file, Fashion-MNIST and the CNN's
//! embeddings; planted defects and copies where the truth has to be known.

mod common;

use std::io::Read;
use std::path::Path;

use labelloop::screen::exact::{self, Key};
use labelloop::screen::image_near::{self, ImageNearOptions, ImageSet};
use labelloop::screen::neighbors::BruteForce;
use labelloop::screen::outliers::{self, OutlierOptions};
use labelloop::screen::quality::{self, Quality};
use labelloop::screen::text_near::{self, TextNearOptions};
use labelloop::screen::{components, pii, ScreenError};
use labelloop::select::Rng;

/// The raw SMS rows (spam flag, text), all 4,837 of them.
fn raw_sms() -> Vec<(bool, String)> {
    let path = common::root().join(".cache/sms-spam.csv");
    let mut r = csv::Reader::from_path(common::require(&path)).expect("readable CSV");
    r.records()
        .map(|rec| {
            let rec = rec.expect("a CSV record");
            (&rec[1] == "1", rec[2].to_string())
        })
        .collect()
}

fn idx_images(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new("/usr/share/datasets/fashion-mnist").join(name);
    let file = std::fs::File::open(common::require(&path)).expect("readable IDX");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .expect("gzip");
    assert_eq!(&bytes[..4], &[0, 0, 8, 3], "an IDX image file");
    bytes[16..].chunks_exact(784).map(<[u8]>::to_vec).collect()
}

#[test]
fn raw_sms_has_exactly_237_exact_duplicate_groups_over_562_rows() {
    let rows = raw_sms();
    assert_eq!(rows.len(), 4837);
    let keys: Vec<Option<Key>> = rows.iter().map(|(_, t)| Some(exact::text_key(t))).collect();
    let groups = exact::groups(&keys);
    assert_eq!(groups.len(), 237);
    assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 562);
    // None of the groups mixes spam and ham.
    for g in &groups {
        assert!(g.iter().all(|&i| rows[i].0 == rows[g[0]].0));
    }
}

fn plant_edit(text: &str, kind: usize, rng: &mut Rng) -> String {
    let toks: Vec<&str> = text.split_whitespace().collect();
    match kind {
        0 => text.to_uppercase(),
        1 => format!("{}!!", text.replace(['.', ',', '?', '!'], "")),
        2 => {
            let chars: Vec<char> = text.chars().collect();
            let letters: Vec<usize> = (0..chars.len())
                .filter(|&i| chars[i].is_alphabetic())
                .collect();
            let i = letters[rng.below(letters.len())];
            let mut c = chars.clone();
            c[i] = if c[i] == 'q' { 'z' } else { 'q' };
            c.into_iter().collect()
        }
        3 => {
            let j = rng.below(toks.len());
            let mut t = toks.clone();
            t.remove(j);
            t.join(" ")
        }
        4 => format!("{text} see you"),
        _ => text.chars().take(text.chars().count() * 85 / 100).collect(),
    }
}

#[test]
fn planted_text_edits_on_real_sms_are_found_and_groups_stay_clean() {
    let rows = raw_sms();
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<String> = rows
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| seen.insert(exact::normalise_text(t)))
        .collect();
    assert_eq!(distinct.len(), 4512);
    // Natural near duplicates exist (templated spam): the screen finds some.
    let natural = text_near::near_pairs(&distinct, TextNearOptions::default()).unwrap();
    assert!(natural.len() > 50, "{} natural pairs", natural.len());
    let in_natural: std::collections::HashSet<usize> =
        natural.iter().flat_map(|p| [p.a, p.b]).collect();
    let mut texts: Vec<String> = (0..distinct.len())
        .filter(|i| !in_natural.contains(i))
        .map(|i| distinct[i].clone())
        .collect();
    let base_n = texts.len();
    let mut rng = Rng::new(25);
    let mut planted = Vec::new();
    let bases: Vec<usize> = (0..base_n)
        .filter(|&i| texts[i].split_whitespace().count() >= 8)
        .collect();
    for n in 0..120 {
        let b = bases[rng.below(bases.len())];
        if planted.iter().any(|&(x, _)| x == b) {
            continue;
        }
        let e = plant_edit(&texts[b].clone(), n % 6, &mut rng);
        texts.push(e);
        planted.push((b, texts.len() - 1));
    }
    let pairs = text_near::near_pairs(&texts, TextNearOptions::default()).unwrap();
    let groups = components(texts.len(), pairs.iter().map(|p| (p.a, p.b)));
    let mut group_of = vec![usize::MAX; texts.len()];
    for (g, members) in groups.iter().enumerate() {
        for &m in members {
            group_of[m] = g;
        }
    }
    let found = planted
        .iter()
        .filter(|&&(a, b)| group_of[a] != usize::MAX && group_of[a] == group_of[b])
        .count();
    let recall = found as f64 / planted.len() as f64;
    // Pairs the screen made that were not planted.
    let truth: std::collections::HashSet<(usize, usize)> = planted.iter().copied().collect();
    let wrong = pairs
        .iter()
        .filter(|p| !truth.contains(&(p.a, p.b)))
        .count();
    eprintln!(
        "planted {} edits: recall {recall:.3}, {wrong} other pairs",
        planted.len()
    );
    assert!(recall >= 0.95, "recall {recall}");
    assert!(wrong <= 2, "{wrong} pairs that were not planted");
}

fn thumb(px: &[u8]) -> Vec<f32> {
    image_near::thumbnail(px, 28, 28)
}

#[test]
fn planted_image_copies_on_fashion_mnist_are_verified_look_alikes_are_not() {
    let test = idx_images("t10k-images-idx3-ubyte.gz");
    let n = 3000;
    let mut thumbs: Vec<Vec<f32>> = test[..n].iter().map(|p| thumb(p)).collect();
    let mut rng = Rng::new(7);
    let mut planted = Vec::new();
    for k in 0..60 {
        let src = rng.below(n);
        let px = &test[src];
        let copy: Vec<u8> = match k % 3 {
            // Brighter.
            0 => px.iter().map(|&p| p.saturating_add(30)).collect(),
            // Shifted one pixel right.
            1 => (0..784)
                .map(|i| if i % 28 == 0 { 0 } else { px[i - 1] })
                .collect(),
            // Noisy.
            _ => px
                .iter()
                .map(|&p| (p as f64 + 16.0 * (rng.unit() - 0.5)).clamp(0.0, 255.0) as u8)
                .collect(),
        };
        thumbs.push(thumb(&copy));
        planted.push((src, thumbs.len() - 1));
    }
    let set = ImageSet {
        thumbs: &thumbs,
        embeddings: None,
    };
    let pairs = image_near::near_pairs(&set, ImageNearOptions::default()).unwrap();
    let got: std::collections::HashSet<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
    let found = planted.iter().filter(|p| got.contains(p)).count();
    let recall = found as f64 / planted.len() as f64;
    let planted_set: std::collections::HashSet<(usize, usize)> = planted.iter().copied().collect();
    let precision =
        got.iter().filter(|p| planted_set.contains(p)).count() as f64 / got.len().max(1) as f64;
    eprintln!(
        "image copies: recall {recall:.3}, precision {precision:.3} ({} pairs)",
        got.len()
    );
    assert!(recall >= 0.9, "recall {recall}");
    assert!(precision >= 0.8, "precision {precision}");
}

#[test]
fn planted_quality_defects_are_flagged_at_under_one_percent_on_clean_items() {
    let test = idx_images("t10k-images-idx3-ubyte.gz");
    let mut images: Vec<Vec<u8>> = test[..5000].to_vec();
    let clean = images.len();
    let mut rng = Rng::new(11);
    let mut truth = Vec::new();
    for k in 0..100 {
        let src = &test[5000 + k];
        let (img, want) = match k % 5 {
            0 => (vec![0u8; 784], Quality::Dark),
            1 => (vec![255u8; 784], Quality::Light),
            2 => (vec![(40 + rng.below(170)) as u8; 784], Quality::Constant),
            3 => (
                src.iter()
                    .map(|&p| (p as f32 * 0.3).round() as u8)
                    .collect(),
                Quality::Dark,
            ),
            _ => {
                // A 5x5 box blur, twice.
                let mut b = src.clone();
                for _ in 0..2 {
                    let s = b.clone();
                    for y in 0..28i32 {
                        for x in 0..28i32 {
                            let (mut sum, mut cnt) = (0u32, 0u32);
                            for dy in -2..=2 {
                                for dx in -2..=2 {
                                    let (yy, xx) = (y + dy, x + dx);
                                    if (0..28).contains(&yy) && (0..28).contains(&xx) {
                                        sum += s[(yy * 28 + xx) as usize] as u32;
                                        cnt += 1;
                                    }
                                }
                            }
                            b[(y * 28 + x) as usize] = (sum / cnt) as u8;
                        }
                    }
                }
                (b, Quality::Blurry)
            }
        };
        images.push(img);
        truth.push(want);
    }
    let stats: Vec<_> = images
        .iter()
        .map(|g| quality::image_stats(g, 28, 28))
        .collect();
    let t = quality::image_thresholds(&stats);
    let issues: Vec<Vec<Quality>> = stats.iter().map(|s| quality::image_issues(s, &t)).collect();
    let fp = issues[..clean].iter().filter(|i| !i.is_empty()).count();
    eprintln!("clean items flagged: {fp} of {clean}");
    assert!(fp as f64 <= 0.01 * clean as f64, "{fp} clean items flagged");
    for (k, want) in truth.iter().enumerate() {
        assert!(
            issues[clean + k].contains(want),
            "defect {k}: {:?}, wanted {want:?}",
            issues[clean + k]
        );
    }
}

#[test]
fn conformal_outliers_on_cnn_embeddings_keep_alpha_and_catch_foreign_images() {
    let model = common::shared("fashion-mnist-cnn");
    let train = idx_images("train-images-idx3-ubyte.gz");
    let test = idx_images("t10k-images-idx3-ubyte.gz");
    let embed = |imgs: &[Vec<u8>]| -> Vec<f32> {
        let inputs: Vec<labelloop::model::Input> = imgs
            .iter()
            .map(|px| {
                let img = image::GrayImage::from_raw(28, 28, px.clone()).expect("28x28");
                labelloop::model::Input::Image(common::png_bytes(&image::DynamicImage::ImageLuma8(
                    img,
                )))
            })
            .collect();
        model
            .predict(&inputs)
            .into_iter()
            .flat_map(|r| r.expect("embeds").embedding.expect("an embedding output"))
            .collect()
    };
    let reference = BruteForce::new(embed(&train[..6000]), 64).unwrap();
    let inliers = embed(&test[..2000]);
    // Foreign items: the same garments upside down and in negative — real
    // pixels the model never saw arranged so.
    let foreign: Vec<Vec<u8>> = test[2000..2200]
        .iter()
        .map(|px| px.iter().rev().map(|&p| 255 - p).collect())
        .collect();
    let foreign = embed(&foreign);
    let opts = OutlierOptions { k: 10, alpha: 0.05 };
    let res = outliers::conformal(&reference, &inliers, opts).unwrap();
    let fpr = res.flagged.iter().filter(|&&f| f).count() as f64 / 2000.0;
    let res_f = outliers::conformal(&reference, &foreign, opts).unwrap();
    let recall = res_f.flagged.iter().filter(|&&f| f).count() as f64 / 200.0;
    let mut scores = res.raw.clone();
    scores.extend(&res_f.raw);
    let positive: Vec<bool> = (0..2200).map(|i| i >= 2000).collect();
    let auc = outliers::auroc(&scores, &positive);
    eprintln!(
        "conformal at alpha 0.05: false-positive rate {fpr:.4}, recall {recall:.3}, AUROC {auc:.4}"
    );
    assert!(
        fpr <= 0.05 + 3.0 * (0.05f64 * 0.95 / 2000.0).sqrt(),
        "fpr {fpr}"
    );
    assert!(recall >= 0.9 && auc >= 0.95, "recall {recall}, AUROC {auc}");
    // α outside (0, 0.5] is refused.
    for alpha in [0.0, 0.6, -1.0] {
        let err = outliers::conformal(&reference, &inliers[..64], OutlierOptions { k: 10, alpha });
        assert!(matches!(err, Err(ScreenError::Alpha(_))));
    }
}

#[test]
fn phone_numbers_in_real_sms_are_mostly_spam_and_checks_hold() {
    let rows = raw_sms();
    let with_phone: Vec<bool> = rows
        .iter()
        .filter(|(_, t)| pii::scan(t).iter().any(|s| s.kind == pii::PiiKind::Phone))
        .map(|(spam, _)| *spam)
        .collect();
    let spam = with_phone.iter().filter(|&&s| s).count();
    eprintln!(
        "{} messages with a phone number, {spam} spam",
        with_phone.len()
    );
    assert!(with_phone.len() >= 250, "{}", with_phone.len());
    assert!(spam as f64 >= 0.9 * with_phone.len() as f64);
    assert!(pii::luhn_valid("4539578763621486") && !pii::luhn_valid("4539578763621487"));
    assert!(
        pii::iban_valid("FR1420041010050500013M02606")
            && !pii::iban_valid("FR1420041010050500013M02607")
    );
}

#[test]
fn the_cli_screens_a_jsonl_file_and_refuses_a_bad_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    let lines = [
        r#"{"id":"a","text":"Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121"}"#,
        r#"{"id":"b","text":"Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.  Text FA to 87121"}"#,
        r#"{"id":"c","text":"FREE entry in 2 a weekly comp to win FA Cup final tkts 21st May 2005! Text FA to 87121"}"#,
        r#"{"id":"d","text":"I'll be late, call me on 07700 900123 or mail jo@example.com"}"#,
        r#"{"id":"e","text":"Nah I don't think he goes to usf, he lives around here though"}"#,
        r#"{"id":"f","image":"missing.png"}"#,
    ];
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = dir.path().join("issues.jsonl");
    let bin = env!("CARGO_BIN_EXE_labelloop");
    let run = std::process::Command::new(bin)
        .current_dir(common::root())
        .args(["-q", "screen", "--model", "minilm-l6"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("within-pool"), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types = |id: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l["id"] == id)
            .map(|l| {
                l["issues"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|i| i["type"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    assert_eq!(types("a"), vec!["exact_duplicate", "near_duplicate"]);
    assert_eq!(types("b"), vec!["exact_duplicate"]);
    let b = lines.iter().find(|l| l["id"] == "b").unwrap();
    assert_eq!(b["issues"][0]["of"], "a");
    assert_eq!(types("c"), vec!["near_duplicate"]);
    assert_eq!(types("d"), vec!["pii:email", "pii:phone"]);
    assert!(types("e").is_empty());
    let f = lines.iter().find(|l| l["id"] == "f").unwrap();
    assert_eq!(f["code"], "unreadable");

    let bad = std::process::Command::new(bin)
        .current_dir(common::root())
        .args(["-q", "screen", "--model", "minilm-l6", "--alpha", "0.7"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("(0, 0.5]"));
}
