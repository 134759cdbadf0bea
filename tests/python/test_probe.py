"""The CLIP probe (an embedding classifier): preprocessing against Pillow/numpy, the served head
against the training script's, and the same scores on every front end (HTTP, KServe REST and
gRPC, the CLI)."""
import hashlib
import importlib.util
import json
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from PIL import Image

from conftest import ROOT

BIN = ROOT / "target" / "release" / "dfserve"
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32).reshape(3, 1, 1)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32).reshape(3, 1, 1)

spec = importlib.util.spec_from_file_location("train_probe", ROOT / "scripts" / "train_probe.py")
train_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_probe)


def clip_reference(img: Image.Image) -> np.ndarray:
    """CLIP's preprocessing as its reference implementations do it, in Pillow and numpy:
    shorter side to 224 (bicubic), centre crop, /255, (x - mean) / std, CHW."""
    w, h = img.size
    s = 224 / min(w, h)
    nw, nh = int(round(w * s)), int(round(h * s))
    r = img.resize((nw, nh), Image.BICUBIC) if (nw, nh) != (w, h) else img
    left, top = (nw - 224) // 2, (nh - 224) // 2
    a = np.asarray(r.crop((left, top, left + 224, top + 224)), np.float32).transpose(2, 0, 1) / 255.0
    return ((a - MEAN) / STD).reshape(-1)


@pytest.fixture(scope="module")
def identity_dir(tmp_path_factory):
    """A model dir with the detector and an "encoder" whose embedding is its input tensor, so
    `dfserve embed` shows exactly what the CLIP encoder is fed."""
    import onnx
    from onnx import TensorProto, helper

    d = tmp_path_factory.mktemp("identity")
    inp = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 224, 224])
    out = helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", 3 * 224 * 224])
    graph = helper.make_graph([helper.make_node("Flatten", ["pixel_values"], ["image_embeds"], axis=1)], "id", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, d / "identity.onnx")
    sha = hashlib.sha256((d / "identity.onnx").read_bytes()).hexdigest()
    text = (ROOT / "models" / "clip_vitb16.toml").read_text()
    text = text.replace('name = "clip_vitb16"', 'name = "identity"').replace("dim = 512", f"dim = {3 * 224 * 224}")
    text = text.replace('file = "clip_vitb16_int8.onnx"', 'file = "identity.onnx"')
    text = "\n".join(f'sha256 = "{sha}"' if line.startswith("sha256 =") else line for line in text.splitlines())
    (d / "identity.toml").write_text(text)
    for f in ["ultraface_rfb320.toml", "ultraface_rfb320.onnx"]:
        shutil.copy(ROOT / "models" / f, d / f)
    return d


def embed(model_dir, encoder, mode, paths, tmp_path):
    out = tmp_path / f"{encoder}-{mode}.jsonl"
    subprocess.run(
        [str(BIN), "embed", "--model-dir", str(model_dir), "--encoder", encoder, "--mode", mode, "-o", str(out),
         *map(str, paths)],
        cwd=ROOT, check=True, capture_output=True,
    )
    return {json.loads(line)["path"]: json.loads(line) for line in out.read_text().splitlines()}


