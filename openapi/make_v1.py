"""Writes openapi/v1.json, the OpenAPI 3.1 description of dfserve's /v1 HTTP API, which the
server embeds and serves at GET /v1/openapi.json. Edit this file, run it, commit both;
tests/python/test_openapi.py checks real responses against the result."""
import json
import pathlib

num = {"type": "number"}
opt_num = {"type": ["number", "null"]}
string = {"type": "string"}
integer = {"type": "integer", "minimum": 0}
box = {"type": "array", "items": num, "minItems": 4, "maxItems": 4,
       "description": "x1, y1, x2, y2 in pixels of the upload as it is shown (EXIF orientation applied)"}
label = {"enum": ["manipulated", "authentic"]}
verdict = {"enum": ["likely_manipulated", "uncertain", "likely_authentic", "not_applicable"]}
reason = {"enum": ["no_face", "face_too_small", "image_too_small"]}


def obj(required, optional=None, description=None):
    props = {**required, **(optional or {})}
    o = {"type": "object", "properties": props, "required": sorted(required), "additionalProperties": False}
    if description:
        o["description"] = description
    return o


ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731

schemas = {
    "Error": obj({"error": string, "code": string},
                 description="Every 4xx/5xx answer: a message saying what to do, and a stable code."),
    "MemberScore": obj({"model": string, "score": num}),
    "Face": obj(
        {"box": box, "confidence": num, "score": num, "label": label, "verdict": verdict},
        {"verdict_reason": reason, "raw_score": num, "members": {"type": "array", "items": ref("MemberScore")}}),
    "Match": obj(
        {"list": string, "id": string, "kind": {"enum": ["pdq", "vpdq", "md5", "sha256"]}, "distance": integer},
        {"label": string, "query_match_pct": num, "list_match_pct": num,
         "transform": {"enum": ["rotate_90", "rotate_180", "rotate_270", "flip_vertical", "flip_horizontal",
                                "transpose", "transverse"],
                       "description": "PDQ: how the upload was turned or mirrored to match (absent: as uploaded)"}}),
    "C2pa": obj(
        {"present": {"type": "boolean"}, "generative_ai": {"type": "boolean"}},
        {"state": {"enum": ["invalid", "valid", "trusted"]},
         "signer": obj({}, {"issuer": string, "common_name": string}),
         "signed_at": string, "claim_generator": string, "title": string,
         "digital_source_types": {"type": "array", "items": string},
         "errors": {"type": "array", "items": string}}),
    "Provenance": obj({"c2pa": ref("C2pa")}),
    "Audit": {"type": "object", "description": "What produced this result: the upload's SHA-256, "
              "dfserve's version, every model with its sha256, thresholds and bands.",
              "required": ["upload_sha256", "dfserve_version", "classifier", "models"]},
    "ImageTimings": obj({"decode_ms": num, "detect_ms": num, "crop_ms": num, "classify_ms": num, "total_ms": num}),
    "VideoTimings": obj({"probe_ms": num, "decode_ms": num, "score_ms": num, "total_ms": num}),
    "TrackFrame": obj({"frame": integer, "time_s": num, "box": box, "confidence": num, "score": num}),
    "Track": obj({"id": integer, "score": num, "frames": {"type": "array", "items": ref("TrackFrame")}}),
}
common = {"index": integer, "status": {"enum": ["ok", "no_face"]}, "score": opt_num,
          "label": {"oneOf": [label, {"type": "null"}]}, "threshold": num, "verdict": verdict,
          "matches": {"type": "array", "items": ref("Match")}}
common_opt = {"filename": string, "verdict_reason": reason, "provenance": ref("Provenance"), "audit": ref("Audit")}
schemas["ImageResult"] = obj(
    {**common, "kind": {"const": "image"}, "width": integer, "height": integer,
     "faces": {"type": "array", "items": ref("Face")}, "timings": ref("ImageTimings")}, common_opt)
schemas["VideoResult"] = obj(
    {**common, "kind": {"const": "video"}, "duration_s": num, "fps": num, "width": integer, "height": integer,
     "codec": string, "frames_sampled": integer, "frames_with_faces": integer,
     "aggregation": {"enum": ["max", "mean", "confident"]},
     "sampling": {"enum": ["sequential", "sequential_ref_frames", "seek"]},
     "tracks": {"type": "array", "items": ref("Track")}, "timings": ref("VideoTimings")}, common_opt)
schemas["ItemError"] = obj(
    {"index": integer, "status": {"const": "error"}, "error": string, "code": string, "http_status": integer},
    {"filename": string}, description="A file of a multipart request that failed; the others still count.")
