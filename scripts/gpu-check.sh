#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU: builds dfserve with the CUDA and TensorRT
# providers against the onnxruntime-gpu wheel (scripts/setup.sh --gpu), then
#   1. starts each provider (cuda, tensorrt): a provider that cannot be registered is an
#      error, never a silent fall-back to the CPU;
#   2. scores the MesoNet sample crops with meso4_df and with the CLIP probe (clip_probe, whose
#      encoder clip_vitb16 is an INT8 ViT) on the CPU and on each provider and requires every
#      score to agree within 1e-3;
#   3. measures raw images/s of meso4_df and of the clip_vitb16 encoder at batch sizes 1 to 64
#      on each provider.
# Prints one JSON line per result to stdout (and to $OUT/gpu-check.jsonl when OUT is set).
# Without a GPU it says so and exits 0 having checked nothing.
#
#   scripts/gpu-check.sh              build as needed, then check
#   SKIP_BUILD=1 scripts/gpu-check.sh use target/release/dfserve as it is (built with --features tensorrt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none); nothing checked" >&2
  exit 0
fi
nvidia-smi -L >&2
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  DFSERVE_CARGO_FEATURES=tensorrt scripts/setup.sh --gpu
fi
BIN=target/release/dfserve
GPU_LIB="$ROOT/.dfserve/lib-gpu/libonnxruntime.so.1.31.1"
CPU_LIB="$ROOT/.dfserve/lib/libonnxruntime.so.1.31.1"
[ -f "$CPU_LIB" ] || scripts/setup.sh --no-build
SAMPLES="${DFSERVE_SAMPLES:-$ROOT/../shared/samples}/mesonet"
OUT_FILE="${OUT:+$OUT/gpu-check.jsonl}"
emit() { echo "$1"; [ -n "$OUT_FILE" ] && echo "$1" >> "$OUT_FILE"; return 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1 + 2: the same crops on the CPU and on each provider, for each classifier.
MODELS="meso4_df clip_probe"
for m in $MODELS; do
  "$BIN" score --ort-lib "$CPU_LIB" --device cpu --model "$m" --mode whole --output "$work/cpu-$m.jsonl" "$SAMPLES" 2>/dev/null
done
status=0
for device in cuda tensorrt; do
  for m in $MODELS; do
    if ! "$BIN" score --ort-lib "$GPU_LIB" --device "$device" --model "$m" --mode whole \
        --output "$work/$device-$m.jsonl" "$SAMPLES" 2> "$work/$device.err"; then
      emit "{\"check\":\"provider\",\"device\":\"$device\",\"model\":\"$m\",\"ok\":false,\"error\":$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[-2000:]))' "$work/$device.err")}"
      status=1
      continue
    fi
    line=$(python3 - "$work/cpu-$m.jsonl" "$work/$device-$m.jsonl" "$device" "$m" <<'PY'
import json, sys
m = sys.argv[4]
load = lambda p: {r["path"]: r["models"][m]["score"] for r in map(json.loads, open(p))}
cpu, gpu = load(sys.argv[1]), load(sys.argv[2])
diffs = [abs(cpu[k] - gpu[k]) for k in cpu if cpu[k] is not None and gpu.get(k) is not None]
worst = max(diffs) if diffs else None
print(json.dumps({"check": "scores", "device": sys.argv[3], "model": m, "images": len(diffs),
                  "max_abs_diff": worst, "ok": bool(diffs) and worst <= 1e-3}))
PY
)
    emit "$line"
    case "$line" in *'"ok": true'*) ;; *) status=1 ;; esac
  done
  # 3: raw throughput by batch size (the probe's cost is its encoder's).
  for m in meso4_df clip_vitb16; do
    "$BIN" bench-model --ort-lib "$GPU_LIB" --device "$device" --model "$m" \
      --batch-sizes 1,2,4,8,16,32,64 --seconds 3 --json | while read -r b; do emit "{\"check\":\"throughput\",\"device\":\"$device\",\"result\":$b}"; done
  done
done
exit "$status"
