#!/usr/bin/env bash
# File-encryption benchmark of the release binary, side by side with its peers and with the
# machine's limits, all measured in the same run on tmpfs (so the disk is not measured).
#
# Usage: scripts/bench.sh [SIZE_MIB] [RUNS]     (defaults: 1024 MiB, 3 runs; medians)
#
# What it does, in order (each part can be switched off, see Env):
#   1. installs the peers into ignored paths under .tools/ (pinned versions below):
#      age (Go; Debian's package, unpacked with dpkg -x, no system install), rage
#      (cargo install), and in .tools/venv from PyPI: pyrage, aws-encryption-sdk-cli, tink.
#      The AWS Encryption SDK CLI needs a KMS key: a private moto server (from
#      scripts/emulator.sh's venv) is started on a free port for this run only, and stopped.
#   2. generates an incompressible file on tmpfs and measures the machine's limits: plain
#      `cp` and `cat >` of the file (both use copy_file_range on tmpfs: one in-kernel copy),
#      `dd bs=1M` (read + write through user space, for reference), and
#      `openssl speed -evp SUITE -multi $(nproc) -bytes CHUNK` for both suites.
#   3. for each tool (sealstream AES-256-GCM and ChaCha20-Poly1305, age, rage, pyrage, the
#      AWS Encryption SDK CLI, Tink streaming AEAD): RUNS × (encrypt, decrypt) timed, peak
#      RSS from `/usr/bin/time -v`, and the SHA-256 of every decrypted file checked.
#   4. sealstream `--threads 1` vs all cores; peak RSS at 1 GiB and 8 GiB; a chunk-size
#      sweep (16 KiB … 4 MiB) for both suites.
#   5. prints the report (Markdown) and writes it into docs/BENCHMARKS.md between the
#      markers "<!-- BEGIN scripts/bench.sh -->" and "<!-- END scripts/bench.sh -->"
#      (the rest of the document is left alone). A copy goes to bench-data/ (ignored).
#
# The machine may be shared: before every timed command the script waits until the CPUs
# were less than BUSY_MAX % busy over 3 s (at most LOAD_WAIT seconds; then it measures
# anyway) and records that figure ("busy %") next to every result.
#
# Env: BENCH_DIR (default /dev/shm/sealstream-bench)   CHUNK (default 64KiB)
#      EXTRA (more sealstream flags)       PEERS=0 (sealstream and limits only)
#      THREADS=0  RSS=0  SWEEP=0 (skip those parts)     RSS_SIZES (default "1024 8192", MiB)
#      SWEEP_MIB (default min(SIZE_MIB, 1024))          SWEEP_RUNS (default RUNS)
#      BUSY_MAX (default 10, %)  LOAD_WAIT (default 900)  HOLD_MEMORY=1 (see below, root)  WRITE_DOC=0 (do not touch the doc)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# free_port, median
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# The exact command, with the settings given in the environment.
CMDLINE="scripts/bench.sh $*"
for v in HOLD_MEMORY LOAD_WAIT BUSY_MAX SWEEP_RUNS SWEEP_MIB RSS_SIZES SWEEP RSS THREADS PEERS EXTRA CHUNK BENCH_DIR; do
  if [ -n "${!v+x}" ]; then CMDLINE="$v=\"${!v}\" $CMDLINE"; fi
done

SIZE_MIB=${1:-1024}
RUNS=${2:-3}
CHUNK=${CHUNK:-64KiB}
EXTRA=${EXTRA:-}
DIR=${BENCH_DIR:-/dev/shm/sealstream-bench}
PEERS=${PEERS:-1}
DO_THREADS=${THREADS:-1}
DO_RSS=${RSS:-1}
DO_SWEEP=${SWEEP:-1}
RSS_SIZES=${RSS_SIZES:-"1024 8192"}
SWEEP_MIB=${SWEEP_MIB:-$((SIZE_MIB < 1024 ? SIZE_MIB : 1024))}
SWEEP_RUNS=${SWEEP_RUNS:-$RUNS}
SWEEP_CHUNKS="16KiB 64KiB 256KiB 1MiB 4MiB"
BUSY_MAX=${BUSY_MAX:-10}
LOAD_WAIT=${LOAD_WAIT:-900}
WRITE_DOC=${WRITE_DOC:-1}
DOC=docs/BENCHMARKS.md
SUITES="aes-256-gcm chacha20-poly1305"

# Pinned peers.
RAGE_VERSION=0.12.1
AGE_DEB_VERSION=1.1.1-1+b3        # Debian bookworm's Go age; any version if this one is gone
PYRAGE_VERSION=1.4.0
ESDK_CLI_VERSION=4.3.0
TINK_VERSION=1.16.1

TOOLS=$ROOT/.tools
BIN=$ROOT/target/release/sealstream
VENV=$TOOLS/venv

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || die "needs GNU time (/usr/bin/time): apt-get install time"
command -v openssl >/dev/null || die "needs openssl (data generation and the AEAD limit)"

# ---------------------------------------------------------------------------------------
# 1. Build and install.
say "building the release binary"
cargo build --release --quiet
mkdir -p "$TOOLS"

declare -A MISSING=()   # peer -> why it is not measured

