#!/usr/bin/env bash
# The benchmark suite: dfserve against the limit (raw ONNX Runtime) and two Python peers,
# interleaved in one run on this machine, printing one table.
#
#   bench/run.sh [SECONDS_PER_CASE] [ROUNDS]        default 10 s, 3 rounds
#
# Per round, in this order: raw ONNX Runtime (every session layout and batch size), the same
# pipeline in-process (bench-pipeline), then at concurrency 1, 4 and 16:
#   tensor        KServe v2 gRPC infer on meso4_df, binary FP32 tensors   perf_analyzer
#   crops         POST /v1/detect?mode=whole, 256x256-ish JPEG face crops  wrk
#   crops_kserve  KServe gRPC `dfserve` pipeline model (mode whole), the same JPEGs  perf_analyzer
#   crops_kserve_http  the same over KServe HTTP, binary extension        wrk
#   photos        POST /v1/detect, 1280x720 JPEGs with 1-5 faces           wrk
# and the peers doing the same work: FastAPI (crops, photos; wrk) and PyTriton (crops over
# KServe gRPC with perf_analyzer, and over KServe HTTP with wrk). The table gives medians over rounds; the per-stage breakdown
# comes from dfserve's own /metrics. Raw rows: bench/out/suite.jsonl; table: bench/out/suite.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A throwaway --data-dir, so this server does not contend for the hash-list database of a
# server already running from this checkout.
export DFSERVE_DATA_DIR="$(mktemp -d)"
SECS="${1:-10}"
ROUNDS="${2:-3}"
BASE="${DFSERVE_BENCH_PORT:-18000}"
DF_HTTP=$BASE DF_GRPC=$((BASE + 1)) FASTAPI=$((BASE + 10)) PYT_HTTP=$((BASE + 20)) PYT_GRPC=$((BASE + 21))
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# --- tools and environments -------------------------------------------------------------
log "setting up (dfserve build, ORT, models, .venv with perf_analyzer, .venv-bench with the peers)"
scripts/setup.sh >/dev/null
scripts/pyenv.sh
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
ldconfig -p | grep -q libb64.so.0d || need_apt+=(libb64-0d)
if [ ${#need_apt[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# perf_analyzer links libcudart even when no GPU is used.
.venv/bin/python -c "import nvidia.cuda_runtime" 2>/dev/null || .venv/bin/pip install -q nvidia-cuda-runtime-cu12
CUDART_DIR=$(.venv/bin/python -c "import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], 'lib'))")
PA() { LD_LIBRARY_PATH="$CUDART_DIR:${LD_LIBRARY_PATH:-}" .venv/bin/perf_analyzer "$@"; }
PEER_REQ=bench/peers/requirements.txt
if [ ! -x .venv-bench/bin/python ] || ! cmp -s "$PEER_REQ" .venv-bench/.requirements-installed; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet -r "$PEER_REQ"
  cp "$PEER_REQ" .venv-bench/.requirements-installed
fi
PYLIB=$(.venv-bench/bin/python -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")

# --- inputs -------------------------------------------------------------------------------
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
CROPS=("$SAMPLES/df/df00204.jpg" "$SAMPLES/df/df01254.jpg" "$SAMPLES/real/real00240.jpg" "$SAMPLES/real/real00772.jpg")
if [ "$(ls "$OUT"/photos/*.jpg 2>/dev/null | wc -l)" -lt 10 ]; then
  log "making 1280x720 photos with 1-5 faces"
  .venv-bench/bin/python bench/make_photos.py "$SAMPLES" "$OUT/photos" 10 >&2
fi
PHOTOS=("$OUT"/photos/*.jpg)
join() { local IFS="$1"; shift; echo "$*"; }
.venv/bin/python - "$OUT/crops_input.json" "${CROPS[@]}" <<'PY'
# perf_analyzer --input-data: BYTES given as b64 must carry the 4-byte length prefix.
import base64, json, struct, sys
data = []
for f in sys.argv[2:]:
    b = open(f, "rb").read()
    data.append({"IMAGE": {"content": {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}, "shape": [1]}})
json.dump({"data": data}, open(sys.argv[1], "w"))
PY

# --- servers ------------------------------------------------------------------------------
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
wait_for() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }
rss_mib() { local total=0; for p in "$@"; do total=$((total + $(awk '/VmRSS/ {print $2}' /proc/"$p"/status))); done; echo $((total / 1024)); }
hwm_mib() { echo $(($(awk '/VmHWM/ {print $2}' /proc/"$1"/status) / 1024)); }

log "starting dfserve, the FastAPI peer and the PyTriton peer"
target/release/dfserve serve --host 127.0.0.1 --http-port "$DF_HTTP" --grpc-port "$DF_GRPC" >"$OUT/suite_dfserve.log" 2>&1 &
DF_PID=$!
PIDS+=("$DF_PID")
(cd bench/peers && DFSERVE_MODEL_DIR="$ROOT/models" exec "$ROOT/.venv-bench/bin/python" fastapi_peer.py "$FASTAPI") >"$OUT/suite_fastapi.log" 2>&1 &
FA_PID=$!
PIDS+=("$FA_PID")
(cd bench/peers && LD_LIBRARY_PATH="$PYLIB:${LD_LIBRARY_PATH:-}" DFSERVE_MODEL_DIR="$ROOT/models" \
  exec "$ROOT/.venv-bench/bin/python" pytriton_peer.py "$PYT_HTTP" "$PYT_GRPC") >"$OUT/suite_pytriton.log" 2>&1 &
PYT_PID=$!
PIDS+=("$PYT_PID")
wait_for "http://127.0.0.1:$DF_HTTP/health/ready"
wait_for "http://127.0.0.1:$FASTAPI/health/ready"
wait_for "http://127.0.0.1:$PYT_HTTP/v2/models/meso4_df_jpeg/ready"
sleep 2
# PyTriton's server and model proxy are child processes of the Python process.
pyt_pids() { echo "$PYT_PID" $(pgrep -P "$PYT_PID" || true) $(for p in $(pgrep -P "$PYT_PID"); do pgrep -P "$p"; done || true); }
IDLE="{\"dfserve\": $(rss_mib "$DF_PID"), \"fastapi\": $(rss_mib "$FA_PID"), \"pytriton\": $(rss_mib $(pyt_pids))}"

log "checking that all three give the same scores"
.venv/bin/python bench/check_peers.py "$DF_HTTP" "$FASTAPI" "$PYT_GRPC" "${CROPS[@]}" "${PHOTOS[0]}"

# --- cases --------------------------------------------------------------------------------
RESULTS="$OUT/suite.jsonl"
: >"$RESULTS"
emit() { echo "{\"round\": $1, \"case\": \"$2\", \"c\": $3, \"row\": $4}" >>"$RESULTS"; }
metrics() { curl -fs "http://127.0.0.1:$DF_HTTP/metrics"; }

wrk_case() { # round case c url kserve-input-name|- images...
  local round=$1 case=$2 c=$3 url=$4 input=$5; shift 5
  local r
  r=$(DFSERVE_BENCH_IMAGES="$(join : "$@")" DFSERVE_BENCH_KSERVE_INPUT="${input#-}" wrk -t1 -c"$c" -d"${SECS}s" --timeout 20s -s bench/wrk_detect.lua "$url" | tail -n 1)
  emit "$round" "$case" "$c" "$r"
}

pa_case() { # round case c url model [args...]
  local round=$1 case=$2 c=$3 url=$4 model=$5; shift 5
  local csv="$OUT/pa_$case.csv"
  rm -f "$csv"
  if PA -i grpc -u "$url" -m "$model" --concurrency-range "$c" --measurement-interval $((SECS * 1000 / 3)) \
       --stability-percentage 50 --max-trials 4 -f "$csv" "$@" >"$OUT/pa_$case.log" 2>&1; then
    emit "$round" "$case" "$c" "$(.venv/bin/python -c '
import csv, json, sys
row = next(csv.DictReader(open(sys.argv[1])))
print(json.dumps({"rps": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1e3,
                  "p99_ms": float(row["p99 latency"]) / 1e3, "errors": 0}))' "$csv")"
  else
    log "perf_analyzer failed for $case c=$c (see $OUT/pa_$case.log)"
    emit "$round" "$case" "$c" '{"rps": 0, "p50_ms": 0, "p99_ms": 0, "errors": 1}'
  fi
}

stage_case() { # round case c: the per-stage counters around one case (run by the caller)
  local before=$1 round=$2 case=$3
  metrics >"$OUT/metrics_after.txt"
  emit "$round" "stages_$case" 16 "$(.venv/bin/python bench/stages.py "$before" "$OUT/metrics_after.txt")"
}

for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS: raw ONNX Runtime and in-process pipeline"
  rawsecs=$(python3 -c "print(max(1.0, $SECS / 4))")
  for layout in 1x2 2x1; do
    target/release/dfserve bench-model --model meso4_df --instances "${layout%x*}" --intra-threads "${layout#*x}" \
      --batch-sizes 1,2,4,8 --seconds "$rawsecs" --json | while read -r line; do emit "$round" raw 0 "$line"; done
  done
  for mode in whole faces; do
    if [ $mode = whole ]; then imgs=$(join , "${CROPS[@]}"); else imgs=$(join , "${PHOTOS[@]}"); fi
    # The server's lone-request path runs on the solo session (2 threads here), so the
    # in-process floor gets 2 threads as well.
    target/release/dfserve bench-pipeline --mode $mode --intra-threads 2 --images "$imgs" --seconds "$rawsecs" --json \
      | while read -r line; do emit "$round" "inprocess_$mode" 1 "$line"; done
  done
  for c in 1 4 16; do
    log "round $round/$ROUNDS: concurrency $c"
    pa_case "$round" tensor "$c" "127.0.0.1:$DF_GRPC" meso4_df
    [ "$c" = 16 ] && metrics >"$OUT/metrics_before.txt"
    wrk_case "$round" crops "$c" "http://127.0.0.1:$DF_HTTP/v1/detect?mode=whole" - "${CROPS[@]}"
    [ "$c" = 16 ] && stage_case "$OUT/metrics_before.txt" "$round" crops
    wrk_case "$round" crops_fastapi "$c" "http://127.0.0.1:$FASTAPI/v1/detect?mode=whole" - "${CROPS[@]}"
    DFSERVE_BENCH_KSERVE_PARAMS='{"mode":"whole"}' \
      wrk_case "$round" crops_kserve_http "$c" "http://127.0.0.1:$DF_HTTP/v2/models/dfserve/infer" IMAGE "${CROPS[@]}"
    wrk_case "$round" crops_pytriton_http "$c" "http://127.0.0.1:$PYT_HTTP/v2/models/meso4_df_jpeg/infer" IMAGE "${CROPS[@]}"
    pa_case "$round" crops_kserve "$c" "127.0.0.1:$DF_GRPC" dfserve -x 1 --input-data "$OUT/crops_input.json" \
      --request-parameter mode:whole:string
    pa_case "$round" crops_pytriton "$c" "127.0.0.1:$PYT_GRPC" meso4_df_jpeg --input-data "$OUT/crops_input.json"
    [ "$c" = 16 ] && metrics >"$OUT/metrics_before.txt"
    wrk_case "$round" photos "$c" "http://127.0.0.1:$DF_HTTP/v1/detect" - "${PHOTOS[@]}"
    if [ "$c" = 16 ]; then
      stage_case "$OUT/metrics_before.txt" "$round" photos
      LOADED="{\"dfserve\": $(rss_mib "$DF_PID")}"
    fi
    wrk_case "$round" photos_fastapi "$c" "http://127.0.0.1:$FASTAPI/v1/detect" - "${PHOTOS[@]}"
    [ "$c" = 16 ] && LOADED_FA=$(rss_mib "$FA_PID")
  done
done
MEM="{\"idle\": $IDLE, \"after_16way_photos\": $LOADED, \"fastapi_after_16way\": $LOADED_FA, \"dfserve_peak\": $(hwm_mib "$DF_PID"), \"pytriton_after\": $(rss_mib $(pyt_pids))}"
echo "{\"round\": 0, \"case\": \"memory\", \"c\": 0, \"row\": $MEM}" >>"$RESULTS"
python3 bench/summarize.py "$RESULTS" | tee "$OUT/suite.md"
