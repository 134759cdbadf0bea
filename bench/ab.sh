#!/usr/bin/env bash
# A/B: two dfserve binaries side by side on this machine, interleaved, same tool and inputs.
# For a change that should not move performance (a refactor), or one that should.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [SECONDS_PER_CASE] [ROUNDS]     default 8 s, 3 rounds
#
# Cases, each at concurrency 1 and 16, with wrk: `crops` (POST /v1/detect?mode=whole, the four
# MesoNet JPEG crops), `photos` (POST /v1/detect, bench/out/photos: 1280x720 with 1-5 faces)
# and `kserve` (the KServe HTTP `dfserve` pipeline model on the crops, binary extension). Each
# round runs every case on A and on B, swapping which goes first. Prints medians over rounds
# and the ratio B/A; raw rows go to bench/out/ab.jsonl. Both servers stay up, the idle one
# waits on its sockets.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
A_BIN="$1" B_BIN="$2" SECS="${3:-8}" ROUNDS="${4:-3}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
CROPS="$SAMPLES/df/df00204.jpg:$SAMPLES/df/df01254.jpg:$SAMPLES/real/real00240.jpg:$SAMPLES/real/real00772.jpg"
if [ "$(ls "$OUT"/photos/*.jpg 2>/dev/null | wc -l)" -lt 10 ]; then
  scripts/pyenv.sh
  .venv/bin/python bench/make_photos.py "$SAMPLES" "$OUT/photos" 10 >&2
fi
PHOTOS=$(ls "$OUT"/photos/*.jpg | paste -sd:)

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
start() { # binary http-port grpc-port
  DFSERVE_DATA_DIR="$(mktemp -d)" "$1" serve --host 127.0.0.1 --http-port "$2" --grpc-port "$3" >"$OUT/ab_$2.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$2/health/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server on $2 not ready" >&2
  exit 1
}
start "$A_BIN" 18100 18101
start "$B_BIN" 18200 18201

run() { # side port case conc round
  local path=/v1/detect images=$PHOTOS kin="" kparams=""
  case "$3" in
    crops) path="/v1/detect?mode=whole" images=$CROPS ;;
    kserve) path=/v2/models/dfserve/infer images=$CROPS kin=IMAGE kparams='{"mode":"whole"}' ;;
  esac
  local line
  line=$(DFSERVE_BENCH_IMAGES="$images" DFSERVE_BENCH_KSERVE_INPUT="$kin" DFSERVE_BENCH_KSERVE_PARAMS="$kparams" \
    wrk -t 1 -c "$4" -d "${SECS}s" -s bench/wrk_detect.lua "http://127.0.0.1:$2$path" | tail -n 1)
  echo "{\"side\": \"$1\", \"case\": \"$3\", \"c\": $4, \"round\": $5, \"wrk\": $line}" | tee -a "$OUT/ab.jsonl" >&2
}
: >"$OUT/ab.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  for case in crops photos kserve; do
    for c in 1 16; do
      if [ $((r % 2)) = 1 ]; then run A 18100 $case $c $r; run B 18200 $case $c $r
      else run B 18200 $case $c $r; run A 18100 $case $c $r; fi
    done
  done
done
python3 - "$OUT/ab.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in rows if r["wrk"]["errors"]]
print(f"{'case':<8} {'c':>3} {'A img/s':>9} {'B img/s':>9} {'B/A':>6} {'A p50 ms':>9} {'B p50 ms':>9} {'B/A':>6}")
for case in ["crops", "photos", "kserve"]:
    for c in [1, 16]:
        med = lambda side, k: statistics.median(r["wrk"][k] for r in rows if r["side"] == side and r["case"] == case and r["c"] == c)
        a, b, ap, bp = med("A", "rps"), med("B", "rps"), med("A", "p50_ms"), med("B", "p50_ms")
        print(f"{case:<8} {c:>3} {a:>9.1f} {b:>9.1f} {b / a:>6.3f} {ap:>9.2f} {bp:>9.2f} {bp / ap:>6.3f}")
if bad:
    sys.exit(f"{len(bad)} runs had errors")
PY
