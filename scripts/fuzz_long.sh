#!/usr/bin/env bash
# Long, resumable fuzz run:  scripts/fuzz_long.sh [--asan] [--jobs N] SECONDS [TARGET...]
#        report so far:      scripts/fuzz_long.sh --report
#
#   SECONDS   fuzzing time each target must reach in total (3600 = the one hour per target
#             docs/FUZZING.md reports); time already in the ledger counts, so an
#             interrupted run resumes where it stopped, in this session or the next
#   --asan    AddressSanitizer build (stable rustc + RUSTC_BOOTSTRAP=1), ledgered separately
#   --jobs N  targets fuzzed at once (default 1; one libFuzzer process per job)
#   TARGET    only these targets (default: all of `cargo fuzz list`)
#
# State: fuzz/long/ (gitignored) holds corpus/<mode>-<target> (the growing corpus, seeded from
# fuzz/corpus and fuzz/regressions) and logs/; fuzz/ledger.tsv (checked in, the record that
# docs/FUZZING.md reports) has one line per segment:
# mode, target, start (UTC), seconds, execs, cov, ft, corpus entries, exit status, commit.
# Each target runs in segments of at most SEGMENT seconds (env, default 900).
#
# Pausing (to free the cores for a benchmark): `touch fuzz/long/PAUSE`. Within 5 s every
# running segment is stopped with SIGINT (libFuzzer prints its final stats, the segment is
# ledgered with the time it actually ran) and the script waits until the file is removed.
# To stop for good, pause, wait for the "interrupted" lines, then kill the script: killing
# it (or Ctrl-C) while a segment runs loses that segment's ledger line.
#
# A crash, timeout (> 25 s for one input) or out-of-memory stops that target, keeps the
# input in fuzz/artifacts/<target>/, and makes the script exit 1 at the end. The target
# stays stopped until its ledger line is dealt with: remove it once the bug is fixed (the
# regression test keeps the input), or, for a report shown not to be a bug, change its
# status to `false-positive(<why>)` and record the analysis in docs/FUZZING.md. Such a
# segment's seconds still count.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

STATE=fuzz/long
LEDGER=fuzz/ledger.tsv
SEGMENT=${SEGMENT:-900}
ASAN=0
JOBS=1
TOTAL=""
REPORT=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --asan) ASAN=1 ;;
        --jobs) JOBS=${2:?--jobs needs a number}; shift ;;
        --report) REPORT=1 ;;
        -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz_long.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *[!0-9]*) TARGETS+=("$1") ;;
        *) if [ -z "$TOTAL" ]; then TOTAL=$1; else TARGETS+=("$1"); fi ;;
    esac
    shift
done
mkdir -p "$STATE/logs" "$STATE/corpus"
[ -f "$LEDGER" ] || printf 'mode\ttarget\tstart_utc\tseconds\texecs\tcov\tft\tcorpus\texit\tcommit\n' >"$LEDGER"

report() {
    echo "fuzz_long.sh: ledger $LEDGER (segments summed per mode and target; cov/ft/corpus from the last segment)"
    awk -F'\t' 'NR > 1 {
            k = $1 "\t" $2; s[k] += $4; e[k] += $5; n[k]++; cov[k] = $6; ft[k] = $7; c[k] = $8
            if ($9 != "ok" && $9 != "interrupted" && $9 !~ /^false-positive/) bad[k] = bad[k] " " $9
        }
        END {
            printf "%-6s %-12s %9s %14s %8s %8s %8s %s\n", "mode", "target", "seconds", "execs", "cov", "ft", "corpus", "segments / problems"
            for (k in s) { split(k, p, "\t")
                printf "%-6s %-12s %9d %14d %8s %8s %8s %d%s\n", p[1], p[2], s[k], e[k], cov[k], ft[k], c[k], n[k], (bad[k] == "" ? "" : " FAILED:" bad[k]) }
        }' "$LEDGER" | sort
}
if [ "$REPORT" = 1 ]; then report; exit 0; fi
if [ -z "$TOTAL" ] || [ "$TOTAL" -lt 1 ]; then
    echo "fuzz_long.sh: give the total SECONDS per target (see --help)" >&2
    exit 2
