#!/usr/bin/env bash
# bench_gateway.sh SIZE_MIB: the S3 gateway (`sealstream serve`) against direct access to the
# same in-memory upstream, with the same clients and the same file (docs/BENCHMARKS.md,
# "Gateway"). Starts mem_s3 (benches/support/mem_s3.rs, release) twice (HTTP, and HTTPS with
# a server certificate from a private CA made here with openssl) and three gateways (release):
# one serving HTTP and one HTTPS, both forwarding to the HTTP mem_s3, and one serving HTTP
# that forwards to the HTTPS mem_s3 trusting the CA with --ca-bundle (mode gw-https-up), on
# free ports, then times, direct (to mem_s3 over HTTP and over HTTPS) and through each gateway:
#   aws s3 cp up / down (AWS CLI v2, /usr/bin/aws), boto3 upload_file / download_file,
#   1,000 random 64 KiB ranged GETs (boto3, 4 threads), and the peer rclone (`crypt` remote
#   over the same mem_s3) up / down.
# Prints medians of RUNS runs (default 3): wall seconds, MB/s (10^6 bytes), ratio to
# direct over the same scheme (gw-https-up: to direct-http); each gateway's CPU time, mem_s3's
# CPU time and peak RSS (VmHWM). Every timed run holds /work/wt/bench.lock. Env: RUNS (3),
# MODES ("direct-http gw-http gw-https"; also direct-https, gw-https-up, gw-http-nocache:
# gw-http with --header-cache-seconds 0), WORKLOADS,
# RCLONE_PEER=0 skips rclone, KEEP=1 keeps the temp dir, SEALSTREAM_BIN measures another
# sealstream binary (a baseline build), UPSTREAM_VERIFIES=1 makes mem_s3 check signed
# payloads' SHA-256 as S3 does (by default it hashes nothing).
set -euo pipefail
SIZE_MIB=${1:?usage: bench_gateway.sh SIZE_MIB}
RUNS=${RUNS:-3}
MODES=${MODES:-"direct-http gw-http gw-https"}
LOCK=${BENCH_LOCK:-/work/wt/bench.lock}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
cd "$ROOT"
AWS=/usr/bin/aws

# ---- what it needs --------------------------------------------------------------------
need_apt=()
[ -x "$AWS" ] || need_apt+=(awscli)
command -v rclone >/dev/null || need_apt+=(rclone)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_apt[@]}" >&2
fi
VENV=$ROOT/.tools/bench-gw-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q boto3 >&2
fi
PY=$VENV/bin/python

# SKIP_BUILD=1 with SEALSTREAM_BIN and MEM_S3_BIN: measure binaries built before (a run
# that must not rebuild while the tree changes, or on a loaded machine).
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --bin sealstream --example mem_s3 >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
BIN=${SEALSTREAM_BIN:-$TARGET/sealstream} # SEALSTREAM_BIN: measure another build (a baseline)
MEM=${MEM_S3_BIN:-$TARGET/examples/mem_s3}

T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# First stdout line of a started server: "listening on URL".
wait_url() {
    local f=$1 i
    for i in $(seq 1 300); do
        if [ -s "$f" ]; then head -1 "$f" | sed 's/^listening on //'; return; fi
        sleep 0.1
    done
    echo "server did not start: $(cat "$f".err 2>/dev/null)" >&2; exit 1
}

# A private CA and a server certificate it issued (rustls, in the gateway's SDK client,
# refuses a self-signed CA certificate used as the server's own: CaUsedAsEndEntity).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$T/ca.key" -out "$T/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$T/tls.key" -out "$T/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$T/tls.ext"
openssl x509 -req -in "$T/tls.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/tls.ext" -out "$T/tls.crt" 2>/dev/null
# UPSTREAM_VERIFIES=1: mem_s3 checks signed payloads' SHA-256 as S3 does (MEM_S3_VERIFY_PAYLOAD),
# so that direct access pays for the hash the gateway must check for the client.
export MEM_S3_VERIFY_PAYLOAD=${UPSTREAM_VERIFIES:-0}
"$MEM" 127.0.0.1:0 >"$T/mem.out" 2>"$T/mem.out.err" &
PIDS+=($!)
UP=$(wait_url "$T/mem.out")
"$MEM" 127.0.0.1:0 "$T/tls.crt" "$T/tls.key" >"$T/mems.out" 2>"$T/mems.out.err" &
PIDS+=($!)
UPS=$(wait_url "$T/mems.out")

