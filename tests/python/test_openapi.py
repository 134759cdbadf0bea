"""`GET /v1/openapi.json` describes `/v1`, and real responses match it: images (faces and
whole, with audit records, matches and C2PA provenance), a video with face tracks, multipart
with a failed file, errors, models and hash lists. Schemas refuse unknown fields, so a field
added to a response without being described fails here."""
import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import c2pa_assets
from conftest import ADMIN, ROOT, post

BIN = ROOT / "target" / "release" / "dfserve"


def call(server, path, body=None, method=None, headers=None):
    req = urllib.request.Request(f"http://{server.http}{path}", data=body, method=method,
                                 headers={"x-api-key": ADMIN, **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def spec(admin_server):
    # Served without a key, like the health probes.
    with urllib.request.urlopen(f"http://{admin_server.http}/v1/openapi.json") as r:
        doc = json.loads(r.read())
    jsonschema.Draft202012Validator.check_schema({"$defs": doc["components"]["schemas"]})
    registry = Registry().with_resource("urn:dfserve-v1", DRAFT202012.create_resource(doc))
    return doc, registry


def check(spec, name, instance):
    doc, registry = spec
    schema = {"$ref": f"urn:dfserve-v1#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


def test_detect_responses_match(spec, admin_server, samples, tmp_path):
    face = (samples / "df" / "df00204.jpg").read_bytes()
    for query in ["?audit=true", "?mode=whole", "?model=meso4_df&threshold=0.3"]:
        status, body = call(admin_server, f"/v1/detect{query}", face)
        assert status == 200
        check(spec, "DetectResponse", json.loads(body))
    # Matches and provenance filled in: the image on a list, and signed.
    row = json.loads(subprocess.run([str(BIN), "hash", str(samples / "df" / "df00204.jpg")],
                                    capture_output=True, text=True, check=True).stdout)
    post(admin_server, "/v1/hashlists/openapi", json.dumps({"kind": "pdq", "hash": row["pdq"], "id": "x",
                                                            "label": "l"}).encode(), ADMIN)
    signed = c2pa_assets.sign(face, "image/jpeg", c2pa_assets.make_pki(), "trainedAlgorithmicMedia")
    status, body = call(admin_server, "/v1/detect", signed)
    r = json.loads(body)
    assert r["results"][0]["matches"] and r["results"][0]["provenance"]["c2pa"]["present"]
    check(spec, "DetectResponse", r)
    # A video with a face in every frame: tracks.
    clip = tmp_path / "face.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-loop", "1", "-i", str(samples / "df" / "df00204.jpg"), "-t", "2",
                    "-r", "10", "-vf", "scale=342:342", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(clip)], check=True)
    status, body = call(admin_server, "/v1/detect?frames=4", clip.read_bytes())
    r = json.loads(body)
    assert status == 200 and r["results"][0]["tracks"], r
    check(spec, "DetectResponse", r)
    # The check has teeth: an undescribed field, or a described one missing, fails it.
    r["results"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        check(spec, "DetectResponse", r)
    del r["results"][0]["surprise"], r["results"][0]["tracks"]
    with pytest.raises(jsonschema.ValidationError):
        check(spec, "DetectResponse", r)
    # Multipart with one good file and one bad one.
    boundary = "dfserveboundary"
    parts = b""
    for name, data in [("good.jpg", face), ("bad.jpg", b"not an image")]:
        parts += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    parts += f"--{boundary}--\r\n".encode()
    status, body = call(admin_server, "/v1/detect", parts, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = json.loads(body)
    assert status == 200 and r["results"][1]["status"] == "error", r
    check(spec, "DetectResponse", r)


def test_errors_and_other_endpoints_match(spec, admin_server):
    for path, body, want in [("/v1/detect?threshold=2", b"x", 400), ("/v1/detect", b"not an image", 422),
                             ("/v1/detect?mode=sideways", b"x", 400)]:
        status, raw = call(admin_server, path, body)
        assert status == want, (path, status, raw)
        check(spec, "Error", json.loads(raw))
    status, raw = call(admin_server, "/v1/models")
    check(spec, "ModelsResponse", json.loads(raw))
    post(admin_server, "/v1/hashlists/other", b'{"kind":"md5","hash":"' + b"a" * 32 + b'","id":"m"}', ADMIN)
    status, raw = call(admin_server, "/v1/hashlists")
    check(spec, "HashLists", json.loads(raw))
    status, raw = call(admin_server, "/v1/hashlists/other/entries/m", method="DELETE")
    assert status == 200
    check(spec, "ListChange", json.loads(raw))
    status, raw = call(admin_server, "/v1/hashlists/other", b'{"kind":"md5","hash":"' + b"b" * 32 + b'","id":"n"}')
    check(spec, "ListImport", json.loads(raw))
    status, raw = call(admin_server, "/v1/hashlists/other", method="DELETE")
    check(spec, "ListChange", json.loads(raw))
    # Reviewer decisions: recorded, listed, per item, and who is asking.
    sha = hashlib.sha256(b"a reviewed upload").hexdigest()
    decision = {"sha256": sha, "decision": "manipulated", "filename": "face.jpg", "kind": "image",
                "shown": {"model": "meso4_ensemble@1", "score": 0.9, "verdict": "likely_manipulated",
                          "faces": [{"score": 0.9, "members": {"meso4_df": 0.95}}], "c2pa": "absent"}}
    check(spec, "DecisionRequest", decision)
    status, raw = call(admin_server, "/v1/decisions", json.dumps(decision).encode(),
                       headers={"Content-Type": "application/json"})
    assert status == 200, raw
    check(spec, "DecisionRecorded", json.loads(raw))
    for path, schema in (("/v1/decisions?limit=5", "DecisionPage"), (f"/v1/decisions/{sha}", "Decisions")):
        status, raw = call(admin_server, path)
        assert status == 200 and json.loads(raw)["decisions"], raw
        check(spec, schema, json.loads(raw))
    status, raw = call(admin_server, "/v1/decisions/summary")
    assert status == 200 and json.loads(raw)["by_decision"]["manipulated"] >= 1, raw
    check(spec, "DecisionSummary", json.loads(raw))
    status, raw = call(admin_server, "/v1/whoami")
    check(spec, "WhoAmI", json.loads(raw))
    # Without a key, everything but the description is refused, with the described error body.
    req = urllib.request.Request(f"http://{admin_server.http}/v1/models")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 401
    check(spec, "Error", json.loads(e.value.read()))


def test_every_described_path_is_served(spec, admin_server):
    doc, _ = spec
    for path, ops in doc["paths"].items():
        concrete = path.replace("{list}", "nosuchlist").replace("{id}", "nosuchid").replace("{sha256}", "0" * 64)
        for method in ops:
            if method == "parameters":
                continue
            status, _ = call(admin_server, concrete, b"" if method == "post" else None, method=method.upper())
            assert status not in (404, 405) or "{list}" in path, (method, path, status)
