#!/usr/bin/env python3
"""Reference values for `src/calibrate/`, computed with the standard Python
packages, written to `tests/fixtures/calibration_reference.json`, which
`tests/calibrate.rs` checks the Rust implementation against.

Installs nothing itself. Run it from a venv:

    python3 -m venv /tmp/calvenv
    /tmp/calvenv/bin/pip install -r scripts/calibration_reference.requirements.txt
    /tmp/calvenv/bin/python scripts/calibration_reference.py

Deterministic (fixed seeds); re-running with the pinned versions rewrites the
same file.
"""

import json
import os
import sys

import numpy as np
import scipy
import scipy.stats
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import cross_val_predict

import cleanlab
import krippendorff
from cleanlab.filter import find_label_issues

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "tests",
    "fixtures",
    "calibration_reference.json",
)


def clopper_pearson():
    """One-sided Clopper–Pearson bounds: lower = Beta(k, n−k+1).ppf(δ),
    upper = Beta(k+1, n−k).ppf(1−δ)."""
    rows = []
    ns = [1, 2, 5, 10, 30, 59, 100, 333, 1000, 2500, 10000]
    for n in ns:
        ks = sorted({0, 1, n // 2, int(n * 0.9), int(n * 0.95), max(n - 1, 0), n})
        for k in ks:
            for delta in [0.1, 0.05, 0.01, 0.005, 0.0005]:
                lower = 0.0 if k == 0 else float(scipy.stats.beta.ppf(delta, k, n - k + 1))
                upper = 1.0 if k == n else float(scipy.stats.beta.ppf(1 - delta, k + 1, n - k))
                rows.append({"k": k, "n": n, "delta": delta, "lower": lower, "upper": upper})
    return rows


def kappa_cases(rng):
    cases = []
    for i, (n, k, agree) in enumerate([(50, 2, 0.8), (120, 3, 0.6), (200, 5, 0.4), (30, 4, 0.0)]):
        a = rng.integers(0, k, size=n)
        b = np.where(rng.random(n) < agree, a, rng.integers(0, k, size=n))
        cases.append(
            {
                "name": f"kappa{i}",
                "a": a.tolist(),
                "b": b.tolist(),
                "kappa": float(cohen_kappa_score(a, b)),
            }
        )
    return cases


def alpha_cases(rng):
    cases = []
    for i, (raters, units, k, agree, missing) in enumerate(
        [(2, 40, 2, 0.8, 0.0), (3, 60, 3, 0.7, 0.2), (5, 100, 4, 0.5, 0.35), (4, 25, 6, 0.9, 0.5)]
    ):
        truth = rng.integers(0, k, size=units)
        data = np.where(
            rng.random((raters, units)) < agree,
            truth[None, :],
            rng.integers(0, k, size=(raters, units)),
        ).astype(float)
        data[rng.random((raters, units)) < missing] = np.nan
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        cases.append(
            {
                "name": f"alpha{i}",
                "data": [[None if np.isnan(v) else int(v) for v in row] for row in data],
                "alpha": float(alpha),
            }
        )
    return cases


def label_issue_case(rng):
    """Three Gaussian blobs, 8% of the labels flipped to another class, and
    out-of-sample probabilities from 5-fold cross-fitted logistic regression."""
    n, k = 900, 3
    centers = np.array([[0.0, 0.0], [2.2, 0.0], [1.1, 1.9]])
    truth = rng.integers(0, k, size=n)
    x = centers[truth] + rng.normal(scale=0.8, size=(n, 2))
    noisy = truth.copy()
    flip = rng.random(n) < 0.08
    noisy[flip] = (truth[flip] + rng.integers(1, k, size=flip.sum())) % k
    probs = cross_val_predict(
        LogisticRegression(max_iter=1000), x, noisy, cv=5, method="predict_proba"
    )
    corrupted = np.flatnonzero(noisy != truth)
    kk = len(corrupted)
    default_ranked = find_label_issues(noisy, probs, return_indices_ranked_by="self_confidence")
    cl_ranked = find_label_issues(
        noisy, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence"
    )

    def precision_at_k(ranked):
        top = set(int(i) for i in ranked[:kk])
        return len(top & set(int(i) for i in corrupted)) / kk

    return {
        "num_classes": k,
        "probs": [[float(v) for v in row] for row in probs],
        "labels": noisy.tolist(),
        "true_labels": truth.tolist(),
        "corrupted": corrupted.tolist(),
        "cleanlab_default_ranked": [int(i) for i in default_ranked],
        "cleanlab_default_precision_at_k": precision_at_k(default_ranked),
        "cleanlab_confident_learning_ranked": [int(i) for i in cl_ranked],
        "cleanlab_confident_learning_precision_at_k": precision_at_k(cl_ranked),
    }


def mapie_case(rng):
    """Audit labels from the same synthetic law as the statistical test in
    tests/calibrate.rs: score S = 1 − 0.5·U³, correct ~ Bernoulli(S), so the
    precision above t is 1 − (1 − t)/4 and the share above t is
    (2(1 − t))^(1/3). MAPIE's BinaryClassificationController (precision,
    fixed_sequence) picks a threshold on these audit labels."""
    try:
        from mapie.risk_control import BinaryClassificationController
    except ImportError:
        return None
    draws = []
    for seed in range(20):
        r = np.random.default_rng(1000 + seed)
        n = 1000
        scores = 1.0 - 0.5 * r.random(n) ** 3
        correct = (r.random(n) < scores).astype(int)

        def predict_proba(x):
            s = np.asarray(x, dtype=float).reshape(-1)
            return np.stack([1.0 - s, s], axis=1)

        ctl = BinaryClassificationController(
            predict_function=predict_proba,
            risk="precision",
            target_level=0.95,
            confidence_level=0.95,
            fwer_method="fixed_sequence",
        )
        ctl.calibrate(scores.reshape(-1, 1), correct)
        t = ctl.best_predict_param
        t = None if t is None else float(t)
        coverage = 0.0 if t is None else float(min(1.0, (2.0 * (1.0 - t)) ** (1.0 / 3.0)))
        precision = None if t is None else float(1.0 - (1.0 - max(t, 0.5)) / 4.0)
        draws.append(
            {
                "scores": scores.tolist(),
                "correct": correct.tolist(),
                "mapie_threshold": t,
                "mapie_coverage": coverage,
                "mapie_precision": precision,
            }
        )
    return {"target": 0.95, "delta": 0.05, "draws": draws}


def main():
    rng = np.random.default_rng(20261202)
    out = {
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "krippendorff": getattr(krippendorff, "__version__", "unknown"),
            "cleanlab": cleanlab.__version__,
        },
        "clopper_pearson": clopper_pearson(),
        "kappa": kappa_cases(rng),
        "alpha": alpha_cases(rng),
        "label_issues": label_issue_case(rng),
    }
    try:
        import mapie

        out["versions"]["mapie"] = mapie.__version__
    except ImportError:
        pass
    m = mapie_case(rng)
    if m is not None:
        out["mapie"] = m
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    li = out["label_issues"]
    print(f"wrote {OUT}")
    print(
        f"label issues: {len(li['corrupted'])} corrupted; precision@k cleanlab default "
        f"{li['cleanlab_default_precision_at_k']:.3f}, confident_learning "
        f"{li['cleanlab_confident_learning_precision_at_k']:.3f}"
    )
    if m is not None:
        cov = [d["mapie_coverage"] for d in m["draws"]]
        print(f"mapie fixed_sequence: mean coverage {np.mean(cov):.3f} over {len(cov)} draws")


if __name__ == "__main__":
    main()
