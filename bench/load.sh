#!/usr/bin/env bash
# Load test of /v1/detect with wrk, next to raw ONNX Runtime throughput of the same classifier,
# measured in the same run on this machine. Prints a table; raw JSON lines go to bench/out/.
#
#   bench/load.sh [SECONDS_PER_RUN] [ROUNDS]
#
# Each round runs every case once, interleaved (raw ORT, then each HTTP case), so a noisy
# neighbour affects all cases alike; the table gives the median over rounds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-10}"
ROUNDS="${2:-3}"
PORT="${DFSERVE_BENCH_PORT:-18000}"
MODEL="${DFSERVE_BENCH_MODEL:-meso4_df}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "bench/load.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/setup.sh >/dev/null

SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
export DFSERVE_BENCH_IMAGES="$SAMPLES/df/df00204.jpg:$SAMPLES/df/df01254.jpg:$SAMPLES/real/real00240.jpg:$SAMPLES/real/real00772.jpg"

target/release/dfserve serve --host 127.0.0.1 --http-port "$PORT" --default-model "$MODEL" "${@:3}" \
  >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  target/release/dfserve bench-model --model "$MODEL" --batch-sizes 1,4,16 --seconds "$((SECS / 2 > 0 ? SECS / 2 : 1))" --json \
    | while read -r line; do echo "{\"round\": $round, \"case\": \"raw_ort\", \"row\": $line}" >>"$RESULTS"; done
  for mode in whole faces; do
    for c in 1 16; do
      r=$(wrk -t1 -c"$c" -d"${SECS}s" --timeout 10s -s bench/wrk_detect.lua \
            "http://127.0.0.1:$PORT/v1/detect?mode=$mode" | tail -n 1)
      echo "{\"round\": $round, \"case\": \"detect_${mode}_c${c}\", \"row\": $r}" >>"$RESULTS"
    done
  done
done
curl -fs "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt"
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$SERVER/status)

python3 - "$RESULTS" "$RSS_KB" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rss_mb = int(sys.argv[2]) / 1024
raw = {}
for r in rows:
    if r["case"] == "raw_ort":
        raw.setdefault(r["row"]["batch_size"], []).append(r["row"]["images_per_s"])
raw_med = {bs: statistics.median(v) for bs, v in raw.items()}
best_bs = max(raw_med, key=raw_med.get)
best = raw_med[best_bs]
print("raw ONNX Runtime (%s):" % ", ".join("batch %d %.0f img/s" % (bs, v) for bs, v in sorted(raw_med.items())))
print("%-22s %10s %9s %9s %9s %8s" % ("case", "images/s", "p50 ms", "p99 ms", "vs raw", "errors"))
cases = {}
for r in rows:
    if r["case"] != "raw_ort":
        cases.setdefault(r["case"], []).append(r["row"])
for case, rs in cases.items():
    rps = statistics.median(x["rps"] for x in rs)
    print("%-22s %10.1f %9.2f %9.2f %8.2fx %8d" % (case, rps,
        statistics.median(x["p50_ms"] for x in rs), statistics.median(x["p99_ms"] for x in rs),
        rps / best, sum(x["errors"] for x in rs)))
print("best raw batch size: %d (%.0f img/s); server RSS after load: %.0f MiB; rounds: %d" % (best_bs, best, rss_mb, len(raw[best_bs])))
PY
