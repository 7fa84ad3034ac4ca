#!/usr/bin/env bash
# S3 throughput: encrypted upload (`sealstream encrypt FILE -o s3://…`) against a plain
# multipart upload of the same file (`examples/s3_plain.rs put`), and download + decrypt
# (`sealstream decrypt s3://… -o OUT`) against a plain parallel ranged download
# (`s3_plain get`): same SDK, client configuration, part size and concurrency, against the
# same local S3 server (s3s-fs, data on tmpfs so the disk is not measured).
#
# In the same rounds, side by side: the Amazon S3 Encryption Client for Python (S3EC, PyPI
# amazon-s3-encryption-client-python, pinned below, in its own venv .tools/s3ec-venv) puts
# the same file (upload_file: one UploadPart after the other, PART_SIZE parts) and gets it
# back twice: with its default configuration (the whole body is read, decrypted and
# authenticated in memory before the first byte is returned) and with
# enable_delayed_authentication=True (plaintext streamed before the tag is checked). Its
# keyring is a KMS keyring whose KMS is a private moto server (from scripts/emulator.sh's
# venv) started on a free port for this run and stopped at the end; sealstream uses its
# local key. The driver is scripts/s3ec_bench.py. Whether S3EC takes a ranged get is tried
# once (untimed) on a small object and reported under the table.
#
# Usage: scripts/bench_s3.sh [SIZE_MIB] [RUNS]     (defaults: 2048 MiB, 3 runs)
# Env:   PART_SIZE (default 8MiB), CONCURRENCY (default 4), WARMUP (1 = one untimed round
#        first, the default; 0 = none), BENCH_DIR (default /dev/shm/sealstream-s3-bench),
#        EXTRA (more sealstream flags, e.g. "--threads 1"), S3EC (1 = measure the S3
#        Encryption Client for Python too, the default; 0 = not)
# Prints a Markdown table on stdout (medians over RUNS); progress and loads on stderr.
# Installs s3s-fs (pinned) into .tools/s3s-fs if missing; needs GNU time and python3.
# With S3EC=1 also installs the S3EC (pinned) into .tools/s3ec-venv and moto via
# scripts/emulator.sh install (.tools/moto-venv); the shared emulator is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
# free_port, median
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

SIZE_MIB=${1:-2048}
RUNS=${2:-3}
PART_SIZE=${PART_SIZE:-8MiB}
CONCURRENCY=${CONCURRENCY:-4}
WARMUP=${WARMUP:-1}
EXTRA=${EXTRA:-}
DIR=${BENCH_DIR:-/dev/shm/sealstream-s3-bench}
S3S_VERSION=0.14.1 # the newest s3s-fs that builds with rustc 1.95 (0.15+ need 1.96)
S3S_ROOT=.tools/s3s-fs
S3S=$S3S_ROOT/bin/s3s-fs
DO_S3EC=${S3EC:-1}
S3EC_VERSION=4.0.0   # amazon-s3-encryption-client-python
S3EC_VENV=.tools/s3ec-venv
S3EC_PY=$S3EC_VENV/bin/python
S3EC_DRIVER=scripts/s3ec_bench.py
MOTO_SERVER=.tools/moto-venv/bin/moto_server
BIN=target/release/sealstream
PLAIN=target/release/examples/s3_plain
BUCKET=bench

command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3 (to find a free port)" >&2; exit 1; }
if [ ! -x "$S3S" ] || [ "$("$S3S" --version 2>/dev/null)" != "s3s-fs $S3S_VERSION" ]; then
  echo "installing s3s-fs $S3S_VERSION into $S3S_ROOT ..." >&2
  cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --root "$S3S_ROOT" --quiet
fi
cargo build --release --quiet --bin sealstream --example s3_plain

