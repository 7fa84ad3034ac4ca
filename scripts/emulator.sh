#!/usr/bin/env bash
# Local AWS emulator (moto server) for the test suite.
#
#   scripts/emulator.sh install   create .tools/moto-venv with moto[server] pinned (idempotent)
#   scripts/emulator.sh start     install if needed, start moto_server on 127.0.0.1:<free port>
#   scripts/emulator.sh stop      stop it and wait for it to exit
#   scripts/emulator.sh restart   stop, then start (fresh in-memory state)
#   scripts/emulator.sh status    print pid/port/endpoint; exit 0 if running, 1 if not
#   scripts/emulator.sh endpoint  print http://127.0.0.1:<port> of the running emulator
#
# It can also be sourced (scripts/test.sh does): that only defines the functions
# (emulator_start, emulator_stop, ...). The server is then a child of the sourcing shell,
# which reaps it on stop, so no <defunct> moto_server lingers even where PID 1 does not
# reap orphans promptly (as in some containers).
#
# State lives in ignored paths inside the repo: .tools/moto-venv, .tools/moto.{pid,port,log}.
# Environment overrides: PYTHON (interpreter used to create the venv, default python3),
# MOTO_START_TIMEOUT (seconds to wait for the server to answer, default 30).
set -euo pipefail

MOTO_VERSION="5.2.5"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/moto-venv"
VPY="$VENV/bin/python"
PID_FILE="$TOOLS/moto.pid"
PORT_FILE="$TOOLS/moto.port"
LOG_FILE="$TOOLS/moto.log"
PYTHON="${PYTHON:-python3}"
START_TIMEOUT="${MOTO_START_TIMEOUT:-30}"

log() { printf 'emulator: %s\n' "$*" >&2; }
die() { printf 'emulator: ERROR: %s\n' "$*" >&2; exit 1; }

# True when the venv exists, its interpreter runs, and it has moto at the pinned
# version plus the server extra (flask) importable.
venv_ready() {
    [ -x "$VPY" ] || return 1
    "$VPY" - "$MOTO_VERSION" >/dev/null 2>&1 <<'PY'
import sys, importlib.metadata as md
if md.version("moto") != sys.argv[1]:
    sys.exit(1)
import flask, flask_cors  # noqa: F401  (the [server] extra)
PY
}

cmd_install() {
    if venv_ready; then
        return 0
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install CPython 3 (or set PYTHON=/path/to/python3)"
    mkdir -p "$TOOLS"
    local t0=$SECONDS
    if [ ! -x "$VPY" ] || ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
        log "creating venv at ${VENV#"$ROOT"/} with $("$PYTHON" --version 2>&1)"
        # --clear: a half-built or broken venv (e.g. its interpreter moved) is rebuilt from scratch.
        "$PYTHON" -m venv --clear "$VENV" \
            || die "'$PYTHON -m venv' failed (on Debian's system python: apt-get install -y python3-venv)"
    fi
    log "installing moto[server]==$MOTO_VERSION into ${VENV#"$ROOT"/} ..."
    "$VPY" -m pip install --quiet --disable-pip-version-check --no-input \
        "moto[server]==$MOTO_VERSION" \
        || die "pip install of moto[server]==$MOTO_VERSION failed (see errors above)"
    venv_ready || die "moto[server]==$MOTO_VERSION still not importable from $VENV after install"
    log "installed moto $MOTO_VERSION in $((SECONDS - t0))s"
}

# Is $1 a live (non-zombie) process? PID 1 in containers may not reap orphans,
# so an exited server can linger as a zombie that `kill -0` still sees.
alive() {
    local pid="$1" state
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/status" ]; then
        state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        [ "$state" != "Z" ] && [ "$state" != "X" ] || return 1
    fi
    return 0
}

# Is $1 our moto server (guards against acting on a recycled pid)?
is_moto() {
    local pid="$1"
    alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'moto' || return 1
    fi
    return 0
}

read_pid() { if [ -f "$PID_FILE" ]; then cat "$PID_FILE" 2>/dev/null || true; fi; }
read_port() { if [ -f "$PORT_FILE" ]; then cat "$PORT_FILE" 2>/dev/null || true; fi; }

# Does something answer HTTP on 127.0.0.1:$1 ? Any HTTP status counts.
answers_http() {
    "$VPY" - "$1" >/dev/null 2>&1 <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=2).read()
except urllib.error.HTTPError:
    pass  # an HTTP error status still means the server is up
PY
}

# free_port (and median): scripts/lib.sh.
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# Poll until the server on port $2 (pid $1) answers, it dies, or the timeout passes.
# Exit status: 0 ready, 2 process died, 3 timed out.
wait_ready() {
    "$VPY" - "$1" "$2" "$START_TIMEOUT" <<'PY'
import os, sys, time, urllib.request, urllib.error
pid, port, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
def dead():
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % port, timeout=2).read()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        pass
    if dead():
        sys.exit(2)
    if time.monotonic() >= deadline:
        sys.exit(3)
    time.sleep(0.2)
