#!/usr/bin/env bash
# End-to-end test of the Tauri app through WebDriver, under Xvfb with a private D-Bus session:
# crates/e2e/tests/tray_app.rs (tauri-driver + WebKitWebDriver drive the debug build).
#
#   bash scripts/tauri-e2e.sh            (build first: cargo build -p sparklio-desk-app)
#
# Installs tauri-driver (cargo install tauri-driver --locked, ~2.5 min) when it is missing.
# Artifacts: $ARTIFACTS (default ci-artifacts/): tray-app.png, tray-app-driver.log (the
# drivers' and the app's output).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export SPARKLIO_ARTIFACTS=${ARTIFACTS:-$ROOT/ci-artifacts}
mkdir -p "$SPARKLIO_ARTIFACTS"
# Same environment as scripts/tauri-smoke.sh: no accessibility bus, software rendering.
export NO_AT_BRIDGE=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1

APP=${SPARKLIO_APP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/sparklio-desk-app}
[[ -x "$APP" ]] || { echo "tauri-e2e: FAIL: no app binary at $APP (cargo build -p sparklio-desk-app)" >&2; exit 1; }
[[ -x /usr/bin/WebKitWebDriver ]] || { echo "tauri-e2e: FAIL: /usr/bin/WebKitWebDriver missing (apt install webkit2gtk-driver)" >&2; exit 1; }
for tool in xvfb-run xauth dbus-run-session; do
    command -v "$tool" >/dev/null || { echo "tauri-e2e: FAIL: $tool missing (see .ci/run)" >&2; exit 1; }
done

CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export TAURI_DRIVER=${TAURI_DRIVER:-$(command -v tauri-driver || echo "$CARGO_BIN/tauri-driver")}
if [[ ! -x "$TAURI_DRIVER" ]]; then
    echo "tauri-e2e: installing tauri-driver (cargo install tauri-driver --locked)"
    start=$SECONDS
    cargo install tauri-driver --locked
    echo "tauri-e2e: tauri-driver installed in $((SECONDS - start))s"
fi

# Build the test (and the test service it supervises) outside Xvfb, then run it inside.
cargo test -p sparklio-desk-e2e --test it --no-run
exec xvfb-run -a -s "-screen 0 1280x900x24 -nolisten tcp" \
    dbus-run-session -- \
    cargo test -p sparklio-desk-e2e --test it -- --ignored --nocapture tray_app::
