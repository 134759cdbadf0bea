#!/usr/bin/env bash
# Builds the container images with podman, where no registry may answer:
#   localhost/dfserve:cpu   from ./Dockerfile
#   localhost/dfserve:cuda  from docker/Dockerfile.cuda (CUDA 13 and cuDNN from PyPI's NVIDIA wheels)
#
#   scripts/image.sh [cpu|cuda|all]      (default: all)
#
# Podman's storage, configuration and the build caches live in $DFSERVE_PODMAN_DIR (default
# .dfserve/podman), which this script owns: nothing in /etc or /var/lib/containers is changed.
# Run podman yourself against the same store with `scripts/image.sh env` (prints the exports).
#
# Base images. The Dockerfiles start FROM debian:bookworm-slim and rust:1.95-bookworm, unmodified.
# When a registry answers, they are pulled. When none does, they are made here and tagged with
# the names the Dockerfiles ask for:
#   debian:bookworm-slim  mmdebstrap --variant=minbase bookworm, from Debian's mirror;
#   rust:1.95-bookworm    the same, plus a C toolchain, git and curl (as the official image has),
#                         and this machine's Rust 1.95 toolchain copied into /usr/local/rust
#                         (rustup cannot download one here). It refuses any other version.
#
# Caches: cargo's registry and target directory are mounted into the build (podman build -v),
# and podman keeps its layers, so a rebuild after a source change recompiles only dfserve.
# A plain `docker build .` works as well, without those caches.
#
# Needs root (apt-get installs podman, buildah, mmdebstrap, runc and iptables, which netavark
# sets up container networks with, when missing). crun fails on
# this VM ("cgroups in hybrid mode not supported"), so runc is the runtime.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHAT="${1:-all}"
case "$WHAT" in cpu|cuda|all|env) ;; *) echo "usage: scripts/image.sh [cpu|cuda|all|env]" >&2; exit 2 ;; esac

PODMAN_DIR="${DFSERVE_PODMAN_DIR:-$ROOT/.dfserve/podman}"
RUST_VERSION=1.95
DEBIAN_SUITE=bookworm
MIRROR="${DFSERVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DFSERVE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# The suites Docker's debian images list: point releases and security updates included, or
# the pinned versions in the Dockerfiles (the current ones) are not found.
SOURCES=("deb $MIRROR $DEBIAN_SUITE main" "deb $MIRROR $DEBIAN_SUITE-updates main"
         "deb $SECURITY_MIRROR $DEBIAN_SUITE-security main")
