#!/usr/bin/env bash
# Runs every test of the headless parts, after installing what they need on a fresh
# Debian machine (Chromium for the dashboard's browser test). Safe to rerun.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -- NAME    # only tests whose name contains NAME
#
# The Python client's tests (a venv, pip, the built binaries) are not run here; CI runs them in
# its py-clients phase, and locally: bash clients/python/run-tests.sh (see clients/python/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Chromium and chromedriver for the dashboard browser test"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "note: chromium/chromedriver are not installed; the dashboard browser test will be skipped" >&2
  fi
fi

log "cargo test (core, headless binary, test helpers)"
cargo test --locked "$@"