install_age() {
  local d=$TOOLS/age
  [ -x "$d/root/usr/bin/age" ] && return 0
  mkdir -p "$d"
  ( cd "$d" && rm -f age_*.deb \
      && { apt-get download "age=$AGE_DEB_VERSION" >/dev/null 2>&1 \
           || apt-get download age >/dev/null 2>&1 \
           || { apt-get update -qq >/dev/null 2>&1 && apt-get download age >/dev/null 2>&1; }; } \
      && dpkg -x age_*.deb root ) || return 1
  [ -x "$d/root/usr/bin/age" ]
}

install_rage() {
  local r=$TOOLS/rage/bin/rage
  if [ -x "$r" ] && [ "$("$r" --version 2>/dev/null)" = "rage $RAGE_VERSION" ]; then return 0; fi
  say "installing rage $RAGE_VERSION (cargo install, a few minutes)"
  CARGO_TARGET_DIR=$TOOLS/rage-build cargo install rage --locked --version "$RAGE_VERSION" \
    --root "$TOOLS/rage" --quiet --force >&2 || return 1
  rm -rf "$TOOLS/rage-build"
}

install_venv() {
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" || return 1; fi
  "$VENV/bin/python" - "$PYRAGE_VERSION" "$ESDK_CLI_VERSION" "$TINK_VERSION" >/dev/null 2>&1 <<'PY' && return 0
import sys, importlib.metadata as md
want = dict(zip(["pyrage", "aws-encryption-sdk-cli", "tink"], sys.argv[1:]))
sys.exit(any(md.version(k) != v for k, v in want.items()))
PY
  say "installing pyrage, aws-encryption-sdk-cli, tink into .tools/venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyrage==$PYRAGE_VERSION" \
    "aws-encryption-sdk-cli==$ESDK_CLI_VERSION" "tink==$TINK_VERSION" boto3 >&2
}

if [ "$PEERS" = 1 ]; then
  install_age || MISSING[age]="apt-get download age failed (Debian's package, needs apt lists)"
  install_rage || MISSING[rage]="cargo install rage --version $RAGE_VERSION failed"
  if install_venv; then
    "$VENV/bin/python" -c 'import pyrage' 2>/dev/null || MISSING[pyrage]="pip install pyrage==$PYRAGE_VERSION failed"
    [ -x "$VENV/bin/aws-encryption-cli" ] || MISSING[esdk]="pip install aws-encryption-sdk-cli==$ESDK_CLI_VERSION failed"
    "$VENV/bin/python" -c 'import tink.streaming_aead' 2>/dev/null || MISSING[tink]="pip install tink==$TINK_VERSION failed"
  else
    MISSING[pyrage]="venv/pip install failed"; MISSING[esdk]="venv/pip install failed"; MISSING[tink]="venv/pip install failed"
  fi
  if [ -z "${MISSING[esdk]:-}" ] && ! scripts/emulator.sh install >&2; then
    MISSING[esdk]="the KMS emulator (moto, scripts/emulator.sh install) did not install"
  fi
fi

# ---------------------------------------------------------------------------------------
# 2. Data, limits.
BYTES=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
FSTYPE=$(df --output=fstype "$DIR" | tail -1)
MOTO_PID=""
# HOLD_MEMORY=1 (root only): stop the guest's free page reporting for the run, so memory the
# guest has used stays backed by the host (see pretouch below), and restore it on exit.
PR_PARAM=/sys/module/page_reporting/parameters/page_reporting_order
PR_SAVED=""
HOLD_NOTE=""
if [ "${HOLD_MEMORY:-0}" = 1 ]; then
  [ -w "$PR_PARAM" ] || die "HOLD_MEMORY=1 needs a writable $PR_PARAM (root, a kernel with free page reporting)"
  PR_SAVED=$(cat "$PR_PARAM")
  echo 11 > "$PR_PARAM"   # larger than any free block: nothing is reported
  HOLD_NOTE=" Free page reporting was off for the run (HOLD_MEMORY=1: page_reporting_order $PR_SAVED → 11, restored after), so memory once touched stayed backed by the host."
fi
cleanup() {
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "$PR_SAVED" ]; then echo "$PR_SAVED" > "$PR_PARAM" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
export SEALSTREAM_HOME="$DIR/home"

avail_kib() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
fs_avail_kib() { df --output=avail -k "$DIR" | tail -1; }
need_kib=$(( 3 * BYTES / 1024 + 512 * 1024 ))   # input + ciphertext + decrypted copy + slack
if [ "$(fs_avail_kib)" -lt "$need_kib" ] || { [ "$FSTYPE" = tmpfs ] && [ "$(avail_kib)" -lt "$need_kib" ]; }; then
  die "$SIZE_MIB MiB needs about $((need_kib / 1024)) MiB free in $DIR (input, ciphertext and output at once); have $(( $(fs_avail_kib) / 1024 )) MiB on the fs, $(( $(avail_kib) / 1024 )) MiB available memory. Use a smaller SIZE_MIB."
fi

# Deterministic incompressible data: AES-CTR keystream of zeros under a fixed password.
gen() { head -c "$1" < <(openssl enc -aes-128-ctr -pass pass:sealstream -nosalt -pbkdf2 -in /dev/zero 2>/dev/null); }

