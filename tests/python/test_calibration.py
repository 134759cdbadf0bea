"""`dfserve calibrate` against scikit-learn: the Platt fit, the reliability bins, the expected
calibration error and the Brier score, on synthetic scores with a known calibration."""
import json
import subprocess

import numpy as np
from sklearn.calibration import _sigmoid_calibration, calibration_curve
from sklearn.metrics import brier_score_loss

from conftest import ROOT

BIN = ROOT / "target" / "release" / "dfserve"


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_calibration_matches_scikit_learn(tmp_path):
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.02, 0.98, 4000).astype(np.float32)
    # The truth: P(fake | raw) = sigmoid(2 * logit(raw) - 1).
    fake = rng.uniform(size=raw.size) < sigmoid(2.0 * logit(raw.astype(np.float64)) - 1.0)
    scores = tmp_path / "scores.jsonl"
    with scores.open("w") as f:
        for i, (s, y) in enumerate(zip(raw, fake)):
            row = {"path": f"x/{i}.jpg", "truth": "fake" if y else "real",
                   "models": {"m": {"status": "ok", "score": float(s), "label": "authentic", "face_count": 1}}}
            f.write(json.dumps(row) + "\n")
    out = subprocess.run([str(BIN), "calibrate", str(scores), "--model", "m", "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    fit = json.loads(out.stdout)
    cal = fit["calibration"]
    assert cal["method"] == "platt" and cal["samples"] == raw.size

    # scikit-learn's Platt fit (the one CalibratedClassifierCV uses), on the same feature:
    # P = 1 / (1 + exp(A f + B)), so dfserve's a, b are -A, -B.
    x = logit(raw.astype(np.float64))
    a_sk, b_sk = _sigmoid_calibration(x, fake.astype(int))
    assert abs(cal["a"] + a_sk) < 2e-3 * max(1, abs(a_sk)), (cal, a_sk, b_sk)
    assert abs(cal["b"] + b_sk) < 2e-3 * max(1, abs(b_sk)), (cal, a_sk, b_sk)
    # ... and both recover the generating parameters.
    assert abs(cal["a"] - 2.0) < 0.2 and abs(cal["b"] + 1.0) < 0.2, cal

    for name, p in [("before", raw.astype(np.float64)), ("after", sigmoid(cal["a"] * x + cal["b"]))]:
        q = fit[name]
        assert abs(q["brier"] - brier_score_loss(fake, p)) < 1e-5, name
        prob_true, prob_pred = calibration_curve(fake, p, n_bins=10, strategy="uniform")
        bins = q["bins"]
        assert len(bins) == len(prob_true), name
        assert np.allclose([b["fraction_fake"] for b in bins], prob_true, atol=1e-6), name
        assert np.allclose([b["mean_predicted"] for b in bins], prob_pred, atol=1e-5), name
        # ECE from scikit-learn's bins, weighted by their counts.
        counts = np.array([b["count"] for b in bins])
        ece = float(np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred)))
        assert abs(q["ece"] - ece) < 1e-5, (name, q["ece"], ece)
    assert fit["after"]["ece"] < fit["before"]["ece"]
