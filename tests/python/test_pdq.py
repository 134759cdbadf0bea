"""`dfserve hash` against the reference: PDQ bits and quality equal to the `pdqhash` bindings of
Meta's C++ for the same pixels, on generated images of many sizes, modes and formats, EXIF
rotation included; MD5 and SHA-256 equal to hashlib."""
import hashlib
import io
import json
import subprocess

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from conftest import ROOT

BIN = ROOT / "target" / "release" / "dfserve"


def reference(path):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(img))
    text = "".join("%x" % int("".join(map(str, bits[i:i + 4])), 2) for i in range(0, 256, 4))
    return text, quality


def generated(tmp_path):
    rng = np.random.default_rng(11)
    out = []

    def save(name, img, fmt, **kw):
        p = tmp_path / f"{name}.{fmt.lower()}"
        img.save(p, fmt, **kw)
        out.append(p)

    yy, xx = np.mgrid[0:480, 0:640]
    scene = np.stack([(xx * 255 // 639), (yy * 255 // 479), ((xx // 40 + yy // 40) % 2) * 200], -1).astype(np.uint8)
    scene[100:300, 200:260] = rng.integers(0, 256, (200, 60, 3), dtype=np.uint8)
    base = Image.fromarray(scene)
    for w, h in [(5, 5), (7, 300), (63, 65), (64, 64), (127, 128), (333, 211), (1000, 37), (1999, 1201)]:
        save(f"noise_{w}x{h}", Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "PNG")
        save(f"scene_{w}x{h}", base.resize((w, h), Image.BILINEAR), "PNG")
    save("scene_q90", base, "JPEG", quality=90)
    save("scene_progressive", base, "JPEG", quality=75, progressive=True)
    save("scene_grey", base.convert("L"), "PNG")
    save("scene_rgba", base.convert("RGBA"), "PNG")
    save("scene_palette", base.convert("P"), "PNG")
    save("scene_webp", base, "WEBP", lossless=True)
    save("scene_bmp", base, "BMP")
    save("flat", Image.new("RGB", (300, 200), (90, 120, 150)), "PNG")
    # EXIF orientations: the pixels are stored turned, the tag says how to turn them back.
    # (The stored pixels are the upright scene turned the other way, so upright they match it.)
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    for orientation, turn in stored.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif_{orientation}", base.transpose(turn), "JPEG", quality=90, exif=exif)
    return out


def test_pdq_matches_the_reference_bit_for_bit(tmp_path):
    files = generated(tmp_path)
    out = subprocess.run([str(BIN), "hash", *map(str, files)], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert len(rows) == len(files)
    for f in files:
        r = rows[str(f)]
        assert r["kind"] == "image", r
        want_hash, want_quality = reference(f)
        assert (r["pdq"], r["quality"]) == (want_hash, want_quality), f.name
        data = f.read_bytes()
        assert r["md5"] == hashlib.md5(data).hexdigest() and r["sha256"] == hashlib.sha256(data).hexdigest()
    # The turned JPEGs hash like the upright original, which a JPEG round trip only nudges.
    up = rows[str(tmp_path / "scene_q90.jpeg")]["pdq"]
    for o in [3, 6, 8]:
        turned = rows[str(tmp_path / f"exif_{o}.jpeg")]["pdq"]
        distance = bin(int(up, 16) ^ int(turned, 16)).count("1")
        assert distance <= 31, (o, distance)


def hex_of(bits):
    return "".join("%x" % int("".join(map(str, bits[i:i + 4])), 2) for i in range(0, 256, 4))


def test_dihedral_variants_match_the_reference_bit_for_bit(tmp_path):
    """`dfserve hash --dihedral` gives the eight variants `pdqhash.compute_dihedral` gives, in its
    order, from the same pixels."""
    files = [f for f in generated(tmp_path) if not f.name.startswith(("noise_5x5", "noise_7x", "scene_5x5", "scene_7x"))]
    out = subprocess.run([str(BIN), "hash", "--dihedral", *map(str, files)], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    for f in files:
        r = rows[str(f)]
        img = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
        variants, quality = pdqhash.compute_dihedral(np.asarray(img))
        assert r["quality"] == quality, f.name
        assert r["pdq_dihedral"] == [hex_of(v) for v in variants], f.name
        assert r["pdq_dihedral"][0] == r["pdq"]


def test_dihedral_variants_are_near_the_turned_images_hashes(tmp_path):
    """Each variant is close to hashing the turned or mirrored image itself (they differ only in
    how the block was downsampled), which is what lets a mirrored re-upload match."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:300, 0:400]
    scene = np.stack([(xx * 255 // 399), (yy * 255 // 299), ((xx // 37 + yy // 23) % 2) * 200], -1).astype(np.uint8)
    scene[50:200, 60:130] = rng.integers(0, 256, (150, 70, 3), dtype=np.uint8)
    base = Image.fromarray(scene)
    t = Image.Transpose
    turns = [None, t.ROTATE_90, t.ROTATE_180, t.ROTATE_270, t.FLIP_TOP_BOTTOM, t.FLIP_LEFT_RIGHT, t.TRANSPOSE, t.TRANSVERSE]
    base.save(tmp_path / "base.png")
    paths = []
    for k, turn in enumerate(turns):
        p = tmp_path / f"turned_{k}.png"
        (base if turn is None else base.transpose(turn)).save(p)
        paths.append(p)
    out = subprocess.run([str(BIN), "hash", "--dihedral", str(tmp_path / "base.png"), *map(str, paths)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    variants = rows[0]["pdq_dihedral"]
    for k, r in enumerate(rows[1:]):
        # Each turned image, hashed anew, is within the match distance of the base's variant
        # that names its turn.
        nearest = min(range(8), key=lambda j: bin(int(variants[j], 16) ^ int(r["pdq"], 16)).count("1"))
        distance = bin(int(variants[k], 16) ^ int(r["pdq"], 16)).count("1")
        assert nearest == k and distance <= 31, (k, nearest, distance)


def test_files_that_are_not_images_are_named_and_the_run_fails(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    r = subprocess.run([str(BIN), "hash", str(junk)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0
    row = json.loads(r.stdout)
    assert row["kind"] == "error" and "decode" in row["error"]
    assert row["sha256"] == hashlib.sha256(b"not an image").hexdigest()


def test_kserve_pipeline_reports_matches(admin_server, samples):
    """The KServe pipeline model's MATCHES output: each image's matches as a JSON array."""
    import tritonclient.http as th

    from conftest import ADMIN, post

    listed, other = samples / "df" / "df00204.jpg", samples / "real" / "real00240.jpg"
    out = subprocess.run([str(BIN), "hash", str(listed)], cwd=ROOT, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout)
    entry = {"kind": "pdq", "hash": row["pdq"], "id": "known-1", "label": "test"}
    post(admin_server, "/v1/hashlists/kserve", json.dumps(entry).encode(), ADMIN)
    client = th.InferenceServerClient(admin_server.http)
    images = np.array([listed.read_bytes(), other.read_bytes()], dtype=np.object_)
    inp = th.InferInput("IMAGE", [2], "BYTES")
    inp.set_data_from_numpy(images, binary_data=True)
    r = client.infer("dfserve", [inp], headers={"x-api-key": ADMIN})
    matches = [json.loads(m) for m in r.as_numpy("MATCHES")]
    assert [[(m["list"], m["id"], m["kind"]) for m in ms] for ms in matches] == [[("kserve", "known-1", "pdq")], []]
    assert matches[0][0]["distance"] == 0