# In this VM (Firecracker, virtio-balloon free page reporting on) freed guest memory is
# handed back to the host within seconds (reported_kib in /sys/module/page_reporting/parameters
# grows by GiBs), and the next write to it faults in fresh host pages: seen here, cp of a
# 4 GiB file at 2.8–3.0 GB/s into recently freed memory but 0.5–1.3 GB/s into memory freed
# a while ago or never used. So right before every timed command (after the load wait) the
# script writes and deletes PT_BYTES of zeros, as much as the command will write: every tool
# then writes into memory the guest has just had backed, and the copy limit is measured
# the same way. That alone still left outliers (a 4 GiB cp at 860 MB/s, a decrypt at 477
# MB/s); with HOLD_MEMORY=1 the reporting is off altogether. Measured here, 2 GiB, three
# rounds each: cp 330–530 MB/s with reporting on and no pre-touch, 1300–2845 with it off.
PT_BYTES=0
pretouch() { # BYTES
  [ "$FSTYPE" = tmpfs ] && [ "${1:-0}" -gt 0 ] || return 0
  head -c "$1" /dev/zero > "$DIR/warm"
  rm -f "$DIR/warm"
}

# Share (%) of all CPUs that anything used during the next 3 seconds (from /proc/stat).
busy_pct() {
  local a b ta=0 tb=0 i
  read -ra a < /proc/stat; sleep 3; read -ra b < /proc/stat
  for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
  local tot=$((tb - ta)) idle=$(((b[4] + b[5]) - (a[4] + a[5])))
  [ "$tot" -gt 0 ] || tot=1
  echo $((100 - 100 * idle / tot))
}
LOAD_TIMEOUTS=0
# Waits until the CPUs were less than BUSY_MAX % busy over 3 s; sets CUR_LOAD to that %.
# (The 1-minute load average is not used: it lags, and stays high for a minute after each
# of this script's own timed commands although the CPUs are idle by then.)
wait_load() {
  local waited=0
  while CUR_LOAD=$(busy_pct); [ "$CUR_LOAD" -ge "$BUSY_MAX" ]; do
    if [ "$waited" -ge "$LOAD_WAIT" ]; then
      LOAD_TIMEOUTS=$((LOAD_TIMEOUTS + 1)); say "CPUs still $CUR_LOAD % busy after ${waited}s: measuring anyway"; break
    fi
    [ "$waited" = 0 ] && say "waiting for the CPUs ($CUR_LOAD % busy) to be < $BUSY_MAX % busy"
    sleep 7; waited=$((waited + 10))
  done
}

# timed CMD...: waits for a quiet machine, pre-touches PT_BYTES, runs CMD (which runs its program under "${T[@]}",
# i.e. /usr/bin/time -v); sets T_SECS (wall seconds), T_RSS (peak RSS, KiB) and T_LOAD
# (1-minute load just before). Fails if CMD does.
T=(/usr/bin/time -v -o "$DIR/time.txt")
run() { "${T[@]}" "$@"; }
timed() {
  wait_load
  T_LOAD=$CUR_LOAD
  pretouch "$PT_BYTES"
  local t0 t1
  t0=$(date +%s%N)
  if ! "$@" >/dev/null 2>"$DIR/err.txt"; then
    say "FAILED: $*"; sed 's/^/    /' "$DIR/err.txt" | tail -5 >&2; return 1
  fi
  t1=$(date +%s%N)
  T_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  T_RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time.txt")
}

# Statistics over space-separated lists (median: scripts/lib.sh).
maxof() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { if (a == b) print a; else print a "–" b }'; }
mbps() { awk -v b="${2:-$BYTES}" -v s="$1" 'BEGIN { if (s <= 0) s = 0.001; printf "%.0f", b / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
to_bytes() {
  case "$1" in
    *KiB) echo $(( ${1%KiB} * 1024 )) ;;
    *MiB) echo $(( ${1%MiB} * 1048576 )) ;;
    *) echo "$1" ;;
  esac
}

say "generating $SIZE_MIB MiB in $DIR ($FSTYPE)"
IN=$DIR/plain.bin
gen "$BYTES" > "$IN"
IN_SHA=$(sha256sum < "$IN" | cut -d' ' -f1)
# Measure a private copy: other work on this tree may rebuild target/release meanwhile.
cp "$BIN" "$DIR/sealstream"; BIN=$DIR/sealstream
"$BIN" --quiet keygen -o "$DIR/k.key"

# AEAD limit: openssl speed on all cores (and on one, for reference), MB/s.
openssl_mbps() { # EVP BYTES [MULTI]
  local multi=()
  [ -n "${3:-}" ] && multi=(-multi "$3")
  openssl speed -evp "$1" "${multi[@]}" -bytes "$2" -seconds 2 2>/dev/null \
    | awk -v evp="$1" 'tolower($1) == evp { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }'
}
declare -A AEAD AEAD1 AEAD_LOAD
CHUNK_BYTES=$(to_bytes "$CHUNK")
for s in $SUITES; do
  wait_load; AEAD_LOAD[$s]=$CUR_LOAD
  AEAD[$s]=$(openssl_mbps "$s" "$CHUNK_BYTES" "$(nproc)")
  AEAD1[$s]=$(openssl_mbps "$s" "$CHUNK_BYTES")
done

