#!/usr/bin/env bash
# Installs the Amazon S3 Encryption Client for Python (PyPI amazon-s3-encryption-client-python,
# pinned) into .tools/s3ec-venv, idempotently: the writer of tests/it/s3ec.rs's fixture
# (scripts/s3ec_fixture.py). Prints the interpreter's path.
#
# Environment: PYTHON (interpreter that creates the venv, default python3).
set -euo pipefail

S3EC_VERSION="4.0.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/s3ec-venv"
VPY="$VENV/bin/python"

ready() {
    [ -x "$VPY" ] && "$VPY" - "$S3EC_VERSION" >/dev/null 2>&1 <<'PY'
import sys, importlib.metadata as md
sys.exit(md.version("amazon-s3-encryption-client-python") != sys.argv[1])
PY
}

if ! ready; then
    mkdir -p "$ROOT/.tools"
    if [ ! -x "$VPY" ] || ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
        "${PYTHON:-python3}" -m venv --clear "$VENV"
    fi
    echo "s3ec_venv: installing amazon-s3-encryption-client-python==$S3EC_VERSION into .tools/s3ec-venv" >&2
    "$VPY" -m pip install --quiet --disable-pip-version-check --no-input \
        "amazon-s3-encryption-client-python==$S3EC_VERSION"
    ready || { echo "s3ec_venv: ERROR: the client is still not importable from $VENV" >&2; exit 1; }
fi
echo "$VPY"
