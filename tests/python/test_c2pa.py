"""C2PA provenance end to end: assets signed here with `c2pa-python` and a test CA, read by
dfserve over HTTP, gRPC, KServe and `dfserve score`; the `c2pa-python` reader is the oracle
for each asset's validation state. Provenance never changes the score."""
import io
import json
import struct
import subprocess
import zlib
import urllib.request

import grpc
import numpy as np
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
import pytest
import tritonclient.http as th
from PIL import Image

import c2pa_assets
from conftest import ROOT, Server

BIN = ROOT / "target" / "release" / "dfserve"


def encoded(fmt, size=(320, 240)):
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def tamper(data: bytes) -> bytes:
    """The signed file changed after signing, still a decodable image (the manifest intact):
    JPEG scan bytes flipped near the end; a PNG text chunk added before IEND."""
    if data.startswith(b"\x89PNG"):
        text = b"tEXt" + b"Comment\0changed after signing"
        chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
        end = data.rindex(b"IEND") - 4
        return data[:end] + chunk + data[end:]
    b = bytearray(data)
    at = len(b) - 40
    b[at:at + 8] = bytes(x ^ 0x5A for x in b[at:at + 8])
    return bytes(b)


def break_manifest(data: bytes) -> bytes:
    """The manifest store itself overwritten with junk in its middle (JUMBF boxes broken)."""
    b = bytearray(data)
    start = data.find(b"jumb")
    assert start > 0
    b[start + 200:start + 1200] = bytes(range(256)) * 3 + bytes(232)
    return bytes(b)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("c2pa")
    pki = c2pa_assets.make_pki()
    (d / "root.pem").write_bytes(pki[0])
    jpeg, png = encoded("JPEG"), encoded("PNG")
    files = {
        "signed.jpg": (c2pa_assets.sign(jpeg, "image/jpeg", pki, "digitalCapture"), "image/jpeg"),
        "signed.png": (c2pa_assets.sign(png, "image/png", pki, "compositeWithTrainedAlgorithmicMedia"), "image/png"),
        "ai.jpg": (c2pa_assets.sign(jpeg, "image/jpeg", pki, "trainedAlgorithmicMedia", "generated"), "image/jpeg"),
        "plain.jpg": (jpeg, "image/jpeg"),
    }
    # WebP and an MP4 (BMFF) too.
    files["signed.webp"] = (c2pa_assets.sign(encoded("WEBP"), "image/webp", pki), "image/webp")
    clip = d / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "2",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", str(clip)], check=True)
    files["signed.mp4"] = (c2pa_assets.sign(clip.read_bytes(), "video/mp4", pki), "video/mp4")
    files["tampered.jpg"] = (tamper(files["signed.jpg"][0]), "image/jpeg")
    files["tampered.png"] = (tamper(files["signed.png"][0]), "image/png")
    files["malformed.jpg"] = (break_manifest(files["signed.jpg"][0]), "image/jpeg")
    for name, (data, _) in files.items():
        (d / name).write_bytes(data)
    return d, pki, files


def detect(server, data):
    req = urllib.request.Request(f"http://{server.http}/v1/detect?mode=whole", data=data, method="POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["results"][0]


@pytest.mark.parametrize("anchored", [False, True])
def test_states_agree_with_the_reference_reader(assets, anchored):
    d, pki, files = assets
    s = Server(*(["--c2pa-trust-anchors", str(d / "root.pem")] if anchored else []))
    try:
        for name, (data, mime) in files.items():
            r = detect(s, data)
            c = r["provenance"]["c2pa"]
            want = c2pa_assets.reference_state(data, mime, pki[0] if anchored else None)
            print(f"{name} anchored={anchored}: {c}")
            if want is None:
                assert c == {"present": False, "generative_ai": False}, (name, c)
                continue
            assert c["present"] and c["state"] == want, (name, c, want)
            if name.startswith(("signed", "ai")):
                assert c["state"] == ("trusted" if anchored else "valid"), (name, c)
                assert c["signer"] == {"issuer": "dfserve tests", "common_name": "dfserve test signer"}
                assert c["claim_generator"].startswith("dfserve-tests") and "errors" not in c, c
            if name.startswith(("tampered", "malformed")):
                assert c["state"] == "invalid" and c["errors"], (name, c)
        ai = detect(s, files["ai.jpg"][0])["provenance"]["c2pa"]
        assert ai["generative_ai"] and ai["digital_source_types"] == ["trainedAlgorithmicMedia"], ai
        cam = detect(s, files["signed.jpg"][0])["provenance"]["c2pa"]
        assert not cam["generative_ai"] and cam["digital_source_types"] == ["digitalCapture"], cam
    finally:
        s.stop()


def test_provenance_never_changes_the_score(server, assets):
    _, _, files = assets
    plain, signed, ai = (detect(server, files[n][0]) for n in ("plain.jpg", "signed.jpg", "ai.jpg"))
    # The same pixels, with and without a manifest: the same score and verdict.
    assert plain["score"] == signed["score"] == ai["score"]
    assert plain["verdict"] == signed["verdict"] == ai["verdict"]


def test_every_front_end_reports_it(server, assets):
    d, _, files = assets
    data = files["ai.jpg"][0]
    # KServe pipeline model: PROVENANCE, one JSON object per image.
    client = th.InferenceServerClient(server.http)
    inp = th.InferInput("IMAGE", [2], "BYTES")
    inp.set_data_from_numpy(np.array([data, files["plain.jpg"][0]], dtype=np.object_), binary_data=True)
    out = [json.loads(p) for p in client.infer("dfserve", [inp]).as_numpy("PROVENANCE")]
    assert out[0]["c2pa"]["generative_ai"] and out[0]["c2pa"]["state"] == "valid"
    assert out[1]["c2pa"]["present"] is False
    # gRPC: DetectResponse.c2pa, with the messages taken from the server by reflection.
    channel = grpc.insecure_channel(server.grpc)
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    req_t, resp_t = (message_factory.GetMessageClass(pool.FindMessageTypeByName(f"dfserve.v1.{n}"))
                     for n in ("DetectRequest", "DetectResponse"))
    call = channel.unary_unary("/dfserve.v1.Detector/Detect", request_serializer=req_t.SerializeToString,
                               response_deserializer=resp_t.FromString)
    r = call(req_t(image=data), timeout=30)
    assert r.c2pa.present and r.c2pa.state == "valid" and r.c2pa.generative_ai
    assert list(r.c2pa.digital_source_types) == ["trainedAlgorithmicMedia"]
    # dfserve score: each row's outcome.
    rows = d / "rows.jsonl"
    subprocess.run([str(BIN), "score", "--mode", "whole", "--output", str(rows),
                    str(d / "ai.jpg"), str(d / "plain.jpg")], cwd=ROOT, check=True, capture_output=True)
    by_name = {json.loads(l)["path"].rsplit("/", 1)[-1]: json.loads(l) for l in rows.read_text().splitlines()}
    (ai,) = by_name["ai.jpg"]["models"].values()
    assert ai["provenance"]["c2pa"]["generative_ai"] is True
    (plain,) = by_name["plain.jpg"]["models"].values()
    assert plain["provenance"]["c2pa"]["present"] is False