schemas["DetectResponse"] = obj({
    "model": obj({"name": string, "version": string}),
    "mode": {"enum": ["faces", "whole"]},
    "results": {"type": "array", "items": {"oneOf": [ref("ImageResult"), ref("VideoResult"), ref("ItemError")]}},
})
schemas["ModelsResponse"] = {"type": "object", "required": ["device", "models", "classifiers"],
                             "properties": {"device": string, "models": {"type": "array"},
                                            "classifiers": {"type": "array"}}}
schemas["ListSummary"] = obj({"name": string, "entries": integer, "by_kind": {"type": "object"}})
schemas["HashLists"] = obj({"lists": {"type": "array", "items": ref("ListSummary")}})
schemas["ListChange"] = obj({"list": string}, {"deleted": {"type": ["integer", "string"]}})
schemas["ListImport"] = obj(
    {"list": string, "added": integer, "replaced": integer, "duplicates": integer, "entries": integer},
    description="What an import did: ids new to the list, ids replaced, lines whose id came earlier in the "
                "same import (the last counts), and the list's entries afterwards.")

call = {"enum": ["manipulated", "authentic", "unsure"]}
schemas["ShownFace"] = obj({"score": opt_num}, {"verdict": string, "members": {
    "type": "object", "additionalProperties": num, "description": "ensemble member scores by model"}})
schemas["Shown"] = obj({}, {
    "model": string, "score": opt_num, "label": {"type": ["string", "null"]}, "verdict": string,
    "faces": {"type": "array", "items": ref("ShownFace"), "description": "faces (images) or face tracks (videos)"},
    "matches": {"type": "array", "items": string, "description": "hash-list matches as list/id"},
    "c2pa": string}, description="What the reviewer was shown, as the page reported it.")
sha256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
schemas["DecisionRequest"] = obj({"sha256": sha256, "decision": call}, {
    "filename": {"type": ["string", "null"]}, "kind": {"type": ["string", "null"]},
    "note": {"type": ["string", "null"]}, "shown": ref("Shown"),
    "add_to_list": {"type": ["string", "null"], "description": "also add the media to this hash list "
                    "(admin key; send multipart with the file as part `media`)"}})
schemas["Decision"] = obj(
    {"sha256": sha256, "decision": call, "reviewer": {"type": "string", "description": "the key's id, or anonymous"},
     "decided_at": {"type": "string", "format": "date-time"}, "shown": ref("Shown")},
    {"filename": string, "kind": string, "note": string, "added_to_list": string})
schemas["Decisions"] = obj({"decisions": {"type": "array", "items": ref("Decision")}})
schemas["DecisionPage"] = obj(
    {"decisions": {"type": "array", "items": ref("Decision")},
     "next": {"type": ["string", "null"], "description": "pass as `after` for the next page; null after the last"}})
schemas["DecisionSummary"] = obj({"total": integer, "items": integer, "reviewers": integer,
                                  "by_decision": {"type": "object", "additionalProperties": integer}})
schemas["DecisionRecorded"] = obj({"decision": ref("Decision")})
schemas["WhoAmI"] = obj({"key_id": {"type": ["string", "null"]}, "admin": {"type": "boolean"},
                         "keys_required": {"type": "boolean"}, "decisions": {"type": "boolean"},
                         "hash_lists": {"type": "boolean"}})

errors = {str(c): {"description": d, "content": {"application/json": {"schema": ref("Error")}}} for c, d in [
    (400, "a bad option or an empty body"), (401, "no or an unknown API key"), (403, "not allowed for this key"),
    (413, "the body is over --max-body-bytes"), (422, "the upload cannot be decoded, or is too large to decode"),
    (429, "overloaded: retry shortly"), (503, "warming up or draining, or storage failing (storage_unavailable): retry after Retry-After"), (504, "over --request-timeout")]}
q = lambda name, schema, d: {"name": name, "in": "query", "required": False, "schema": schema, "description": d}  # noqa: E731
list_param = {"name": "list", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}
ok = lambda schema, d="OK": {"description": d, "content": {"application/json": {"schema": schema}}}  # noqa: E731

