"""Per-image time in each pipeline stage, from two scrapes of dfserve's /metrics taken around
one load case: mean milliseconds per image for decode, detect (detector input, run and box
decoding), crop (crops resized into classifier rows; in whole mode the image itself), classify
(classifier runs), queue (waiting in model queues, summed over the image's entries), and the
request as a whole.

    python bench/stages.py METRICS_BEFORE METRICS_AFTER     -> one JSON object
"""

import json
import re
import sys

LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)$")


def parse(path):
    out = {}
    for line in open(path):
        m = LINE.match(line.strip())
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(3))
    return out


def main():
    before, after = parse(sys.argv[1]), parse(sys.argv[2])

    def delta(name, **labels):
        total = 0.0
        for (n, ls), v in after.items():
            if n == name and all(dict(ls).get(k) == want for k, want in labels.items()):
                total += v - before.get((n, ls), 0.0)
        return total

    images = delta("dfserve_images_total")
    if images <= 0:
        print(json.dumps({"images": 0}))
        return
    stage = lambda s: delta("dfserve_stage_duration_seconds_sum", stage=s)
    infer = lambda m: delta("dfserve_inference_duration_seconds_sum", model=m)
    ms = lambda seconds: round(seconds / images * 1e3, 3)
    row = {
        "images": int(images),
        # Classifier entries per image: the faces found, or 1 in whole mode.
        "faces_per_image": round(delta("dfserve_batch_size_sum", model="meso4_df") / images, 2),
        "decode": ms(stage("decode")),
        "detect": ms(stage("detect_preprocess") + infer("ultraface_rfb320") + stage("detect_postprocess")),
        "crop": ms(stage("crop") + stage("classify_preprocess")),
        "classify": ms(infer("meso4_df")),
        "queue": ms(delta("dfserve_queue_duration_seconds_sum")),
        "request": ms(delta("dfserve_request_duration_seconds_sum", endpoint="/v1/detect")),
        "solo_runs_share": round(delta("dfserve_solo_runs_total") / max(1.0, delta("dfserve_batch_size_count")), 3),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