# Gateway: a local key, client credentials, upstream = mem_s3 with its keys.
"$BIN" keygen -o "$T/gw.key" >/dev/null 2>&1
cat >"$T/clients.ini" <<EOF
[bench]
aws_access_key_id = GWBENCHCLIENT
aws_secret_access_key = gwbench-client-secret
EOF
start_gw() { # NAME [serve flags…]
    local name=$1; shift
    (export AWS_ENDPOINT_URL=$UP AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
        AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true SEALSTREAM_HOME=$T/home
     exec "$BIN" serve --listen 127.0.0.1:0 -k "$T/gw.key" --client-credentials "$T/clients.ini" \
        --log warn "$@" >"$T/$name.out" 2>"$T/$name.out.err") &
    PIDS+=($!)
    eval "${name}_PID=$!"
    eval "${name}_URL=\$(wait_url \"$T/$name.out\")"
}
start_gw gwhttp
start_gw gwhttps --tls-cert "$T/tls.crt" --tls-key "$T/tls.key"
# gw-https-up: an HTTP gateway whose upstream is the HTTPS mem_s3, trusting the bench CA
# with --ca-bundle (a binary without that flag: through SSL_CERT_FILE, which the SDK's
# rustls client reads as its system roots).
if "$BIN" serve --help 2>/dev/null | grep -q -- --ca-bundle; then
    UP_CA=(--ca-bundle "$T/ca.crt")
else
    UP_CA=()
    export SSL_CERT_FILE="$T/ca.crt"
fi
UP=$UPS start_gw gwups "${UP_CA[@]}"
unset SSL_CERT_FILE
# gw-http-nocache: gw-http without the header cache (--header-cache-seconds 0): every GET
# loads the object's header again (the header cache's worth, on the ranged workload).
start_gw gwnocache --header-cache-seconds 0

# Per mode: endpoint, credentials, CA bundle.
mode_env() {
    case $1 in
        direct-http) echo "$UP testing testing -" ;;
        direct-https) echo "$UPS testing testing $T/ca.crt" ;;
        gw-http) echo "$gwhttp_URL GWBENCHCLIENT gwbench-client-secret -" ;;
        gw-https) echo "$gwhttps_URL GWBENCHCLIENT gwbench-client-secret $T/ca.crt" ;;
        gw-https-up) echo "$gwups_URL GWBENCHCLIENT gwbench-client-secret -" ;;
        gw-http-nocache) echo "$gwnocache_URL GWBENCHCLIENT gwbench-client-secret -" ;;
    esac
}

# The file: SIZE_MIB of random bytes.
"$PY" - "$T/src.bin" "$SIZE_MIB" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(os.urandom(1 << 20))
EOF
BYTES=$((SIZE_MIB * 1048576))

cat >"$T/boto.py" <<'EOF'
import os, random, sys, threading, boto3
from botocore.config import Config
op, url, ak, sk, ca, bucket, key, path = sys.argv[1:9]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk,
                 region_name="us-east-1", verify=(None if ca == "-" else ca),
                 config=Config(max_pool_connections=16))
if op == "mb":
    try: c.create_bucket(Bucket=bucket)
    except Exception: pass
elif op == "rm":
    for k in key.split(","): c.delete_object(Bucket=bucket, Key=k)
elif op == "up":
    c.upload_file(path, bucket, key)
elif op == "down":
    c.download_file(bucket, key, path)
elif op == "ranges":
    size = c.head_object(Bucket=bucket, Key=key)["ContentLength"]
    rnd = random.Random(16)
    offs = [rnd.randrange(0, size - 65536) for _ in range(1000)]
    it = iter(offs); lock = threading.Lock(); bad = []
    def work():
        while True:
            with lock:
                o = next(it, None)
            if o is None: return
            b = c.get_object(Bucket=bucket, Key=key, Range=f"bytes={o}-{o+65535}")["Body"].read()
            if len(b) != 65536: bad.append(o)
    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    assert not bad, bad[:3]
EOF

