#!/usr/bin/env bash
# Video throughput: 720p H.264 clips (a face crop moving over a background) posted to
# /v1/detect with wrk, default 32 sampled frames, at concurrency 1 and 4. Reports clips/s,
# frames/s and the share of time spent in FFmpeg decoding (from the server's own metrics).
# Three clips, for the three ways samples are decoded (see src/video/plan.rs):
#   clip720.mp4        10 s, x264's default keyframe interval (250 frames)
#   clip720_gop30.mp4  10 s, a keyframe every second, as phone cameras write
#   long720.mp4        10 min, a keyframe every 2 s: long enough that seeking pays
#
#   bench/video.sh [SECONDS_PER_RUN]        default 20
#   DFSERVE_BIN=/path/to/dfserve bench/video.sh   another build (e.g. to compare before/after)
# The server runs with 4 FFmpeg slots (DFSERVE_MAX_FFMPEG_PROCESSES) so that concurrency 4 is
# measured rather than refused with 429.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A throwaway --data-dir, so this server does not contend for the hash-list database of a
# server already running from this checkout.
export DFSERVE_DATA_DIR="$(mktemp -d)"
SECS="${1:-20}"
PORT="${DFSERVE_BENCH_PORT:-18000}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "bench/video.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/setup.sh >/dev/null
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
BIN="${DFSERVE_BIN:-target/release/dfserve}"
make_clip() { # name seconds x264-keyint [more ffmpeg output options]
  local name=$1 secs=$2 keyint=$3
  shift 3
  [ -f "$OUT/$name" ] || ffmpeg -v error -y -f lavfi -i "testsrc2=s=1280x720:d=$secs:r=30" -loop 1 -i "$SAMPLES/df/df01254.jpg" \
    -filter_complex "[1:v]scale=220:220[f];[0:v][f]overlay=x='100+mod(90*t\,900)':y=200:shortest=1" \
    -c:v libx264 -preset veryfast -x264-params "keyint=$keyint" "$@" -pix_fmt yuv420p -t "$secs" "$OUT/$name"
}
make_clip clip720.mp4 10 250
make_clip clip720_gop30.mp4 10 30
make_clip long720.mp4 600 60 -b:v 300k -maxrate 300k -bufsize 600k  # under 64 MiB

DFSERVE_MAX_FFMPEG_PROCESSES="${DFSERVE_MAX_FFMPEG_PROCESSES:-4}" "$BIN" serve --host 127.0.0.1 --http-port "$PORT" --grpc-port $((PORT + 1)) >"$OUT/video_server.out" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
for NAME in ${DFSERVE_BENCH_CLIPS:-clip720.mp4 clip720_gop30.mp4 long720.mp4}; do
CLIP="$OUT/$NAME"
echo "== $NAME"
curl -fs --data-binary @"$CLIP" "http://127.0.0.1:$PORT/v1/detect" | python3 -c '
import json, sys; r = json.load(sys.stdin)["results"][0]
print("one clip:", {k: r.get(k) for k in ["duration_s", "width", "height", "frames_sampled", "frames_with_faces", "sampling", "score", "label", "timings"]}, "tracks:", len(r["tracks"]))'
for c in 1 4; do
  before=$(curl -fs "http://127.0.0.1:$PORT/metrics")
  r=$(DFSERVE_BENCH_IMAGES="$CLIP" wrk -t1 -c"$c" -d"${SECS}s" --timeout 120s -s bench/wrk_detect.lua \
        "http://127.0.0.1:$PORT/v1/detect" | tail -n 1)
  after=$(curl -fs "http://127.0.0.1:$PORT/metrics")
  python3 - "$c" "$r" <<PY
import json, re, sys
def total(text, name):
    m = re.search(r'^' + re.escape(name) + r' ([0-9.e+-]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0
before, after = """$before""", """$after"""
d = lambda n: total(after, n) - total(before, n)
r = json.loads(sys.argv[2])
frames = d("dfserve_video_frames_total")
dec = d('dfserve_stage_duration_seconds_sum{stage="video_decode"}')
tot = d('dfserve_stage_duration_seconds_sum{stage="video_total"}')
print(f"concurrency {sys.argv[1]}: {r['rps']:.2f} clips/s, {frames / r['seconds']:.1f} frames/s, "
      f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, decode share {dec / tot:.0%} of per-clip time, errors {r['errors']}")
PY
done
done
