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
echo "== PostgreSQL for the tests (a throwaway cluster on 127.0.0.1, TLS on)"
scripts/pg.sh install
PGDIR="$(mktemp -d /tmp/dfserve-pg.XXXXXX)"
DFSERVE_TEST_DATABASE_URL="$(scripts/pg.sh start "$PGDIR" "${DFSERVE_TEST_PG_PORT:-55432}")"
# Its TLS material (scripts/pg.sh): the CA the server's certificate chains to, and another.
DFSERVE_TEST_PG_TLS_DIR="$PGDIR/tls"
export DFSERVE_TEST_DATABASE_URL DFSERVE_TEST_PG_TLS_DIR DFSERVE_REQUIRE_POSTGRES=1
trap 'scripts/pg.sh stop "$PGDIR"; rm -rf "$PGDIR"' EXIT
echo "== cargo test"
cargo test --release --locked
echo "== python: official Triton clients against dfserve; the container images (podman)"
# The container tests build both images (scripts/image.sh) and must run here, not skip.
export DFSERVE_REQUIRE_CONTAINERS=1
.venv/bin/python -m pytest -q tests/python
