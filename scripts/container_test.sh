#!/usr/bin/env bash
# container_test.sh: builds the gateway's container image from ./Dockerfile with podman,
# runs it against the moto emulator (scripts/emulator.sh) and checks it end to end with
# the AWS CLI v2 (/usr/bin/aws) through the containerised gateway: PutObject (single and
# multipart), GetObject, ListObjectsV2 sizes, /healthz, /metrics, a non-root user, a
# read-only root file system, secrets mounted as files, a graceful stop on SIGTERM with
# an upload in flight, and a second replica reading what the first wrote. Exits non-zero on the first failed check.
#
# NOT part of scripts/test.sh: it needs root, podman and a kernel that lets podman run
# containers, which CI runners may not give (docs/TESTING.md, "Container image").
#
# Base images. By default (CONTAINER_TEST_BASES=local) no image registry is used: the two
# images the Dockerfile names in its FROM lines are made from Debian packages with
# mmdebstrap and stored under exactly those names, in a podman store of this script's own
# (never the machine's default store, whose real images of those names stay untouched):
#   debian:<suite>-slim          mmdebstrap --variant=minbase, with the dpkg path excludes
#                                Debian's official slim images use (docs, man, locales)
#   rust:<version>-slim-<suite>  minbase + gcc, libc6-dev, ca-certificates and this host's
#                                rustup toolchain <version> (RUSTUP_HOME/CARGO_HOME laid
#                                out as in the official image), plus any CA certificates
#                                in /usr/local/share/ca-certificates, so that cargo inside
#                                the build reaches crates.io through a TLS-intercepting
#                                proxy. Such a CA then also ends up in the test image's
#                                CA bundle (the Dockerfile copies the build stage's);
#                                with the official images it is Debian's bundle only.
# CONTAINER_TEST_BASES=pull lets podman pull the real images instead (a machine with
# registry access).
#
# Environment: CONTAINER_TEST_STORE (podman store, kept between runs for the base images
# and the build cache; default /var/tmp/sealstream-container-test), CONTAINER_TEST_CLEAN=1
# (remove that store at the end), CONTAINER_TEST_IMAGE (the tag built and checked), CONTAINER_TEST_REBUILD_BASES=1 (make the base images
# again), CONTAINER_RUNTIME (OCI runtime, default runc: crun 1.8 refuses hosts with
# cgroups in hybrid mode), KEEP=1 (keep the temp dir and the container's log),
# CONTAINER_TEST_SKIP_BUILD=1 (check the image the last run built, without building).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
cd "$ROOT"

STORE=${CONTAINER_TEST_STORE:-/var/tmp/sealstream-container-test}
BASES=${CONTAINER_TEST_BASES:-local}
RUNTIME=${CONTAINER_RUNTIME:-runc}
IMAGE=${CONTAINER_TEST_IMAGE:-localhost/sealstream-gateway:container-test}
AWS=/usr/bin/aws
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'container_test: %s\n' "$*" >&2; }
die() { printf 'container_test: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'container_test: ok: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (podman with its own store, mmdebstrap --mode=root)"

# ---- what it needs --------------------------------------------------------------------
need=()
command -v podman >/dev/null || need+=(podman)
command -v "$RUNTIME" >/dev/null || need+=("$RUNTIME")
command -v slirp4netns >/dev/null || need+=(slirp4netns)
[ "$BASES" = pull ] || command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ -x "$AWS" ] || need+=(awscli)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    log "installing with apt: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
"$AWS" --version | grep -q '^aws-cli/2' || die "$AWS is not the AWS CLI v2"

# Its own store: the base images made below carry the official images' names, so they
# must never land in the machine's default store. vfs: no overlay mounts needed.
# Limits: a container may not raise a limit above podman's own (no CAP_SYS_RESOURCE in
# some sandboxes), and podman asks for 1M open files by default.
P=(podman --root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs)
LIMITS=(--ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit nproc=4096:4096)

