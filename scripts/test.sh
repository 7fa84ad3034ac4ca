#!/usr/bin/env bash
# The one command that runs every test:  scripts/test.sh [extra args for cargo test]
#
#   1. installs what it needs (moto[server] into .tools/moto-venv, the Amazon S3 Encryption
#      Client into .tools/s3ec-venv; rustfmt/clippy if missing)
#   2. starts a fresh local AWS emulator (moto) on a free port, always stopped on exit
#   3. cargo fmt --check, cargo clippy -D warnings (full and core-only feature sets),
#      the core alone: cargo build / cargo test --no-default-features (no AWS, tokio, clap),
#      cargo test --all-targets -- --include-ignored (the emulator tests), cargo test --doc,
#      cargo doc -D warnings (broken intra-doc links, both feature sets)
#   4. cargo deny (licenses, bans, sources, advisories) against deny.toml
#   5. a fuzz smoke: every fuzz target for FUZZ_SECONDS (default 30) each (scripts/fuzz.sh)
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
    # A cold CI build is never rebuilt incrementally; the incremental caches only cost disk.
    export CARGO_INCREMENTAL=0
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

section "S3 clients for the gateway tests (AWS CLI v2, boto3)"
# tests/it/gateway.rs drives `sealstream serve` with clients nobody here wrote: the AWS CLI v2
# from Debian's `awscli` package, run as /usr/bin/aws (another `aws`, e.g. a pip-installed
# v1, may stand earlier on PATH and is not used), and boto3 from the emulator's venv.
if ! /usr/bin/aws --version 2>/dev/null | grep -q '^aws-cli/2\.'; then
    echo "installing Debian's awscli (AWS CLI v2) for tests/it/gateway.rs"
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y awscli
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y awscli
    fi
fi
/usr/bin/aws --version
done_step

section "emulator (moto) install + start"
# Fresh in-memory state for every run: stop any emulator left over from an earlier run.
emulator_stop
emulator_start
EMULATOR_ENDPOINT="$(emulator_endpoint)"
# boto3 comes with moto[server]; check it is importable where tests/it/gateway.rs looks.
if ! "$ROOT/.tools/moto-venv/bin/python" -c 'import boto3' 2>/dev/null; then
    "$ROOT/.tools/moto-venv/bin/pip" install --quiet boto3
fi
"$ROOT/.tools/moto-venv/bin/python" -c 'import boto3; print("boto3", boto3.__version__)'
done_step

section "Amazon S3 Encryption Client for Python (tests/it/s3ec.rs writes its fixture with it)"
S3EC_PYTHON="$("$ROOT/scripts/s3ec_venv.sh")"
export S3EC_PYTHON
"$S3EC_PYTHON" -c 'import importlib.metadata as m; print("amazon-s3-encryption-client-python", m.version("amazon-s3-encryption-client-python"))'
done_step

export AWS_ENDPOINT_URL="$EMULATOR_ENDPOINT"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
# Tests that need the emulator are #[ignore = "needs the emulator ..."] and run below with
# --include-ignored; without AWS_ENDPOINT_URL they fail (tests/it/common/moto.rs), never skip.
# Never touch the user's real default key.
SEALSTREAM_HOME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sealstream-home.XXXXXX")"
export SEALSTREAM_HOME="$SEALSTREAM_HOME_DIR"
echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
echo "SEALSTREAM_HOME=$SEALSTREAM_HOME"

# ---------------------------------------------------------------------------
section "cargo fmt --all -- --check"
cargo fmt --all -- --check --color "$FMT_COLOR"
done_step

section "no import circles between top-level modules (scripts/module_cycles.py)"
python3 scripts/module_cycles.py
done_step

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
done_step

section "cargo clippy --no-default-features --all-targets -- -D warnings"
cargo clippy --no-default-features --all-targets -- -D warnings
done_step

# ---- the core alone (issue 15): what `default-features = false` gives a library user ----
# The library without the cli/s3/kms/async features: format, local keys, envelope, engine,
# range. Tests that run the binary or need S3/KMS are compiled out (#[cfg(feature)]), so
# this run proves the core builds and passes on its own. `cargo tree` proves it links none
# of the AWS SDK, tokio's runtime (only its runtime-free `sync` module: no mio, no tokio-util),
# clap or indicatif.
section "core only: cargo build / cargo test --no-default-features"
cargo build --no-default-features
# (cargo tree first, so that its own failure stops the script instead of reading as "none")
core_tree="$(cargo tree --no-default-features -e normal --prefix none)"
if grep -E '^(aws-|tokio-util |mio |clap |indicatif |ctrlc |hyper )' <<<"$core_tree"; then
    echo "ERROR: the core (--no-default-features) depends on the crates listed above" >&2
    exit 1
