#!/usr/bin/env python3
"""Fit a probe head on a frozen encoder's embeddings, reproducibly, and write its config.

    .venv/bin/python scripts/train_probe.py [--datasets ../shared/datasets] [--work target/probe]

Stages (each cached under --work, so a re-run only redoes what changed):
1. Sample each labelled set (seeded) and run the files through dfserve's own pipeline with
   `dfserve embed`, twice: `--mode faces` (decode, UltraFace, square crop, CLIP preprocessing:
   what an upload is served) and `--mode whole` (the file as one crop: what `--mode whole`
   serves for datasets of pre-cut faces). Both kinds of crop are training data.
2. For every candidate head, leave-one-dataset-out: fit on two sets, score the third, and
   report image-level ROC-AUC as dfserve serves it (faces mode: the highest face score of the
   image; whole mode: the one score). The head is chosen by the mean left-out AUC, never by
   in-set scores.
3. Fit the chosen head on a training split of all sets, fit Platt calibration on the held-out
   split, and choose the band edges on that held-out split: `manipulated_from` at the stated
   false-flag rate on authentic faces, `authentic_below` at the stated miss rate.
4. Write models/<name>.toml: the head's weights, calibration, bands and provenance (datasets,
   counts, commit, the encoder's sha256, the leave-one-out table).

scikit-learn fits the heads; the served head is re-implemented in Rust (src/models/probe.rs)
and tests/python/test_probe.py checks that both give the same scores on the same crops.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SETS = ["dfdc", "lfw-faceswap", "faceswap-256"]


def log(*a):
    print("[train_probe]", *a, file=sys.stderr, flush=True)


def sample_files(datasets: Path, per_class: int, seed: int):
    """{set: [(path, label)]}, `per_class` real and `per_class` fake files per set, seeded."""
    out = {}
    for s in SETS:
        rows = []
        for label, folder in ((0, "real"), (1, "fake")):
            files = sorted(p for p in (datasets / s / folder).iterdir() if p.is_file())
            rng = random.Random(f"{seed}/{s}/{folder}")
            rng.shuffle(files)
            rows += [(p, label) for p in sorted(files[:per_class])]
        out[s] = rows
    return out


def run_embed(binary: Path, model_dir: Path, encoder: str, files, mode: str, out: Path):
    """`dfserve embed` over `files`; rows by path."""
    if not out.exists():
        listing = out.with_suffix(".files")
        listing.write_text("\n".join(str(p) for p, _ in files))
        tmp = out.with_suffix(".part")
        cmd = [str(binary), "embed", "--model-dir", str(model_dir), "--encoder", encoder, "--mode", mode, "-o", str(tmp)]
        log(f"embedding {len(files)} files ({mode}) -> {out}")
        subprocess.run(cmd + [str(p) for p, _ in files], check=True)
        tmp.rename(out)
    rows = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        rows[r["path"]] = r
    return rows


def head_logits(head: dict, normalize: bool, emb: np.ndarray) -> np.ndarray:
    """The served head (src/models/probe.rs), on rows of embeddings, in float64."""
    x = emb.astype(np.float64)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if head["kind"] == "logistic":
        return x @ np.asarray(head["weights"], np.float64) + head["bias"]
    w1 = np.asarray(head["hidden_weights"], np.float64).reshape(head["hidden"], -1)
    h = np.maximum(x @ w1.T + np.asarray(head["hidden_bias"], np.float64), 0.0)
    return h @ np.asarray(head["weights"], np.float64) + head["bias"]


def head_scores(cfg: dict, emb: np.ndarray) -> np.ndarray:
    """P(manipulated) before calibration, as dfserve computes it from a probe config."""
    return 1.0 / (1.0 + np.exp(-head_logits(cfg["head"], cfg.get("normalize", False), emb)))


def platt(raw: np.ndarray, a: float, b: float) -> np.ndarray:
    eps = 1e-6
    p = np.clip(raw, eps, 1 - eps)
    return 1.0 / (1.0 + np.exp(-(a * np.log(p / (1 - p)) + b)))


# ---- data --------------------------------------------------------------------------------------


class SetData:
    """One set's embeddings: training rows (every face crop and every whole crop) and, for
    evaluation, each file's faces-mode rows and whole-mode row."""

    def __init__(self, files, faces_rows, whole_rows):
        self.files = files
        self.labels = np.array([lab for _, lab in files])
        self.faces = []  # per file: array [k, dim] (k may be 0)
        self.whole = []  # per file: array [dim] or None
        for p, _ in files:
            fr = faces_rows.get(str(p), {})
            embs = [f["embedding"] for f in fr.get("faces", [])]
            self.faces.append(np.asarray(embs, np.float32).reshape(len(embs), -1) if embs else None)
            wr = whole_rows.get(str(p), {})
            w = wr.get("faces", [])
            self.whole.append(np.asarray(w[0]["embedding"], np.float32) if w else None)

    def train_rows(self, idx):
        xs, ys = [], []
        for i in idx:
            # The most confident detected face (index 0 after NMS ordering is not guaranteed, so
            # every detected face of a manipulated file would risk labelling background false
            # positives "fake"): train on the first face only, plus the whole crop.
            if self.faces[i] is not None:
                xs.append(self.faces[i][0])
                ys.append(self.labels[i])
            if self.whole[i] is not None:
                xs.append(self.whole[i])
                ys.append(self.labels[i])
        return np.asarray(xs), np.asarray(ys)

    def eval_scores(self, score_fn, idx):
        """Image-level scores as served: faces mode (max over faces; files without a face are
        left out) and whole mode."""
        fs, fy, ws, wy = [], [], [], []
        for i in idx:
            if self.faces[i] is not None:
                fs.append(float(np.max(score_fn(self.faces[i]))))
                fy.append(self.labels[i])
            if self.whole[i] is not None:
                ws.append(float(score_fn(self.whole[i][None, :])[0]))
                wy.append(self.labels[i])
        return np.asarray(fs), np.asarray(fy), np.asarray(ws), np.asarray(wy)