TMP=$(mktemp -d)
CID=
STARTED_EMULATOR=0
cleanup() {
    local rc=$?
    if [ -n "$CID" ]; then
        if [ "${KEEP:-0}" = 1 ]; then "${P[@]}" logs "$CID" >"$TMP/gateway.log" 2>&1 || true; fi
        "${P[@]}" rm -f "$CID" >/dev/null 2>&1 || true
    fi
    if [ "$STARTED_EMULATOR" = 1 ]; then scripts/emulator.sh stop || true; fi
    if [ "${KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    if [ "${CONTAINER_TEST_CLEAN:-0}" = 1 ]; then
        "${P[@]}" system reset --force >/dev/null 2>&1 || true
        rm -rf "$STORE"
    fi
    if [ $rc = 0 ]; then log "PASS"; else log "FAILED (exit $rc)"; fi
}
trap cleanup EXIT

# ---- base images ------------------------------------------------------------------------
# The names exactly as the Dockerfile's FROM lines spell them.
mapfile -t FROMS < <(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile)
RUST_IMAGE=${FROMS[0]}
SLIM_IMAGE=${FROMS[1]}
[[ "$RUST_IMAGE" =~ ^docker\.io/library/rust:([0-9.]+)-slim-([a-z]+)$ ]] ||
    die "first FROM '$RUST_IMAGE' is not docker.io/library/rust:VERSION-slim-SUITE; update this script"
RUST_VERSION=${BASH_REMATCH[1]}
SUITE=${BASH_REMATCH[2]}
[ "$SLIM_IMAGE" = "docker.io/library/debian:$SUITE-slim" ] ||
    die "second FROM '$SLIM_IMAGE' is not docker.io/library/debian:$SUITE-slim; update this script"

have_image() { "${P[@]}" image exists "$1"; }

# The dpkg filters of Debian's slim images (debuerreotype's slimify): no docs but the
# copyright files, no man pages, info, locales.
SLIM_OPTS=(
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/groff/*'
    --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/linda/*'
)
# merged /usr as in the official images, without the usrmerge package (and the perl it needs).
MM=(mmdebstrap --quiet --mode=root --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${SLIM_OPTS[@]}")

make_bases() {
    if [ "${CONTAINER_TEST_REBUILD_BASES:-0}" != 1 ] && have_image "$SLIM_IMAGE" && have_image "$RUST_IMAGE"; then
        log "base images present in $STORE (CONTAINER_TEST_REBUILD_BASES=1 makes them again)"
        return
    fi
    local t0=$SECONDS sysroot
    log "making $SLIM_IMAGE from Debian $SUITE packages (mmdebstrap)"
    "${MM[@]}" "$SUITE" "$TMP/slim.tar" "$MIRROR"
    "${P[@]}" import --quiet "$TMP/slim.tar" "$SLIM_IMAGE" >/dev/null
    rm -f "$TMP/slim.tar"

    command -v rustup >/dev/null || die "rustup not found: the build image gets this host's Rust $RUST_VERSION toolchain"
    sysroot=$(rustup run "$RUST_VERSION" rustc --print sysroot) ||
        die "no Rust $RUST_VERSION toolchain here (rustup toolchain install $RUST_VERSION)"
    sysroot=$(readlink -f "$sysroot")
    log "making $RUST_IMAGE: $SUITE minbase + gcc, libc6-dev, ca-certificates + the toolchain in $sysroot"
    local tc=/usr/local/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu
    # The hook runs outside the chroot with the root file system in $1.
    # shellcheck disable=SC2016
    "${MM[@]}" --include=ca-certificates,gcc,libc6-dev \
        --customize-hook='for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && cp "$c" "$1/usr/local/share/ca-certificates/"; done; chroot "$1" update-ca-certificates >/dev/null' \
        --customize-hook="mkdir -p \"\$1$tc\" \"\$1/usr/local/cargo/bin\" && tar -C '$sysroot' --exclude=./share/doc -cf - . | tar -C \"\$1$tc\" -xf - && for b in cargo rustc rustdoc; do ln -s '$tc/bin/'\$b \"\$1/usr/local/cargo/bin/\$b\"; done" \
        "$SUITE" "$TMP/rust.tar" "$MIRROR"
    "${P[@]}" import --quiet \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "ENV RUST_VERSION=$RUST_VERSION" \
        "$TMP/rust.tar" "$RUST_IMAGE" >/dev/null
    rm -f "$TMP/rust.tar"
    log "base images made in $((SECONDS - t0)) s"
}
if [ "$BASES" = pull ]; then
    "${P[@]}" pull --quiet "$SLIM_IMAGE" "$RUST_IMAGE" >/dev/null
else
    make_bases
fi

# ---- build ------------------------------------------------------------------------------
if [ "${CONTAINER_TEST_SKIP_BUILD:-0}" = 1 ]; then
    have_image "$IMAGE" || die "CONTAINER_TEST_SKIP_BUILD=1 but no $IMAGE in $STORE"
    log "not building: checking the $IMAGE already in $STORE"
    BUILD_S=skipped
else
    log "building $IMAGE from ./Dockerfile (podman build, runtime $RUNTIME)"
    t0=$SECONDS
    "${P[@]}" build --runtime "$RUNTIME" "${LIMITS[@]}" --pull=never -t "$IMAGE" . >"$TMP/build.log" 2>&1 ||
        { tail -n 40 "$TMP/build.log" >&2; die "podman build failed"; }
    BUILD_S=$((SECONDS - t0))
fi
SIZE=$("${P[@]}" image inspect --format '{{.Size}}' "$IMAGE")
BASE_SIZE=$("${P[@]}" image inspect --format '{{.Size}}' "$SLIM_IMAGE")
ok "build: $BUILD_S s; image $((SIZE / 1000000)) MB ($SIZE bytes; $SLIM_IMAGE $BASE_SIZE bytes)"

# The image's own settings, as the Dockerfile states them.
user=$("${P[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = 10001:10001 ] || die "image user is '$user', not 10001:10001"
entry=$("${P[@]}" image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
[ "$entry" = '["sealstream","serve"]' ] || die "entrypoint is $entry"
ok "non-root user $user, entrypoint $entry"
"${P[@]}" run --rm "${LIMITS[@]}" --runtime "$RUNTIME" --network none --entrypoint sealstream "$IMAGE" --version >"$TMP/version"
ok "the binary runs in the runtime image: $(cat "$TMP/version")"

# ---- upstream: moto ---------------------------------------------------------------------
if ! scripts/emulator.sh status >/dev/null 2>&1; then STARTED_EMULATOR=1; fi
scripts/emulator.sh start
MOTO=$(scripts/emulator.sh endpoint)
MOTO_PORT=${MOTO##*:}
up() { AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true "$AWS" --endpoint-url "$MOTO" "$@"; }
KMS_KEY=$(up kms create-key --query KeyMetadata.KeyId --output text)
BUCKET=container-test-$RANDOM

# ---- secrets as files -------------------------------------------------------------------
# Owned by the image's uid and readable by it only, mounted read-only: the client
# credentials, a local key and the gateway's own upstream credentials (an AWS
# shared-credentials file; in production a role instead).
SECRETS=$TMP/secrets
mkdir -p "$SECRETS"
CLIENT_ID=AKIACONTAINERTEST001
CLIENT_SECRET=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
printf '[container-test]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$CLIENT_ID" "$CLIENT_SECRET" >"$SECRETS/clients.ini"
printf '[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n' >"$SECRETS/upstream-credentials"
"${P[@]}" run --rm "${LIMITS[@]}" --runtime "$RUNTIME" --network none --user 0:0 \
    -v "$SECRETS:/out" --entrypoint sealstream "$IMAGE" keygen -o /out/local.key >/dev/null 2>&1 ||
    die "keygen in the image failed"
chown -R 10001:10001 "$SECRETS"
chmod 0500 "$SECRETS"
chmod 0400 "$SECRETS"/*

# ---- run --------------------------------------------------------------------------------
# slirp4netns with the host's loopback reachable as 10.0.2.2 (moto listens on 127.0.0.1);
# the S3 port is published on the host's loopback. start_gateway PORT: starts a replica
# (every replica the same secrets and settings; they share nothing else) and waits for
# its /healthz; prints the container id.
start_gateway() {
    local port=$1 id
    id=$("${P[@]}" run -d "${LIMITS[@]}" --runtime "$RUNTIME" \
        --read-only --cap-drop=all --security-opt no-new-privileges \
        --network slirp4netns:allow_host_loopback=true -p "127.0.0.1:$port:9000" \
        -v "$SECRETS:/run/secrets:ro" \
        -e AWS_ENDPOINT_URL="http://10.0.2.2:$MOTO_PORT" -e AWS_REGION=us-east-1 \
        -e AWS_SHARED_CREDENTIALS_FILE=/run/secrets/upstream-credentials -e AWS_EC2_METADATA_DISABLED=true \
        -e SEALSTREAM_CLIENT_CREDENTIALS=/run/secrets/clients.ini \
        -e SEALSTREAM_KMS_KEY="$KMS_KEY" -e SEALSTREAM_KEY=/run/secrets/local.key \
        -e SEALSTREAM_CONTEXT=tenant=container-test -e SEALSTREAM_SHUTDOWN_GRACE=20 \
        -e SEALSTREAM_LOG_FORMAT=json \
        "$IMAGE")
    for _ in $(seq 1 100); do
        if [ "$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null)" = ok ]; then
            echo "$id"
            return 0
        fi
        "${P[@]}" inspect --format '{{.State.Running}}' "$id" | grep -q true ||
            { "${P[@]}" logs "$id" >&2; die "the gateway container exited"; }
        sleep 0.2
    done
    "${P[@]}" logs "$id" >&2
    die "GET /healthz did not answer ok within 20 s"
}
GW_PORT=$(free_port)
GW=http://127.0.0.1:$GW_PORT
CID=$(start_gateway "$GW_PORT")
ok "GET /healthz through the published port: ok"
"${P[@]}" top "$CID" user pid args >"$TMP/top"
grep -q '^10001 ' "$TMP/top" || { cat "$TMP/top" >&2; die "the gateway does not run as uid 10001"; }
ok "gateway runs as uid 10001 (podman top), root file system read-only, no capabilities"

# ---- an S3 client through the gateway ---------------------------------------------------
gw() { AWS_ACCESS_KEY_ID=$CLIENT_ID AWS_SECRET_ACCESS_KEY=$CLIENT_SECRET AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$TMP/none AWS_SHARED_CREDENTIALS_FILE=$TMP/none \
    "$AWS" --endpoint-url "$GW" "$@"; }
gw s3 mb "s3://$BUCKET" >/dev/null
head -c 1000 /dev/urandom >"$TMP/small.bin"
head -c $((24 * 1024 * 1024 + 5)) /dev/urandom >"$TMP/big.bin" # over the CLI's 8 MiB multipart threshold
gw s3 cp "$TMP/small.bin" "s3://$BUCKET/small.bin" >/dev/null
gw s3 cp "$TMP/big.bin" "s3://$BUCKET/dir/big.bin" >/dev/null
ok "aws s3 cp up: 1000 B (PutObject) and 24 MiB + 5 B (multipart)"
for f in small.bin dir/big.bin; do
    gw s3 cp "s3://$BUCKET/$f" "$TMP/back" >/dev/null
    cmp "$TMP/back" "$TMP/$(basename "$f")" || die "$f came back different"
done
ok "aws s3 cp down: both identical"
gw s3api list-objects-v2 --bucket "$BUCKET" --query 'Contents[].[Key,Size]' --output text >"$TMP/ls"
printf 'dir/big.bin\t%s\nsmall.bin\t1000\n' $((24 * 1024 * 1024 + 5)) | diff - "$TMP/ls" ||
    die "listing through the gateway does not show the plaintext sizes (above)"
ok "list-objects-v2 through the gateway: plaintext sizes"
gw s3 ls --recursive "s3://$BUCKET" | awk '{print $3, $4}' | sort >"$TMP/ls2"
printf '%s dir/big.bin\n1000 small.bin\n' $((24 * 1024 * 1024 + 5)) | sort | diff - "$TMP/ls2" ||
    die "aws s3 ls does not show the plaintext sizes (above)"
ok "aws s3 ls --recursive: plaintext sizes"
# Upstream holds ciphertext: other sizes, and the sealstream metadata.
up s3api head-object --bucket "$BUCKET" --key small.bin --query 'Metadata' --output json >"$TMP/meta"
grep -q sealstream "$TMP/meta" || die "the upstream object has no sealstream metadata"
stored=$(up s3api head-object --bucket "$BUCKET" --key small.bin --query ContentLength --output text)
[ "$stored" != 1000 ] || die "the upstream object has the plaintext's size"
if up s3 cp "s3://$BUCKET/small.bin" "$TMP/raw" >/dev/null && cmp -s "$TMP/raw" "$TMP/small.bin"; then
    die "the upstream object is the plaintext"
fi
ok "upstream (moto) holds a sealstream object: $stored bytes stored for 1000, not the plaintext"

# ---- /metrics ---------------------------------------------------------------------------
curl -fsS "$GW/metrics" >"$TMP/metrics" || die "GET /metrics failed"
metric() { awk -v m="$1" '$1 == m { print $2 }' "$TMP/metrics"; }
recv=$(metric sealstream_gateway_plaintext_bytes_received_total)
sent=$(metric sealstream_gateway_plaintext_bytes_sent_total)
gdk=$(metric 'sealstream_gateway_kms_calls_total{operation="GenerateDataKey"}')
want=$((24 * 1024 * 1024 + 5 + 1000))
[ "${recv:-0}" -ge "$want" ] || die "plaintext_bytes_received_total ${recv:-none} < $want"
[ "${sent:-0}" -ge "$want" ] || die "plaintext_bytes_sent_total ${sent:-none} < $want"
[ "${gdk:-0}" -ge 2 ] || die "kms_calls_total{GenerateDataKey} ${gdk:-none} < 2"
ok "/metrics: received $recv, sent $sent plaintext bytes, $gdk GenerateDataKey calls"

# ---- SIGTERM with an upload in flight ---------------------------------------------------
# curl PUTs 24 MiB at 4 MiB/s (about 6 s; SigV4 by curl's --aws-sigv4, payload unsigned);
# SIGTERM a second into it. The gateway must refuse new connections at once, let the
# upload finish and store it, and exit 0 within the grace. A second replica then reads
# the object back, and is stopped with a *download* in flight (below).
curl -fsS --limit-rate 4M --aws-sigv4 "aws:amz:us-east-1:s3" --user "$CLIENT_ID:$CLIENT_SECRET" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -T "$TMP/big.bin" -o "$TMP/put.out" "$GW/$BUCKET/inflight.bin" &
CURL=$!
sleep 1
t0=$(date +%s.%N)
"${P[@]}" kill --signal TERM "$CID" >/dev/null
sleep 0.5
if curl -fsS --max-time 2 "$GW/healthz" >/dev/null 2>&1; then
    die "the gateway still accepts new connections after SIGTERM"
fi
wait "$CURL" || { "${P[@]}" logs "$CID" >&2; die "the upload in flight failed after SIGTERM"; }
code=$("${P[@]}" wait "$CID")
t1=$(date +%s.%N)
[ "$code" = 0 ] || { "${P[@]}" logs "$CID" >&2; die "exit code $code after SIGTERM, not 0"; }
"${P[@]}" logs "$CID" >"$TMP/gw.log" 2>&1
grep -q '"all requests finished and their responses delivered"' "$TMP/gw.log" || { tail -5 "$TMP/gw.log" >&2; die "no 'all requests finished' in the gateway's log"; }
grep '"path":"/'"$BUCKET"'/inflight.bin"' "$TMP/gw.log" | grep -q '"status":200' ||
    die "the gateway's log has no 200 for the upload in flight"
ok "SIGTERM: new connections refused, the upload in flight answered 200, exit 0 after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
"${P[@]}" rm "$CID" >/dev/null
GW_PORT=$(free_port)
GW=http://127.0.0.1:$GW_PORT
CID=$(start_gateway "$GW_PORT")
gw s3 cp "s3://$BUCKET/inflight.bin" "$TMP/back" >/dev/null
cmp "$TMP/back" "$TMP/big.bin" || die "the upload finished during shutdown came back different"
# A download in flight at SIGTERM: curl reads 24 MiB at 4 MiB/s; the gateway must finish
# the response and stay up until the client has acknowledged every byte (its closes
# linger at shutdown: src/gateway/linger.rs), or the bytes still in the container's
# socket buffers are lost with its network and the client gets a short body and an error.
rm -f "$TMP/back"
curl -fsS --limit-rate 4M --aws-sigv4 "aws:amz:us-east-1:s3" --user "$CLIENT_ID:$CLIENT_SECRET" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o "$TMP/back" "$GW/$BUCKET/inflight.bin" &
CURL=$!
sleep 1
"${P[@]}" kill --signal TERM "$CID" >/dev/null
wait "$CURL" || { "${P[@]}" logs "$CID" >&2; die "the download in flight failed after SIGTERM"; }
cmp "$TMP/back" "$TMP/big.bin" || die "the download in flight at SIGTERM came back different"
code=$("${P[@]}" wait "$CID")
[ "$code" = 0 ] || { "${P[@]}" logs "$CID" >&2; die "exit code $code after SIGTERM, not 0"; }
ok "SIGTERM with a download in flight: all 24 MiB + 5 B delivered, identical, exit 0"
"${P[@]}" rm "$CID" >/dev/null
CID=$(start_gateway "$GW_PORT")
code=$("${P[@]}" stop --time 30 "$CID" >/dev/null && "${P[@]}" inspect --format '{{.State.ExitCode}}' "$CID")
[ "$code" = 0 ] || die "podman stop: exit code $code, not 0"
ok "a second replica serves the object uploaded during the first one's shutdown; podman stop: exit 0"
log "image $IMAGE: $((SIZE / 1000000)) MB, built in $BUILD_S s"
