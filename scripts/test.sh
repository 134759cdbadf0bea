#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite: formatting, lints, unit tests and
# integration tests against the real binary, ONNX Runtime and models, and the official Triton
# clients (Python, in .venv) against a running dfserve.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --no-build
scripts/pyenv.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== module structure (no import cycles, no file over 500 lines)"
python3 scripts/check_modules.py
echo "== hadolint: the Dockerfiles"
.venv/bin/hadolint Dockerfile docker/Dockerfile.cuda
echo "== cargo clippy"
cargo clippy --release --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --locked
echo "== python: official Triton clients against dfserve"
.venv/bin/python -m pytest -q tests/python