def test_preprocessing_matches_pillow_on_several_sizes(identity_dir, tmp_path):
    rng = np.random.default_rng(5)
    paths = []
    for w, h in [(224, 224), (256, 256), (250, 250), (300, 200), (123, 457), (97, 97), (641, 480)]:
        base = Image.fromarray(rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)).resize((w, h))
        noisy = np.clip(np.asarray(base).astype(int) + rng.integers(-25, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        p = tmp_path / f"img{w}x{h}.png"
        Image.fromarray(noisy).save(p)
        paths.append(p)
    rows = embed(identity_dir, "identity", "whole", paths, tmp_path)
    for p in paths:
        got = np.asarray(rows[str(p)]["faces"][0]["embedding"], np.float32)
        want = clip_reference(Image.open(p).convert("RGB"))
        assert np.abs(got - want).max() < 1e-4, p


def test_face_crops_match_pillow(identity_dir, samples, tmp_path):
    """Faces mode: the square around each detected box (margin 1, slid inside the image),
    resized with Pillow's box argument, is what the encoder gets."""
    paths = sorted(samples.glob("*/*.jpg"))
    rows = embed(identity_dir, "identity", "faces", paths, tmp_path)
    checked = 0
    for p in paths:
        img = Image.open(p).convert("RGB")
        W, H = img.size
        for face in rows[str(p)]["faces"]:
            x1, y1, x2, y2 = face["box"]
            # The box side is a float32 difference in dfserve (FaceBox::width), the rest double.
            bw, bh = float(np.float32(x2) - np.float32(x1)), float(np.float32(y2) - np.float32(y1))
            side = min(max(bw, bh), W, H)
            x = min(max((x1 + x2) / 2 - side / 2, 0), W - side)
            y = min(max((y1 + y2) / 2 - side / 2, 0), H - side)
            want = img.resize((224, 224), Image.BICUBIC, box=(x, y, x + side, y + side))
            a = np.asarray(want, np.float32).transpose(2, 0, 1) / 255.0
            want = ((a - MEAN) / STD).reshape(-1)
            got = np.asarray(face["embedding"], np.float32)
            assert np.abs(got - want).max() < 1e-4, p
            checked += 1
    assert checked >= 4


def probe_cfg():
    return tomllib.loads((ROOT / "models" / "clip_probe.toml").read_text())


def score_cli(paths, tmp_path, *extra):
    out = tmp_path / "score.jsonl"
    subprocess.run([str(BIN), "score", "--model", "clip_probe", "--output", str(out), *extra, *map(str, paths)],
                   cwd=ROOT, check=True, capture_output=True)
    return {json.loads(line)["path"]: json.loads(line)["models"]["clip_probe"] for line in out.read_text().splitlines()}


def test_served_head_equals_the_training_scripts(samples, tmp_path):
    cfg = probe_cfg()
    paths = sorted(samples.glob("*/*.jpg"))
    for mode in ["faces", "whole"]:
        rows = embed(ROOT / "models", "clip_vitb16", mode, paths, tmp_path)
        served = score_cli(paths, tmp_path, "--mode", mode)
        for p in paths:
            faces = rows[str(p)]["faces"]
            emb = np.asarray([f["embedding"] for f in faces], np.float32)
            raw = train_probe.head_scores(cfg, emb)
            cal = cfg["calibration"]
            got = served[str(p)]["faces"]
            assert len(got) == len(faces)
            for g, r in zip(got, raw):
                assert g["raw_score"] == pytest.approx(r, abs=1e-5), p
                assert g["score"] == pytest.approx(train_probe.platt(np.array([r]), cal["a"], cal["b"])[0], abs=1e-5)


def test_every_front_end_gives_the_same_scores(server, samples, tmp_path):
    # PNG copies, so that the tensor made with Pillow below holds the very pixels the server
    # decodes (JPEG decoders differ in their IDCT and upsampling).
    paths = []
    for p in sorted(samples.glob("*/*.jpg")):
        paths.append(tmp_path / f"{p.stem}.png")
        Image.open(p).convert("RGB").save(paths[-1])
    cli = score_cli(paths, tmp_path, "--mode", "whole")
    h, g = th.InferenceServerClient(server.http), tg.InferenceServerClient(server.grpc)
    # HTTP /v1/detect.
    for p in paths:
        req = urllib.request.Request(f"http://{server.http}/v1/detect?model=clip_probe&mode=whole", data=p.read_bytes())
        with urllib.request.urlopen(req) as r:
            http = json.loads(r.read())["results"][0]
        assert http["score"] == pytest.approx(cli[str(p)]["score"], abs=1e-6), p
    # KServe pipeline model, REST and gRPC.
    images = np.array([p.read_bytes() for p in paths], dtype=np.object_)
    hi = th.InferInput("IMAGE", [len(paths)], "BYTES")
    hi.set_data_from_numpy(images, binary_data=True)
    gi = tg.InferInput("IMAGE", [len(paths)], "BYTES")
    gi.set_data_from_numpy(images)
    params = {"mode": "whole", "model": "clip_probe"}
    want = np.array([cli[str(p)]["score"] for p in paths], np.float32)
    for r in [h.infer("dfserve", [hi], parameters=params), g.infer("dfserve", [gi], parameters=params)]:
        np.testing.assert_allclose(r.as_numpy("SCORE"), want, atol=1e-6)
    # KServe tensor model `clip_probe`: the CLIP tensor made in Python gives the same score. The
    # INT8 encoder quantises its activations per run, so a 1e-7 change of one input value can
    # move the score by 0.1: the tensor is built with dfserve's own float32 arithmetic
    # (p * (scale / std) + (-mean / std)), which makes it bit-identical to the served one.
    mul = np.float32(1 / 255) / STD
    add = -MEAN / STD
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BICUBIC), np.float32)
                  .transpose(2, 0, 1) * mul + add for p in paths]).astype(np.float32)
    ti = th.InferInput("pixel_values", list(x.shape), "FP32")
    ti.set_data_from_numpy(x, binary_data=True)
    tgi = tg.InferInput("pixel_values", list(x.shape), "FP32")
    tgi.set_data_from_numpy(x)
    for r in [h.infer("clip_probe", [ti]), g.infer("clip_probe", [tgi])]:
        np.testing.assert_allclose(r.as_numpy("SCORE")[:, 0], want, atol=1e-5)
    meta = h.get_model_metadata("clip_probe")
    assert meta["inputs"] == [{"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]


def test_an_ensemble_of_a_probe_and_mesonets_crops_once_per_input(server, samples):
    """clip_meso_ensemble mixes a 224-px CLIP input with 256-px MesoNet inputs: each member's
    score is what it serves alone, the combination is the configured logit_mean, and it has no
    tensor form in KServe (404 that names the pipeline model)."""
    def detect(model, body):
        req = urllib.request.Request(f"http://{server.http}/v1/detect?mode=whole&model={model}", data=body)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())["results"][0]

    for p in sorted(samples.glob("*/*.jpg")):
        body = p.read_bytes()
        face = detect("clip_meso_ensemble", body)["faces"][0]
        members = {m["model"]: m["score"] for m in face["members"]}
        assert list(members) == ["clip_probe", "meso4_df", "meso4_f2f"]
        assert members["clip_probe"] == pytest.approx(detect("clip_probe", body)["faces"][0]["raw_score"], abs=1e-6)
        for m in ["meso4_df", "meso4_f2f"]:
            assert members[m] == pytest.approx(detect(m, body)["score"], abs=1e-6)
        logit = lambda x: np.log(x / (1 - x))  # noqa: E731
        z = 0.8 * logit(members["clip_probe"]) + 0.1 * logit(members["meso4_df"]) + 0.1 * logit(members["meso4_f2f"])
        assert face["score"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5), p
    try:
        urllib.request.urlopen(f"http://{server.http}/v2/models/clip_meso_ensemble")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "pipeline model" in json.loads(e.read())["error"]
