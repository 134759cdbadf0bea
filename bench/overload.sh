#!/usr/bin/env bash
# Overload: drive /v1/detect (face mode, the MesoNet samples) far past capacity with a small
# queue, then check that the excess is refused at once with 429, that admitted requests keep a
# bounded latency, that memory stays bounded, and that the server recovers.
#
#   bench/overload.sh [SECONDS] [CONNECTIONS]       default 20 s, 128 connections
#   DFSERVE_BIN=path/to/dfserve bench/overload.sh   another build (for side-by-side runs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A throwaway --data-dir, so this server does not contend for the hash-list database of a
# server already running from this checkout.
export DFSERVE_DATA_DIR="$(mktemp -d)"
SECS="${1:-20}"
CONNS="${2:-128}"
PORT="${DFSERVE_BENCH_PORT:-18000}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "bench/overload.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/setup.sh >/dev/null
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
export DFSERVE_BENCH_IMAGES="$SAMPLES/df/df00204.jpg:$SAMPLES/df/df01254.jpg:$SAMPLES/real/real00240.jpg:$SAMPLES/real/real00772.jpg"
"${DFSERVE_BIN:-target/release/dfserve}" serve --host 127.0.0.1 --http-port "$PORT" --grpc-port $((PORT + 1)) --max-queue-size 16 \
  >"$OUT/overload_server.out" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print int($2 / 1024)}' /proc/$SERVER/status; }
echo "idle RSS: $(rss) MiB"
echo "== capacity: 16 connections (queue never full)"
wrk -t1 -c16 -d"${SECS}s" --timeout 10s -s bench/wrk_status.lua "http://127.0.0.1:$PORT/v1/detect" | tail -n 2
echo "== overload: $CONNS connections, --max-queue-size 16"
peak=0
( while kill -0 $SERVER 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$OUT/peak_rss"; sleep 0.5; done ) &
SAMPLER=$!
wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s bench/wrk_status.lua "http://127.0.0.1:$PORT/v1/detect" | tail -n 2 &
WRK=$!
sleep $((SECS / 2))
for i in 1 2 3; do
  curl -s -o /dev/null -w "a request during overload: HTTP %{http_code} in %{time_total}s\n" \
    --data-binary @"$SAMPLES/df/df00204.jpg" "http://127.0.0.1:$PORT/v1/detect"
done
wait $WRK
kill $SAMPLER 2>/dev/null || true
echo "peak RSS under overload: $(cat "$OUT/peak_rss" 2>/dev/null || rss) MiB"
sleep 1
curl -s -o /dev/null -w "after the load: HTTP %{http_code} in %{time_total}s\n" \
  --data-binary @"$SAMPLES/df/df00204.jpg" "http://127.0.0.1:$PORT/v1/detect"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^dfserve_queue_depth|^dfserve_requests_total\{endpoint="/v1/detect"'
