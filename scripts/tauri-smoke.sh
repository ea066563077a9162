#!/usr/bin/env bash
# Smoke test of the Tauri tray app (debug build) under Xvfb, with a private D-Bus session.
#
#   bash scripts/tauri-smoke.sh            (build first: cargo build -p sparklio-desk-app)
#
# Checks, each with a bounded wait and a clear failure message:
#   0. with its port already taken, the app exits 1 and says so (no panic, no window);
#   1. the app starts its in-process core on a free loopback port (/healthz answers);
#   2. a visible X window named "Sparklio Desk" appears, the tray icon's X window exists, and
#      the webview runs the dashboard (the core logs the page's own GET /api/v1/status);
#      screenshot saved;
#   3. closing the window (WM_DELETE_WINDOW, as a window manager sends it) keeps the app and
#      the core running, with the window gone;
#   4. a second launch exits at once and brings the window back (single instance);
#   5. SIGTERM stops the app cleanly: exit code 0 in time, the port is closed, no WebKit
#      process is left behind.
# Memory (RSS and PSS of the app and its WebKit processes) is recorded with the window open
# and closed. Artifacts (logs, screenshots, memory): $ARTIFACTS/tauri-smoke (default ci-artifacts/).
#
# Env: SPARKLIO_APP_BIN (default $CARGO_TARGET_DIR or ./target, debug/sparklio-desk-app),
#      SMOKE_START_TIMEOUT (s, default 90: a debug build under load starts slowly).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP=${SPARKLIO_APP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/sparklio-desk-app}
OUT=${ARTIFACTS:-$ROOT/ci-artifacts}/tauri-smoke
START_TIMEOUT=${SMOKE_START_TIMEOUT:-90}
WINDOW_NAME='^Sparklio Desk$'

export NO_AT_BRIDGE=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1