# ---- heads -------------------------------------------------------------------------------------


def fit_head(kind: str, c: float, x: np.ndarray, y: np.ndarray, seed: int):
    """A head (as the config's [head] table) fitted on unit-normalised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    # Standardising helps the solver; it is folded back into the weights below.
    mu, sd = xn.mean(0), xn.std(0) + 1e-6
    z = (xn - mu) / sd
    if kind == "logistic":
        m = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        m.fit(z, y)
        w = m.coef_[0] / sd
        b = float(m.intercept_[0] - np.sum(m.coef_[0] * mu / sd))
        return {"kind": "logistic", "weights": w.astype(np.float32).tolist(), "bias": b}
    hidden = 64
    m = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=c, max_iter=400, early_stopping=True, random_state=seed)
    m.fit(z, y)
    w1 = (m.coefs_[0] / sd[:, None]).T  # [hidden, dim]
    b1 = m.intercepts_[0] - (m.coefs_[0] * (mu / sd)[:, None]).sum(0)
    return {
        "kind": "mlp",
        "hidden": hidden,
        "hidden_weights": w1.astype(np.float32).reshape(-1).tolist(),
        "hidden_bias": b1.astype(np.float32).tolist(),
        "weights": m.coefs_[1][:, 0].astype(np.float32).tolist(),
        "bias": float(m.intercepts_[1][0]),
    }


CANDIDATES = [("logistic", 0.001), ("logistic", 0.01), ("logistic", 0.1), ("logistic", 1.0), ("mlp", 1e-2), ("mlp", 1.0), ("mlp", 10.0)]


def auc(y, s):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--work", type=Path, default=ROOT / "target" / "probe")
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "dfserve")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--encoder", default="clip_vitb16")
    ap.add_argument("--name", default="clip_probe")
    ap.add_argument("--per-class", type=int, default=1500, help="files per class and set (at most)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--false-flag-rate", type=float, default=0.03, help="authentic faces at or above manipulated_from")
    ap.add_argument("--miss-rate", type=float, default=0.10, help="manipulated faces below authentic_below")
    ap.add_argument("--write", action="store_true", help="write models/<name>.toml")
    ap.add_argument("--compare", action="store_true",
                    help="also score the same files with meso4_df and meso4_f2f and report the MesoNet ensemble "
                         "and probe + MesoNet ensembles on the left-out sets")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    enc_cfg = args.model_dir / f"{args.encoder}.toml"
    import tomllib

    enc = tomllib.loads(enc_cfg.read_text())
    enc_sha = hashlib.sha256((args.model_dir / enc["file"]).read_bytes()).hexdigest()
    if enc_sha != enc["sha256"]:
        sys.exit(f"{enc['file']} does not match {enc_cfg} (run scripts/setup.sh)")

    files = sample_files(args.datasets, args.per_class, args.seed)
    data = {}
    for s, fl in files.items():
        faces = run_embed(args.binary, args.model_dir, args.encoder, fl, "faces", args.work / f"{s}.faces.jsonl")
        whole = run_embed(args.binary, args.model_dir, args.encoder, fl, "whole", args.work / f"{s}.whole.jsonl")
        data[s] = SetData(fl, faces, whole)
        nf = sum(f is None for f in data[s].faces)
        log(f"{s}: {len(fl)} files, {nf} without a detected face")

    # ---- leave one dataset out ----
    table = {}
    for kind, c in CANDIDATES:
        key = f"{kind} C={c}" if kind == "logistic" else f"{kind} alpha={c}"
        row = {}
        for held in SETS:
            xs, ys = zip(*(data[s].train_rows(range(len(data[s].files))) for s in SETS if s != held))
            head = fit_head(kind, c, np.concatenate(xs), np.concatenate(ys), args.seed)
            cfg = {"head": head, "normalize": True}
            fs, fy, ws, wy = data[held].eval_scores(lambda e: head_scores(cfg, e), range(len(data[held].files)))
            row[held] = {"faces": auc(fy, fs), "whole": auc(wy, ws), "faces_n": len(fy), "whole_n": len(wy)}
        row["mean"] = float(np.mean([row[s]["faces"] for s in SETS] + [row[s]["whole"] for s in SETS]))
        table[key] = row
        log(
            f"LODO {key:<22} "
            + "  ".join(f"{s}: faces {row[s]['faces']:.3f} whole {row[s]['whole']:.3f}" for s in SETS)
            + f"  mean {row['mean']:.3f}"
        )
    best = max(table, key=lambda k: table[k]["mean"])
    kind, c = CANDIDATES[list(table).index(best)]
    log(f"chosen by mean left-out AUC: {best}")
    ensembles = compare_with_mesonet(args, files, data, kind, c) if args.compare else None

    # ---- final fit on a training split, calibration and bands on the held-out split ----
    rng = np.random.default_rng(args.seed)
    train_x, train_y, cal = [], [], {}
    for s in SETS:
        n = len(data[s].files)
        perm = rng.permutation(n)
        cut = int(n * 0.8)
        tx, ty = data[s].train_rows(perm[:cut])
        train_x.append(tx)
        train_y.append(ty)
        cal[s] = perm[cut:]
    head = fit_head(kind, c, np.concatenate(train_x), np.concatenate(train_y), args.seed)
    cfg = {"head": head, "normalize": True}
    # Calibration rows: every held-out face crop and whole crop, as training rows are.
    cx, cy = zip(*(data[s].train_rows(cal[s]) for s in SETS))
    cx, cy = np.concatenate(cx), np.concatenate(cy)
    raw = head_scores(cfg, cx)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000)
    p = np.clip(raw, 1e-6, 1 - 1e-6)
    lr.fit(np.log(p / (1 - p))[:, None], cy)
    a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
    cal_scores = platt(raw, a, b)
    real_s, fake_s = np.sort(cal_scores[cy == 0]), np.sort(cal_scores[cy == 1])
    # manipulated_from: the (1 - rate) quantile of authentic scores; authentic_below: the
    # miss-rate quantile of manipulated scores (never above manipulated_from).
    manipulated_from = float(np.quantile(real_s, 1 - args.false_flag_rate))
    authentic_below = float(min(np.quantile(fake_s, args.miss_rate), manipulated_from))
    flagged_real = float(np.mean(real_s >= manipulated_from))
    caught_fake = float(np.mean(fake_s >= manipulated_from))
    cleared_fake = float(np.mean(fake_s < authentic_below))
    cleared_real = float(np.mean(real_s < authentic_below))
    log(
        f"Platt a={a:.4f} b={b:.4f}; manipulated_from={manipulated_from:.4f} (authentic flagged {flagged_real:.3f}, "
        f"manipulated caught {caught_fake:.3f}); authentic_below={authentic_below:.4f} (manipulated missed "
        f"{cleared_fake:.3f}, authentic cleared {cleared_real:.3f}) on {len(real_s)} authentic and {len(fake_s)} "
        "manipulated held-out crops"
    )
    summary = {
        "head": best,
        "lodo": table,
        "ensembles": ensembles,
        "calibration": {"a": a, "b": b, "rows": int(len(cy))},
        "bands": {
            "manipulated_from": manipulated_from,
            "authentic_below": authentic_below,
            "authentic_flagged": flagged_real,
            "manipulated_caught": caught_fake,
            "manipulated_missed": cleared_fake,
            "authentic_cleared": cleared_real,
        },
    }
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.write:
        write_config(args, enc, enc_sha, files, data, head, a, b, authentic_below, manipulated_from, summary, len(cy))


def run_score(binary, model_dir, models, files, mode, out):
    """`dfserve score` rows by path (cached)."""
    if not out.exists():
        tmp = out.with_suffix(".part")
        log(f"scoring {len(files)} files with {models} ({mode}) -> {out}")
        cmd = [str(binary), "score", "--model-dir", str(model_dir), "--model", models, "--mode", mode, "-o", str(tmp)]
        subprocess.run(cmd + [str(p) for p, _ in files], check=True, stdout=subprocess.DEVNULL)
        tmp.rename(out)
    return {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def compare_with_mesonet(args, files, data, kind, c):
    """Left-out AUC of the MesoNet ensemble (mean of meso4_df and meso4_f2f) and of ensembles of
    the probe with it, combined per face as dfserve combines members, on the same files."""
    results = {}
    for held in SETS:
        xs, ys = zip(*(data[s].train_rows(range(len(data[s].files))) for s in SETS if s != held))
        cfg = {"head": fit_head(kind, c, np.concatenate(xs), np.concatenate(ys), args.seed), "normalize": True}
        d = data[held]
        for mode in ["faces", "whole"]:
            rows = run_score(args.binary, args.model_dir, "meso4_df,meso4_f2f", files[held], mode,
                             args.work / f"{held}.meso.{mode}.jsonl")
            series = {}
            ys_ = []
            for i, (p, lab) in enumerate(d.files):
                emb = d.faces[i] if mode == "faces" else (None if d.whole[i] is None else d.whole[i][None, :])
                r = rows.get(str(p), {}).get("models", {})
                mdf = [f["score"] for f in r.get("meso4_df", {}).get("faces", [])]
                mf2f = [f["score"] for f in r.get("meso4_f2f", {}).get("faces", [])]
                if emb is None or len(mdf) != len(emb) or len(mf2f) != len(emb):
                    continue
                probe = head_scores(cfg, emb)
                meso = (np.asarray(mdf) + np.asarray(mf2f)) / 2
                combos = {"probe": probe, "meso4_ensemble": meso}
                for w in (0.5, 0.67, 0.8):
                    combos[f"mean w_probe={w}"] = w * probe + (1 - w) * meso
                    lm = w * logit(probe) + (1 - w) / 2 * (logit(np.asarray(mdf)) + logit(np.asarray(mf2f)))
                    combos[f"logit_mean w_probe={w}"] = 1 / (1 + np.exp(-lm))
                for k, v in combos.items():
                    series.setdefault(k, []).append(float(np.max(v)))
                ys_.append(lab)
            for k, v in series.items():
                results.setdefault(k, {})[f"{held} {mode}"] = auc(np.asarray(ys_), np.asarray(v))
    for k, v in results.items():
        v["mean"] = float(np.mean(list(v.values())))
        log(f"compare {k:<24} " + "  ".join(f"{kk}: {vv:.3f}" for kk, vv in v.items()))
    return results


def fmt(v):
    return "[" + ", ".join(f"{x:.8g}" for x in v) + "]"


def write_config(args, enc, enc_sha, files, data, head, a, b, lo, hi, summary, cal_rows):
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    counts = ", ".join(
        f"{s} {int((data[s].labels == 0).sum())}+{int((data[s].labels == 1).sum())}" for s in SETS
    )
    lodo = summary["lodo"][summary["head"]]
    lines = [
        f"# Probe head on {args.encoder} (CLIP ViT-B/16, INT8): written by scripts/train_probe.py; do not edit",
        "# by hand, re-run it. Fitted on research-use data (DFDC, LFW face swaps, a 256-px face-swap set):",
        "# see NOTICE-CLIP.",
        f'name = "{args.name}"',
        'version = "1"',
        'kind = "probe"',
        f'encoder = "{args.encoder}"',
        "normalize = true",
        "threshold = 0.5",
        "",
        "[head]",
        f'kind = "{head["kind"]}"',
    ]
    if head["kind"] == "logistic":
        lines += [f"weights = {fmt(head['weights'])}", f"bias = {head['bias']:.8g}"]
    else:
        lines += [
            f"hidden = {head['hidden']}",
            f"hidden_weights = {fmt(head['hidden_weights'])}",
            f"hidden_bias = {fmt(head['hidden_bias'])}",
            f"weights = {fmt(head['weights'])}",
            f"bias = {head['bias']:.8g}",
        ]
    bands = summary["bands"]
    lines += [
        "",
        "[calibration]",
        'method = "platt"',
        f"a = {a:.8g}",
        f"b = {b:.8g}",
        f"samples = {cal_rows}",
        f'fitted_on = "held-out 20% of each set ({cal_rows} face and whole crops)"',
        "",
        "# manipulated_from: 1 - false-flag-rate quantile of held-out authentic crops; authentic_below:",
        "# the miss-rate quantile of held-out manipulated crops (README: verdict bands).",
        "[verdict]",
        f"authentic_below = {lo:.4f}",
        f"manipulated_from = {hi:.4f}",
        "",
        "[provenance]",
        f'datasets = "{counts} (real+fake files, seed {args.seed})"',
        f'commit = "{commit}"',
        f'encoder_sha256 = "{enc_sha}"',
        f'head = "{summary["head"]}, on unit-normalised embeddings of faces-mode and whole-mode crops"',
        "lodo_auc = \""
        + ", ".join(f"{s} faces {lodo[s]['faces']:.3f} whole {lodo[s]['whole']:.3f}" for s in SETS)
        + '"',
        f"false_flag_rate = {args.false_flag_rate}",
        f"measured_authentic_flagged = {bands['authentic_flagged']:.4f}",
        f"measured_manipulated_caught = {bands['manipulated_caught']:.4f}",
        f"miss_rate = {args.miss_rate}",
        f"measured_manipulated_missed = {bands['manipulated_missed']:.4f}",
        "",
    ]
    out = args.model_dir / f"{args.name}.toml"
    out.write_text("\n".join(lines))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
