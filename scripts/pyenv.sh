#!/usr/bin/env bash
# Project-local Python environment (.venv) with the official Triton clients, ONNX Runtime for
# reference outputs, and pytest. Nothing goes into the system Python. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQ=tests/python/requirements.txt
STAMP=.venv/.requirements-installed
# The `vpdq` oracle builds from source against FFmpeg's libraries: their headers first.
if ! pkg-config --exists libavcodec libavformat libavutil libswscale 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[pyenv] installing FFmpeg development headers (apt-get) for the vpdq test oracle" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pkg-config \
      libavcodec-dev libavformat-dev libavdevice-dev libavutil-dev libswscale-dev libswresample-dev \
      libavfilter-dev >/dev/null
  else
    echo "pyenv.sh: please install FFmpeg's development packages (libavcodec-dev libavformat-dev libswscale-dev ...), then re-run" >&2
    exit 1
  fi
fi
# The reviewer page's end-to-end tests drive Debian's Chromium through its ChromeDriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[pyenv] installing chromium and chromium-driver (apt-get) for the reviewer page tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "pyenv.sh: please install Chromium and its ChromeDriver (Debian: chromium chromium-driver), then re-run" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  echo "[pyenv] installing test clients into .venv" >&2
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -r "$REQ" "onnxruntime==1.31.1"
  cp "$REQ" "$STAMP"
fi
