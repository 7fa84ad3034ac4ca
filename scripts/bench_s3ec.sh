#!/usr/bin/env bash
# Reading an object written by the Amazon S3 Encryption Client (S3EC) for Python: memory and
# throughput of sealstream's authenticated-before-release reads and of `sealstream migrate`,
# against the client's own two reads, on one object of SIZE_MIB (issue 18).
#
# Per round (the object written first, untimed, by the REAL client: upload_file with
# PART_SIZE parts, V3 metadata, a KMS keyring), each a separate timed process:
#   ss_file      sealstream decrypt s3://… -o FILE --kms-key ARN  (one download into a
#                temporary file, renamed only after the GCM tag verified)
#   ss_stdout    sealstream decrypt s3://… --kms-key ARN > FILE   (two downloads: the first
#                verifies the tag keeping only a SHA-256 per window, the second releases
#                each window after its ciphertext hashed the same)
#   ec_default   S3EC get_object, default configuration (the body read whole, decrypted and
#                authenticated in memory, then returned)
#   ec_delayed   S3EC get_object, enable_delayed_authentication=True (plaintext released
#                before the tag is checked)
#   ss_migrate   sealstream migrate s3://… --kms-key ARN (one download, re-encrypted into
#                sealstream's object form for the same KMS key, uploaded with If-Match;
#                the S3EC object is replaced, so the next round writes it again)
# Every output is compared with the input's SHA-256; the migrated object is decrypted
# (untimed) and compared too.
#
# The S3 server is s3s-fs (as scripts/bench_s3.sh; data on tmpfs so the disk is not
# measured); KMS (for the client's keyring and sealstream's unwrap) is a private moto server
# from scripts/emulator.sh's venv on a free port; the shared emulator is not touched.
# Every timed command holds the benchmark lock (flock BENCH_LOCK, default
# /work/wt/bench.lock when /work/wt exists), so two engineers never measure at once.
#
# Usage: scripts/bench_s3ec.sh [SIZE_MIB] [RUNS]     (defaults: 2048 MiB, 3 runs)
# Env:   PART_SIZE (8MiB), CONCURRENCY (4), WARMUP (1 = one untimed round first; 0 = none),
#        BENCH_DIR (/dev/shm/sealstream-s3ec-bench), BENCH_LOCK, CARGO_TARGET_DIR (where the
#        release binary is built; default target), EC_DEFAULT (1 = measure the client's
#        default get, which needs about 5 × SIZE of free memory; 0 = skip it), BUILD (0 =
#        use the release binary as it is, no cargo build)
# Prints a Markdown table on stdout (medians over RUNS); progress and loads on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${1:-2048}
RUNS=${2:-3}
PART_SIZE=${PART_SIZE:-8MiB}
CONCURRENCY=${CONCURRENCY:-4}
WARMUP=${WARMUP:-1}
DIR=${BENCH_DIR:-/dev/shm/sealstream-s3ec-bench}
LOCK=${BENCH_LOCK:-}
if [ -z "$LOCK" ] && [ -d /work/wt ]; then LOCK=/work/wt/bench.lock; fi
EC_DEFAULT=${EC_DEFAULT:-1}
S3S_VERSION=0.14.1 # as scripts/bench_s3.sh
S3S=.tools/s3s-fs/bin/s3s-fs
S3EC_VERSION=4.0.0 # amazon-s3-encryption-client-python, as scripts/bench_s3.sh
S3EC_PY=.tools/s3ec-venv/bin/python
DRIVER=scripts/s3ec_bench.py
MOTO_SERVER=.tools/moto-venv/bin/moto_server
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/sealstream
BUCKET=bench
KEY=s3ec/object

command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }
if [ ! -x "$S3S" ] || [ "$("$S3S" --version 2>/dev/null)" != "s3s-fs $S3S_VERSION" ]; then
  echo "installing s3s-fs $S3S_VERSION into .tools/s3s-fs ..." >&2
  cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --root .tools/s3s-fs --quiet
fi
if [ ! -x "$S3EC_PY" ] || [ "$("$S3EC_PY" -c 'import importlib.metadata as m; print(m.version("amazon-s3-encryption-client-python"))' 2>/dev/null)" != "$S3EC_VERSION" ]; then
  [ -x "$S3EC_PY" ] || python3 -m venv .tools/s3ec-venv
  "$S3EC_PY" -m pip install --quiet --disable-pip-version-check --no-input "amazon-s3-encryption-client-python==$S3EC_VERSION" >&2
fi
[ -x "$MOTO_SERVER" ] || scripts/emulator.sh install >&2
[ "${BUILD:-1}" = 0 ] || cargo build --release --quiet --bin sealstream

