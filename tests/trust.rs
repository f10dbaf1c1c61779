//! Issue 26: the audit drawn where the decision is made stays valid when the
//! head is retrained between audit draws, and pooling gives small classes a
//! threshold. Synthetic Gaussian classes (3 classes, one of them 6% of the
//! items), so that it runs in seconds; the figures on real data are
//! `scripts/trust_figures.sh`.

mod common;

use std::time::Duration;

use common::server::{fashion_items, Server, TestDb};
use labelloop::calibrate::Method;
use labelloop::select::strategies::Strategy;
use labelloop::select::Rng;
use labelloop::simulate::{self, AuditDesign, Dataset, Predictor, ReviewSampling, SimOptions};
use labelloop::store::{ReviewDraw, Store};
use serde_json::{json, Value};

const DIM: usize = 6;

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// `n` items in three overlapping Gaussian classes (shares 0.55, 0.39, 0.06).
fn data(n: usize) -> Dataset {
    let mut rng = Rng::new(2026);
    let means: [[f32; DIM]; 3] = [
        [1.2, 0.0, 0.0, 0.3, 0.0, 0.0],
        [0.0, 1.2, 0.0, 0.0, 0.3, 0.0],
        [0.0, 0.0, 1.4, 0.0, 0.0, 0.3],
    ];
    let (mut x, mut y, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let u = rng.unit();
        let c = if u < 0.55 {
            0
        } else if u < 0.94 {
            1
        } else {
            2
        };
        for m in means[c] {
            // Box–Muller.
            let (a, b) = (rng.unit().max(1e-12), rng.unit());
            let z = (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos();
            x.push(m + 0.9 * z as f32);
        }
        y.push(c);
        ids.push(format!("item-{i}"));
    }
    Dataset {
        ids,
        x,
        dim: DIM,
        y,
        labels: vec!["a".into(), "b".into(), "c".into()],
        model_probs: None,
        prototypes: None,
    }
}

fn options(method: Method, design: AuditDesign, seeds: usize) -> SimOptions {
    SimOptions {
        strategies: vec![Strategy::Random],
        seed_size: 30,
        batch: 30,
        rounds: 5,
        seed: 7,
        seeds,
        test_every: 5,
        threshold: None,
        committee: 2,
        predictor: Predictor::Head,
        target: 0.9,
        delta: 0.1,
        method,
        audit_rate: 0.0,
        audit_labels: Some(240),
        // Six rounds of 40 audit labels: the head is retrained between draws.
        audit_per_round: Some(40),
        audit_stop_gain: None,
        calibrate_every: 0,
        drift_at: None,
        drift_swap: None,
        noise: 0.0,
        finish: false,
        audit_design: design,
        review_sampling: ReviewSampling::TopK,
    }
}

/// (violations, mean coverage, mean oracle, point-estimate violations) over the final rounds.
fn outcome(report: &simulate::SimReport, target: f64) -> (usize, f64, f64, usize) {
    let (mut bad, mut cov, mut oracle, mut point_bad) = (0, 0.0, 0.0, 0);
    for run in &report.runs {
        let last = run.results[0].rounds.last().expect("a round");
        if last.auto_precision < target {
            bad += 1;
        }
        if last.point_estimate.precision.is_some_and(|p| p < target) {
            point_bad += 1;
        }
        cov += last.auto_coverage;
        oracle += last.oracle_coverage;
    }
    let n = report.runs.len() as f64;
    (bad, cov / n, oracle / n, point_bad)
}

#[test]
fn ipw_audit_holds_its_guarantee_when_the_head_is_retrained_between_draws() {
    let data = data(2000);
    let seeds = 40;
    let opts = options(
        Method::Pooled,
        AuditDesign::Ipw { uniform_share: 0.2 },
        seeds,
    );
    let report = simulate::run(&data, &opts, |_, _| {}).expect("simulate");
    // The draws really span several head versions.
    let rounds = &report.runs[0].results[0].rounds;
    assert!(rounds.iter().filter(|r| r.refit).count() >= 5);
    assert!(rounds.last().unwrap().audit_draws >= 240);
    let (bad, cov, oracle, point_bad) = outcome(&report, 0.9);
    eprintln!(
        "ipw: {bad}/{seeds} below 0.9, coverage {cov:.3} (oracle {oracle:.3}); point estimate {point_bad}/{seeds}"
    );
    // δ = 0.1: 4 expected at worst; 8 is about two standard deviations above.
    assert!(bad <= 8, "{bad}/{seeds} runs below the target");
    // It accepts something (0.100 here; the statement is about the
    // unlabeled items since the finite-population correction).
    assert!(cov > 0.05, "coverage {cov}");
    // The check can fail: a point estimate on the same audit misses often.
    assert!(point_bad > bad, "point estimate {point_bad} vs {bad}");
}

/// Review labels counted: review batches drawn by the proportional rule
/// (their probabilities kept), the head retrained on them between audit
/// draws every round, 40 seeds; realised precision against the truth.
#[test]
fn review_labels_counted_keep_the_guarantee_when_the_head_is_retrained() {
    let data = data(2000);
    let seeds = 40;
    let mut opts = options(
        Method::Pooled,
        AuditDesign::Ipw { uniform_share: 0.2 },
        seeds,
    );
    opts.review_sampling = ReviewSampling::Proportional { uniform_share: 0.2 };
    let report = simulate::run(&data, &opts, |_, _| {}).expect("simulate");
    let rounds = &report.runs[0].results[0].rounds;
    assert!(rounds.iter().filter(|r| r.refit).count() >= 5);
    // Seed 30 + five review batches of 30.
    assert_eq!(
        rounds.last().unwrap().labels - rounds.last().unwrap().audit_labels,
        180
    );
    let (bad, cov, oracle, point_bad) = outcome(&report, 0.9);
    let plain = simulate::run(
        &data,
        &options(
            Method::Pooled,
            AuditDesign::Ipw { uniform_share: 0.2 },
            seeds,
        ),
        |_, _| {},
    )
    .expect("simulate");
    let (_, cov_plain, _, _) = outcome(&plain, 0.9);
    eprintln!(
        "ipw + review counted: {bad}/{seeds} below 0.9, coverage {cov:.3} (top-k review, not counted: {cov_plain:.3}; oracle {oracle:.3}); point estimate {point_bad}/{seeds}"
    );
    assert!(bad <= 8, "{bad}/{seeds} runs below the target");
    assert!(cov > 0.05, "coverage {cov}");
}

#[test]
fn pooled_gives_the_small_class_a_threshold_where_per_class_cannot() {
    let data = data(2000);
    let seeds = 12;
    let run = |method| {
        simulate::run(
            &data,
            &options(method, AuditDesign::Uniform, seeds),
            |_, _| {},
        )
        .expect("simulate")
    };
    let count_small = |r: &simulate::SimReport| {
        r.runs
            .iter()
            .filter(|s| s.results[0].rounds.last().unwrap().thresholds["c"].is_some())
            .count()
    };
    let pooled = run(Method::Pooled);
    let per_class = run(Method::PerClass);
    let (bad, cov, oracle, _) = outcome(&pooled, 0.9);
    let (_, cov_pc, _, _) = outcome(&per_class, 0.9);
    let (small_pooled, small_pc) = (count_small(&pooled), count_small(&per_class));
    eprintln!(
        "pooled: {bad}/{seeds} below, coverage {cov:.3} (per class {cov_pc:.3}, oracle {oracle:.3}); small class thresholded in {small_pooled} vs {small_pc} runs"
    );
    assert!(bad <= 3, "{bad}/{seeds}");
    assert!(small_pooled > small_pc, "{small_pooled} vs {small_pc}");
    assert!(cov > cov_pc, "pooled {cov} vs per class {cov_pc}");
}

#[test]
fn a_uniform_share_outside_the_unit_interval_is_refused() {
    for u in [-0.5, 1.5, f64::NAN] {
        let e = labelloop::calibrate::ipw::design(&[0.9, 0.8], u, 0.95).unwrap_err();
        assert!(e.to_string().contains("uniform_share"), "{e}");
    }
}

/// The service's randomised review rule: bad settings are 422s naming the
/// field; a proportional list stores each drawn item's probability (auto-
/// accepted items are drawable at the uniform share and come back to
/// review); stored probabilities of 0 or NaN never reach the estimator.
async fn proportional_review(db: TestDb) {
    let s = Server::start(&db.url, &["--no-auth"]);
    let create = |settings: Value, threshold: f64| json!({"name": "trust", "model": "fashion-mnist-cnn", "threshold": threshold, "settings": settings});
    for (settings, field) in [
        (json!({"uniform_share": 1.5}), "settings.uniform_share"),
        (json!({"uniform_share": -0.1}), "settings.uniform_share"),
        (
            json!({"review_sampling": "top-3"}),
            "settings.review_sampling",
        ),
        (
            json!({"review_sampling": "proportional", "tiers": [{"name": "a", "min_uncertainty": 0.0}]}),
            "settings.review_sampling",
        ),
    ] {
        let (code, body) = s.post("/v1/projects", &create(settings.clone(), 0.9)).await;
        assert_eq!(code, 422, "{settings}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{settings}: {body}"
        );
    }
    // A fixed 0.9 accepts most items, so the draw has both kinds.
    let (code, body) = s
        .post(
            "/v1/projects",
            &create(
                json!({"review_sampling": "proportional", "uniform_share": 0.5}),
                0.9,
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let project = body["id"].as_i64().unwrap();
    let (code, body) = s
        .post(
            &format!("/v1/projects/{project}/items"),
            &json!(fashion_items(200)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    s.wait_job(
        body["job"]["id"].as_i64().unwrap(),
        Duration::from_secs(120),
    )
    .await;
    let resp = s
        .client
        .put(format!("{}/v1/projects/{project}/settings", s.url))
        .json(&json!({"review_sampling": "proportional", "uniform_share": 2}))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("settings.uniform_share"),
        "{body}"
    );

    let (code, list) = s
        .get(&format!(
            "/v1/projects/{project}/review?annotator=ann&limit=40"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["strategy"], "proportional");
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 40);
    assert!(
        items.iter().all(|i| i["status"] == "needs_review"),
        "{list}"
    );
    // Most of each draw goes by the chance of being wrong: the drawn items
    // are less sure of themselves than the project's items on average.
    let score = |i: &Value| i["prediction"]["score"].as_f64().unwrap();
    let (_, all) = s
        .get(&format!("/v1/projects/{project}/items?limit=1000"))
        .await;
    let all = all["items"].as_array().unwrap().clone();
    let mean = |v: &[Value]| v.iter().map(score).sum::<f64>() / v.len() as f64;
    assert!(
        mean(&items) < mean(&all),
        "drawn {} vs all {}",
        mean(&items),
        mean(&all)
    );

    // Probabilities of 0 or NaN are never stored (a logged skip).
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let others: Vec<i64> = all
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .filter(|id| !ids.contains(id))
        .take(2)
        .collect();
    let bad = [
        ReviewDraw {
            id: others[0],
            p: 0.0,
            p_min: 0.0,
        },
        ReviewDraw {
            id: others[1],
            p: f64::NAN,
            p_min: 0.001,
        },
    ];
    let store = Store::connect(&db.url).await.unwrap();
    assert!(store
        .lease_drawn(&bad, "ann", 60_000)
        .await
        .unwrap()
        .is_empty());

    for i in &items {
        let id = i["id"].as_i64().unwrap();
        let label = i["prediction"]["label"].as_str().unwrap();
        let (code, body) = s
            .post(
                &format!("/v1/items/{id}/annotations"),
                &json!({"label": label, "annotator": "ann"}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // What the estimator reads: every labeled draw, each with its
    // probability in (0, 1] and the draw's floor below it.
    let draws = store.review_draws(project).await.unwrap();
    assert_eq!(draws.len(), 40);
    for d in &draws {
        assert!(ids.contains(&d.id));
        assert!(
            d.p > 0.0 && d.p <= 1.0 && d.p_min > 0.0 && d.p_min <= d.p,
            "{d:?}"
        );
    }
}

both_backends!(proportional_review);

/// `simulate` refuses a uniform share outside [0, 1] and an unknown review
/// rule before loading anything: exit 2 naming the flag.
#[test]
fn simulate_flags_outside_their_domain_exit_2_naming_the_flag() {
    for (flag, value) in [
        ("--uniform-share", "1.5"),
        ("--uniform-share", "-0.2"),
        ("--review-sampling", "top-3"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_labelloop"))
            .args([
                "simulate",
                "--data",
                "missing.jsonl",
                "--model",
                "fashion-mnist-cnn",
                &format!("{flag}={value}"),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}
