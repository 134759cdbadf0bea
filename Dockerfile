# CPU image for dfserve.
#
# The ONNX files are not in git: run `scripts/setup.sh --no-build` first (it copies them into
# models/ and verifies their sha256), then `docker build -t dfserve .`. Inside the build,
# scripts/setup.sh checks them again, fetches libonnxruntime from the onnxruntime wheel on PyPI
# (the same way as outside Docker) and builds the release binary.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake nasm python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN DFSERVE_MODEL_SOURCE=/src/models scripts/setup.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /opt/dfserve dfserve \
 && mkdir -p /var/lib/dfserve && chown dfserve /var/lib/dfserve
COPY --from=build /src/target/release/dfserve /usr/local/bin/dfserve
COPY --from=build /src/.dfserve/lib/ /opt/dfserve/lib/
COPY --from=build /src/models/ /opt/dfserve/models/
ENV DFSERVE_ORT_LIB=/opt/dfserve/lib/libonnxruntime.so.1.31.1 \
    DFSERVE_MODEL_DIR=/opt/dfserve/models \
    DFSERVE_HOST=0.0.0.0 \
    DFSERVE_HTTP_PORT=8000 \
    DFSERVE_DATA_DIR=/var/lib/dfserve
# Hash lists (and later other state that must last) live here: mount a volume to keep them.
VOLUME /var/lib/dfserve
USER dfserve
WORKDIR /opt/dfserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health/ready || exit 1
ENTRYPOINT ["dfserve"]
CMD ["serve"]
