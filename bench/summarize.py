"""Turns bench/out/suite.jsonl (written by bench/run.sh) into the suite's tables, in Markdown:
medians over rounds, ratios to the limit (best raw ONNX Runtime) and to the peers measured in
the same run, concurrency-1 latency against the in-process pipeline, the per-stage breakdown
and memory.

    python bench/summarize.py bench/out/suite.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict

PATHS = [
    ("tensor", "dfserve KServe gRPC, binary tensors (perf_analyzer)"),
    ("crops", "dfserve /v1/detect, crops (wrk)"),
    ("crops_kserve", "dfserve KServe gRPC, JPEG crops (perf_analyzer)"),
    ("crops_kserve_http", "dfserve KServe HTTP binary, JPEG crops (wrk)"),
    ("crops_fastapi", "FastAPI peer, crops (wrk)"),
    ("crops_pytriton", "PyTriton peer, JPEG crops over gRPC (perf_analyzer)"),
    ("crops_pytriton_http", "PyTriton peer, JPEG crops over KServe HTTP binary (wrk)"),
    ("photos", "dfserve /v1/detect, 1280x720 photos (wrk)"),
    ("photos_fastapi", "FastAPI peer, photos (wrk)"),
]
# Which peer each dfserve path is held against: the same work, driven by the same load tool.
FASTAPI_PEER = {"crops": "crops_fastapi", "photos": "photos_fastapi"}
PYTRITON_PEER = {"crops": "crops_pytriton_http", "crops_kserve_http": "crops_pytriton_http", "crops_kserve": "crops_pytriton"}
PHOTO_PATHS = {"photos", "photos_fastapi"}


def med(values):
    return statistics.median(values) if values else float("nan")


def ratio(a, b):
    return f"{a / b:.2f}x" if b and b == b else "n/a"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    by = defaultdict(list)
    for r in rows:
        by[(r["case"], r["c"])].append(r["row"])

    raw = defaultdict(list)
    for r in by[("raw", 0)]:
        raw[(r["instances"], r["intra_threads"], r["batch_size"])].append(r)
    raw_med = {k: med([x["images_per_s"] for x in v]) for k, v in raw.items()}
    limit_key = max(raw_med, key=raw_med.get)
    limit = raw_med[limit_key]
    rounds = len(raw[limit_key])

    out = []
    p = out.append
    p(f"Medians of {rounds} round(s).\n")
    p("**The limit: raw ONNX Runtime, meso4_df, random input** (images/s; sessions x intra-op threads):\n")
    p("| sessions | " + " | ".join(f"batch {b}" for b in sorted({k[2] for k in raw_med})) + " |")
    p("|---|" + "---|" * len({k[2] for k in raw_med}))
    for layout in sorted({k[:2] for k in raw_med}):
        cells = [f"{raw_med[(*layout, b)]:.0f}" if (*layout, b) in raw_med else "" for b in sorted({k[2] for k in raw_med})]
        p(f"| {layout[0]}x{layout[1]} | " + " | ".join(cells) + " |")
    p(f"\nLimit = {limit:.0f} images/s ({limit_key[0]}x{limit_key[1]} sessions, batch {limit_key[2]}).\n")

    def stat(case, c, key):
        return med([x[key] for x in by.get((case, c), [])])

    failed = []
    p("| path | c | images/s | p50 ms | p99 ms | x limit | x FastAPI | x PyTriton | errors |")
    p("|---|---|---|---|---|---|---|---|---|")
    for case, title in PATHS:
        for c in (1, 4, 16):
            if (case, c) not in by:
                continue
            rps = stat(case, c, "rps")
            x_limit = "" if case in PHOTO_PATHS else ratio(rps, limit)
            x_fa = ratio(rps, stat(FASTAPI_PEER[case], c, "rps")) if case in FASTAPI_PEER else ""
            x_pyt = ratio(rps, stat(PYTRITON_PEER[case], c, "rps")) if case in PYTRITON_PEER else ""
            errors = sum(x["errors"] for x in by[(case, c)])
            if errors:
                failed.append(f"{case} c={c}: {errors} errors")
            p(f"| {title} | {c} | {rps:.1f} | {stat(case, c, 'p50_ms'):.2f} | {stat(case, c, 'p99_ms'):.2f} "
              f"| {x_limit} | {x_fa} | {x_pyt} | {errors} |")

    p("\n**Concurrency 1 against the same work done in-process** (no server, no queue; p50 ms):\n")
    p("| path | served p50 | in-process p50 | ratio |")
    p("|---|---|---|---|")
    solo_b1 = [x["p50_ms_per_batch"] for x in raw.get((1, 2, 1), [])]
    pairs = [
        ("tensor", "model run, batch 1, 2 threads", med(solo_b1)),
        ("crops", "decode + resize + classify", stat("inprocess_whole", 1, "p50_ms")),
        ("photos", "decode + detect + crop + classify", stat("inprocess_faces", 1, "p50_ms")),
    ]
    for case, what, floor in pairs:
        served = stat(case, 1, "p50_ms")
        p(f"| {case} ({what}) | {served:.2f} | {floor:.2f} | {ratio(served, floor)} |")

    p("\n**Where the time goes**, from dfserve's /metrics at concurrency 16 (mean ms per image), next "
      "to the in-process pipeline at concurrency 1 (median ms per image). Queue time is summed over an "
      "image's model entries (the detector and each face), which wait side by side:\n")
    stages = ["decode", "detect", "crop", "classify", "queue", "request"]
    p("| path | " + " | ".join(stages) + " | faces/image | solo runs |")
    # queue is summed over an image's entries (detector + each face), which wait side by side,
    # so under load it can exceed the request time.
    p("|---|" + "---|" * (len(stages) + 2))
    for case, inproc in (("crops", "inprocess_whole"), ("photos", "inprocess_faces")):
        srv = by.get((f"stages_{case}", 16), [])
        if srv:
            cells = [f"{med([s[k] for s in srv]):.3f}" for k in stages]
            p(f"| {case}, served c=16 | " + " | ".join(cells)
              + f" | {med([s['faces_per_image'] for s in srv]):.2f} | {med([s['solo_runs_share'] for s in srv]):.0%} |")
        ip = by.get((inproc, 1), [])
        if ip:
            cells = [f"{med([s['stages_ms'].get(k, 0.0) for s in ip]):.3f}" if k in ("decode", "detect", "crop", "classify")
                     else ("" if k == "queue" else f"{med([s['p50_ms'] for s in ip]):.3f}") for k in stages]
            p(f"| {case}, in-process | " + " | ".join(cells) + f" | {med([s['faces_per_image'] for s in ip]):.2f} | |")

    mem = by.get(("memory", 0))
    if mem:
        m = mem[0]
        p("\n**Memory** (resident MiB): "
          f"dfserve idle {m['idle']['dfserve']}, after 16-way photos {m['after_16way_photos']['dfserve']}, "
          f"peak {m['dfserve_peak']}; FastAPI peer idle {m['idle']['fastapi']}, after 16-way {m['fastapi_after_16way']}; "
          f"PyTriton peer (all processes) idle {m['idle']['pytriton']}, at the end {m['pytriton_after']}.")
    print("\n".join(out))
    if failed:
        # Errors mean a case measured something other than scoring; its figures are void.
        sys.exit("cases with errors (non-2xx or failed requests): " + "; ".join(failed))


if __name__ == "__main__":
    main()