# rclone: a crypt remote over mem_s3 (the peer), configured in the temp dir.
cat >"$T/rclone.conf" <<EOF
[mem]
type = s3
provider = Other
access_key_id = testing
secret_access_key = testing
endpoint = $UP
region = us-east-1

[sec]
type = crypt
remote = mem:bench/rclone
password = $(rclone obscure gwbench-password)
EOF
RCLONE=(env -u AWS_CA_BUNDLE rclone --config "$T/rclone.conf" --ca-cert "$T/ca.crt" -q)

# timed CMD…: wall seconds of one run, holding the bench lock.
timed() {
    flock "$LOCK" bash -c 's=$(date +%s%N); "$@" >/dev/null || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))' _ "$@"
}
# median: scripts/lib.sh (the one definition every bench script reports).

aws_env() { # mode → env assignments for the AWS CLI
    read -r url ak sk ca <<<"$(mode_env "$1")"
    echo "AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$T/none AWS_SHARED_CREDENTIALS_FILE=$T/none"
}
run_case() { # mode workload → milliseconds (one run)
    local mode=$1 w=$2 url ak sk ca cab=()
    read -r url ak sk ca <<<"$(mode_env "$mode")"
    [ "$ca" = - ] || cab=(--ca-bundle "$ca")
    local awsc=(env $(aws_env "$mode") "$AWS" --endpoint-url "$url" "${cab[@]}")
    case $w in
        aws-up) timed "${awsc[@]}" s3 cp --no-progress "$T/src.bin" "s3://bench/$mode-aws.bin" ;;
        aws-down) rm -f "$T/out.bin"; timed "${awsc[@]}" s3 cp --no-progress "s3://bench/$mode-aws.bin" "$T/out.bin" ;;
        boto-up) timed "$PY" "$T/boto.py" up "$url" "$ak" "$sk" "$ca" bench "$mode-boto.bin" "$T/src.bin" ;;
        boto-down) rm -f "$T/out.bin"; timed "$PY" "$T/boto.py" down "$url" "$ak" "$sk" "$ca" bench "$mode-boto.bin" "$T/out.bin" ;;
        ranges) timed "$PY" "$T/boto.py" ranges "$url" "$ak" "$sk" "$ca" bench "$mode-boto.bin" - ;;
    esac
}

# CPU time (user + system, clock ticks) of a process: what the gateway spent per run.
HZ=$(getconf CLK_TCK)
cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
# Both mem_s3 processes together: the upstream's work for a run (direct or via a gateway).
up_ticks() { echo $(( $(cpu_ticks "${PIDS[0]}") + $(cpu_ticks "${PIDS[1]}") )); }
gw_pid() { case $1 in gw-http) echo "$gwhttp_PID" ;; gw-https) echo "$gwhttps_PID" ;; gw-https-up) echo "$gwups_PID" ;; gw-http-nocache) echo "$gwnocache_PID" ;; *) echo "" ;; esac; }

RES=$T/results
: >"$RES"
echo "uptime before: $(uptime); mem_s3 verifies signed payloads: $MEM_S3_VERIFY_PAYLOAD" >&2
# Buckets (direct and through each gateway: the same upstream bucket).
"$PY" "$T/boto.py" mb "$UP" testing testing - bench x x
"$PY" "$T/boto.py" mb "$UPS" testing testing "$T/ca.crt" bench x x
WORKLOADS=${WORKLOADS:-"aws-up aws-down boto-up boto-down ranges"}
for r in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        for w in $WORKLOADS; do
            gp=$(gw_pid "$mode"); c0=$(cpu_ticks "$gp"); u0=$(up_ticks)
            ms=$(run_case "$mode" "$w")
            c1=$(cpu_ticks "$gp"); u1=$(up_ticks)
            echo "$mode $w $ms $(( (c1 - c0) * 1000 / HZ )) $(( (u1 - u0) * 1000 / HZ ))" >>"$RES"
            echo "run $r $mode $w ${ms} ms, gateway cpu $(( (c1 - c0) * 1000 / HZ )) ms, mem_s3 cpu $(( (u1 - u0) * 1000 / HZ )) ms" >&2
        done
        if [ "$r" = 1 ] && [ -e "$T/out.bin" ]; then # correctness, untimed: what came back is what went in
            cmp "$T/src.bin" "$T/out.bin" >&2
        fi
        read -r url ak sk ca <<<"$(mode_env "$mode")" # free mem_s3's memory (untimed)
        "$PY" "$T/boto.py" rm "$url" "$ak" "$sk" "$ca" bench "$mode-aws.bin,$mode-boto.bin" -
    done
    rm -f "$T/out.bin"
    [ "${RCLONE_PEER:-1}" = 1 ] || continue
    # rclone skips a copy whose destination has the same size and time: delete it first
    # (untimed), or runs 2.. time a no-op.
    "${RCLONE[@]}" deletefile sec:rclone.bin 2>/dev/null || true
    ms=$(timed "${RCLONE[@]}" copyto "$T/src.bin" sec:rclone.bin); echo "rclone-crypt up $ms" >>"$RES"
    ms=$(timed "${RCLONE[@]}" copyto sec:rclone.bin "$T/out.bin"); echo "rclone-crypt down $ms" >>"$RES"
    echo "run $r rclone done" >&2
    [ "$r" != 1 ] || cmp "$T/src.bin" "$T/out.bin" >&2
    rm -f "$T/out.bin"
