#!/usr/bin/env bash
# bench_gateway_ab.sh ROUNDS SIZE_MIB BIN_A BIN_B: two sealstream builds side by side
# (docs/BENCHMARKS.md run F). One mem_s3 (HTTP; MEM=path, default the release example) and
# two HTTP gateways over it, A running BIN_A and B running BIN_B, with the same key and the
# flags of bench_gateway.sh; a SIZE_MIB file of random bytes uploaded (boto3) through A,
# then through B (each gateway downloads after an upload), and stored plain for the
# direct reads (D). Then ROUNDS rounds of A, B, D (A and B swap places every round):
# boto3 download_file, `aws s3 cp` down and 1,000 random 64 KiB ranged GETs (boto3, 4
# threads): the download workloads of bench_gateway.sh, with its boto3 script. Each run
# holds /work/wt/bench.lock; printed: wall ms, the gateway's CPU ms (user + system) and
# minor page faults (/proc/PID/stat fields 14 + 15, 10) over the run; at the end each
# gateway's peak RSS (VmHWM). Env WORKLOADS, DIRECT=0 (no D), PERF=A|B (perf record that
# gateway in the first two rounds, into the script's temp dir with KEEP=1).
set -euo pipefail
ROUNDS=$1 SIZE_MIB=$2 BA=$3 BB=$4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MEM=${MEM:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/mem_s3}
PY=$ROOT/.tools/bench-gw-venv/bin/python # made by bench_gateway.sh
AWS=/usr/bin/aws
LOCK=/work/wt/bench.lock
WORKLOADS=${WORKLOADS:-"boto-down aws-down ranges"}
T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
H=$T
# The boto3 script of bench_gateway.sh, taken from it (one definition).
sed -n '/^cat >"\$T\/boto.py" <<.EOF.$/,/^EOF$/p' "$ROOT/scripts/bench_gateway.sh" | sed '1d;$d' >"$T/boto.py"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ "${KEEP:-0}" = 1 ] || rm -rf "$T"; }
trap cleanup EXIT
wait_url() { local f=$1; for _ in $(seq 1 300); do if [ -s "$f" ]; then head -1 "$f" | sed 's/^listening on //'; return; fi; sleep 0.1; done; echo "no start $f" >&2; exit 1; }
"$MEM" 127.0.0.1:0 >"$T/mem.out" 2>"$T/mem.err" & PIDS+=($!)
UP=$(wait_url "$T/mem.out")
"$BA" keygen -o "$T/gw.key" >/dev/null 2>&1
printf '[bench]\naws_access_key_id = GWBENCHCLIENT\naws_secret_access_key = gwbench-client-secret\n' >"$T/clients.ini"
start_gw() { local name=$1 bin=$2
  (export AWS_ENDPOINT_URL=$UP AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true SEALSTREAM_HOME=$T/home
   exec "$bin" serve --listen 127.0.0.1:0 -k "$T/gw.key" --client-credentials "$T/clients.ini" --log warn >"$T/$name.out" 2>"$T/$name.err") & PIDS+=($!)
  eval "${name}_PID=$!"; eval "${name}_URL=\$(wait_url \"$T/$name.out\")"; }
start_gw A "$BA"; start_gw B "$BB"
"$PY" "$H/boto.py" mb "$UP" testing testing - bench x x
"$PY" - "$T/src.bin" "$SIZE_MIB" <<'PYEOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])): f.write(os.urandom(1 << 20))
PYEOF
# Uploaded through each gateway (the second overwrites the first), so both start their
# downloads after a 1 GiB upload, as in bench_gateway.sh.
"$PY" "$H/boto.py" up "$A_URL" GWBENCHCLIENT gwbench-client-secret - bench obj.bin "$T/src.bin"
"$PY" "$H/boto.py" up "$B_URL" GWBENCHCLIENT gwbench-client-secret - bench obj.bin "$T/src.bin"
# Direct (mode D): the same bytes stored plain, read straight from mem_s3.
"$PY" "$H/boto.py" up "$UP" testing testing - bench obj.bin.plain "$T/src.bin"
# shellcheck disable=SC2034 # read through ${g}_URL / ${g}_PID
D_URL=$UP D_PID=
stat_of() { if [ -n "$1" ]; then awk '{print $14+$15, $10}' "/proc/$1/stat"; else echo "0 0"; fi; }
timed() { flock "$LOCK" bash -c 's=$(date +%s%N); "$@" >/dev/null || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))' _ "$@"; }
run() { local g=$1 w=$2 url ak=GWBENCHCLIENT sk=gwbench-client-secret key=obj.bin; url=${g}_URL; url=${!url}
  [ "$g" != D ] || { ak=testing; sk=testing; key=obj.bin.plain; }
  case $w in
    boto-down) rm -f "$T/out.bin"; timed "$PY" "$H/boto.py" down "$url" $ak $sk - bench $key "$T/out.bin" ;;
    aws-down) rm -f "$T/out.bin"; timed env AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$T/none AWS_SHARED_CREDENTIALS_FILE=$T/none "$AWS" --endpoint-url "$url" s3 cp --no-progress s3://bench/$key "$T/out.bin" ;;
    ranges) timed "$PY" "$H/boto.py" ranges "$url" $ak $sk - bench $key - ;;
  esac; }
HZ=$(getconf CLK_TCK)
echo "uptime before: $(uptime)"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="A B D"; else order="B A D"; fi
  [ "${DIRECT:-1}" = 1 ] || order=${order% D}
  for g in $order; do
    pidv=${g}_PID; pid=${!pidv}
    perfpid=
    if [ "${PERF:-}" = "$g" ] && [ "$r" -le 2 ]; then perf record -F 999 -g -o "$T/perf.$g.$r.data" -p "$pid" 2>"$T/perf.err" & perfpid=$!; sleep 1; fi
    for w in $WORKLOADS; do
      read -r c0 f0 <<<"$(stat_of "$pid")"
      ms=$(run "$g" "$w")
      read -r c1 f1 <<<"$(stat_of "$pid")"
      [ "$w" = ranges ] || [ "$r" != 1 ] || cmp "$T/src.bin" "$T/out.bin"
      echo "round $r gw $g $w wall_ms $ms cpu_ms $(( (c1 - c0) * 1000 / HZ )) minflt $((f1 - f0))"
    done
    [ -z "$perfpid" ] || { kill -INT "$perfpid"; wait "$perfpid" || true; }
  done
done
echo "uptime after: $(uptime)"
for g in A B; do pidv=${g}_PID; echo "gw $g VmHWM $(awk '/VmHWM/ {print $2}' /proc/${!pidv}/status) kB"; done