# The S3 Encryption Client for Python, pinned, in its own venv; moto for its KMS keyring.
S3EC_MISSING=""   # why S3EC is not (or no longer) measured
S3EC_GET_MISSING=""   # why its default (buffering) get is not measured
install_s3ec() {
  if [ ! -x "$S3EC_PY" ]; then python3 -m venv "$S3EC_VENV" || return 1; fi
  if [ "$("$S3EC_PY" -c 'import importlib.metadata as m; print(m.version("amazon-s3-encryption-client-python"))' 2>/dev/null)" != "$S3EC_VERSION" ]; then
    echo "installing amazon-s3-encryption-client-python $S3EC_VERSION into $S3EC_VENV ..." >&2
    "$S3EC_PY" -m pip install --quiet --disable-pip-version-check --no-input \
      "amazon-s3-encryption-client-python==$S3EC_VERSION" >&2 || return 1
  fi
  "$S3EC_PY" "$S3EC_DRIVER" version >/dev/null
}
if [ "$DO_S3EC" = 1 ]; then
  if ! install_s3ec; then
    S3EC_MISSING="pip install amazon-s3-encryption-client-python==$S3EC_VERSION into $S3EC_VENV failed"
  elif ! scripts/emulator.sh install >&2; then
    S3EC_MISSING="the KMS emulator (moto, scripts/emulator.sh install) did not install"
  fi
fi

rm -rf "$DIR"
mkdir -p "$DIR/s3/$BUCKET" "$DIR/home"   # a bucket in s3s-fs is a directory under its root
SERVER_PID=
MOTO_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

IN="$DIR/plain.bin"
if command -v openssl >/dev/null; then
  head -c $((SIZE_MIB * 1024 * 1024)) < <(openssl enc -aes-128-ctr -pass pass:sealstream -nosalt -pbkdf2 -in /dev/zero 2>/dev/null) > "$IN"
else
  head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$IN"
fi
BYTES=$(stat -c %s "$IN")
IN_SHA=$(sha256sum < "$IN")
# S3EC's default get holds about 4 × the object in memory (read whole, then copies for the
# tag split and the plaintext); with its object on tmpfs and the download, about 6 × the
# file is live then. Skip that get (and say so) when the machine does not have that much.
AVAIL_KIB=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
if [ "$DO_S3EC" = 1 ] && [ -z "$S3EC_MISSING" ] && [ "$AVAIL_KIB" -lt $((6 * BYTES / 1024 + 1048576)) ]; then
  S3EC_GET_MISSING="needs about 6 × ${SIZE_MIB} MiB of free memory (4 × in the process), $((AVAIL_KIB / 1024)) MiB available"
fi
# Pre-touch, right before every command (timed or not), as much memory as it will write:
# in this VM the first write to never-used guest pages is slow (~300 MB/s seen), and with
# virtio-balloon free page reporting freed guest memory goes back to the host within
# seconds, so a single pre-touch at the start does not last (see scripts/bench.sh). A put
# writes about 2 × the file on the server (its parts, then the assembled object), a get
# 1 × (the download), and S3EC's default get about 4 × more in its own memory.
FSTYPE=$(df --output=fstype "$DIR" | tail -1)
pretouch() { # BYTES
  [ "$FSTYPE" = tmpfs ] && [ "${1:-0}" -gt 0 ] || return 0
  head -c "$1" /dev/zero > "$DIR/warm"
  rm -f "$DIR/warm"
}
PUT_PT=$((2 * BYTES)); GET_PT=$BYTES; S3EC_GET_PT=$((5 * BYTES))

# s3s-fs on a free loopback port, with throwaway credentials (nothing here is a secret).
PORT=$(free_port)
AK=bench-access-key
SK=bench-secret-key-not-secret
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key "$AK" --secret-key "$SK" "$DIR/s3" > "$DIR/s3s.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DIR/s3s.log" >&2; exit 1; }
  sleep 0.1
done
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3 AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export SEALSTREAM_HOME="$DIR/home"   # the default local key, created on first use

