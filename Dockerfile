# syntax=docker/dockerfile:1
#
# One image for every Switchboard process: `serve` (default), `turn` and `migrate`.
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 -p 9090:9090 switchboard            # embedded single node
#   docker run --rm -e SWITCHBOARD_DATABASE_URL=postgres://… switchboard migrate
#
# The build stage compiles a release binary with the Swift standard library linked in
# statically (plus any SwiftPM resource bundles, which must sit beside it), so the runtime
# stage needs only the few Debian libraries that `ldd switchboard` still lists (see
# Docs/deploy.md). scripts/image-check proves this
# runtime stage without Docker: it builds the same Debian 12 root filesystem with
# debootstrap, runs this file's runtime RUN lines in it, and starts the binary with chroot.

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:12-slim

# ---------------------------------------------------------------- build
FROM ${SWIFT_IMAGE} AS build
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends libhiredis-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Resolve dependencies in a layer of their own, so source changes do not refetch them.
COPY Package.* ./
RUN swift package resolve
COPY . .
RUN swift build -c release --static-swift-stdlib --product switchboard \
    && bin="$(swift build -c release --show-bin-path)" \
    && install -D -m 0755 "$bin/switchboard" /out/usr/local/bin/switchboard \
    && find -L "$bin" -maxdepth 1 -name '*.resources' -exec cp -R {} /out/usr/local/bin/ \; \
    && install -D -m 0755 /usr/libexec/swift/linux/swift-backtrace-static /out/usr/libexec/switchboard/swift-backtrace-static

# ---------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE} AS runtime
# What the binary links dynamically (readelf -d: libcurl.so.4 for FoundationNetworking,
# libstdc++.so.6, libz.so.1, libgcc_s, libc, libm; libhiredis once the Redis bus is in the
# binary), plus CA certificates for rediss://, PostgreSQL TLS and webhooks.
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends ca-certificates libcurl4 libhiredis0.14 libstdc++6 zlib1g \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/switchboard
COPY --from=build /out/ /
# Embedded-mode files live in the one writable directory (a volume in Compose, an emptyDir
# in Kubernetes); the migrations are compiled into the binary; crash backtraces go to stderr.
ENV SWITCHBOARD_SQLITE_PATH=/var/lib/switchboard/switchboard.sqlite \
    SWITCHBOARD_MASTER_KEY_FILE=/var/lib/switchboard/switchboard.key \
    SWITCHBOARD_AUDIT_SPILL_DIR=/var/lib/switchboard/audit-spill \
    SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/libexec/switchboard/swift-backtrace-static
WORKDIR /var/lib/switchboard
USER 10001:10001
# 8080 public HTTP + WebSocket, 9090 admin (/metrics, /healthz, /readyz);
# `turn`: 3478 UDP+TCP, 5349 TLS, relays on 49152-65535/udp (use host networking).
EXPOSE 8080/tcp 9090/tcp 3478/udp 3478/tcp 5349/tcp
# No HEALTHCHECK: orchestrators probe /healthz and /readyz on the admin port.
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
