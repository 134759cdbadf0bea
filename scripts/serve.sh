#!/usr/bin/env bash
# Set up (ONNX Runtime library, models, release build) and start dfserve with the default
# models on port 8000. Extra arguments go to `dfserve serve` (see `dfserve serve --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
exec target/release/dfserve serve "$@"
