#!/usr/bin/env bash
# Project-local Python environment (.venv) with the official Triton clients, ONNX Runtime for
# reference outputs, and pytest. Nothing goes into the system Python. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQ=tests/python/requirements.txt
STAMP=.venv/.requirements-installed
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  echo "[pyenv] installing test clients into .venv" >&2
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r "$REQ" "onnxruntime==1.31.1"
  cp "$REQ" "$STAMP"
fi