# A private moto server (KMS for S3EC's keyring) on another free port, and one KMS key.
if [ "$DO_S3EC" = 1 ] && [ -z "$S3EC_MISSING" ]; then
  MOTO_PORT=$(free_port)
  "$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null > "$DIR/moto.log" 2>&1 &
  MOTO_PID=$!
  export S3EC_KMS_ENDPOINT=http://127.0.0.1:$MOTO_PORT PART_SIZE
  S3EC_KMS_KEY=""
  for _ in $(seq 60); do
    S3EC_KMS_KEY=$("$S3EC_PY" "$S3EC_DRIVER" create-key 2>"$DIR/err.txt") && break
    kill -0 "$MOTO_PID" 2>/dev/null || break
    sleep 0.5
  done
  export S3EC_KMS_KEY
  if [ -z "$S3EC_KMS_KEY" ]; then
    S3EC_MISSING="the private moto server did not answer CreateKey: $(grep -v '^\s*$' "$DIR/err.txt" | tail -1 | tr '|' '/' | cut -c1-300)"
    cat "$DIR/err.txt" "$DIR/moto.log" >&2
  else
    S3EC_VERSION_LINE=$("$S3EC_PY" "$S3EC_DRIVER" version)
    echo "S3EC: $S3EC_VERSION_LINE; KMS key $S3EC_KMS_KEY in moto at $S3EC_KMS_ENDPOINT" >&2
  fi
fi
XFER=(--part-size "$PART_SIZE" --concurrency "$CONCURRENCY")
read -r -a EXTRA_ARGS <<<"$EXTRA"

server_cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; } # clock ticks
TICK=$(getconf CLK_TCK)

# timed NAME PRETOUCH_BYTES CMD...: pre-touches, runs CMD under /usr/bin/time -v; appends
# "wall_s rss_kib client_cpu_s server_cpu_s load1" to $DIR/NAME.txt; on failure prints the
# errors and returns 1 (fatal for sealstream and s3_plain through set -e; S3EC's are caught)
timed() {
  local name=$1 pt=$2; shift 2
  local load s0 s1
  load=$(cut -d' ' -f1 /proc/loadavg)
  pretouch "$pt"
  s0=$(server_cpu)
  /usr/bin/time -v -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" "$DIR/time.txt" >&2; return 1; }
  s1=$(server_cpu)
  awk -v tick="$TICK" -v s0="$s0" -v s1="$s1" -v load="$load" '
    /Elapsed \(wall clock\)/ { n = split($NF, p, ":"); wall = (n == 3) ? p[1] * 3600 + p[2] * 60 + p[3] : p[1] * 60 + p[2] }
    /User time \(seconds\)/ { cpu += $NF }
    /System time \(seconds\)/ { cpu += $NF }
    /Maximum resident set size/ { rss = $NF }
    END { printf "%.2f %d %.2f %.2f %s\n", wall, rss, cpu, (s1 - s0) / tick, load }' "$DIR/time.txt" >> "$DIR/$name.txt"
  echo "  $name: $(tail -1 "$DIR/$name.txt")  (wall s, peak RSS KiB, client CPU s, server CPU s, load1)" >&2
}

check() {
  [ "$(sha256sum < "$1")" = "$IN_SHA" ] || { echo "ROUND TRIP MISMATCH: $1" >&2; exit 1; }
  rm -f "$1"
}

# s3ec RUN NAME PRETOUCH_BYTES WHAT CMD...: one S3EC step; a failure stops S3EC (reason in
# the table), not the run.
s3ec() {
  local run=$1 name=$2 pt=$3 what=$4; shift 4
  [ -z "$S3EC_MISSING" ] || return 0
  if ! $run "$name" "$pt" "$S3EC_PY" "$S3EC_DRIVER" "$@"; then
    S3EC_MISSING="$what failed: $(grep -v '^\s*$' "$DIR/err.txt" | tail -1 | tr '|' '/' | cut -c1-300)"
    echo "S3EC: $S3EC_MISSING" >&2
  fi
}