done
echo "uptime after: $(uptime)" >&2

# No values (a mode or workload not run) is no median, not an error (set -e, pipefail).
med() { awk -v m="$1" -v w="$2" -v c="${3:-3}" '$1==m && $2==w {print $c}' "$RES" | median || true; }
mbs() { awk -v b="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", b / 1e6 / (ms / 1000); else print "-" }'; }
ratio() { awk -v d="$1" -v g="$2" 'BEGIN { if (g > 0) printf "%.2f", d / g; else print "-" }'; }
echo
echo "### ${SIZE_MIB} MiB, median of $RUNS (s, MB/s; × = direct time / gateway time, same scheme)"
echo
hdr="| workload |"; sep="|---|"
for mode in $MODES; do hdr="$hdr $mode s | MB/s |"; sep="$sep---:|---:|"; case $mode in gw-*) hdr="$hdr × |"; sep="$sep---:|" ;; esac; done
echo "$hdr"; echo "$sep"
for w in $WORKLOADS; do
    line="| $w |"
    for mode in $MODES; do
        v=$(med "$mode" "$w")
        bytes=$BYTES; [ "$w" = ranges ] && bytes=$((1000 * 65536))
        line="$line $(awk -v v="$v" 'BEGIN{printf "%.2f", v/1000}') | $(mbs "$bytes" "$v") |"
        case $mode in gw-*) d=$(med "direct-${mode#gw-}" "$w"); [ -n "$d" ] || d=$(med direct-http "$w"); line="$line $(ratio "${d:-0}" "$v") |" ;; esac
    done
    echo "$line"
done
for dir in up down; do
    v=$(med rclone-crypt "$dir"); d=$(med direct-http "aws-$dir")
    echo "| rclone crypt $dir (peer) | $(awk -v v="$v" 'BEGIN{printf "%.2f", v/1000}') s | $(mbs "$BYTES" "$v") MB/s | × direct-http aws s3 cp: $(ratio "${d:-0}" "$v") |"
done
echo
echo "Gateway CPU seconds per run (median; user + system of the gateway process):"
for w in $WORKLOADS; do
    line="  $w:"
    for mode in $MODES; do [ "${mode#gw-}" = "$mode" ] || line="$line $mode $(awk -v v="$(med "$mode" "$w" 4)" 'BEGIN{printf "%.2f", v/1000}')"; done
    echo "$line"
done
echo
echo "mem_s3 CPU seconds per run (median; both mem_s3 processes, the upstream's work):"
for w in $WORKLOADS; do
    line="  $w:"
    for mode in $MODES; do line="$line $mode $(awk -v v="$(med "$mode" "$w" 5)" 'BEGIN{printf "%.2f", v/1000}')"; done
    echo "$line"
done
echo
for g in gwhttp gwhttps gwups gwnocache; do
    pid=${g}_PID
    echo "gateway $g peak RSS (VmHWM): $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/${!pid}/status)"
done
echo "mem_s3 (http, https) peak RSS: $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/${PIDS[0]}/status), $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/${PIDS[1]}/status)"