doc = {
    "openapi": "3.1.0",
    "info": {"title": "dfserve /v1", "version": "1",
             "description": "Deepfake detection with face detection, known-content matching and C2PA provenance."},
    "components": {"schemas": schemas, "securitySchemes": {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"apiKey": []}, {"bearer": []}, {}],
    "paths": {
        "/v1/detect": {"post": {
            "summary": "Score images and videos: one result per file, in order.",
            "parameters": [
                q("model", string, "classifier or ensemble; the server's default when absent"),
                q("threshold", {"type": "number", "minimum": 0, "maximum": 1}, "decision threshold"),
                q("mode", {"enum": ["faces", "whole"]}, "detect faces (default) or score the whole image as one crop"),
                q("frames", {"type": "integer", "minimum": 1}, "videos: frames to sample"),
                q("fps", {"type": "number", "exclusiveMinimum": 0}, "videos: frames per second to sample"),
                q("aggregation", {"enum": ["max", "mean", "confident"]}, "videos: how track scores combine"),
                q("audit", {"type": "boolean"}, "attach an audit record to each result")],
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
                "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {
                    "type": "string", "contentMediaType": "application/octet-stream"}}}}},
            "responses": {"200": ok(ref("DetectResponse")), **errors}}},
        "/v1/models": {"get": {"summary": "Loaded models and classifiers.",
                               "responses": {"200": ok(ref("ModelsResponse")), "401": errors["401"]}}},
        "/v1/hashlists": {"get": {"summary": "Every hash list with its counts.",
                                  "responses": {"200": ok(ref("HashLists")), "401": errors["401"]}}},
        "/v1/hashlists/{list}": {
            "parameters": [list_param],
            "get": {"summary": "A list's entries as JSON Lines.", "responses": {
                "200": {"description": "OK", "content": {"application/x-ndjson": {"schema": string}}},
                "404": errors["401"] | {"description": "no such list"}}},
            "post": {"summary": "Add entries (admin key): JSON Lines or CSV with a kind,hash,id[,label,source] header.",
                     "requestBody": {"required": True, "content": {"application/x-ndjson": {"schema": string},
                                                                   "text/csv": {"schema": string}}},
                     "responses": {"200": ok(ref("ListImport")), "400": errors["400"], "403": errors["403"],
                                   "413": errors["413"], "429": errors["429"], "503": errors["503"]}},
            "delete": {"summary": "Delete a list (admin key).",
                       "responses": {"200": ok(ref("ListChange")), "403": errors["403"]}}},
        "/v1/hashlists/{list}/entries/{id}": {
            "parameters": [list_param, {"name": "id", "in": "path", "required": True, "schema": string}],
            "delete": {"summary": "Delete one entry (admin key).",
                       "responses": {"200": ok(ref("ListChange")), "403": errors["403"]}}},
        "/v1/decisions": {
            "get": {"summary": "Reviewer decisions, oldest first, a page at a time; `format=csv` gives the "
                               "CSV that `dfserve score --labels` reads (all of it, streamed, unless `limit` is "
                               "given; formula-like cells get a leading `'`).",
                    "parameters": [q("format", {"enum": ["json", "csv"]}, "json (default) or csv"),
                                   q("limit", {"type": "integer", "minimum": 1, "maximum": 10000},
                                     "decisions per page (JSON default 1000)"),
                                   q("after", string, "the `next` of the previous page")],
                    "responses": {"200": {"description": "OK", "content": {
                        "application/json": {"schema": ref("DecisionPage")}, "text/csv": {"schema": string}}},
                        "400": errors["400"], "401": errors["401"]}},
            "post": {"summary": "Record the presenting key's decision on one item (replacing its earlier one).",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": ref("DecisionRequest")},
                         "multipart/form-data": {"schema": obj(
                             {"decision": ref("DecisionRequest")},
                             {"media": {"type": "string", "contentMediaType": "application/octet-stream"}})}}},
                     "responses": {"200": ok(ref("DecisionRecorded")), "400": errors["400"], "403": errors["403"],
                                   "503": errors["503"]}}},
        "/v1/decisions/summary": {"get": {
            "summary": "How many decisions, of which kind, on how many items, by how many reviewers.",
            "responses": {"200": ok(ref("DecisionSummary")), "401": errors["401"]}}},
        "/v1/decisions/{sha256}": {
            "parameters": [{"name": "sha256", "in": "path", "required": True, "schema": sha256}],
            "get": {"summary": "Every reviewer's decision on one item.",
                    "responses": {"200": ok(ref("Decisions")), "400": errors["400"]}}},
        "/v1/whoami": {"get": {"summary": "The presented key's id and role.",
                               "responses": {"200": ok(ref("WhoAmI")), "401": errors["401"]}}},
        "/v1/openapi.json": {"get": {"summary": "This document.", "security": [{}],
                                     "responses": {"200": ok({"type": "object"})}}},
    },
}
out = pathlib.Path(__file__).with_name("v1.json")
out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
print(f"wrote {out}")
