#!/usr/bin/env bash
# Fuzz smoke run:  scripts/fuzz.sh [SECONDS] [--asan] [TARGET...]
#
#   SECONDS   time per target (default 30), passed to libFuzzer as -max_total_time
#   --asan    build with AddressSanitizer (stable toolchain + RUSTC_BOOTSTRAP=1);
#             default is no sanitizer (`cargo fuzz run -s none`), which works on stable as is
#   TARGET    run only these targets (default: every target in fuzz/Cargo.toml)
#
# Installs cargo-fuzz (pinned) if missing, builds all targets once, then runs each target
# with the checked-in seed corpus fuzz/corpus/<target> (read-only) plus the regression
# inputs fuzz/regressions/<target>; new inputs go to a temporary corpus, so the repository
# is never written to (except the gitignored fuzz/target and fuzz/artifacts).
# Exits non-zero if any target crashes, hangs or fails to build, printing the artifact path,
# or exits 0 without libFuzzer's final line (`Done N runs in S second(s)`, N >= 1).
# Recipes, targets and findings: fuzz/README.md and docs/FUZZING.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -d "$HOME/.cargo/bin" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

CARGO_FUZZ_VERSION=0.13.2
SECS=30
ASAN=0
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        --asan) ASAN=1 ;;
        -h | --help)
            sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        '' | *[!0-9]*)
            case "$arg" in
                -*)
                    echo "fuzz.sh: unknown option '$arg' (see --help)" >&2
                    exit 2
                    ;;
                *) TARGETS+=("$arg") ;;
            esac
            ;;
        *) SECS="$arg" ;;
    esac
done
if [ "$SECS" -lt 1 ]; then
    echo "fuzz.sh: SECONDS must be at least 1" >&2
    exit 2
fi

t0=$SECONDS
# ---- cargo-fuzz -----------------------------------------------------------------------
if ! cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz ${CARGO_FUZZ_VERSION%.*}\."; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
fi
cargo fuzz --version
t_install=$((SECONDS - t0))

# ---- build ----------------------------------------------------------------------------
# ASan gets its own target dir: switching sanitizers changes RUSTFLAGS and would rebuild
# everything. The no-sanitizer build uses cargo-fuzz's default (fuzz/target), so the manual
# `cargo fuzz run -s none TARGET` recipe reuses it.
if [ "$ASAN" = 1 ]; then
    # Stable rustc accepts -Zsanitizer only with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes it).
    export RUSTC_BOOTSTRAP=1
    # Thread-exit bookkeeping of std's scoped threads looks leaked to LSan (fuzz/lsan.supp).
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$ROOT/fuzz/lsan.supp:print_suppressions=0"
    BUILD=(-s address --target-dir fuzz/target/asan)
    REPRO="RUSTC_BOOTSTRAP=1 LSAN_OPTIONS=suppressions=fuzz/lsan.supp cargo fuzz"
    mode="AddressSanitizer"
else
    BUILD=(-s none)
    REPRO="cargo fuzz"
    mode="no sanitizer"
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
    mapfile -t TARGETS < <(cargo fuzz list)
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets found" >&2
    exit 1
fi
echo "fuzz.sh: building ${#TARGETS[@]} target(s) ($mode): ${TARGETS[*]}"
t1=$SECONDS
# Debug assertions and overflow checks stay on (cargo-fuzz's default without -O).
cargo fuzz build "${BUILD[@]}"
t_build=$((SECONDS - t1))

# ---- run ------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sealstream-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
failed=()
summary=()
for t in "${TARGETS[@]}"; do
    seeds=("fuzz/corpus/$t")
    [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
    mkdir -p "$WORK/corpus/$t" "fuzz/artifacts/$t"
    log="$WORK/$t.log"
    echo
    echo "==== fuzz $t: ${SECS}s, seeds: ${seeds[*]} ===="
    # The first corpus dir is the only one libFuzzer writes to.
    set +e
    cargo fuzz run "${BUILD[@]}" "$t" "$WORK/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECS" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|^stat::number_of_executed_units|^stat::peak_rss' "$log" || true
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 || true)"
    # libFuzzer's last line on a normal finish ("Done N runs in S second(s)"); a target that
    # exits 0 without it (did not start, ran nothing, or was not libFuzzer) is not ok.
    final_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1 || true)"
    final_runs="$(printf '%s' "$final_line" | awk '{print $2}')"
    if [ "$rc" -eq 0 ] && { [ -z "$final_line" ] || [ "${final_runs:-0}" -lt 1 ]; }; then
        echo "---- $t FAILED: exit 0 but no libFuzzer final line 'Done N runs in ...' with N >= 1; last lines of the log:"
        tail -n 40 "$log"
        failed+=("$t: exit 0 without libFuzzer's final 'Done N runs in ...' line (nothing was fuzzed)")
    elif [ "$rc" -ne 0 ]; then
        echo "---- $t FAILED (exit $rc); last lines of the log:"
        tail -n 40 "$log"
        artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | sed 's/^Test unit written to //' || true)"
        if [ -n "$artifact" ]; then
            case "$artifact" in
                /*) ;;
                *) artifact="$ROOT/$artifact" ;;
            esac
            echo "---- $t: crashing input: $artifact"
            echo "     reproduce: $REPRO run ${BUILD[*]} $t $artifact"
            echo "     minimise:  $REPRO tmin ${BUILD[*]} $t $artifact"
            failed+=("$t: $artifact")
        else
            failed+=("$t: exit $rc (no artifact; see the log above)")
        fi
    else
        summary+=("$(printf '%-12s %s; %s' "$t" "${done_line:-"(no DONE line)"}" "$final_line")")
    fi
done

echo
echo "==== fuzz summary ($mode, ${SECS}s per target; install ${t_install}s, build ${t_build}s, total $((SECONDS - t0))s) ===="
for s in "${summary[@]}"; do
    echo "ok   $s"
done
if [ "${#failed[@]}" -gt 0 ]; then
    for f in "${failed[@]}"; do
        echo "FAIL $f" >&2
    done
    exit 1
fi