# Copy limits. cp and cat use copy_file_range here (one copy inside the kernel); dd bs=1M
# reads into and writes from a user buffer (two copies), like any tool that transforms data.
declare -A COPY COPY_RSS COPY_LOAD
copy_bench() { # NAME CMD-with-OUT
  local name=$1; shift
  local secs="" loads=""
  for _ in $(seq "$RUNS"); do
    rm -f "$DIR/out.bin"
    timed "$@"; secs+=" $T_SECS"; loads+=" $T_LOAD"
  done
  rm -f "$DIR/out.bin"
  COPY[$name]=$(mbps "$(echo "$secs" | median)"); COPY_LOAD[$name]=$(echo "$loads" | range)
}
say "machine limits"
PT_BYTES=$((BYTES + BYTES / 50))   # what one command writes, with room for ciphertext overhead
copy_bench cp run cp "$IN" "$DIR/out.bin"
copy_bench cat run sh -c 'cat "$1" > "$2"' sh "$IN" "$DIR/out.bin"
copy_bench dd run dd if="$IN" of="$DIR/out.bin" bs=1M
COPY_LIMIT=${COPY[cp]}; [ "${COPY[cat]}" -gt "$COPY_LIMIT" ] && COPY_LIMIT=${COPY[cat]}
declare -A LIMIT
for s in $SUITES; do
  LIMIT[$s]=$COPY_LIMIT
  [ -n "${AEAD[$s]}" ] && [ "${AEAD[$s]}" -lt "$COPY_LIMIT" ] && LIMIT[$s]=${AEAD[$s]}
done

# ---------------------------------------------------------------------------------------
# 3. Tools. Each has enc_X IN OUT and dec_X IN OUT (run under timed), a version and a suite.
SS=(--quiet $EXTRA)
enc_ss_aes() { run "$BIN" "${SS[@]}" encrypt -k "$DIR/k.key" --suite aes-256-gcm --chunk-size "$CHUNK" "$1" -o "$2"; }
enc_ss_chacha() { run "$BIN" "${SS[@]}" encrypt -k "$DIR/k.key" --suite chacha20-poly1305 --chunk-size "$CHUNK" "$1" -o "$2"; }
dec_ss() { run "$BIN" "${SS[@]}" decrypt -k "$DIR/k.key" "$1" -o "$2"; }
dec_ss_aes() { dec_ss "$@"; }
dec_ss_chacha() { dec_ss "$@"; }

