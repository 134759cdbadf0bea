"""`dfserve score` on a generated labelled folder: metrics against scikit-learn, corrupt
files, resume after an interruption, CSV output, the report, and identical scores in-process
and against a running server."""
import json
import pathlib
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageOps
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                             precision_score, recall_score, roc_auc_score, roc_curve)

from conftest import ROOT

BIN = ROOT / "target" / "release" / "dfserve"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, samples):
    """24 real and 24 fake face crops (the samples, flipped, cropped and re-encoded), plus a
    truncated JPEG and a text file posing as a JPEG."""
    root = tmp_path_factory.mktemp("data")
    for cls, src_dir in [("real", "real"), ("fake", "df")]:
        out = root / cls / "sub"
        out.mkdir(parents=True)
        n = 0
        for src in sorted((samples / src_dir).glob("*.jpg")):
            img = Image.open(src).convert("RGB")
            for flip in [False, True]:
                for crop in [0, 6, 12]:
                    for q in [90, 75]:
                        v = ImageOps.mirror(img) if flip else img
                        w, h = v.size
                        v = v.crop((crop, crop, w - crop, h - crop))
                        v.save(out / f"{src.stem}_{n:03d}.jpg", quality=q)
                        n += 1
    good = (root / "fake" / "sub").glob("*.jpg").__next__().read_bytes()
    (root / "fake" / "broken.jpg").write_bytes(good[: len(good) // 2])
    (root / "real" / "notes.jpg").write_text("not an image")
    return root


def score(*args, check=True):
    # These tests check meso4_df's figures unless they name models (the default is the ensemble).
    if "--model" not in args:
        args = (*args, "--model", "meso4_df")
    return subprocess.run([str(BIN), "score", *map(str, args)], cwd=ROOT, capture_output=True, text=True, check=check)


def rows(path):
    return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines()]


def test_metrics_match_scikit_learn(dataset, tmp_path):
    out, rep = tmp_path / "out.jsonl", tmp_path / "report"
    r = score(dataset, "--mode", "whole", "--labels", "dirs", "--output", out, "--report", rep)
    got = rows(out)
    assert len(got) == 50
    errors = [g for g in got if g["models"]["meso4_df"]["status"] == "error"]
    assert sorted(pathlib.Path(e["path"]).name for e in errors) == ["broken.jpg", "notes.jpg"]
    assert "broken.jpg" in r.stderr and "notes.jpg" in r.stderr
    ok = [g for g in got if g["models"]["meso4_df"]["score"] is not None]
    y = np.array([g["truth"] == "fake" for g in ok])
    s = np.array([g["models"]["meso4_df"]["score"] for g in ok])
    pred = s >= 0.5
    summary = json.loads((rep / "summary.json").read_text())["models"][0]
    assert summary["model"] == "meso4_df" and summary["count"] == 48 and summary["unscored"] == 2
    assert summary["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert summary["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert summary["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert summary["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert summary["recall"] == pytest.approx(recall_score(y, pred))
    assert summary["f1"] == pytest.approx(f1_score(y, pred))
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert summary["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    fpr, tpr, thr = roc_curve(y, s)
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    assert summary["eer"] == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=1e-9)
    for png in ["roc_meso4_df.png", "hist_meso4_df.png"]:
        data = (rep / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "ROC-AUC" in r.stdout


def test_resume_continues_an_interrupted_run(dataset, tmp_path):
    full = tmp_path / "full.jsonl"
    score(dataset, "--mode", "whole", "--output", full)
    lines = full.read_text().splitlines()
    # An interrupted run: 20 complete rows and half of the next one.
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(lines[:20]) + "\n" + lines[20][: len(lines[20]) // 2])
    r = score(dataset, "--mode", "whole", "--output", part, "--resume")
    assert "resuming: 20 images already scored, 30 to go" in r.stderr
    got = rows(part)
    assert len(got) == 50 and len({g["path"] for g in got}) == 50
    want = {g["path"]: g["models"]["meso4_df"]["score"] for g in rows(full)}
    assert {g["path"]: g["models"]["meso4_df"]["score"] for g in got} == want
    # Nothing left to do: a second resume adds nothing.
    score(dataset, "--mode", "whole", "--output", part, "--resume")
    assert len(rows(part)) == 50


def test_csv_and_several_models(dataset, tmp_path):
    out = tmp_path / "out.csv"
    r = score(dataset, "--mode", "whole", "--model", "meso4_df,mesoinception4_df", "--labels", "dirs", "--output", out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("path,truth,meso4_df.score,meso4_df.label,meso4_df.status,meso4_df.faces,meso4_df.error,meso4_df.verdict,meso4_df.raw_score,meso4_df.matches,meso4_df.c2pa,meso4_df.c2pa_source_types,mesoinception4_df.score")
    assert len(lines) == 51
    assert "== meso4_df" in r.stdout and "== mesoinception4_df" in r.stdout


def test_cli_and_server_give_identical_scores(dataset, tmp_path, server):
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    score(dataset, "--mode", "faces", "--output", local)
    score(dataset, "--mode", "faces", "--output", remote, "--server", f"http://{server.http}")
    a = {g["path"]: g["models"]["meso4_df"] for g in rows(local)}
    b = {g["path"]: g["models"]["meso4_df"] for g in rows(remote)}
    assert a.keys() == b.keys()
    for p in a:
        assert a[p]["status"] == b[p]["status"], p
        assert a[p]["face_count"] == b[p]["face_count"], p
        if a[p]["score"] is not None:
            assert a[p]["score"] == pytest.approx(b[p]["score"], abs=1e-6), p


def test_rows_carry_member_scores_and_face_verdicts_like_the_http_api(dataset, tmp_path, server):
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    for out, extra in ((local, []), (remote, ["--server", f"http://{server.http}"])):
        score(dataset, "--mode", "faces", "--model", "meso4_ensemble", "--output", out, *extra)
    a = {g["path"]: g["models"]["meso4_ensemble"] for g in rows(local)}
    b = {g["path"]: g["models"]["meso4_ensemble"] for g in rows(remote)}
    faces = [(p, i, f) for p in a for i, f in enumerate(a[p]["faces"])]
    assert faces
    for p, i, f in faces:
        assert f["verdict"] in ("likely_manipulated", "uncertain", "likely_authentic", "not_applicable"), f
        assert len(f["members"]) >= 2 and all(0 <= m["score"] <= 1 for m in f["members"]), f
        g = b[p]["faces"][i]
        assert g["verdict"] == f["verdict"], (p, f, g)
        assert [m["model"] for m in g["members"]] == [m["model"] for m in f["members"]], (p, f, g)
        for m, n in zip(f["members"], g["members"]):
            assert m["score"] == pytest.approx(n["score"], abs=1e-6), (p, f, g)


def test_bad_arguments_say_what_to_do(tmp_path):
    r = score(tmp_path, check=False)
    assert r.returncode != 0 and "no image files found" in r.stderr
    r = score(tmp_path, "--resume", check=False)
    assert r.returncode != 0 and "--resume needs --output" in r.stderr


def test_videos_are_scored_too(tmp_path, samples):
    clips = tmp_path / "clips"
    clips.mkdir()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=320x240:d=2:r=25", "-loop", "1",
         "-i", str(samples / "df" / "df01254.jpg"), "-filter_complex",
         "[1:v]scale=120:120[f];[0:v][f]overlay=x='20+40*t':y=60:shortest=1", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-t", "2", str(clips / "fake.mp4")],
        check=True)
    (clips / "still.jpg").write_bytes((samples / "real" / "real00240.jpg").read_bytes())
    out = tmp_path / "out.jsonl"
    score(clips, "--output", out)
    got = {pathlib.Path(g["path"]).name: g["models"]["meso4_df"] for g in rows(out)}
    assert got["fake.mp4"]["status"] == "ok" and got["fake.mp4"]["face_count"] == 1, got
    assert got["fake.mp4"]["label"] == "manipulated"
    assert got["still.jpg"]["label"] == "authentic"


def test_server_runs_send_the_api_key_and_stdout_carries_rows_only(dataset, tmp_path, admin_server):
    from conftest import ADMIN

    url = f"http://{admin_server.http}"
    # No key: the run stops at once and says how to give one.
    r = score(dataset / "real", "--mode", "whole", "--server", url, check=False)
    assert r.returncode != 0 and "--api-key" in r.stderr, r.stderr
    key_file = tmp_path / "key"
    key_file.write_text(ADMIN + "\n")
    # Rows to stdout (no --output): every stdout line is a JSON row; the summary is on stderr.
    r = score(dataset, "--mode", "whole", "--labels", "dirs", "--server", url, "--api-key-file", key_file)
    lines = r.stdout.splitlines()
    assert len(lines) == 50 and all(json.loads(l)["path"] for l in lines)
    assert "== meso4_df" in r.stderr and "ROC-AUC" in r.stderr
    # With --output, the summary is the only thing on stdout.
    out = tmp_path / "rows.jsonl"
    r = score(dataset, "--mode", "whole", "--labels", "dirs", "--server", url, "--api-key", ADMIN,
              "--output", out)
    assert r.stdout.startswith("== meso4_df") and len(rows(out)) == 50
