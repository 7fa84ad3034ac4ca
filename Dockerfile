# The S3 gateway, `sealstream serve`, as a container image (docs/GATEWAY.md "Deployment").
#
#   docker build -t sealstream-gateway .          # or: podman build -t sealstream-gateway .
#   docker run --read-only -p 9000:9000 \
#       -e AWS_REGION=eu-west-1 -e SEALSTREAM_KMS_KEY=alias/backup \
#       -e SEALSTREAM_CLIENT_CREDENTIALS=/run/secrets/clients.ini \
#       -v "$PWD/clients.ini:/run/secrets/clients.ini:ro" sealstream-gateway
#
# Two stages: the Rust toolchain compiles the binary; the runtime stage is Debian's slim
# image with only that binary and the CA bundle added. Built and run end to end by
# scripts/container_test.sh (podman; docs/TESTING.md), which is not part of scripts/test.sh.
#
# Pins: the toolchain is the exact Rust release the crate is built and tested with
# (s3s 0.14.1, pinned in Cargo.toml, needs 1.92+; 0.15 would need 1.96), and Debian
# bookworm is the release both stages share, so the binary's glibc is the runtime's. For
# reproducible production builds also pin the two images by digest
# (`rust:1.95.0-slim-bookworm@sha256:…`): a tag moves with Debian's security updates,
# which is what you want on a rebuild, a digest does not.

# ---- build ---------------------------------------------------------------------------
# The official image's slim variant: rustup's minimal profile, gcc and libc6-dev (ring
# compiles C and assembly), ca-certificates for crates.io.
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build

WORKDIR /src
# The context is what .dockerignore lets through: the manifest, the lock file, src/ and
# the declared bench and example targets (cargo checks that their files exist).
COPY . .

# --locked: exactly the dependency versions in Cargo.lock, or fail (never a silent update).
# The cache mounts keep the crate downloads and the build directory between builds on one
# machine (BuildKit and buildah both support them); the binary is copied out of the cached
# target directory inside the same step, because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sealstream \
    && install -m 0755 target/release/sealstream /usr/local/bin/sealstream

# ---- runtime -------------------------------------------------------------------------
# debian:bookworm-slim rather than distroless/cc: the binary needs glibc and libgcc_s
# only (rustls on ring: no OpenSSL), which both provide; slim is the same Debian release
# as the build stage and can be rebuilt from Debian's packages anywhere (that is how this
# image is tested without a registry). The final stage has no RUN step, so building it
# needs no shell and nothing is installed into it but the two files below.
FROM docker.io/library/debian:bookworm-slim

# rustls-native-certs (the AWS SDK's HTTPS client) reads the system's CA bundle; the slim
# image has none. Copied from the build stage's ca-certificates package, so the runtime
# gets no OpenSSL or other package for it. A private CA for the upstream: --ca-bundle.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/sealstream /usr/local/bin/sealstream

# A container listens on all interfaces (the binary's default, 127.0.0.1:9000, would be
# unreachable from outside the container). Every other option is a SEALSTREAM_… variable
# or a mounted --config file (docs/GATEWAY.md, options table); the upstream credentials
# come from the AWS chain (task or instance role, web identity, AWS_* variables).
ENV SEALSTREAM_LISTEN=0.0.0.0:9000
EXPOSE 9000

# Not root: a numeric uid/gid (no passwd entry needed, and Kubernetes' runAsNonRoot can
# check a number). The gateway writes no files, so the root file system can be read-only
# (`--read-only`, readOnlyRootFilesystem); secrets are mounted read-only files that this
# uid can read.
USER 10001:10001

# No HEALTHCHECK: the image has no HTTP client (curl or wget would be the only reason to
# add one, and a shell test would not speak TLS when --tls-cert is on). Point the load
# balancer's or orchestrator's HTTP probe at GET /healthz (unauthenticated, 200 "ok").
# The gateway runs as PID 1 and handles SIGTERM itself: it stops accepting and lets
# requests in flight finish for up to SEALSTREAM_SHUTDOWN_GRACE seconds (default 30;
# keep the orchestrator's stop timeout above it), then exits 0.
ENTRYPOINT ["sealstream", "serve"]
