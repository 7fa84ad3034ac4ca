#!/usr/bin/env bash
# Measures the release binary on a generated file: encrypt/decrypt throughput and peak RSS,
# next to the machine's limits (plain copy, and openssl's AEAD speed on all cores).
#
# Usage: scripts/bench.sh [SIZE_MIB] [RUNS]     (defaults: 1024 MiB, 3 runs)
# Env:   BENCH_DIR (default /dev/shm/sealstream-bench, tmpfs so the disk is not measured)
#        SUITE (aes-256-gcm | chacha20-poly1305), CHUNK (default 64KiB), EXTRA (more flags)
# Prints a Markdown table on stdout; figures are medians over RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${1:-1024}
RUNS=${2:-3}
SUITE=${SUITE:-aes-256-gcm}
CHUNK=${CHUNK:-64KiB}
EXTRA=${EXTRA:-}
DIR=${BENCH_DIR:-/dev/shm/sealstream-bench}
BIN=target/release/sealstream

command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }
cargo build --release --quiet
mkdir -p "$DIR"
export SEALSTREAM_HOME="$DIR/home"
trap 'rm -rf "$DIR"' EXIT

IN="$DIR/plain.bin"
# Incompressible but cheap to make: AES-CTR keystream from openssl, or urandom.
if command -v openssl >/dev/null; then
  head -c $((SIZE_MIB * 1024 * 1024)) < <(openssl enc -aes-128-ctr -pass pass:sealstream -nosalt -pbkdf2 -in /dev/zero 2>/dev/null) > "$IN"
else
  head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$IN"
fi
BYTES=$(stat -c %s "$IN")
# Pre-touch memory for the outputs: in a VM, the first write to never-used guest pages is
# far slower than the copy itself (seen here: cp at ~300 MB/s instead of ~2.5 GB/s), and the
# first timed tool would pay for it.
if [ "$(df --output=fstype "$DIR" | tail -1)" = tmpfs ]; then
  for i in 1 2 3; do head -c "$BYTES" /dev/zero > "$DIR/warm$i"; done
  rm -f "$DIR"/warm?
fi
"$BIN" --quiet keygen -o "$DIR/k.key"

# run LABEL CMD...: prints "seconds maxrss_kib" (median run by time)
run() {
  local label=$1; shift
  local results=()
  "$@" >/dev/null 2>&1 || true   # untimed warm-up run
  rm -f "$DIR/out.tmp" "$DIR/plain.seal.tmp" "$DIR/back.tmp"
  for _ in $(seq "$RUNS"); do
    rm -f "$DIR/out.tmp" "$DIR/plain.seal.tmp" "$DIR/back.tmp"
    /usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; exit 1; }
    results+=("$(cat "$DIR/time.txt")")
    rm -f "$DIR/out.tmp" "$DIR/plain.seal.tmp" "$DIR/back.tmp"
  done
  printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { if (s <= 0) s = 0.001; printf "%.0f", b / s / 1e6 }'; }

CP=$(run cp cp "$IN" "$DIR/out.tmp")
ENC=$(run encrypt "$BIN" --quiet $EXTRA encrypt -k "$DIR/k.key" --suite "$SUITE" --chunk-size "$CHUNK" "$IN" -o "$DIR/plain.seal.tmp" --force)
"$BIN" --quiet $EXTRA encrypt -k "$DIR/k.key" --suite "$SUITE" --chunk-size "$CHUNK" "$IN" -o "$DIR/plain.seal" --force
DEC=$(run decrypt "$BIN" --quiet $EXTRA decrypt -k "$DIR/k.key" "$DIR/plain.seal" -o "$DIR/back.tmp" --force)
"$BIN" --quiet $EXTRA decrypt -k "$DIR/k.key" "$DIR/plain.seal" -o "$DIR/back.bin" --force
if [ "$(sha256sum < "$IN")" != "$(sha256sum < "$DIR/back.bin")" ]; then
  echo "ROUND TRIP MISMATCH" >&2; exit 1
fi
rm -f "$DIR/back.bin" "$DIR/plain.seal"

# AEAD limit on all cores, at the chunk size.
case "$CHUNK" in
  *KiB) CHUNK_BYTES=$(( ${CHUNK%KiB} * 1024 )) ;;
  *MiB) CHUNK_BYTES=$(( ${CHUNK%MiB} * 1048576 )) ;;
  *) CHUNK_BYTES=$CHUNK ;;
esac
case "$SUITE" in aes-256-gcm) EVP=aes-256-gcm ;; *) EVP=chacha20-poly1305 ;; esac
AEAD_MBPS=$(openssl speed -evp "$EVP" -multi "$(nproc)" -bytes "$CHUNK_BYTES" -seconds 2 2>/dev/null \
  | awk -v evp="$EVP" 'tolower($1) == evp || $1 == "evp" { v=$NF; sub(/k$/, "", v); print int(v * 1000 / 1e6) }' | tail -1)

read -r cp_s cp_kb <<<"$CP"; read -r enc_s enc_kb <<<"$ENC"; read -r dec_s dec_kb <<<"$DEC"
CP_MBPS=$(mbps "$cp_s"); ENC_MBPS=$(mbps "$enc_s"); DEC_MBPS=$(mbps "$dec_s")
LIMIT=$CP_MBPS; [ -n "$AEAD_MBPS" ] && [ "$AEAD_MBPS" -lt "$LIMIT" ] && LIMIT=$AEAD_MBPS
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -r)"
echo "File: ${SIZE_MIB} MiB in $DIR ($(df -T "$DIR" | awk 'NR==2 {print $2}')); suite $SUITE, chunk $CHUNK; median of $RUNS runs; $($BIN --version)"
echo
echo "| what | seconds | MB/s | peak RSS | ratio to limit |"
echo "|---|---|---|---|---|"
echo "| cp (copy limit) | $cp_s | $CP_MBPS | $((cp_kb / 1024)) MiB | $(ratio "$CP_MBPS" "$LIMIT") |"
echo "| openssl $EVP, $(nproc) cores (AEAD limit) | | ${AEAD_MBPS:-n/a} | | |"
echo "| sealstream encrypt | $enc_s | $ENC_MBPS | $((enc_kb / 1024)) MiB | $(ratio "$ENC_MBPS" "$LIMIT") |"
echo "| sealstream decrypt | $dec_s | $DEC_MBPS | $((dec_kb / 1024)) MiB | $(ratio "$DEC_MBPS" "$LIMIT") |"
