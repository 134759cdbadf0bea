# CPU image for dfserve, in the installed layout (/opt/dfserve, see scripts/install.sh).
#
# The ONNX files are not in git: run `scripts/setup.sh --no-build` first (it copies them into
# models/ and verifies their sha256), then `docker build -t dfserve .`. Inside the build,
# scripts/install.sh checks them again, fetches libonnxruntime from the onnxruntime wheel on
# PyPI (as outside Docker), builds the release binary and installs it.
#
# Base images are pinned by tag. Pin them by digest in your registry mirror
# (`FROM rust:1.95-bookworm@sha256:...`): no registry was reachable where this file was written.

FROM rust:1.95-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake nasm python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN DFSERVE_MODEL_SOURCE=/src/models scripts/install.sh /opt/dfserve

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libstdc++6 ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /opt/dfserve --shell /usr/sbin/nologin dfserve \
 && mkdir -p /var/lib/dfserve && chown dfserve /var/lib/dfserve
COPY --from=build /opt/dfserve/ /opt/dfserve/
ENV PATH=/opt/dfserve/bin:$PATH \
    DFSERVE_HOST=0.0.0.0 \
    DFSERVE_HTTP_PORT=8000 \
    DFSERVE_GRPC_PORT=8001 \
    DFSERVE_DATA_DIR=/var/lib/dfserve \
    DFSERVE_SHUTDOWN_GRACE=20s
# Hash lists (and other state that must last) live here: mount a volume to keep them.
VOLUME /var/lib/dfserve
USER 10001
WORKDIR /opt/dfserve
# HTTP (/v1, KServe v2 REST, /metrics) and gRPC (dfserve.v1, KServe v2 gRPC).
EXPOSE 8000 8001
# `dfserve health` speaks HTTPS when DFSERVE_TLS_CERT is set, so the check survives TLS.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["dfserve", "health"]
ENTRYPOINT ["dfserve"]
CMD ["serve"]
