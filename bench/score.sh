#!/usr/bin/env bash
# Throughput of `dfserve score --mode whole` over a folder of face crops, next to raw ONNX
# Runtime on the same model, interleaved in one run. Medians over rounds.
#
#   bench/score.sh [N_IMAGES] [ROUNDS]        default 2000 images, 3 rounds
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${1:-2000}"
ROUNDS="${2:-3}"
MODEL="${DFSERVE_BENCH_MODEL:-meso4_df}"
OUT="$ROOT/bench/out"
DATA="$OUT/crops"
mkdir -p "$OUT"
scripts/setup.sh >/dev/null
scripts/pyenv.sh
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
# N distinct 256x256 JPEG crops made from the MesoNet samples (shifted crops, flips, qualities).
.venv/bin/python - "$SAMPLES" "$DATA" "$N" <<'PY'
import pathlib, sys
from PIL import Image, ImageOps
src, dst, n = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
if dst.exists() and len(list(dst.rglob("*.jpg"))) == n:
    sys.exit(0)
imgs = [(p.parent.name, Image.open(p).convert("RGB")) for p in sorted(src.rglob("*.jpg"))]
for i in range(n):
    cls, img = imgs[i % len(imgs)]
    k = i // len(imgs)
    w, h = img.size
    c = k % 24
    v = img.crop((c, (k // 24) % 24, w - 24 + c, h - 24 + (k // 24) % 24))
    if k % 2:
        v = ImageOps.mirror(v)
    d = dst / ("fake" if cls == "df" else "real")
    d.mkdir(parents=True, exist_ok=True)
    v.resize((256, 256)).save(d / f"{i:05d}.jpg", quality=80 + k % 15)
PY
for round in $(seq 1 "$ROUNDS"); do
  # The limit in both session layouts: one 2-thread session, and one 1-thread session per core.
  for layout in 1x2 2x1; do
    target/release/dfserve bench-model --model "$MODEL" --instances "${layout%x*}" --intra-threads "${layout#*x}" \
      --batch-sizes 1,2,4,8 --seconds 3 --json | sed "s/^/{\"round\": $round, \"raw\": /; s/$/}/"
  done
  rm -f "$OUT/score.jsonl"
  /usr/bin/time -f "{\"round\": $round, \"score_seconds\": %e, \"max_rss_kb\": %M}" \
    target/release/dfserve score "$DATA" --mode whole --model "$MODEL" --output "$OUT/score.jsonl" "${@:3}" 2>&1 \
    | grep -E '^\{|images in'
done | tee "$OUT/score_results.txt"
python3 - "$OUT/score_results.txt" "$N" <<'PY'
import json, re, statistics, sys
raw, score = {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith('{"round"') and '"raw"' in line:
        r = json.loads(line)["raw"]
        raw.setdefault((r["instances"], r["intra_threads"], r["batch_size"]), []).append(r["images_per_s"])
    elif "images in" in line:
        m = re.search(r"\(([\d.]+) images/s\)", line); score.append(float(m.group(1)))
best = max(raw, key=lambda b: statistics.median(raw[b]))
braw = statistics.median(raw[best])
s = statistics.median(score)
print(f"raw ONNX Runtime best: {best[0]}x{best[1]} sessions, batch {best[2]}, {braw:.0f} images/s ("
      + ", ".join(f"{i}x{t} b{b} {statistics.median(v):.0f}" for (i, t, b), v in sorted(raw.items())) + ")")
print(f"dfserve score --mode whole over {sys.argv[2]} crops: {s:.0f} images/s = {s / braw:.2f}x raw (median of {len(score)})")
PY