AGE=$TOOLS/age/root/usr/bin/age
RAGE=$TOOLS/rage/bin/rage
PY=$VENV/bin/python
enc_age() { run "$AGE" -r "$AGE_RECIPIENT" -o "$2" "$1"; }
dec_age() { run "$AGE" -d -i "$DIR/age.key" -o "$2" "$1"; }
enc_rage() { run "$RAGE" -r "$AGE_RECIPIENT" -o "$2" "$1"; }
dec_rage() { run "$RAGE" -d -i "$DIR/age.key" -o "$2" "$1"; }
enc_pyrage() { run "$PY" "$DIR/pyrage_file.py" encrypt "$DIR/age.key" "$1" "$2"; }
dec_pyrage() { run "$PY" "$DIR/pyrage_file.py" decrypt "$DIR/age.key" "$1" "$2"; }
esdk_env() { run env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1 \
  AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" "$@"; }
enc_esdk() { esdk_env "$VENV/bin/aws-encryption-cli" -e -i "$1" -o "$2" -S --wrapping-keys "key=$KMS_ARN"; }
dec_esdk() { esdk_env "$VENV/bin/aws-encryption-cli" -d -i "$1" -o "$2" -S --wrapping-keys "key=$KMS_ARN"; }
enc_tink() { run "$PY" "$DIR/tink_stream.py" encrypt "$DIR/tink.json" "$1" "$2"; }
dec_tink() { run "$PY" "$DIR/tink_stream.py" decrypt "$DIR/tink.json" "$1" "$2"; }

declare -A VERSION SUITE_OF DESC
TOOL_LIST="ss_aes ss_chacha"
VERSION[ss_aes]=$("$BIN" --version); VERSION[ss_chacha]=${VERSION[ss_aes]}
SUITE_OF[ss_aes]=aes-256-gcm; SUITE_OF[ss_chacha]=chacha20-poly1305
DESC[ss_aes]="sealstream, AES-256-GCM, $CHUNK chunks, all cores"
DESC[ss_chacha]="sealstream, ChaCha20-Poly1305, $CHUNK chunks, all cores"

if [ "$PEERS" = 1 ]; then
  # age, rage and pyrage share one X25519 identity.
  if [ -z "${MISSING[age]:-}" ]; then
    "$TOOLS/age/root/usr/bin/age-keygen" -o "$DIR/age.key" 2>/dev/null
  elif [ -z "${MISSING[rage]:-}" ]; then
    "$TOOLS/rage/bin/rage-keygen" -o "$DIR/age.key" 2>/dev/null
  fi
  if [ -f "$DIR/age.key" ]; then AGE_RECIPIENT=$(awk '/public key:/ {print $NF}' "$DIR/age.key"); fi
  if [ -z "${MISSING[age]:-}" ]; then
    TOOL_LIST+=" age"; VERSION[age]="age $("$AGE" --version) (Go, Debian $AGE_DEB_VERSION)"
    SUITE_OF[age]=chacha20-poly1305; DESC[age]="age, X25519 recipient (ChaCha20-Poly1305, 64 KiB chunks, 1 thread)"
  fi
  if [ -z "${MISSING[rage]:-}" ]; then
    TOOL_LIST+=" rage"; VERSION[rage]=$("$RAGE" --version)
    SUITE_OF[rage]=chacha20-poly1305; DESC[rage]="rage, X25519 recipient"
  fi
  if [ -z "${MISSING[pyrage]:-}" ]; then
    cat > "$DIR/pyrage_file.py" <<'PY'
import sys, pyrage
from pyrage import x25519
mode, keyfile, src, dst = sys.argv[1:5]
ident = x25519.Identity.from_str(next(l for l in open(keyfile) if l.startswith("AGE-SECRET-KEY-")).strip())
if mode == "encrypt":
    pyrage.encrypt_file(src, dst, [ident.to_public()])
else:
    pyrage.decrypt_file(src, dst, [ident])
PY
    TOOL_LIST+=" pyrage"; VERSION[pyrage]="pyrage $("$PY" -c 'import importlib.metadata as m; print(m.version("pyrage"))')"
    SUITE_OF[pyrage]=chacha20-poly1305; DESC[pyrage]="pyrage (Python binding of the rage crate), encrypt_file/decrypt_file, X25519"
  fi
  if [ -z "${MISSING[esdk]:-}" ]; then
    MOTO_PORT=$(free_port)
    "$TOOLS/moto-venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$DIR/moto.log" 2>&1 &
    MOTO_PID=$!
    KMS_ARN=""
    for _ in $(seq 60); do
      KMS_ARN=$(esdk_env "$TOOLS/moto-venv/bin/python" -c 'import boto3; print(boto3.client("kms").create_key()["KeyMetadata"]["Arn"])' 2>/dev/null) && break
      sleep 0.5
    done
    if [ -n "$KMS_ARN" ]; then
      TOOL_LIST+=" esdk"; VERSION[esdk]=$("$VENV/bin/aws-encryption-cli" --version)
      SUITE_OF[esdk]=aes-256-gcm
      DESC[esdk]="AWS Encryption SDK CLI, KMS key in moto, defaults (4 KiB frames, AES-256-GCM, HKDF, key commitment, ECDSA P-384 signature)"
    else
      MISSING[esdk]="the private moto server did not answer CreateKey"
    fi
  fi
  if [ -z "${MISSING[tink]:-}" ]; then
    cat > "$DIR/tink_stream.py" <<'PY'
import shutil, sys
import tink
from tink import cleartext_keyset_handle, streaming_aead
streaming_aead.register()
mode, keyfile, src, dst = sys.argv[1:5]
if mode == "keygen":
    h = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    with open(keyfile, "w") as f:
        cleartext_keyset_handle.write(tink.JsonKeysetWriter(f), h)
    sys.exit(0)
with open(keyfile) as f:
    p = cleartext_keyset_handle.read(tink.JsonKeysetReader(f.read())).primitive(streaming_aead.StreamingAead)
with open(src, "rb") as i, open(dst, "wb") as o:
    if mode == "encrypt":
        with p.new_encrypting_stream(o, b"") as e:
            shutil.copyfileobj(i, e, 1 << 20)
    else:
        with p.new_decrypting_stream(i, b"") as d:
            shutil.copyfileobj(d, o, 1 << 20)
PY
    "$PY" "$DIR/tink_stream.py" keygen "$DIR/tink.json" - -
    TOOL_LIST+=" tink"; VERSION[tink]="tink $("$PY" -c 'import importlib.metadata as m; print(m.version("tink"))') (Python)"
    SUITE_OF[tink]=aes-256-gcm; DESC[tink]="Tink streaming AEAD AES256_GCM_HKDF_1MB, Python, 1 MiB copy buffer"
  fi
fi

declare -A ENC DEC ENC_RSS DEC_RSS LOADS
bench_tool() { # TOOL
  local t=$1 r es="" ds="" er="" dr="" loads="" sha
  say "measuring ${DESC[$t]}"
  # Untimed warm-up on a small prefix: loads the binary or the Python modules.
  head -c $((16 << 20)) "$IN" > "$DIR/small.bin"
  "enc_$t" "$DIR/small.bin" "$DIR/small.ct" >/dev/null 2>&1 && "dec_$t" "$DIR/small.ct" "$DIR/small.out" >/dev/null 2>&1 || true
  rm -f "$DIR"/small.*
  for r in $(seq "$RUNS"); do
    rm -f "$DIR/ct.bin" "$DIR/out.bin"
    timed "enc_$t" "$IN" "$DIR/ct.bin" || { MISSING[$t]="encrypt failed: $(tail -1 "$DIR/err.txt")"; return 0; }
    es+=" $T_SECS"; er+=" $T_RSS"; loads+=" $T_LOAD"
    timed "dec_$t" "$DIR/ct.bin" "$DIR/out.bin" || { MISSING[$t]="decrypt failed: $(tail -1 "$DIR/err.txt")"; return 0; }
    ds+=" $T_SECS"; dr+=" $T_RSS"; loads+=" $T_LOAD"
    sha=$(sha256sum < "$DIR/out.bin" | cut -d' ' -f1)
    [ "$sha" = "$IN_SHA" ] || die "ROUND TRIP MISMATCH for $t (run $r)"
  done
  rm -f "$DIR/ct.bin" "$DIR/out.bin"
  ENC[$t]=$(echo "$es" | median); DEC[$t]=$(echo "$ds" | median)
  ENC_RSS[$t]=$(echo "$er" | maxof); DEC_RSS[$t]=$(echo "$dr" | maxof); LOADS[$t]=$(echo "$loads" | range)
}
for t in $TOOL_LIST; do bench_tool "$t"; done

# ---------------------------------------------------------------------------------------
# 4a. Threads.
declare -A TH
if [ "$DO_THREADS" = 1 ]; then
  enc_t1_aes() { run "$BIN" --quiet --threads 1 $EXTRA encrypt -k "$DIR/k.key" --suite aes-256-gcm --chunk-size "$CHUNK" "$1" -o "$2"; }
  enc_t1_chacha() { run "$BIN" --quiet --threads 1 $EXTRA encrypt -k "$DIR/k.key" --suite chacha20-poly1305 --chunk-size "$CHUNK" "$1" -o "$2"; }
  dec_t1_aes() { run "$BIN" --quiet --threads 1 $EXTRA decrypt -k "$DIR/k.key" "$1" -o "$2"; }
  dec_t1_chacha() { dec_t1_aes "$@"; }
  DESC[t1_aes]="sealstream AES-256-GCM --threads 1"; DESC[t1_chacha]="sealstream ChaCha20-Poly1305 --threads 1"
  for s in aes chacha; do bench_tool "t1_$s"; done
fi

# 4a'. Ranged decrypt of 1 MiB from the middle of the file (tests/it/range_large.rs asserts
# that only the header and the covering chunks are read; here it is timed).
RANGE_ROW=""
if [ "$DO_THREADS" = 1 ]; then
  say "measuring a 1 MiB ranged decrypt from the middle"
  rm -f "$DIR/ct.bin"
  run "$BIN" --quiet $EXTRA encrypt -k "$DIR/k.key" --chunk-size "$CHUNK" "$IN" -o "$DIR/ct.bin"
  r0=$((BYTES / 2)); r1=$((r0 + (1 << 20) - 1)); rs=""; rl=""
  # (tail is cut off by head's early exit: its SIGPIPE must not fail the pipeline)
  want=$( { tail -c +$((r0 + 1)) "$IN" || true; } | head -c $((1 << 20)) | sha256sum | cut -d' ' -f1)
  for _ in $(seq "$RUNS"); do
    rm -f "$DIR/range.out"
    timed run "$BIN" --quiet decrypt -k "$DIR/k.key" --range "$r0-$r1" "$DIR/ct.bin" -o "$DIR/range.out"
    rs+=" $T_SECS"; rl+=" $T_LOAD"
    [ "$(sha256sum < "$DIR/range.out" | cut -d' ' -f1)" = "$want" ] || die "RANGE MISMATCH"
  done
  RANGE_ROW="| bytes $r0-$r1 of $SIZE_MIB MiB ($CHUNK chunks, AES-256-GCM) | $(awk -v s="$(echo "$rs" | median)" 'BEGIN { printf "%.1f", s * 1000 }') ms | $(mib "$T_RSS") MiB | $(echo "$rl" | range) |"
  rm -f "$DIR/ct.bin" "$DIR/range.out"
fi

# 4b. Peak RSS at several sizes. With room for input and output on the fs, file to file;
# otherwise encrypt the file to /dev/null, and decrypt a ciphertext (made from the generator
# through a pipe, so the plaintext file is gone by then) to /dev/null.
RSS_ROWS=""
if [ "$DO_RSS" = 1 ]; then
  PT_BYTES=0
  rm -f "$IN"   # frees room; the main file is not needed any more unless the sweep reuses it
  for m in $RSS_SIZES; do
    b=$((m * 1024 * 1024)); want=$(( 2 * b / 1024 + 4096 * 1024 ))   # in + out + 4 GiB for others
    if [ "$(fs_avail_kib)" -ge "$want" ] && { [ "$FSTYPE" != tmpfs ] || [ "$(avail_kib)" -ge "$want" ]; }; then how=file; else how=devnull; fi
    say "peak RSS at $m MiB ($how)"
    gen "$b" > "$DIR/rss.bin"
    sha_plain=$(sha256sum < "$DIR/rss.bin" | cut -d' ' -f1)
    if [ "$how" = file ]; then
      PT_BYTES=$((b + b / 50))
      timed run "$BIN" --quiet encrypt -k "$DIR/k.key" "$DIR/rss.bin" -o "$DIR/rss.ct"; e_s=$T_SECS; e_r=$T_RSS; l1=$T_LOAD
      rm -f "$DIR/rss.bin"
      timed run "$BIN" --quiet decrypt -k "$DIR/k.key" "$DIR/rss.ct" -o "$DIR/rss.out"; d_s=$T_SECS; d_r=$T_RSS; l2=$T_LOAD
      sha=$(sha256sum < "$DIR/rss.out" | cut -d' ' -f1); rm -f "$DIR/rss.out"
      note="file → file on $FSTYPE"
    else
      timed run sh -c '"$1" --quiet encrypt -k "$2" "$3" > /dev/null' sh "$BIN" "$DIR/k.key" "$DIR/rss.bin"; e_s=$T_SECS; e_r=$T_RSS; l1=$T_LOAD
      rm -f "$DIR/rss.bin"
      # The ciphertext to decrypt: generator → pipe → encrypt (its RSS is recorded too).
      gen "$b" | run "$BIN" --quiet encrypt -k "$DIR/k.key" -o "$DIR/rss.ct" 2>/dev/null
      p_r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time.txt")
      timed run sh -c '"$1" --quiet decrypt -k "$2" "$3" > /dev/null' sh "$BIN" "$DIR/k.key" "$DIR/rss.ct"; d_s=$T_SECS; d_r=$T_RSS; l2=$T_LOAD
      sha=$("$BIN" --quiet decrypt -k "$DIR/k.key" "$DIR/rss.ct" | sha256sum | cut -d' ' -f1)
      note="file → /dev/null, and a ciphertext made through a pipe (peak RSS of that encrypt $(mib "$p_r") MiB) → /dev/null: input and output do not both fit"
    fi
    PT_BYTES=0
    rm -f "$DIR/rss.ct"
    [ "$sha" = "$sha_plain" ] || die "ROUND TRIP MISMATCH at $m MiB"
    RSS_ROWS+="| $m MiB | $(mib "$e_r") MiB | $(mib "$d_r") MiB | $(mbps "$e_s" "$b") | $(mbps "$d_s" "$b") | $note | $l1, $l2 |"$'\n'
  done
fi

# 4c. Chunk-size sweep, both suites, on a SWEEP_MIB file.
SWEEP_ROWS=""
if [ "$DO_SWEEP" = 1 ]; then
  SAVE_BYTES=$BYTES SAVE_RUNS=$RUNS
  BYTES=$((SWEEP_MIB * 1024 * 1024)); RUNS=$SWEEP_RUNS; PT_BYTES=$((BYTES + BYTES / 50))
  [ -f "$IN" ] && [ "$(stat -c %s "$IN")" = "$BYTES" ] || { gen "$BYTES" > "$IN"; }
  IN_SHA=$(sha256sum < "$IN" | cut -d' ' -f1)
  for s in $SUITES; do
    for c in $SWEEP_CHUNKS; do
      eval "enc_sw() { run \"\$BIN\" --quiet $EXTRA encrypt -k \"\$DIR/k.key\" --suite $s --chunk-size $c \"\$1\" -o \"\$2\"; }"
      dec_sw() { dec_ss "$@"; }
      DESC[sw]="sweep $s $c"
      bench_tool sw
      lim=$(openssl_mbps "$s" "$(to_bytes "$c")" "$(nproc)")
      em=$(mbps "${ENC[sw]}"); dm=$(mbps "${DEC[sw]}")
      SWEEP_ROWS+="| $s | $c | $em | $dm | $(mib "${ENC_RSS[sw]}") / $(mib "${DEC_RSS[sw]}") MiB | $lim | $(ratio "$em" "$COPY_LIMIT") / $(ratio "$dm" "$COPY_LIMIT") | ${LOADS[sw]} |"$'\n'
    done
  done
  BYTES=$SAVE_BYTES RUNS=$SAVE_RUNS
fi

# ---------------------------------------------------------------------------------------
# 5. Report.
REPORT=$(mktemp)
{
  echo "Generated by \`$CMDLINE\` on $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' with uncommitted changes in src/')."
  echo
  echo "**Machine**: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores ($(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|vaes|vpclmulqdq|avx2|avx512f|sha_ni' | tr '\n' ' ' | sed 's/ $//')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r); $(rustc --version | cut -d' ' -f1-2); $(openssl version | cut -d' ' -f1-2). File: $SIZE_MIB MiB on $FSTYPE ($DIR). Figures are medians of $RUNS runs; MB = 10^6 bytes; peak RSS is the largest of the runs. \"busy %\" is how much of the $(nproc) cores anything used in the 3 s just before each timed run (min–max over the runs; the script waits for < $BUSY_MAX %, at most ${LOAD_WAIT}s$( [ "$LOAD_TIMEOUTS" -gt 0 ] && echo "; $LOAD_TIMEOUTS measurement(s) started above it after the wait" )).$HOLD_NOTE"
  echo
  echo "### Machine limits (same run)"
  echo
  echo "| what | MB/s | busy % |"
  echo "|---|---|---|"
  echo "| \`cp\` (copy_file_range: one copy in the kernel) | ${COPY[cp]} | ${COPY_LOAD[cp]} |"
  echo "| \`cat >\` (copy_file_range too) | ${COPY[cat]} | ${COPY_LOAD[cat]} |"
  echo "| \`dd bs=1M\` (read + write through a user buffer; reference, not a limit) | ${COPY[dd]} | ${COPY_LOAD[dd]} |"
  for s in $SUITES; do
    echo "| \`openssl speed -evp $s -multi $(nproc) -bytes $CHUNK_BYTES\` | ${AEAD[$s]:-n/a} (1 core: ${AEAD1[$s]:-n/a}) | ${AEAD_LOAD[$s]} |"
  done
  echo
  echo "Limit = min(best of cp and cat, AEAD on all cores): $(for s in $SUITES; do printf '%s %s MB/s; ' "$s" "${LIMIT[$s]}"; done | sed 's/; $//')."
  echo
  echo "### Encrypt and decrypt, $SIZE_MIB MiB file, side by side"
  echo
  echo "| tool | version | encrypt MB/s | decrypt MB/s | peak RSS enc / dec | ÷ sealstream same suite (enc / dec) | ÷ sealstream default (enc / dec) | ÷ limit (enc / dec) | busy % |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for t in $TOOL_LIST; do
    [ -n "${ENC[$t]:-}" ] || continue
    s=${SUITE_OF[$t]}; ref=ss_aes; [ "$s" = chacha20-poly1305 ] && ref=ss_chacha
    em=$(mbps "${ENC[$t]}"); dm=$(mbps "${DEC[$t]}")
    rem=$(mbps "${ENC[$ref]}"); rdm=$(mbps "${DEC[$ref]}")
    aem=$(mbps "${ENC[ss_aes]}"); adm=$(mbps "${DEC[ss_aes]}")
    echo "| ${DESC[$t]} | ${VERSION[$t]} | $em | $dm | $(mib "${ENC_RSS[$t]}") / $(mib "${DEC_RSS[$t]}") MiB | $(ratio "$em" "$rem") / $(ratio "$dm" "$rdm") | $(ratio "$em" "$aem") / $(ratio "$dm" "$adm") | $(ratio "$em" "${LIMIT[$s]}") / $(ratio "$dm" "${LIMIT[$s]}") | ${LOADS[$t]} |"
  done
  for t in "${!MISSING[@]}"; do echo "| $t | not measured: ${MISSING[$t]} | | | | | | | |"; done
  echo
  if [ -n "${ENC[ss_aes]:-}" ]; then
    echo "Targets (issue 6):"
    for s in ss_aes ss_chacha; do
      echo "- ${DESC[$s]}: encrypt $(ratio "$(mbps "${ENC[$s]}")" "${LIMIT[${SUITE_OF[$s]}]}") × limit, decrypt $(ratio "$(mbps "${DEC[$s]}")" "${LIMIT[${SUITE_OF[$s]}]}") × limit (target ≥ 0.80)."
    done
    if [ -n "${ENC[age]:-}" ]; then
      for s in ss_aes ss_chacha; do
        echo "- ${DESC[$s]} vs age: encrypt $(ratio "$(mbps "${ENC[$s]}")" "$(mbps "${ENC[age]}")") ×, decrypt $(ratio "$(mbps "${DEC[$s]}")" "$(mbps "${DEC[age]}")") × (target ≥ 1.5)."
      done
    fi
    behind=""
    for t in $TOOL_LIST; do
      case $t in ss_*) continue ;; esac
      [ -n "${ENC[$t]:-}" ] || continue
      awk -v a="${ENC[$t]}" -v b="${ENC[ss_aes]}" 'BEGIN { exit !(a < b) }' && behind+=" $t:encrypt"
      awk -v a="${DEC[$t]}" -v b="${DEC[ss_aes]}" 'BEGIN { exit !(a < b) }' && behind+=" $t:decrypt"
    done
    echo "- Peers faster than sealstream's default (AES-256-GCM): ${behind:-none}."
    echo
  fi
  if [ "$DO_THREADS" = 1 ]; then
    echo "### One worker vs all cores ($SIZE_MIB MiB, $CHUNK chunks)"
    echo
    echo "| suite | encrypt MB/s, 1 thread | encrypt MB/s, $(nproc) threads | speed-up | decrypt MB/s, 1 thread | decrypt MB/s, $(nproc) threads | speed-up | busy % (1 thread runs) |"
    echo "|---|---|---|---|---|---|---|---|"
    for s in aes chacha; do
      [ -n "${ENC[t1_$s]:-}" ] || continue
      e1=$(mbps "${ENC[t1_$s]}"); en=$(mbps "${ENC[ss_$s]}"); d1=$(mbps "${DEC[t1_$s]}"); dn=$(mbps "${DEC[ss_$s]}")
      echo "| ${SUITE_OF[ss_$s]} | $e1 | $en | $(ratio "$en" "$e1") | $d1 | $dn | $(ratio "$dn" "$d1") | ${LOADS[t1_$s]} |"
    done
    echo
    echo "\`--threads N\` sets the crypto workers; the reader and the writer are two more threads."
    echo
  fi
  if [ -n "$RANGE_ROW" ]; then
    echo "### Ranged decrypt: 1 MiB from the middle (median of $RUNS, whole process)"
    echo
    echo "| range | wall time | peak RSS | busy % |"
    echo "|---|---|---|---|"
    echo "$RANGE_ROW"
    echo
  fi
  if [ -n "$RSS_ROWS" ]; then
    echo "### Peak RSS by input size (AES-256-GCM, $CHUNK chunks, all cores, one run each)"
    echo
    echo "| input | peak RSS encrypt | peak RSS decrypt | encrypt MB/s | decrypt MB/s | how | busy % |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s' "$RSS_ROWS"
    echo
  fi
  if [ -n "$SWEEP_ROWS" ]; then
    echo "### Chunk-size sweep ($SWEEP_MIB MiB file, median of $SWEEP_RUNS, all cores)"
    echo
    echo "| suite | chunk | encrypt MB/s | decrypt MB/s | peak RSS enc / dec | openssl AEAD limit at this size, $(nproc) cores, MB/s | ÷ copy limit ($COPY_LIMIT MB/s) enc / dec | busy % |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s' "$SWEEP_ROWS"
    echo
  fi
  echo "Tools: $(for t in $TOOL_LIST; do case $t in ss_chacha) ;; *) printf '%s; ' "${DESC[$t]}";; esac; done | sed 's/; $//')."
} > "$REPORT"

cat "$REPORT"
mkdir -p bench-data
cp "$REPORT" "bench-data/bench-$(date -u +%Y%m%d-%H%M%S).md"
if [ "$WRITE_DOC" = 1 ] && [ -f "$DOC" ]; then
  python3 - "$DOC" "$REPORT" <<'PY'
import sys
doc, rep = sys.argv[1], sys.argv[2]
begin, end = "<!-- BEGIN scripts/bench.sh -->", "<!-- END scripts/bench.sh -->"
text, body = open(doc).read(), open(rep).read().rstrip("\n")
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    a, b = text.index(begin), text.index(end) + len(end)
    text = text[:a] + block + text[b:]
else:
    text = text.rstrip("\n") + "\n\n## Latest run of scripts/bench.sh\n\n" + block + "\n"
open(doc, "w").write(text)
PY
  say "wrote the report into $DOC"
fi
rm -f "$REPORT"
