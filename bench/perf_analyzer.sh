#!/usr/bin/env bash
# Triton's perf_analyzer (from the tritonclient 2.51.0 wheel) against dfserve over HTTP and
# gRPC, on a tensor model (meso4_df, random FP32 input) and on the JPEG pipeline model
# (dfserve, the four MesoNet samples as BYTES). Prints perf_analyzer's own summaries.
#
#   bench/perf_analyzer.sh [CONCURRENCY_RANGE]      default 1:16:15 (i.e. 1 and 16)
#
# Needs: libb64.so.0d (Debian libb64-0d) and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12;
# no GPU is used). Both are installed here if missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A throwaway --data-dir, so this server does not contend for the hash-list database of a
# server already running from this checkout.
export DFSERVE_DATA_DIR="$(mktemp -d)"
RANGE="${1:-1:16:15}"
HTTP_PORT="${DFSERVE_BENCH_PORT:-18000}"
GRPC_PORT=$((HTTP_PORT + 1))
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
scripts/setup.sh >/dev/null
scripts/pyenv.sh
if ! ldconfig -p | grep -q libb64.so.0d; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
fi
.venv/bin/python -c "import nvidia.cuda_runtime" 2>/dev/null || .venv/bin/pip install -q nvidia-cuda-runtime-cu12
CUDART_DIR=$(.venv/bin/python -c "import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], 'lib'))")
export LD_LIBRARY_PATH="$CUDART_DIR:${LD_LIBRARY_PATH:-}"

# perf_analyzer's --input-data JSON: BYTES given as b64 must carry the 4-byte length prefix.
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
.venv/bin/python - "$SAMPLES" "$OUT/jpeg_input.json" <<'PY'
import base64, json, pathlib, struct, sys
root = pathlib.Path(sys.argv[1])
files = ["df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "real/real00772.jpg"]
data = []
for f in files:
    b = (root / f).read_bytes()
    data.append({"IMAGE": {"content": {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}, "shape": [1]}})
json.dump({"data": data}, open(sys.argv[2], "w"))
PY

target/release/dfserve serve --host 127.0.0.1 --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" \
  >"$OUT/pa_server.out" 2>"$OUT/pa_server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$HTTP_PORT/v2/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

run() {
  local proto=$1 model=$2 url=$3; shift 3
  echo "== perf_analyzer -i $proto -m $model --concurrency-range $RANGE $*"
  .venv/bin/perf_analyzer -i "$proto" -u "$url" -m "$model" --concurrency-range "$RANGE" \
    --measurement-interval 4000 --stability-percentage 25 --max-trials 6 "$@" 2>&1 \
    | grep -E "Concurrency:|Throughput|p50|p99|Avg latency|error|Error|failed" || true
}
run http meso4_df "127.0.0.1:$HTTP_PORT"
run grpc meso4_df "127.0.0.1:$GRPC_PORT"
# The pipeline model needs an explicit version (-x 1): without it perf_analyzer 2.51 stops with
# "failed to find the requested model version" although the statistics carry version "1".
# The samples are face crops. Over gRPC they are scored whole (as bench/run.sh does); over HTTP
# perf_analyzer cannot send request parameters, so that case runs in the default faces mode,
# with a detector pass per crop.
run http dfserve "127.0.0.1:$HTTP_PORT" -x 1 --input-data "$OUT/jpeg_input.json"
run grpc dfserve "127.0.0.1:$GRPC_PORT" -x 1 --input-data "$OUT/jpeg_input.json" --request-parameter mode:whole:string
