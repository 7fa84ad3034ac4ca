#!/usr/bin/env bash
# AEAD backend comparison: scripts/bench_backends.sh [SECONDS_PER_SAMPLE] [SAMPLES]
#
# Builds benches/backends (a separate crate: ring, aws-lc-rs and RustCrypto, both suites)
# twice, with the default target features (runtime CPU detection only) and with
# `-C target-cpu=native`, into .tools/backends-target (ignored), then runs each build on one
# core and prints Markdown tables of the median GiB/s per chunk size (16 KiB … 4 MiB),
# with the machine's description. Waits for a 1-minute load below LOAD_MAX (default 0.7,
# at most LOAD_WAIT s, default 900) before each run. Results go in docs/BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-0.3}
SAMPLES=${2:-7}
LOAD_MAX=${LOAD_MAX:-0.7}
LOAD_WAIT=${LOAD_WAIT:-900}
OUT=.tools/backends-target
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

wait_load() {
  local waited=0
  while awk -v m="$LOAD_MAX" '{ exit !($1 >= m) }' /proc/loadavg && [ "$waited" -lt "$LOAD_WAIT" ]; do
    sleep 20; waited=$((waited + 20))
  done
  cut -d' ' -f1 /proc/loadavg
}

echo "bench_backends: building (default features, then target-cpu=native)" >&2
cargo build --release --quiet --manifest-path benches/backends/Cargo.toml --target-dir "$OUT/default"
RUSTFLAGS="-C target-cpu=native" cargo build --release --quiet \
  --manifest-path benches/backends/Cargo.toml --target-dir "$OUT/native"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|avx2|avx512f|avx512vl|vaes|vpclmulqdq|sha_ni' | tr '\n' ' ')
echo "Machine: $cpu, $(nproc) cores ($flags), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r); $(rustc --version)."
echo "Command: scripts/bench_backends.sh $SECS $SAMPLES ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)). One core (taskset -c 0), in place, median GiB/s (GiB = 2^30 bytes) of $SAMPLES samples of ${SECS}s."
for build in default native; do
  load=$(wait_load)
  echo
  case $build in
    default) echo "**Default build** (what \`cargo build --release\` gives: CPU features detected at run time), load $load:" ;;
    native) echo "**\`RUSTFLAGS=\"-C target-cpu=native\"\`**, load $load:" ;;
  esac
  echo
  taskset -c 0 "$OUT/$build/release/sealstream-backends-bench" "$SECS" "$SAMPLES"
done