log() { printf '[image] %s\n' "$*" >&2; }
# As Docker's debian:*-slim images do: no manuals, documentation or translations (but licences).
SLIM=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-exclude=/usr/share/info/*')

# ---- podman, configured in a directory of our own -----------------------------------------
export CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$PODMAN_DIR/registries.conf"
if [ "$WHAT" = env ]; then
  printf 'export CONTAINERS_CONF=%q CONTAINERS_STORAGE_CONF=%q CONTAINERS_REGISTRIES_CONF=%q\n' \
    "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$CONTAINERS_REGISTRIES_CONF"
  exit 0
fi

need=()
for tool in podman buildah mmdebstrap runc iptables; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman buildah mmdebstrap runc uidmap fuse-overlayfs netavark aardvark-dns iptables >/dev/null
  else
    echo "image.sh: please install ${need[*]} (Debian: podman buildah mmdebstrap runc iptables), then re-run" >&2
    exit 1
  fi
fi

mkdir -p "$PODMAN_DIR/storage" "$PODMAN_DIR/run" "$PODMAN_DIR/tmp" "$PODMAN_DIR/cache"
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_DIR/run"
EOF
cat > "$CONTAINERS_CONF" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_DIR/run/events.log"
image_copy_tmp_dir = "$PODMAN_DIR/tmp"
[network]
# Debian's podman 4.3 defaults to CNI, whose plugins are not installed; netavark is.
network_backend = "netavark"
[containers]
# The VM lacks CAP_SYS_RESOURCE: containers may not raise these limits past the host's.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
EOF
cat > "$CONTAINERS_REGISTRIES_CONF" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export TMPDIR="$PODMAN_DIR/tmp"

# ---- base images -----------------------------------------------------------------------------
# pull_or_make NAME MAKER: NAME as the Dockerfiles spell it (docker.io/library/...).
pull_or_make() {
  local name="$1" maker="$2"
  if podman image exists "$name"; then return 0; fi
  log "pulling $name"
  if timeout 60 podman pull -q "$name" >/dev/null 2>&1; then return 0; fi
  log "no registry answered for $name: making it locally"
  local t0=$SECONDS
  "$maker" "$name"
  log "$name made in $((SECONDS - t0)) s"
}

make_debian() {
  local name="$1" tar="$PODMAN_DIR/tmp/debian-rootfs.tar"
  mmdebstrap --quiet --variant=minbase "${SLIM[@]}" "$DEBIAN_SUITE" "$tar" "${SOURCES[@]}"
  podman import -q \
    --change 'CMD ["bash"]' \
    --change "LABEL org.opencontainers.image.description=Debian $DEBIAN_SUITE minbase, made by dfserve's scripts/image.sh with mmdebstrap" \
    "$tar" "$name" >/dev/null
  rm -f "$tar"
}

make_rust() {
  local name="$1" tar="$PODMAN_DIR/tmp/rust-rootfs.tar" sysroot version
  sysroot="$(rustc --print sysroot)"
  version="$(rustc --version)"
  case "$version" in
    "rustc $RUST_VERSION."*) ;;
    *) echo "image.sh: this machine's rustc is '$version', not $RUST_VERSION: cannot stand in for rust:$RUST_VERSION-$DEBIAN_SUITE" >&2; exit 1 ;;
  esac
  # The official image is buildpack-deps (compilers, git, curl) with rustup's toolchain.
  mmdebstrap --quiet --variant=minbase "${SLIM[@]}" \
    --include=ca-certificates,curl,git,gcc,g++,libc6-dev,make,pkg-config,xz-utils,python3 \
    --customize-hook="mkdir -p \"\$1/usr/local/rust\" && tar -C '$sysroot' --exclude=./share/doc --exclude=./share/man -cf - . | tar -C \"\$1/usr/local/rust\" -xf -" \
    "$DEBIAN_SUITE" "$tar" "${SOURCES[@]}"
  podman import -q \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'CMD ["bash"]' \
    --change "LABEL org.opencontainers.image.description=Debian $DEBIAN_SUITE with $version, made by dfserve's scripts/image.sh" \
    "$tar" "$name" >/dev/null
  rm -f "$tar"
}

pull_or_make "docker.io/library/debian:$DEBIAN_SUITE-slim" make_debian
pull_or_make "docker.io/library/rust:$RUST_VERSION-$DEBIAN_SUITE" make_rust

# ---- the images ------------------------------------------------------------------------------
# The ONNX files are not in git; the build copies them from models/ (checked again inside).
scripts/setup.sh --no-build

# build TAG DOCKERFILE: docker format keeps HEALTHCHECK (OCI images have no such field).
build() {
  local tag="$1" file="$2" start end old
  start=$(date +%s)
  old="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "building $tag from $file"
  podman build --pull=never --format docker --layers "${CA_MOUNT[@]}" \
    -v "$PODMAN_DIR/cache/cargo-registry:/usr/local/cargo/registry" \
    -v "$PODMAN_DIR/cache/target:/src/target" \
    -f "$file" -t "$tag" .
  end=$(date +%s)
  log "$tag built in $((end - start)) s; $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
  # The image this one replaces (GBs) goes, unless a container still uses it. The build's
  # intermediate layers stay: they are the cache.
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
}
mkdir -p "$PODMAN_DIR/cache/cargo-registry" "$PODMAN_DIR/cache/target"
# Where outbound TLS goes through an inspecting proxy (as here), the build's RUN steps need this
# machine's CA bundle to reach PyPI and crates.io. It is mounted for the build only, never
# copied into an image. DFSERVE_BUILD_CA_BUNDLE= (empty) turns it off.
CA_BUNDLE="${DFSERVE_BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
# (Not over the image's own bundle: installing ca-certificates in a stage rewrites that file.)
CA_MOUNT=()
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
  CA_MOUNT=(-v "$CA_BUNDLE:/run/dfserve-build-ca.crt:ro"
            --build-arg PIP_CERT=/run/dfserve-build-ca.crt --build-arg CARGO_HTTP_CAINFO=/run/dfserve-build-ca.crt)
fi
if [ "$WHAT" = cpu ] || [ "$WHAT" = all ]; then build localhost/dfserve:cpu Dockerfile; fi
if [ "$WHAT" = cuda ] || [ "$WHAT" = all ]; then build localhost/dfserve:cuda docker/Dockerfile.cuda; fi