if [[ "${1:-}" != "--inside" ]]; then
    [[ -x "$APP" ]] || { echo "tauri-smoke: FAIL: no app binary at $APP (cargo build -p sparklio-desk-app)" >&2; exit 1; }
    missing=()
    for tool in xvfb-run xauth dbus-run-session xdotool import convert curl pgrep; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    /usr/bin/python3 -c 'import Xlib' 2>/dev/null || missing+=("python3-xlib")
    if ((${#missing[@]})); then
        echo "tauri-smoke: FAIL: missing tools: ${missing[*]} (see .ci/run for the apt packages)" >&2
        exit 1
    fi
    rm -rf "$OUT" && mkdir -p "$OUT"
    # One X server and one session bus for the app, the tools and the second launch.
    exec xvfb-run -a -s "-screen 0 1280x900x24 -nolisten tcp" \
        dbus-run-session -- bash "${BASH_SOURCE[0]}" --inside
fi

# ---------------------------------------------------------------- inside Xvfb + D-Bus
T0=$(date +%s%N)
WORK=$(mktemp -d)
APP_PID=""
HOLDER_PID=""
LOG="$OUT/app.log"

elapsed() {
    local ms=$((($(date +%s%N) - T0) / 1000000))
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}
step() { echo "tauri-smoke [$(elapsed)] $*"; }

fail() {
    echo "tauri-smoke [$(elapsed)] FAIL: $*" >&2
    import -window root "$OUT/failure.png" 2>/dev/null || true
    if [[ -f "$LOG" ]]; then
        echo "---- last lines of $LOG ----" >&2
        tail -n 40 "$LOG" >&2
        echo "----" >&2
    fi
    exit 1
}

cleanup() {
    [[ -z "$HOLDER_PID" ]] || kill "$HOLDER_PID" 2>/dev/null || true
    if [[ -n "$APP_PID" ]] && kill -0 "$APP_PID" 2>/dev/null; then
        kill -TERM "$APP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$APP_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$BUSY_PORT") 2>/dev/null; }
app_alive() { kill -0 "$APP_PID" 2>/dev/null; }
# The app's log without colour codes (NO_COLOR is set; this also copes with a logger ignoring it).
plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$LOG"; }
# How many times the dashboard page asked the core for its status (the smoke test never does).
status_calls() { plain_log | grep -c 'path=/api/v1/status' || true; }
visible_windows() { xdotool search --onlyvisible --name "$WINDOW_NAME" 2>/dev/null || true; }
# Predicates for wait_until (evaluated on every poll).
status_calls_at_least() { (($(status_calls) >= $1)); }
window_visible() { [[ -n "$(visible_windows)" ]]; }
window_gone() { [[ -z "$(visible_windows)" ]]; }
# Without a StatusNotifier host, libayatana-appindicator falls back to an XEmbed status icon:
# an X window whose class carries the tray id ("tray-icon tray app sparklio-desk").
tray_window_exists() { [[ -n "$(xdotool search --class 'tray-icon tray app sparklio-desk' 2>/dev/null)" ]]; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll every 0.25 s; the app must stay alive.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@"; do
        [[ -z "$APP_PID" ]] || app_alive || fail "the app exited while waiting for $what"
        (($(date +%s) < deadline)) || fail "timed out after ${limit}s waiting for $what"
        sleep 0.25
    done
}

process_tree() {
    local pid=$1 child
    echo "$pid"
    for child in $(pgrep -P "$pid" || true); do process_tree "$child"; done
}

# memory_report LABEL: RSS and PSS (KiB) per process of the app's tree, and the totals.
memory_report() {
    local label=$1 file="$OUT/memory-$1.txt" pid rss pss total_rss=0 total_pss=0
    {
        printf '%-8s %-24s %10s %10s\n' PID COMMAND RSS_KiB PSS_KiB
        for pid in $(process_tree "$APP_PID"); do
            [[ -r /proc/$pid/smaps_rollup ]] || continue
            rss=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
            pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
            total_rss=$((total_rss + rss))
            total_pss=$((total_pss + pss))
            printf '%-8s %-24s %10s %10s\n' "$pid" "$(cat "/proc/$pid/comm")" "$rss" "$pss"
        done
        printf '%-33s %10s %10s\n' "TOTAL ($label)" "$total_rss" "$total_pss"
        printf 'total: RSS %d MiB, PSS %d MiB\n' $((total_rss / 1024)) $((total_pss / 1024))
    } >"$file"
    step "memory, window $label: $(tail -n 1 "$file")"
}

# WM_DELETE_WINDOW, as a window manager sends it when the user clicks the close button.
close_window() {
    /usr/bin/python3 - "$1" <<'PY'
import sys
from Xlib import X, display, protocol
d = display.Display()
w = d.create_resource_object("window", int(sys.argv[1]))
protocols = d.intern_atom("WM_PROTOCOLS")
delete = d.intern_atom("WM_DELETE_WINDOW")
event = protocol.event.ClientMessage(window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0]))
w.send_event(event, event_mask=X.NoEventMask)
d.sync()
PY
}

screenshot() {
    import -window root "$OUT/$1.png" || fail "screenshot $1 failed"
    local colours
    colours=$(convert "$OUT/$1.png" -format '%k' info:)
    # A rendered dashboard has text and colours; a blank or black window has a handful.
    ((colours >= 32)) || fail "screenshot $1 looks blank ($colours colours): the webview did not render"
    step "screenshot $OUT/$1.png ($colours colours)"
}

PORT=$(free_port)
mkdir -p "$WORK/data"
cat >"$WORK/config.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"

[storage]
data_dir = "$WORK/data"
TOML
export SPARKLIO_DESK_CONFIG="$WORK/config.toml"
# Request lines at debug level show the webview's own requests to the core.
export NO_COLOR=1
export RUST_LOG="info,sparklio_core::http=debug,hyper=warn,reqwest=warn"
cd "$WORK" # no stray .env from the checkout

# 0. A port that is already taken (say `sparklio-desk serve` runs): exit 1 with a message.
BUSY_PORT=$(free_port)
/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(120)' "$BUSY_PORT" &
HOLDER_PID=$!
wait_until 10 "the port holder to listen" port_busy
sed "s/:$PORT\"/:$BUSY_PORT\"/" "$WORK/config.toml" >"$WORK/busy.toml"
set +e
SPARKLIO_DESK_CONFIG="$WORK/busy.toml" timeout 60 "$APP" >"$OUT/port-taken.log" 2>&1
busy_rc=$?
set -e
kill "$HOLDER_PID" 2>/dev/null || true
((busy_rc == 1)) || fail "with port $BUSY_PORT taken the app exited with $busy_rc, expected 1 (log: $OUT/port-taken.log)"
grep -q "could not start.*cannot listen on 127.0.0.1:$BUSY_PORT" "$OUT/port-taken.log" ||
    fail "with port $BUSY_PORT taken the app did not say so (log: $OUT/port-taken.log)"