# One round: plain put, encrypted put, plain get, decrypting get; then S3EC's put and gets
# (after deleting the first two objects, so that S3EC's get has room); then delete them all.
round() {
  local r=$1 record=$2
  local run=timed
  [ "$record" = 1 ] || run=untimed
  $run put_plain "$PUT_PT" "$PLAIN" put "$IN" "s3://$BUCKET/$r/plain" "${XFER[@]}"
  $run put_enc "$PUT_PT" "$BIN" --quiet "${EXTRA_ARGS[@]}" "${XFER[@]}" encrypt "$IN" -o "s3://$BUCKET/$r/sealed"
  $run get_plain "$GET_PT" "$PLAIN" get "s3://$BUCKET/$r/plain" "$DIR/out.plain" "${XFER[@]}"
  check "$DIR/out.plain"
  $run get_dec "$GET_PT" "$BIN" --quiet "${EXTRA_ARGS[@]}" "${XFER[@]}" decrypt "s3://$BUCKET/$r/sealed" -o "$DIR/out.dec"
  check "$DIR/out.dec"
  rm -rf "${DIR:?}/s3/$BUCKET/$r"
  if [ "$DO_S3EC" = 1 ]; then
    s3ec "$run" put_s3ec "$PUT_PT" "upload_file" put "$IN" "$BUCKET" "$r/s3ec"
    if [ -z "$S3EC_GET_MISSING" ]; then
      s3ec "$run" get_s3ec "$S3EC_GET_PT" "get_object (default)" get "$BUCKET" "$r/s3ec" "$DIR/out.s3ec"
      [ -n "$S3EC_MISSING" ] || check "$DIR/out.s3ec"
    fi
    s3ec "$run" get_s3ec_delayed "$GET_PT" "get_object (delayed authentication)" get-delayed "$BUCKET" "$r/s3ec" "$DIR/out.s3ec"
    [ -n "$S3EC_MISSING" ] || check "$DIR/out.s3ec"
    rm -f "$DIR/out.s3ec"
    rm -rf "${DIR:?}/s3/$BUCKET/$r"
  fi
}
untimed() { pretouch "$2"; shift 2; "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; return 1; }; }

LOAD_START=$(uptime | sed 's/.*load average: //')
echo "s3s-fs $S3S_VERSION on 127.0.0.1:$PORT, ${SIZE_MIB} MiB, part $PART_SIZE, concurrency $CONCURRENCY, load $LOAD_START" >&2
if [ "$WARMUP" = 1 ]; then echo "warm-up round (untimed)" >&2; round warmup 0; fi
for i in $(seq "$RUNS"); do
  echo "run $i/$RUNS" >&2
  round "run$i" 1
done
LOAD_END=$(uptime | sed 's/.*load average: //')

# Does S3EC take a ranged get? Once, untimed, on a 1 MiB object.
S3EC_RANGE=""
if [ "$DO_S3EC" = 1 ] && [ -z "$S3EC_MISSING" ]; then
  head -c 1048576 "$IN" > "$DIR/small.bin"
  if "$S3EC_PY" "$S3EC_DRIVER" put "$DIR/small.bin" "$BUCKET" range/s3ec 2>"$DIR/err.txt"; then
    S3EC_RANGE=$("$S3EC_PY" "$S3EC_DRIVER" get-range "$BUCKET" range/s3ec bytes=0-99 2>&1 | tail -1)
  else
    S3EC_RANGE="(the 1 MiB put failed: $(tail -1 "$DIR/err.txt"))"
  fi
  rm -rf "$DIR/small.bin" "${DIR:?}/s3/$BUCKET/range"
fi

# field_median NAME FIELD: the median over runs of one field (1 wall, 2 rss, 3 cpu, 4 server cpu)
field_median() { awk -v f="$2" '{ print $f }' "$DIR/$1.txt" | median; }
mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { if (s <= 0) s = 0.01; printf "%.0f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
maxof() { awk -v f="$2" '$f > m { m = $f } END { print m + 0 }' "$DIR/$1.txt"; }
row() { # OPERATION TOOL VERSION NAME [PLAIN_NAME]
  local w rss rmax cpu srv m all
  w=$(field_median "$4" 1); rss=$(field_median "$4" 2); rmax=$(maxof "$4" 2); cpu=$(field_median "$4" 3); srv=$(field_median "$4" 4)
  m=$(mbps "$w")
  all=$(awk -v b="$BYTES" '{ printf "%s%.0f", sep, b / ($1 > 0 ? $1 : 0.01) / 1e6; sep = ", " }' "$DIR/$4.txt")
  local r="—"
  [ -n "${5:-}" ] && r="**$(ratio "$m" "$(mbps "$(field_median "$5" 1)")")**"
  echo "| $1 | $2 | $3 | **$m** ($all) | $w | $((rss / 1024)) MiB (max $((rmax / 1024))) | $cpu | $srv | $r |"
}

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r)"
echo "File: ${SIZE_MIB} MiB ($BYTES bytes) in $DIR ($(df -T "$DIR" | awk 'NR==2 {print $2}')); part size $PART_SIZE, concurrency $CONCURRENCY; median of $RUNS runs (warm-up: $WARMUP); $($BIN --version); s3s-fs $S3S_VERSION"
echo "Load average at start: $LOAD_START; at end: $LOAD_END"
echo
SS_VERSION=$($BIN --version)
echo "| operation | tool | version | MB/s median (each run) | wall s | peak RSS median (max) | client CPU s | server CPU s | encrypted / plain |"
echo "|---|---|---|---|---|---|---|---|---|"
row upload "s3_plain put" "(examples/s3_plain.rs)" put_plain
row upload "sealstream encrypt -o s3://" "$SS_VERSION" put_enc put_plain
if [ "$DO_S3EC" = 1 ]; then
  if [ -s "$DIR/put_s3ec.txt" ] && [ "$(wc -l < "$DIR/put_s3ec.txt")" = "$RUNS" ]; then
    row upload "S3EC upload_file (parts one at a time)" "$S3EC_VERSION_LINE" put_s3ec put_plain
  else
    echo "| upload | S3EC upload_file | $S3EC_VERSION | not measured: $S3EC_MISSING | | | | | |"
  fi
fi
row download "s3_plain get" "(examples/s3_plain.rs)" get_plain
row download "sealstream decrypt s3://" "$SS_VERSION" get_dec get_plain
if [ "$DO_S3EC" = 1 ]; then
  if [ -s "$DIR/get_s3ec.txt" ] && [ "$(wc -l < "$DIR/get_s3ec.txt")" = "$RUNS" ]; then
    row download "S3EC get_object, default (buffers the object)" "$S3EC_VERSION_LINE" get_s3ec get_plain
  else
    echo "| download | S3EC get_object, default | $S3EC_VERSION | not measured: ${S3EC_GET_MISSING:-$S3EC_MISSING} | | | | | |"
  fi
  if [ -s "$DIR/get_s3ec_delayed.txt" ] && [ "$(wc -l < "$DIR/get_s3ec_delayed.txt")" = "$RUNS" ]; then
    row download "S3EC get_object, enable_delayed_authentication (streams unauthenticated plaintext)" "$S3EC_VERSION_LINE" get_s3ec_delayed get_plain
  else
    echo "| download | S3EC get_object, delayed authentication | $S3EC_VERSION | not measured: $S3EC_MISSING | | | | | |"
  fi
  echo
  echo "S3EC: KMS keyring, key in a private moto server (one GenerateDataKey per put, one Decrypt per get); sealstream: its local key. S3EC ranged get (Range=bytes=0-99 on a 1 MiB object): ${S3EC_RANGE:-not tried}"
fi
