#!/usr/bin/env bash
# S3 throughput: encrypted upload (`sealstream encrypt FILE -o s3://…`) against a plain
# multipart upload of the same file (`examples/s3_plain.rs put`), and download + decrypt
# (`sealstream decrypt s3://… -o OUT`) against a plain parallel ranged download
# (`s3_plain get`): same SDK, client configuration, part size and concurrency, against the
# same local S3 server (s3s-fs, data on tmpfs so the disk is not measured).
#
# Usage: scripts/bench_s3.sh [SIZE_MIB] [RUNS]     (defaults: 2048 MiB, 3 runs)
# Env:   PART_SIZE (default 8MiB), CONCURRENCY (default 4), WARMUP (1 = one untimed round
#        first, the default; 0 = none), BENCH_DIR (default /dev/shm/sealstream-s3-bench),
#        EXTRA (more sealstream flags, e.g. "--threads 1")
# Prints a Markdown table on stdout (medians over RUNS); progress and loads on stderr.
# Installs s3s-fs (pinned) into .tools/s3s-fs if missing; needs GNU time and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

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

rm -rf "$DIR"
mkdir -p "$DIR/s3/$BUCKET" "$DIR/home"   # a bucket in s3s-fs is a directory under its root
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
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
# Pre-touch the memory that the server's parts and objects and the downloads will use: in
# this VM the first write to never-used guest pages runs at ~300 MB/s (docs/BENCHMARKS.md),
# and whichever tool ran first would pay for it. At most 5 copies live at once (parts +
# assembled object + the other tool's object + a download), so touch 5 × the file.
if [ "$(df --output=fstype "$DIR" | tail -1)" = tmpfs ]; then
  for i in 1 2 3 4 5; do head -c "$BYTES" /dev/zero > "$DIR/warm$i"; done
  rm -f "$DIR"/warm?
fi

# s3s-fs on a free loopback port, with throwaway credentials (nothing here is a secret).
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
XFER=(--part-size "$PART_SIZE" --concurrency "$CONCURRENCY")
read -r -a EXTRA_ARGS <<<"$EXTRA"

server_cpu() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; } # clock ticks
TICK=$(getconf CLK_TCK)

# timed NAME CMD...: runs CMD under /usr/bin/time -v; appends
# "wall_s rss_kib client_cpu_s server_cpu_s load1" to $DIR/NAME.txt
timed() {
  local name=$1; shift
  local load s0 s1
  load=$(cut -d' ' -f1 /proc/loadavg)
  s0=$(server_cpu)
  /usr/bin/time -v -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" "$DIR/time.txt" >&2; exit 1; }
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

# One round: plain put, encrypted put, plain get, decrypting get; then delete the objects.
round() {
  local r=$1 record=$2
  local run=timed
  [ "$record" = 1 ] || run=untimed
  $run put_plain "$PLAIN" put "$IN" "s3://$BUCKET/$r/plain" "${XFER[@]}"
  $run put_enc "$BIN" --quiet "${EXTRA_ARGS[@]}" "${XFER[@]}" encrypt "$IN" -o "s3://$BUCKET/$r/sealed"
  $run get_plain "$PLAIN" get "s3://$BUCKET/$r/plain" "$DIR/out.plain" "${XFER[@]}"
  check "$DIR/out.plain"
  $run get_dec "$BIN" --quiet "${EXTRA_ARGS[@]}" "${XFER[@]}" decrypt "s3://$BUCKET/$r/sealed" -o "$DIR/out.dec"
  check "$DIR/out.dec"
  rm -rf "${DIR:?}/s3/$BUCKET/$r"
}
untimed() { shift; "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; exit 1; }; }

LOAD_START=$(uptime | sed 's/.*load average: //')
echo "s3s-fs $S3S_VERSION on 127.0.0.1:$PORT, ${SIZE_MIB} MiB, part $PART_SIZE, concurrency $CONCURRENCY, load $LOAD_START" >&2
if [ "$WARMUP" = 1 ]; then echo "warm-up round (untimed)" >&2; round warmup 0; fi
for i in $(seq "$RUNS"); do
  echo "run $i/$RUNS" >&2
  round "run$i" 1
done
LOAD_END=$(uptime | sed 's/.*load average: //')

# median NAME FIELD: the median over runs of one field (1 wall, 2 rss, 3 cpu, 4 server cpu)
median() { awk -v f="$2" '{ print $f }' "$DIR/$1.txt" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { if (s <= 0) s = 0.01; printf "%.0f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { # OPERATION TOOL NAME [PLAIN_NAME]
  local w rss cpu srv m all
  w=$(median "$3" 1); rss=$(median "$3" 2); cpu=$(median "$3" 3); srv=$(median "$3" 4)
  m=$(mbps "$w")
  all=$(awk -v b="$BYTES" '{ printf "%s%.0f", sep, b / ($1 > 0 ? $1 : 0.01) / 1e6; sep = ", " }' "$DIR/$3.txt")
  local r="—"
  [ -n "${4:-}" ] && r="**$(ratio "$m" "$(mbps "$(median "$4" 1)")")**"
  echo "| $1 | $2 | **$m** ($all) | $w | $((rss / 1024)) MiB | $cpu | $srv | $r |"
}

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r)"
echo "File: ${SIZE_MIB} MiB ($BYTES bytes) in $DIR ($(df -T "$DIR" | awk 'NR==2 {print $2}')); part size $PART_SIZE, concurrency $CONCURRENCY; median of $RUNS runs (warm-up: $WARMUP); $($BIN --version); s3s-fs $S3S_VERSION"
echo "Load average at start: $LOAD_START; at end: $LOAD_END"
echo
echo "| operation | tool | MB/s median (each run) | wall s | peak RSS | client CPU s | server CPU s | encrypted / plain |"
echo "|---|---|---|---|---|---|---|---|"
row upload "s3_plain put" put_plain
row upload "sealstream encrypt -o s3://" put_enc put_plain
row download "s3_plain get" get_plain
row download "sealstream decrypt s3://" get_dec get_plain
