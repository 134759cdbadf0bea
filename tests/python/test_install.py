"""The installed layout: `scripts/install.sh PREFIX` from this checkout, then `dfserve score` and
`dfserve serve` run from `/`, finding ONNX Runtime, the models and the data directory relative
to the binary; `ORT_DYLIB_PATH` and `DFSERVE_HOME` are honoured."""
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT

# The environment a new user has: none of dfserve's own variables.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("DFSERVE_", "ORT_"))}


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix") / "opt" / "dfserve"
    subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--no-build", str(p)], cwd=ROOT, check=True,
                   capture_output=True, env=CLEAN)
    return p


def test_the_layout_is_complete(prefix):
    assert os.access(prefix / "bin" / "dfserve", os.X_OK)
    assert (prefix / "lib" / "dfserve" / "libonnxruntime.so.1.31.1").is_file()
    models = {p.name for p in (prefix / "share" / "dfserve" / "models").iterdir()}
    assert {"meso4_df.toml", "meso4_df.onnx", "ultraface_rfb320.onnx", "NOTICE-MesoNet"} <= models
    assert (prefix / "var" / "lib" / "dfserve").is_dir()


def test_score_and_serve_work_from_any_directory(prefix, samples, tmp_path):
    image = tmp_path / "face.jpg"
    shutil.copy(samples / "df" / "df00204.jpg", image)
    out = subprocess.run([str(prefix / "bin" / "dfserve"), "score", "--mode", "whole", str(image)], cwd="/",
                         capture_output=True, text=True, env=CLEAN, check=True)
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["models"]["clip_probe"]["status"] == "ok", row

    proc = subprocess.Popen([str(prefix / "bin" / "dfserve"), "serve", "--host", "127.0.0.1", "--http-port", "0",
                             "--grpc-port", "0"], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=CLEAN)
    try:
        http = None
        deadline = time.time() + 60
        while http is None and time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("dfserve: listening on http://"):
                http = line.strip().removeprefix("dfserve: listening on http://")
        assert http, "the installed server did not start"
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://{http}/v2/health/ready").status == 200:
                    break
            except Exception:
                time.sleep(0.05)
        req = urllib.request.Request(f"http://{http}/v1/detect?mode=whole", data=image.read_bytes(), method="POST")
        r = json.loads(urllib.request.urlopen(req).read())["results"][0]
        assert r["status"] == "ok" and r["score"] > 0.5
        # The hash lists live in the prefix's data directory.
        assert (prefix / "var" / "lib" / "dfserve" / "dfserve.redb").is_file()
    finally:
        proc.kill()
        proc.wait()


def test_ort_dylib_path_and_dfserve_home_are_honoured(prefix, samples, tmp_path):
    # ORT_DYLIB_PATH names the library when no flag does.
    env = {**CLEAN, "ORT_DYLIB_PATH": str(tmp_path / "no-such-libonnxruntime.so")}
    image = str(samples / "df" / "df00204.jpg")
    r = subprocess.run([str(prefix / "bin" / "dfserve"), "score", image], cwd="/", capture_output=True,
                       text=True, env=env)
    assert r.returncode != 0 and "no-such-libonnxruntime.so" in r.stderr, r.stderr
    # A binary copied out of any layout finds everything through DFSERVE_HOME.
    lone = tmp_path / "dfserve"
    shutil.copy(prefix / "bin" / "dfserve", lone)
    r = subprocess.run([str(lone), "models"], cwd="/", capture_output=True, text=True,
                       env={**CLEAN, "DFSERVE_HOME": str(prefix)})
    assert r.returncode == 0 and "meso4_df" in r.stdout, (r.stdout, r.stderr)