rm -rf "$DIR"
mkdir -p "$DIR/s3/$BUCKET" "$DIR/home"
SERVER_PID=
MOTO_PID=
cleanup() {
  for p in $SERVER_PID $MOTO_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

IN="$DIR/plain.bin"
head -c $((SIZE_MIB * 1024 * 1024)) < <(openssl enc -aes-128-ctr -pass pass:sealstream -nosalt -pbkdf2 -in /dev/zero 2>/dev/null) > "$IN"
BYTES=$(stat -c %s "$IN")
IN_SHA=$(sha256sum < "$IN")
AVAIL_KIB=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
EC_DEFAULT_MISSING=""
if [ "$EC_DEFAULT" != 1 ]; then
  EC_DEFAULT_MISSING="skipped (EC_DEFAULT=0)"
elif [ "$AVAIL_KIB" -lt $((6 * BYTES / 1024 + 1048576)) ]; then
  EC_DEFAULT_MISSING="needs about 6 × ${SIZE_MIB} MiB free, $((AVAIL_KIB / 1024)) MiB available"
fi
# In this VM the first write to never-used guest pages is slow and freed memory goes back to
# the host within seconds (scripts/bench.sh): right before every command, touch as much
# tmpfs memory as it will write (1 × for an output file, 2 × for an upload, 5 × for the
# client's default get).
pretouch() {
  [ "${1:-0}" -gt 0 ] || return 0
  head -c "$1" /dev/zero > "$DIR/warm"
  rm -f "$DIR/warm"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # PORT PID LOG
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}
PORT=$(free_port)
AK=bench-access-key
SK=bench-secret-key-not-secret
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key "$AK" --secret-key "$SK" "$DIR/s3" > "$DIR/s3s.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT" "$SERVER_PID" "$DIR/s3s.log"
MOTO_PORT=$(free_port)
"$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null > "$DIR/moto.log" 2>&1 &
MOTO_PID=$!
wait_port "$MOTO_PORT" "$MOTO_PID" "$DIR/moto.log"

unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$MOTO_PORT
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export SEALSTREAM_HOME="$DIR/home" S3EC_KMS_ENDPOINT=$AWS_ENDPOINT_URL_KMS PART_SIZE
S3EC_KMS_KEY=$("$S3EC_PY" "$DRIVER" create-key)
export S3EC_KMS_KEY
EC_LINE=$("$S3EC_PY" "$DRIVER" version)
echo "S3EC: $EC_LINE; KMS key $S3EC_KMS_KEY" >&2
XFER=(--part-size "$PART_SIZE" --concurrency "$CONCURRENCY")
URL="s3://$BUCKET/$KEY"
TICK=$(getconf CLK_TCK)
server_cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# timed NAME PRETOUCH OUT CMD...: under the lock, pre-touch, run CMD (stdout to OUT) under
# GNU time; append "wall_s rss_kib cpu_s server_cpu_s load1" to $DIR/NAME.txt.
timed() {
  local name=$1 pt=$2 out=$3; shift 3
  local load s0 s1
  if [ -n "$LOCK" ]; then exec 9>>"$LOCK"; flock 9; fi
  load=$(cut -d' ' -f1 /proc/loadavg)
  pretouch "$pt"
  s0=$(server_cpu)
  if ! /usr/bin/time -v -o "$DIR/time.txt" "$@" >"$out" 2>"$DIR/err.txt"; then
    [ -z "$LOCK" ] || flock -u 9
    cat "$DIR/err.txt" "$DIR/time.txt" >&2; exit 1
  fi
  s1=$(server_cpu)
  [ -z "$LOCK" ] || flock -u 9
  awk -v tick="$TICK" -v s0="$s0" -v s1="$s1" -v load="$load" '
    /Elapsed \(wall clock\)/ { n = split($NF, p, ":"); wall = (n == 3) ? p[1] * 3600 + p[2] * 60 + p[3] : p[1] * 60 + p[2] }
    /User time \(seconds\)/ { cpu += $NF }
    /System time \(seconds\)/ { cpu += $NF }
    /Maximum resident set size/ { rss = $NF }
    END { printf "%.2f %d %.2f %.2f %s\n", wall, rss, cpu, (s1 - s0) / tick, load }' "$DIR/time.txt" >> "$DIR/$name.txt"
  echo "  $name: $(tail -1 "$DIR/$name.txt")  (wall s, peak RSS KiB, CPU s, server CPU s, load1)" >&2
}
untimed() { local out=$3; pretouch "$2"; shift 3; "$@" >"$out" 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; exit 1; }; }
check() { [ "$(sha256sum < "$1")" = "$IN_SHA" ] || { echo "MISMATCH: $1" >&2; exit 1; }; rm -f "$1"; }
round() {
  local record=$1 run=timed
  [ "$record" = 1 ] || run=untimed
  untimed put $((2 * BYTES)) "$DIR/put.out" "$S3EC_PY" "$DRIVER" put "$IN" "$BUCKET" "$KEY"
  $run ss_file "$BYTES" "$DIR/null.out" "$BIN" --quiet "${XFER[@]}" decrypt "$URL" -o "$DIR/out.file" --kms-key "$S3EC_KMS_KEY"
  check "$DIR/out.file"
  $run ss_stdout "$BYTES" "$DIR/out.stdout" "$BIN" --quiet "${XFER[@]}" decrypt "$URL" --kms-key "$S3EC_KMS_KEY"
  check "$DIR/out.stdout"
  if [ -z "$EC_DEFAULT_MISSING" ]; then
    $run ec_default $((5 * BYTES)) "$DIR/null.out" "$S3EC_PY" "$DRIVER" get "$BUCKET" "$KEY" "$DIR/out.ec"
    check "$DIR/out.ec"
  fi
  $run ec_delayed "$BYTES" "$DIR/null.out" "$S3EC_PY" "$DRIVER" get-delayed "$BUCKET" "$KEY" "$DIR/out.ec"
  check "$DIR/out.ec"
  $run ss_migrate $((2 * BYTES)) "$DIR/migrate.json" "$BIN" --quiet "${XFER[@]}" migrate "$URL" --kms-key "$S3EC_KMS_KEY"
  grep -q '"status":"migrated"' "$DIR/migrate.json" || { cat "$DIR/migrate.json" >&2; exit 1; }
  untimed check_migrated "$BYTES" "$DIR/null.out" "$BIN" --quiet "${XFER[@]}" decrypt "$URL" -o "$DIR/out.mig" --kms-key "$S3EC_KMS_KEY"
  check "$DIR/out.mig"
  rm -f "$DIR/null.out"
}

