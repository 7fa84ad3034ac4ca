#!/usr/bin/env bash
# The one command that runs every test:  scripts/test.sh [extra args for cargo test]
#
#   1. installs what it needs (moto[server] into .tools/moto-venv; rustfmt/clippy if missing)
#   2. starts a fresh local AWS emulator (moto) on a free port, always stopped on exit
#   3. cargo fmt --check, cargo clippy -D warnings, cargo test --all-targets, cargo test --doc
#
# Extra arguments go to both `cargo test` runs, e.g.  scripts/test.sh roundtrip -- --nocapture
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ -d "$HOME/.cargo/bin" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
# rustfmt's diff ignores CARGO_TERM_COLOR and colours even into pipes/files.
FMT_COLOR=auto
if [ -n "${CI:-}" ]; then
    export CARGO_TERM_COLOR=never
    FMT_COLOR=never
elif [ ! -t 1 ]; then
    FMT_COLOR=never
fi

T_START=$SECONDS
T_STEP=$SECONDS
section() {
    printf '\n==== %s ====\n' "$*"
    T_STEP=$SECONDS
}
done_step() {
    printf -- '---- ok (%ss)\n' "$((SECONDS - T_STEP))"
}

# ---------------------------------------------------------------------------
section "toolchain"
command -v cargo >/dev/null 2>&1 || {
    echo "ERROR: cargo not found (expected rustup's toolchain in ~/.cargo/bin)" >&2
    exit 1
}
if ! cargo fmt --version >/dev/null 2>&1; then
    echo "rustfmt missing; installing it with rustup"
    rustup component add rustfmt
fi
if ! cargo clippy --version >/dev/null 2>&1; then
    echo "clippy missing; installing it with rustup"
    rustup component add clippy
fi
cargo --version
cargo fmt --version
cargo clippy --version
done_step

# ---------------------------------------------------------------------------
# The emulator runs as a child of this shell (emulator.sh is sourced), so the
# trap below can stop it and reap it on every exit path.
# shellcheck source=scripts/emulator.sh
source "$ROOT/scripts/emulator.sh"

SEALSTREAM_HOME_DIR=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$(read_pid)" ]; then
        printf '\n==== stopping emulator ====\n'
        emulator_stop
    fi
    if [ -n "$SEALSTREAM_HOME_DIR" ]; then
        rm -rf "$SEALSTREAM_HOME_DIR"
    fi
    if [ "$rc" -eq 0 ]; then
        printf '\n==== scripts/test.sh: all steps passed (%ss) ====\n' "$((SECONDS - T_START))"
    else
        printf '\n==== scripts/test.sh: FAILED (exit %s) after %ss ====\n' "$rc" "$((SECONDS - T_START))" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "emulator (moto) install + start"
# Fresh in-memory state for every run: stop any emulator left over from an earlier run.
emulator_stop
emulator_start
EMULATOR_ENDPOINT="$(emulator_endpoint)"
done_step

export AWS_ENDPOINT_URL="$EMULATOR_ENDPOINT"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
# Tests must reach the emulator; tests/emulator.rs fails instead of skipping.
export SEALSTREAM_REQUIRE_EMULATOR=1
# Never touch the user's real default key.
SEALSTREAM_HOME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sealstream-home.XXXXXX")"
export SEALSTREAM_HOME="$SEALSTREAM_HOME_DIR"
echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
echo "SEALSTREAM_HOME=$SEALSTREAM_HOME"

# ---------------------------------------------------------------------------
section "cargo fmt --all -- --check"
cargo fmt --all -- --check --color "$FMT_COLOR"
done_step

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
done_step

section "cargo test --all-targets --no-fail-fast${*:+ $*}"
cargo test --all-targets --no-fail-fast "$@"
done_step

section "cargo test --doc${*:+ $*}"
cargo test --doc "$@"
done_step

# ---- fuzz smoke (issue 7) -------------------------------------------------------------
# Every fuzz target for FUZZ_SECONDS (default 30) each, no sanitizer, stable toolchain;
# installs cargo-fuzz on first use. See docs/FUZZING.md. SEALSTREAM_SKIP_FUZZ=1 skips it
# for quick local runs (CI must not set it).
if [ "${SEALSTREAM_SKIP_FUZZ:-0}" = "1" ]; then
    section "fuzz smoke: skipped (SEALSTREAM_SKIP_FUZZ=1)"
else
    section "fuzz smoke: scripts/fuzz.sh ${FUZZ_SECONDS:-30}"
    "$ROOT/scripts/fuzz.sh" "${FUZZ_SECONDS:-30}"
fi
done_step
# ---- end fuzz smoke -------------------------------------------------------------------