fi

if [ "$ASAN" = 1 ]; then
    export RUSTC_BOOTSTRAP=1
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$ROOT/fuzz/lsan.supp:print_suppressions=0"
    BUILD=(-s address --target-dir fuzz/target/asan)
    BIN_DIR=fuzz/target/asan/x86_64-unknown-linux-gnu/release
    MODE=asan
else
    BUILD=(-s none)
    BIN_DIR=fuzz/target/x86_64-unknown-linux-gnu/release
    MODE=none
fi
[ "${#TARGETS[@]}" -gt 0 ] || mapfile -t TARGETS < <(cargo fuzz list)
echo "fuzz_long.sh: building (${MODE})"
cargo fuzz build "${BUILD[@]}" >/dev/null
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src fuzz/fuzz_targets fuzz/src || echo '+dirty')"
echo "fuzz_long.sh: fuzzing commit $COMMIT"

done_secs() { # TARGET
    awk -F'\t' -v m="$MODE" -v t="$1" 'NR > 1 && $1 == m && $2 == t { s += $4 } END { print s + 0 }' "$LEDGER"
}
failed_before() { # TARGET
    awk -F'\t' -v m="$MODE" -v t="$1" 'NR > 1 && $1 == m && $2 == t && $9 != "ok" && $9 != "interrupted" && $9 !~ /^false-positive/ { f = 1 } END { print f + 0 }' "$LEDGER"
}

# segment TARGET SECS: one libFuzzer run; appends a ledger line; returns 1 on a finding.
segment() {
    local t=$1 secs=$2 start t0 log pid rc status
    start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    log="$STATE/logs/$MODE-$t-$(date -u +%Y%m%dT%H%M%S).log"
    local seeds=("fuzz/corpus/$t")
    [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
    mkdir -p "$STATE/corpus/$MODE-$t" "fuzz/artifacts/$t"
    t0=$(date +%s)
    "$BIN_DIR/$t" "$STATE/corpus/$MODE-$t" "${seeds[@]}" \
        -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [ -e "$STATE/PAUSE" ]; then kill -INT "$pid" 2>/dev/null || true; fi
        sleep 5 & wait $! || true
    done
    set +e; wait "$pid"; rc=$?; set -e
    local secs_run=$(($(date +%s) - t0))
    case "$rc" in
        0) status=ok ;;
        72 | 130) status=interrupted ;;
        *) status="exit$rc" ;;
    esac
    if grep -q 'Test unit written to' "$log"; then status="crash($(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | sed 's/.* //'))"; fi
    local execs cov ft corp last
    execs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | awk '{print $2}' | tail -n1)
    last=$(grep -E '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse|DONE|RELOAD)' "$log" | tail -n1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
    if [ -z "$execs" ]; then execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last"); fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$MODE" "$t" "$start" "$secs_run" "${execs:-0}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status" "$COMMIT" >>"$LEDGER"
    echo "fuzz_long.sh: $t $status after ${secs_run}s, ${execs:-?} execs, cov ${cov:-?} ft ${ft:-?} corpus ${corp:-?} ($log)"
    case "$status" in ok | interrupted) return 0 ;; *) tail -n 30 "$log"; return 1 ;; esac
}

# worker K: fuzzes targets K, K+JOBS, ... one after the other until each reaches TOTAL.
worker() {
    local k=$1 i t left bad=0
    for ((i = k; i < ${#TARGETS[@]}; i += JOBS)); do
        t=${TARGETS[$i]}
        if [ "$(failed_before "$t")" = 1 ]; then
            echo "fuzz_long.sh: $t has a finding in the ledger; fix it, then remove its lines" >&2
            bad=1; continue
        fi
        while left=$((TOTAL - $(done_secs "$t"))); [ "$left" -gt 0 ]; do
            while [ -e "$STATE/PAUSE" ]; do sleep 5; done
            [ "$left" -gt "$SEGMENT" ] && left=$SEGMENT
            segment "$t" "$left" || { bad=1; break; }
        done
    done
    return "$bad"
}
pids=()
for ((k = 0; k < JOBS; k++)); do worker "$k" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
report
exit "$rc"