fi
cargo test --no-default-features --no-fail-fast
done_step

# Extra args before a `--` go to cargo, after it to the test binaries; --include-ignored
# runs the emulator tests (docs/TESTING.md). It is not passed to the doc tests, whose
# `ignore` blocks are not meant to compile.
cargo_args=()
test_args=()
seen_dashdash=0
for a in "$@"; do
    if [ "$seen_dashdash" = 0 ] && [ "$a" = "--" ]; then
        seen_dashdash=1
    elif [ "$seen_dashdash" = 0 ]; then
        cargo_args+=("$a")
    else
        test_args+=("$a")
    fi
done
section "cargo test --all-targets --no-fail-fast ${cargo_args[*]:+${cargo_args[*]} }-- --include-ignored${test_args[*]:+ ${test_args[*]}}"
cargo test --all-targets --no-fail-fast ${cargo_args[@]+"${cargo_args[@]}"} -- --include-ignored ${test_args[@]+"${test_args[@]}"}
done_step

section "independent implementation of the part-wise worked example (FORMAT.md §17.6)"
"$ROOT/.tools/moto-venv/bin/python" scripts/parts_vector.py
done_step

section "cargo test --doc${*:+ $*}"
cargo test --doc "$@"
done_step

# The API documentation is part of the library: a broken intra-doc link (an item renamed,
# or one that exists only with a feature) fails here, for both feature sets.
section "cargo doc --no-deps --lib (RUSTDOCFLAGS=-D warnings; full and core-only)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --no-default-features
done_step

# ---- supply chain (issue 7, issue 14 item 18) -----------------------------------------
# cargo-deny (pinned; installed on first use) against the checked-in deny.toml:
#   * licenses, bans (duplicate versions warn; banned crates fail), sources: these need only
#     Cargo.lock and crates.io, so they always run and must pass;
#   * advisories (RustSec vulnerabilities, unmaintained and yanked crates) need the RustSec
#     advisory database, a git repository on github.com. If it can be fetched now, the check
#     runs against it. If not (this workplace reaches no github.com), the check runs offline
#     against the newest local copy: cargo-deny's own clone in $CARGO_HOME/advisory-dbs, or
#     the snapshot ../shared/advisory-db.tar.gz beside the repository (override the path with
#     SEALSTREAM_ADVISORY_DB_SNAPSHOT), which is unpacked there under the directory name
#     cargo-deny derives from the database URL. The step prints the database's age (its last
#     commit) and warns when it is older than 90 days. Any advisory fails the step.
#     With no database at all the step FAILS; SEALSTREAM_SKIP_ADVISORIES=1 turns that into a
#     loudly reported SKIPPED for a quick local run (CI must not set it). Then the same
#     check must reject scripts/deny-canary (a crate with a known advisory), or the step fails.
# SEALSTREAM_SKIP_DENY=1 skips the whole step for quick local runs (CI must not set it).
CARGO_DENY_VERSION=0.20.2
# cargo-deny's directory name for https://github.com/RustSec/advisory-db (deny.toml's
# db-urls); read from its own failed-fetch message when it says one, else this.
DENY_DB_NAME_DEFAULT=advisory-db-3157b0e258782691
if [ "${SEALSTREAM_SKIP_DENY:-0}" = "1" ]; then
    section "supply chain: skipped (SEALSTREAM_SKIP_DENY=1)"