! grep -q panicked "$OUT/port-taken.log" || fail "the app panicked on a taken port (log: $OUT/port-taken.log)"
step "port taken: exit code 1 with a clear message"

step "starting $APP on 127.0.0.1:$PORT (display $DISPLAY)"
"$APP" >"$LOG" 2>&1 &
APP_PID=$!

wait_until "$START_TIMEOUT" "/healthz on 127.0.0.1:$PORT" \
    curl -fs --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/healthz"
step "core is up: /healthz answers"

wait_until 60 "a visible window named 'Sparklio Desk'" window_visible
WID=$(visible_windows | head -n 1)
step "window $WID is visible: $(xdotool getwindowgeometry "$WID" | tr -s '\n ' ' ')"
wait_until 30 "the tray icon's X window" tray_window_exists
step "tray icon is up (X window $(xdotool search --class 'tray-icon tray app sparklio-desk' | head -n 1))"
wait_until 60 "the dashboard page to call GET /api/v1/status" \
    status_calls_at_least 1
step "the webview runs the dashboard (its GET /api/v1/status reached the core)"
sleep 2 # let the page paint its first data
screenshot 01-dashboard-open
memory_report open

step "closing the window (WM_DELETE_WINDOW)"
close_window "$WID"
wait_until 20 "the window to close" window_gone
sleep 1
app_alive || fail "the app exited when its window closed (it should stay in the tray)"
curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/healthz" ||
    fail "the core stopped answering after the window closed"
step "window closed; app and core still running"
sleep 4 # let WebKit wind down the closed page before measuring
memory_report closed

step "second launch (single instance): must exit and bring the window back"
set +e
timeout 60 "$APP" >"$OUT/second-launch.log" 2>&1
second_rc=$?
set -e
((second_rc == 0)) || fail "the second launch exited with $second_rc (log: $OUT/second-launch.log)"
app_alive || fail "the first instance died on the second launch"
wait_until 60 "the window to come back after the second launch" window_visible
plain_log | grep -q 'second launch' || fail "the running instance did not log the second launch"
wait_until 60 "the reopened dashboard to call GET /api/v1/status" \
    status_calls_at_least 2
sleep 2
screenshot 02-dashboard-reopened

step "SIGTERM: expecting a clean exit"
tree_before=$(process_tree "$APP_PID" | tr '\n' ' ')
kill -TERM "$APP_PID"
deadline=$(($(date +%s) + 30))
while app_alive; do
    (($(date +%s) < deadline)) || fail "the app did not exit within 30s of SIGTERM"
    sleep 0.1
done
set +e
wait "$APP_PID"
rc=$?
set -e
pid=$APP_PID
APP_PID=""
((rc == 0)) || fail "the app exited with code $rc after SIGTERM (expected 0)"
plain_log | grep -q 'shutdown complete' || fail "the core did not log 'shutdown complete'"
! port_open || fail "port $PORT still accepts connections after the app exited"
# WebKit's helpers exit when their connection to the app closes; give them a moment.
leftovers() {
    local p state
    for p in $tree_before; do
        [[ "$p" == "$pid" ]] && continue
        state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
        [[ "$state" == Z ]] && continue # exited, waiting to be reaped by its new parent
        echo "$p($(cat "/proc/$p/comm" 2>/dev/null))"
    done
}
deadline=$(($(date +%s) + 15))
while [[ -n "$(leftovers)" ]]; do
    (($(date +%s) < deadline)) || fail "processes outlived the app by 15s: $(leftovers | tr '\n' ' ')"
    sleep 0.25
done
step "clean exit (code 0), port $PORT closed, no process left behind"
step "PASS"