PY
}

# Collect the exit status of $1 if it is a child of this shell (i.e. the script was
# sourced and this shell started the server); a no-op for any other process.
reap() {
    wait "$1" 2>/dev/null || true
}

kill_and_wait() {
    local pid="$1"
    alive "$pid" || { reap "$pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do # up to ~10 s
        alive "$pid" || { reap "$pid"; return 0; }
        sleep 0.2
    done
    log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do
        alive "$pid" || { reap "$pid"; return 0; }
        sleep 0.2
    done
    log "WARNING: pid $pid still alive after SIGKILL"
    return 1
}

show_log_tail() {
    if [ -s "$LOG_FILE" ]; then
        echo "---- last 40 lines of ${LOG_FILE#"$ROOT"/} ----" >&2
        tail -n 40 "$LOG_FILE" >&2
        echo "---- end of log ----" >&2
    else
        echo "(log ${LOG_FILE#"$ROOT"/} is empty)" >&2
    fi
}

cmd_start() {
    local pid port attempt rc
    pid="$(read_pid)"
    port="$(read_port)"
    if [ -n "$pid" ] && is_moto "$pid" && [ -n "$port" ] && answers_http "$port" 2>/dev/null; then
        log "already running (pid $pid) at http://127.0.0.1:$port"
        return 0
    fi
    if [ -n "$pid" ] && is_moto "$pid"; then
        log "stale/unhealthy emulator pid $pid found; stopping it"
        kill_and_wait "$pid" || true
    fi
    rm -f "$PID_FILE" "$PORT_FILE"

    cmd_install

    # A free port can be taken by someone else between picking and binding it,
    # so retry a couple of times if the server dies straight away.
    for attempt in 1 2 3; do
        port="$(free_port)"
        : >"$LOG_FILE"
        # stdin from /dev/null and output to the log: the server must not hold the
        # caller's terminal or CI pipes open.
        "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >>"$LOG_FILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$PORT_FILE"
        rc=0
        wait_ready "$pid" "$port" || rc=$?
        if [ "$rc" -eq 0 ]; then
            log "moto $MOTO_VERSION running (pid $pid) at http://127.0.0.1:$port (log: ${LOG_FILE#"$ROOT"/})"
            return 0
        fi
        if [ "$rc" -eq 2 ] && [ "$attempt" -lt 3 ] && grep -qi 'address already in use' "$LOG_FILE"; then
            log "port $port was taken before moto could bind it; retrying with another port"
            rm -f "$PID_FILE" "$PORT_FILE"
            continue
        fi
        if [ "$rc" -eq 2 ]; then
            echo "emulator: ERROR: moto_server (pid $pid) exited before answering on 127.0.0.1:$port" >&2
        else
            echo "emulator: ERROR: moto_server (pid $pid) did not answer HTTP on 127.0.0.1:$port within ${START_TIMEOUT}s" >&2
        fi
        kill_and_wait "$pid" || true
        rm -f "$PID_FILE" "$PORT_FILE"
        show_log_tail
        exit 1
    done
}

cmd_stop() {
    local pid
    pid="$(read_pid)"
    if [ -z "$pid" ]; then
        log "not running (no ${PID_FILE#"$ROOT"/})"
        rm -f "$PORT_FILE"
        return 0
    fi
    if is_moto "$pid"; then
        if kill_and_wait "$pid"; then
            log "stopped (pid $pid)"
        else
            die "could not stop pid $pid"
        fi
    else
        reap "$pid"
        log "not running (stale pid file for pid $pid removed)"
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
}

cmd_status() {
    local pid port
    pid="$(read_pid)"
    port="$(read_port)"
    if [ -n "$pid" ] && is_moto "$pid"; then
        if [ -n "$port" ] && answers_http "$port"; then
            echo "running: pid $pid, endpoint http://127.0.0.1:$port"
            return 0
        fi
        echo "unhealthy: pid $pid alive but not answering HTTP on port ${port:-?}"
        return 1
    fi
    echo "not running"
    return 1
}

cmd_endpoint() {
    local port
    port="$(read_port)"
    if [ -z "$port" ] || ! is_moto "$(read_pid)"; then
        die "emulator is not running (scripts/emulator.sh start)"
    fi
    echo "http://127.0.0.1:$port"
}

emulator_install() { cmd_install; }
emulator_start() { cmd_start; }
emulator_stop() { cmd_stop; }
emulator_restart() { cmd_stop; cmd_start; }
emulator_status() { cmd_status; }
emulator_endpoint() { cmd_endpoint; }

# Sourced: only define the functions above.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0
fi

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    endpoint) cmd_endpoint ;;
    *)
        echo "usage: $0 install|start|stop|restart|status|endpoint" >&2
        exit 2
        ;;
esac
