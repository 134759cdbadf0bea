#!/usr/bin/env bash
# Classifier cost: one server, the same inputs, /v1/detect with each named classifier in turn
# (interleaved rounds), to state what an ensemble costs against a single model.
#
#   bench/models.sh [SECONDS_PER_CASE] [ROUNDS] [MODEL ...]   default 8 s, 3 rounds,
#                                                            meso4_df meso4_ensemble
#
# Cases at concurrency 1 and 16: `crops` (mode=whole, the four MesoNet crops) and `photos`
# (bench/out/photos, 1280x720 with 1-5 faces; bench/make_photos.py builds them). Prints the
# median images/s per model and its ratio to the first model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A throwaway --data-dir, so this server does not contend for the hash-list database of a
# server already running from this checkout.
export DFSERVE_DATA_DIR="$(mktemp -d)"
SECS="${1:-8}"
ROUNDS="${2:-3}"
shift $(( $# > 2 ? 2 : $# )) || true
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(meso4_df meso4_ensemble)
PORT="${DFSERVE_BENCH_PORT:-18300}"
BIN="${DFSERVE_BIN:-target/release/dfserve}"
command -v wrk >/dev/null || { echo "bench/models.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
CROPS="$SAMPLES/df/df00204.jpg:$SAMPLES/df/df01254.jpg:$SAMPLES/real/real00240.jpg:$SAMPLES/real/real00772.jpg"
[ -d bench/out/photos ] || .venv/bin/python bench/make_photos.py
PHOTOS="$(ls bench/out/photos/*.jpg | tr '\n' ':')"
DFSERVE_LOG=warn "$BIN" serve --host 127.0.0.1 --http-port "$PORT" --grpc-port $((PORT + 1)) >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
OUT="bench/out/models.jsonl"
: >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for case in crops photos; do
    for c in 1 16; do
      for m in "${MODELS[@]}"; do
        if [ "$case" = crops ]; then images="$CROPS"; q="mode=whole&model=$m"; else images="$PHOTOS"; q="model=$m"; fi
        line=$(DFSERVE_BENCH_IMAGES="$images" wrk -t 1 -c "$c" -d "${SECS}s" -s bench/wrk_detect.lua \
          "http://127.0.0.1:$PORT/v1/detect?$q" | tail -n 1)
        echo "{\"round\": $round, \"case\": \"$case\", \"c\": $c, \"model\": \"$m\", \"wrk\": $line}" >>"$OUT"
      done
    done
  done
done
python3 - "$OUT" "${MODELS[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
models = sys.argv[2:]
print(f"{'case':<8}{'c':>4}" + "".join(f"{m + ' img/s':>24}{'ratio':>8}" for m in models))
for case in ["crops", "photos"]:
    for c in [1, 16]:
        med = {m: statistics.median(r["wrk"]["rps"] for r in rows if (r["case"], r["c"], r["model"]) == (case, c, m)) for m in models}
        print(f"{case:<8}{c:>4}" + "".join(f"{med[m]:>24.1f}{med[m] / med[models[0]]:>8.3f}" for m in models))
PY
