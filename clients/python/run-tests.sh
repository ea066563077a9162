#!/usr/bin/env bash
# Runs the Python client's tests against real processes: the Desk (mock and live mode) and the
# Ollama/ComfyUI doubles. Builds nothing: it takes the binaries from $SPARKLIO_DESK_BIN /
# $SPARKLIO_TESTKIT_BIN, else $CARGO_TARGET_DIR/debug (else target/debug), so build them first:
#
#   cargo build -p sparklio-desk -p sparklio-testkit --bins
#   bash clients/python/run-tests.sh [PYTEST ARGS...]
#
# One venv, $PY_VENV (default $CARGO_TARGET_DIR/py-venv), made once with requirements-ci.txt
# (pinned; the official-SDK tests of the fronts use the same venv) and this package in editable
# mode; pip runs again only when requirements-ci.txt, pyproject.toml or the checkout changed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${PY_VENV:-$TARGET/py-venv}

export SPARKLIO_DESK_BIN=${SPARKLIO_DESK_BIN:-$TARGET/debug/sparklio-desk}
export SPARKLIO_TESTKIT_BIN=${SPARKLIO_TESTKIT_BIN:-$TARGET/debug/sparklio-testkit}
for bin in "$SPARKLIO_DESK_BIN" "$SPARKLIO_TESTKIT_BIN"; do
    if [[ ! -x "$bin" ]]; then
        echo "missing $bin: cargo build -p sparklio-desk -p sparklio-testkit --bins" >&2
        exit 1
    fi
done

stamp="$VENV/.sparklio-requirements"
# Made again when the pins, the package metadata or this checkout's path (editable) change.
want=$(cat "$HERE/requirements-ci.txt"; sha256sum "$HERE/pyproject.toml" | cut -d' ' -f1; echo "$HERE")
if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    start=$SECONDS
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$HERE/requirements-ci.txt" -e "$HERE"
    printf '%s' "$want" >"$stamp"
    echo "py venv ready at $VENV in $((SECONDS - start))s"
fi

start=$SECONDS
"$VENV/bin/python" -m pytest -q "$HERE/tests" "$@"
echo "pytest took $((SECONDS - start))s"
