# CPU image for dfserve, in the installed layout (/opt/dfserve, see scripts/install.sh).
#
# Build it with `scripts/image.sh cpu` (podman; makes the base images locally when no registry
# answers, and caches cargo's work between builds) or, where a registry answers, with
# `scripts/setup.sh --no-build && docker build -t dfserve .`: the ONNX files are not in git, and
# setup copies them into models/ and verifies their sha256. Inside the build,
# scripts/install.sh checks them again, fetches libonnxruntime from the onnxruntime wheel on
# PyPI (pinned by sha256, as outside), builds the release binary and installs it.
#
# Debian packages are pinned by version (bookworm's current ones). Debian keeps only the newest
# version of a package in a suite, so a security update makes apt stop with "Version '…' for
# '…' was not found": bump the ARG it names (`apt-cache policy PACKAGE` on bookworm). Base
# images are pinned by tag; pin them by digest in your registry mirror
# (`FROM rust:1.95-bookworm@sha256:...`).

FROM rust:1.95-bookworm AS build
ARG CMAKE_VERSION=3.25.1-1 NASM_VERSION=2.16.01-1 PIP_VERSION=23.0.1+dfsg-1
# Behind a TLS-inspecting proxy, pip and cargo need its CA bundle: scripts/image.sh mounts this
# machine's for the build only and names it here. Unset, they use the image's own.
ARG PIP_CERT CARGO_HTTP_CAINFO
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "cmake=${CMAKE_VERSION}" "nasm=${NASM_VERSION}" "python3-pip=${PIP_VERSION}" \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# FFmpeg is the runtime stage's; the build stage needs only what compiles.
RUN DFSERVE_MODEL_SOURCE=/src/models DFSERVE_RUNTIME_PACKAGES=0 DFSERVE_STRIP_DEBUG=1 scripts/install.sh /opt/dfserve

FROM debian:bookworm-slim
ARG CA_CERTIFICATES_VERSION=20250419~deb12u2 LIBSTDCXX_VERSION=12.2.0-14+deb12u1 FFMPEG_VERSION=7:5.1.9-0+deb12u1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "ca-certificates=${CA_CERTIFICATES_VERSION}" "libstdc++6=${LIBSTDCXX_VERSION}" "ffmpeg=${FFMPEG_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /opt/dfserve --shell /usr/sbin/nologin dfserve \
 && mkdir -p /var/lib/dfserve && chown dfserve /var/lib/dfserve
COPY --from=build /opt/dfserve/ /opt/dfserve/
ENV PATH=/opt/dfserve/bin:$PATH \
    DFSERVE_HOST=0.0.0.0 \
    DFSERVE_HTTP_PORT=8000 \
    DFSERVE_GRPC_PORT=8001 \
    DFSERVE_DATA_DIR=/var/lib/dfserve \
    DFSERVE_SHUTDOWN_GRACE=2s \
    DFSERVE_SHUTDOWN_TIMEOUT=6s
# Hash lists (and other state that must last) live here: mount a volume to keep them.
VOLUME /var/lib/dfserve
USER 10001
WORKDIR /opt/dfserve
# HTTP (/v1, KServe v2 REST, /metrics) and gRPC (dfserve.v1, KServe v2 gRPC).
EXPOSE 8000 8001
# `dfserve health` speaks HTTPS when DFSERVE_TLS_CERT is set, so the check survives TLS.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["dfserve", "health"]
# On SIGTERM: 2 s of failing readiness, then up to 6 s for requests in flight; the whole fits
# the 10 s that podman and docker wait before SIGKILL. The Kubernetes Deployment sets longer
# ones (deploy/base/deployment.yaml) with a terminationGracePeriodSeconds to match.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dfserve"]
CMD ["serve"]