LOAD_START=$(uptime | sed 's/.*load average: //')
echo "s3s-fs $S3S_VERSION on :$PORT, moto KMS on :$MOTO_PORT, ${SIZE_MIB} MiB, part $PART_SIZE, concurrency $CONCURRENCY, load $LOAD_START" >&2
if [ "$WARMUP" = 1 ]; then echo "warm-up round (untimed)" >&2; round 0; fi
for i in $(seq "$RUNS"); do echo "run $i/$RUNS" >&2; round 1; done
LOAD_END=$(uptime | sed 's/.*load average: //')

median() { awk -v f="$2" '{ print $f }' "$DIR/$1.txt" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { awk -v f="$2" '$f > m { m = $f } END { print m + 0 }' "$DIR/$1.txt"; }
row() { # NAME WHAT AUTH DOWNLOADS
  local w rss rmax cpu srv all
  w=$(median "$1" 1); rss=$(median "$1" 2); rmax=$(maxof "$1" 2); cpu=$(median "$1" 3); srv=$(median "$1" 4)
  all=$(awk -v b="$BYTES" '{ printf "%s%.0f", sep, b / ($1 > 0 ? $1 : 0.01) / 1e6; sep = ", " }' "$DIR/$1.txt")
  echo "| $2 | $3 | $4 | **$(awk -v b="$BYTES" -v s="$w" 'BEGIN { printf "%.0f", b / s / 1e6 }')** ($all) | $w | **$((rss / 1024)) MiB** (max $((rmax / 1024))) | $(awk -v r="$rss" -v b="$BYTES" 'BEGIN { printf "%.2f", r * 1024 / b }') | $cpu | $srv |"
}
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src scripts || echo "+dirty")
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores (shared with other engineers' builds), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r)"
echo "Object: ${SIZE_MIB} MiB ($BYTES bytes) written by $EC_LINE (upload_file, $PART_SIZE parts, V3 metadata, KMS keyring); s3s-fs $S3S_VERSION on $(df --output=fstype "$DIR" | tail -1), KMS in moto; sealstream $($BIN --version | awk '{print $2}') at $COMMIT, part size $PART_SIZE, concurrency $CONCURRENCY; median of $RUNS runs (warm-up: $WARMUP)"
echo "Command: \`scripts/bench_s3ec.sh $SIZE_MIB $RUNS\`; load average at start: $LOAD_START; at end: $LOAD_END"
echo
echo "| read | plaintext released | downloads | MB/s median (each run) | wall s | peak RSS median (max) | RSS / object | CPU s | server CPU s |"
echo "|---|---|---|---|---|---|---|---|---|"
row ss_file "sealstream decrypt s3://… -o FILE" "after the tag verified (temporary file renamed)" 1
row ss_stdout "sealstream decrypt s3://… > FILE (stdout)" "per window, after a full verifying pass" 2
if [ -z "$EC_DEFAULT_MISSING" ]; then
  row ec_default "S3EC get_object, default" "after the tag verified (all in memory)" 1
else
  echo "| S3EC get_object, default | | | not measured: $EC_DEFAULT_MISSING | | | | | |"
fi
row ec_delayed "S3EC get_object, enable_delayed_authentication" "before the tag is checked" 1
row ss_migrate "sealstream migrate s3://… (re-encrypt + upload)" "never (the upload completes after the tag verified)" 1