else
    section "supply chain: cargo deny $CARGO_DENY_VERSION (licenses, bans, sources, advisories)"
    if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
        echo "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked)"
        cargo install cargo-deny --version "=$CARGO_DENY_VERSION" --locked
    fi
    cargo deny --version
    # Inclusion graphs only when something fails (the duplicate warnings' graphs are long).
    if ! cargo deny --locked check --hide-inclusion-graph licenses bans sources; then
        cargo deny --locked check licenses bans sources || exit 1
    fi
    deny_db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    deny_adv=""
    deny_fetch_log="$(mktemp "${TMPDIR:-/tmp}/sealstream-deny-fetch.XXXXXX")"
    if timeout 300 cargo deny fetch db >"$deny_fetch_log" 2>&1; then
        # Online, so the yanked-crate check can ask the crates.io index too.
        cargo deny --locked check advisories
        deny_adv="advisories ok (RustSec database fetched now)"
    else
        deny_why="$( (grep -m1 '^fatal:' "$deny_fetch_log" || grep -m1 -i 'error' "$deny_fetch_log") | cut -c1-160 || true)"
        deny_name="$(grep -o 'advisory-dbs/advisory-db-[0-9a-f]*' "$deny_fetch_log" | head -n1 | sed 's|.*/||' || true)"
        deny_name="${deny_name:-$DENY_DB_NAME_DEFAULT}"
        deny_db="$deny_db_dir/$deny_name"
        commit_time() { git -C "$1" show -s --format=%ct HEAD 2>/dev/null; }
        deny_have="$(commit_time "$deny_db" || true)"
        deny_snap="${SEALSTREAM_ADVISORY_DB_SNAPSHOT:-$ROOT/../shared/advisory-db.tar.gz}"
        deny_from="cargo-deny's local clone"
        if [ -f "$deny_snap" ]; then
            deny_tmp="$(mktemp -d "${TMPDIR:-/tmp}/sealstream-advisory-db.XXXXXX")"
            tar -xzf "$deny_snap" -C "$deny_tmp"
            deny_src="$(find "$deny_tmp" -mindepth 2 -maxdepth 2 -name .git -type d | head -n1)"
            deny_src="${deny_src%/.git}"
            deny_snap_time="$( [ -n "$deny_src" ] && commit_time "$deny_src" || true)"
            if [ -z "$deny_snap_time" ]; then
                echo "ERROR: $deny_snap holds no git checkout of the advisory database" >&2
                rm -rf "$deny_tmp"
                exit 1
            fi
            # The newer of the two wins; an older snapshot never replaces a newer clone.
            if [ -z "$deny_have" ] || [ "$deny_snap_time" -gt "$deny_have" ]; then
                mkdir -p "$deny_db_dir"
                rm -rf "$deny_db"
                mv "$deny_src" "$deny_db"
                deny_have="$deny_snap_time"
                deny_from="the snapshot $deny_snap"
            fi
            rm -rf "$deny_tmp"
        fi
        if [ -n "$deny_have" ]; then
            deny_age=$((($(date +%s) - deny_have) / 86400))
            deny_date="$(date -u -d "@$deny_have" +%Y-%m-%d)"
            echo "cannot fetch the RustSec database (${deny_why:-see above})"
            echo "checking advisories offline against $deny_from: last commit $deny_date, $deny_age days old"
            if [ "$deny_age" -gt 90 ]; then
                printf '**** WARNING: the advisory database is %s days old: advisories published after %s are not checked\n' "$deny_age" "$deny_date" >&2
            fi
            # Offline, cargo metadata needs every platform's crates on disk: fetch them first.
            cargo fetch --locked --quiet
            cargo deny --locked --offline check advisories
            deny_adv="advisories ok against a RustSec database of $deny_date ($deny_age days old; fetch failed, checked offline)"
        else
            deny_adv="advisories SKIPPED: no RustSec database (${deny_why:-fetch failed}; no snapshot at $deny_snap)"
        fi
    fi
    rm -f "$deny_fetch_log"
    # The check must be able to fail: the canary crate depends on a version with a known
    # advisory, so the same database has to reject it (an empty or broken one would not).
    case "$deny_adv" in
        *SKIPPED*) ;;
        *)
            deny_offline=""
            case "$deny_adv" in *offline*) deny_offline="--offline" ;; esac
            (cd "$ROOT/scripts/deny-canary" && cargo fetch --locked --quiet)
            if (cd "$ROOT/scripts/deny-canary" && cargo deny --locked $deny_offline check advisories >/dev/null 2>&1); then
                echo "ERROR: the advisories check passed scripts/deny-canary (time 0.1.43, RUSTSEC-2020-0071): the database in use proves nothing" >&2
                exit 1
            fi
            deny_adv="$deny_adv; canary rejected as it must be"
            ;;
    esac
    case "$deny_adv" in
        *SKIPPED*)
            printf '\n**** %s\n**** licenses, bans and sources were checked; advisories were NOT.\n' "$deny_adv" >&2
            if [ "${SEALSTREAM_SKIP_ADVISORIES:-0}" != "1" ]; then
                echo "ERROR: the advisories check could not run (SEALSTREAM_SKIP_ADVISORIES=1 skips it for a local run)" >&2
                exit 1
            fi
            ;;
    esac
    echo "supply chain: licenses ok, bans ok, sources ok; $deny_adv"
fi
done_step
# ---- end supply chain -----------------------------------------------------------------

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
