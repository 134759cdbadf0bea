#!/usr/bin/env bash
# Installs dfserve into PREFIX in the standard layout, so that it runs from any directory:
#   PREFIX/bin/dfserve
#   PREFIX/lib/dfserve/libonnxruntime.so.1.31.1   (+ libonnxruntime_providers_shared.so)
#   PREFIX/share/dfserve/models/                   (configs, ONNX files, licence notices)
#   PREFIX/var/lib/dfserve/                        (the data directory: hash lists)
# The binary finds these relative to itself (or through DFSERVE_HOME=PREFIX).
#
#   scripts/install.sh PREFIX            build (release) if needed, then install
#   scripts/install.sh --no-build PREFIX install target/release/dfserve as it is
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD=1
if [ "${1:-}" = "--no-build" ]; then BUILD=0; shift; fi
PREFIX="${1:?usage: scripts/install.sh [--no-build] PREFIX}"
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"

# ONNX Runtime and the models (checksums verified), as for a checkout.
if [ "$BUILD" = 1 ]; then
  scripts/setup.sh
else
  scripts/setup.sh --no-build
fi
[ -x target/release/dfserve ] || { echo "install.sh: target/release/dfserve is missing; run without --no-build" >&2; exit 1; }

install -d "$PREFIX/bin" "$PREFIX/lib/dfserve" "$PREFIX/share/dfserve/models" "$PREFIX/var/lib/dfserve"
install -m 0755 target/release/dfserve "$PREFIX/bin/dfserve"
# Images drop the line tables (about 180 MB of the binary's 212 MB): backtraces then name
# functions but not lines.
if [ "${DFSERVE_STRIP_DEBUG:-0}" = 1 ]; then strip --strip-debug "$PREFIX/bin/dfserve"; fi
for lib in .dfserve/lib/*.so*; do
  install -m 0644 "$lib" "$PREFIX/lib/dfserve/"
done
for f in models/*.toml models/*.onnx models/NOTICE-*; do
  install -m 0644 "$f" "$PREFIX/share/dfserve/models/"
done
echo "[install] dfserve installed in $PREFIX; run $PREFIX/bin/dfserve serve (from any directory)" >&2
