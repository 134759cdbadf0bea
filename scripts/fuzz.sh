#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 120 s each) and prints how many
# executions it made. Needs the nightly toolchain and cargo-fuzz (installed here if missing).
# Findings land in fuzz/artifacts/<target>/; add each one to tests/hostile.rs or a unit test.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-120}"; shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(decode_image kserve_rest kserve_grpc bytes_tensor)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Seed corpora: the sample images, small images of every format, and valid requests.
mkdir -p fuzz/corpus/decode_image fuzz/corpus/kserve_rest fuzz/corpus/kserve_grpc fuzz/corpus/bytes_tensor
cp -n "${DFSERVE_SAMPLES:-$ROOT/../shared/samples}"/mesonet/*/*.jpg fuzz/corpus/decode_image/ 2>/dev/null || true
if [ -x .venv/bin/python ]; then
  .venv/bin/python - <<'PY'
import io, struct
from PIL import Image
img = Image.new("RGB", (24, 16), (200, 30, 90))
for fmt in ["PNG", "GIF", "WEBP", "BMP", "JPEG"]:
    b = io.BytesIO(); img.save(b, format=fmt); open(f"fuzz/corpus/decode_image/small.{fmt.lower()}", "wb").write(b.getvalue())
head = b'{"inputs":[{"name":"IMAGE","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}]}'
open("fuzz/corpus/kserve_rest/binary", "wb").write(bytes([len(head) % 251]) + head + struct.pack("<I", 3) + b"abc")
open("fuzz/corpus/kserve_rest/json", "wb").write(b"\x00" + b'{"id":"1","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[[1,2]]}],"outputs":[{"name":"o"}]}')
open("fuzz/corpus/bytes_tensor/two", "wb").write(struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0))
PY
fi
for t in "${TARGETS[@]}"; do
  echo "== $t (${SECS}s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|SUMMARY|Test unit written" || true
done
