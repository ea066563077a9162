#!/usr/bin/env bash
# Windows behaviour of the headless binary, tested under Wine (64-bit) with the cross-built
# debug exes (`cargo build --target x86_64-pc-windows-gnu -p sparklio-desk -p sparklio-test-service`).
#
#   bash scripts/wine-smoke.sh
#
# What it checks (each with a bounded wait; a step Wine cannot show is SKIPPED with the
# reason, never passed):
#   - install folder with a space and Korean (C:\Sparklio Smoke\프로그램), Wine user 김민수,
#     so %APPDATA% is C:\users\김민수\AppData\Roaming;
#   - `config init --profile gpu-desktop` + `config check` (no all-interface warning);
#   - `serve` reads its config from %APPDATA%\Sparklio\Sparklio Desk\config (no --config),
#     answers /healthz, a mock generate, /api/v1/status with its data under %APPDATA%;
#   - supervises sparklio-test-service.exe (+ a grandchild): start, crash (exit 3) -> restart,
#     stop -> the whole Job Object tree is gone; the stop ladder's CTRL_BREAK step (Wine 8.0
#     cannot deliver console control events: skipped with the reason from the service log)
#     and WM_CLOSE step (a windowed program, needs an X server: Xvfb);
#   - Ctrl-C (SIGINT, which Wine turns into CTRL_C_EVENT): exit code 0, "shutdown
#     complete", the port closed, no supervised process left.
# Artifacts: $ARTIFACTS/wine-smoke/ (serve.log, service logs, timings).
set -euo pipefail
set -m # background jobs keep SIGINT (the Ctrl-C test) and get their own process group
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-debug}
WINBIN=$TARGET/x86_64-pc-windows-gnu/$PROFILE
OUT=${ARTIFACTS:-$ROOT/ci-artifacts}/wine-smoke
WINE=${WINE:-/usr/lib/wine/wine64}
export WINEPREFIX=${WINEPREFIX:-$TARGET/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml=" # no Mono/Gecko download prompts
# The Wine user, hence %USERPROFILE%: a Korean name, as the desktop's owner may have.
export USER=김민수 LOGNAME=김민수
CC=x86_64-w64-mingw32-gcc

rm -rf "$OUT"
mkdir -p "$OUT"
PASSED=0 FAILED=0 SKIPPED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS  $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $1: $2"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP  $1: $2"; }
note() { echo "      $*"; }

SERVER_PID="" XVFB_PID=""
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill -9 "$SERVER_PID" 2>/dev/null || true
    "${WINE%64}server" -k 2>/dev/null || /usr/lib/wine/wineserver -k 2>/dev/null || true
    [[ -n "$XVFB_PID" ]] && kill "$XVFB_PID" 2>/dev/null || true
}
trap cleanup EXIT

for exe in sparklio-desk.exe sparklio-test-service.exe; do
    if [[ ! -f "$WINBIN/$exe" ]]; then
        echo "missing $WINBIN/$exe: cargo build --target x86_64-pc-windows-gnu -p sparklio-desk -p sparklio-test-service" >&2
        exit 1
    fi
done
command -v "$WINE" >/dev/null || { echo "no $WINE: apt-get install wine64" >&2; exit 1; }

# --- helpers -------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for SECONDS COMMAND...: until the command succeeds.
wait_for() {
    local until=$((SECONDS + $1))
    shift
    while ((SECONDS < until)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_closed() { ! port_open "$1"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
svc() { curl -sf "http://127.0.0.1:$DESK/api/v1/services/$1" | json "d$2"; }
svc_is() { [[ "$(svc "$1" "['state']")" == "$2" ]]; }
svc_logs() { curl -sf "http://127.0.0.1:$DESK/api/v1/services/$1/logs?tail=200" | json "'\n'.join(l['line'] for l in d['lines'])"; }
test_procs() { pgrep -f 'Sparklio Smoke.*(sparklio-test-service|smoke-window)\.exe' || true; }
no_test_procs() { [[ -z "$(test_procs)" ]]; }

# --- Windows-side files ----------------------------------------------------------------------
T0=$SECONDS
if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
    echo "==== wineboot (first start of the prefix $WINEPREFIX)"
    "$WINE" wineboot --init >"$OUT/wineboot.log" 2>&1 || true
    "${WINE%64}server" -w 2>/dev/null || /usr/lib/wine/wineserver -w 2>/dev/null || true
    echo "wineboot: $((SECONDS - T0)) s" | tee "$OUT/timings.txt"
else
    echo "wineboot: prefix reused ($WINEPREFIX)" | tee "$OUT/timings.txt"
fi
DRIVE_C=$WINEPREFIX/drive_c
INSTALL_UNIX="$DRIVE_C/Sparklio Smoke/프로그램"
INSTALL_WIN='C:\Sparklio Smoke\프로그램'
APPDATA_UNIX="$DRIVE_C/users/$USER/AppData/Roaming/Sparklio/Sparklio Desk"
rm -rf "$DRIVE_C/Sparklio Smoke" "$APPDATA_UNIX"
mkdir -p "$INSTALL_UNIX" "$APPDATA_UNIX/config"
cp "$WINBIN/sparklio-desk.exe" "$WINBIN/sparklio-test-service.exe" "$INSTALL_UNIX/"
# Wine 8.0 lacks ProcessPrng (bcryptprimitives.dll), which Rust's std imports: a stand-in
# beside the exe, for this test only (packaging/windows/wine/README.md).
$CC -shared -O2 -s -o "$INSTALL_UNIX/bcryptprimitives.dll" \
    packaging/windows/wine/bcryptprimitives.c packaging/windows/wine/bcryptprimitives.def -ladvapi32
$CC -O2 -s -o "$INSTALL_UNIX/smoke-window.exe" packaging/windows/wine/smoke-window.c -luser32

# An X server lets Wine create windows (the WM_CLOSE step); without one that step is skipped.
if command -v Xvfb >/dev/null; then
    DISPLAY_NUM=$((90 + RANDOM % 100))
    Xvfb ":$DISPLAY_NUM" -screen 0 1024x768x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
    XVFB_PID=$!
    export DISPLAY=":$DISPLAY_NUM"
    sleep 1
    if ! kill -0 "$XVFB_PID" 2>/dev/null; then
        echo "Xvfb :$DISPLAY_NUM did not start (display taken?); the WM_CLOSE step will be skipped"
        XVFB_PID=""
        unset DISPLAY
    fi
else
    unset DISPLAY
fi
desk() { "$WINE" "$INSTALL_WIN\\sparklio-desk.exe" "$@"; }

# --- config: the profile, then the smoke config in the default place ---------------------------
if out=$(desk config init --profile gpu-desktop --config "$INSTALL_WIN\\gpu-desktop.toml" \
    --comfyui-dir "C:\\Users\\$USER\\ComfyUI Portable" 2>&1) &&
    check=$(desk config check --config "$INSTALL_WIN\\gpu-desktop.toml" 2>&1) &&
    [[ "$check" == "config ok: "* ]] && ! grep -q '^warning' <<<"$check" &&
    grep -q "ComfyUI Portable\\\\python_embeded" "$INSTALL_UNIX/gpu-desktop.toml"; then
    pass "config init --profile gpu-desktop, config check: ok, no all-interface warning"
else
    fail "config init --profile gpu-desktop" "$out / ${check:-}"
fi

DESK=$(free_port)
SVC=$(free_port)
cat >"$APPDATA_UNIX/config/sparklio-desk.toml" <<EOF
generator_mode = "mock"
[server]
bind = "127.0.0.1:$DESK"
[[services]]
name = "svc"
kind = "process"
command = '$INSTALL_WIN\\sparklio-test-service.exe'
args = ["--port", "$SVC", "--grandchild"]
cwd = '$INSTALL_WIN'
port = $SVC
restart = "on-failure"
backoff = { initial_ms = 300, max_ms = 2000 }
stop_timeout_ms = 3000
health = { url = "http://127.0.0.1:$SVC/health", interval_ms = 500, timeout_ms = 1000, failures = 3 }
[[services]]
name = "window"
kind = "process"
command = '$INSTALL_WIN\\smoke-window.exe'
autostart = false
restart = "never"
# Wine + Xvfb take ~2 s to end a windowed program after WM_CLOSE.
stop_timeout_ms = 8000
EOF
check=$(desk config check 2>&1 || true)
if [[ "$check" == "config ok: C:\\users\\$USER\\AppData\\Roaming\\Sparklio\\Sparklio Desk\\config\\sparklio-desk.toml"* ]]; then
    pass "the config is found in %APPDATA% of a Korean user name"
else
    fail "config in %APPDATA%" "$check"
fi

# --- serve -------------------------------------------------------------------------------------
T1=$SECONDS
# Not through the desk function: $! must be the Windows process itself (Wine keeps the pid).
"$WINE" "$INSTALL_WIN\\sparklio-desk.exe" serve --log-format json >"$OUT/serve.log" 2>&1 &
LOADER_PID=$!
if wait_for 90 curl -sf "http://127.0.0.1:$DESK/healthz"; then
    # The Windows process (the one Ctrl-C goes to), whatever Wine's loader did with its pid.
    SERVER_PID=$(pgrep -f 'Sparklio Smoke.*sparklio-desk\.exe serve' | head -1)
    pass "serve answers /healthz ($((SECONDS - T1)) s after start)"
    echo "serve start: $((SECONDS - T1)) s" >>"$OUT/timings.txt"
else
    fail "serve /healthz" "not answering after 90 s (see $OUT/serve.log)"
    tail -20 "$OUT/serve.log"
    exit 1
fi

gen=$(curl -s -w '\n%{http_code}' -H 'content-type: application/json' \
    -d '{"role":"copywriter","task":"product_detail","payload":{"product":"프로틴플러스 초코맛"}}' \
    "http://127.0.0.1:$DESK/api/v1/llm/generate")
if [[ "$(tail -1 <<<"$gen")" == 200 ]] && [[ "$(head -n -1 <<<"$gen" | json "d['provider']")" == mock ]]; then
    pass "mock generate: 200, provider mock"
else
    fail "mock generate" "$gen"
fi

data_dir=$(curl -sf "http://127.0.0.1:$DESK/api/v1/status" | json "d['data_dir']" || true)
if [[ "$data_dir" == "C:\\users\\$USER\\AppData\\Roaming\\Sparklio\\Sparklio Desk\\data" ]] &&
    [[ -f "$APPDATA_UNIX/data/sparklio-desk.db" ]]; then
    pass "data under %APPDATA%: $data_dir (sparklio-desk.db written)"
else
    fail "data dir" "status says '$data_dir'; files: $(ls "$APPDATA_UNIX" 2>&1 | tr '\n' ' ')"
fi

# --- supervision -------------------------------------------------------------------------------
if wait_for 30 svc_is svc running && wait_for 10 port_open "$SVC"; then
    pid1=$(svc svc "['pid']")
    pass "supervised test service running (pid $pid1)"
else
    fail "service start" "state $(svc svc "['state']" 2>&1); $(svc_logs svc | tail -5)"
fi
if wait_for 15 bash -c "[[ \$(pgrep -fc 'Sparklio Smoke.*sparklio-test-service.exe --sleep') -ge 1 ]]"; then
    pass "its grandchild runs"
else
    fail "grandchild" "no 'sparklio-test-service.exe --sleep' process"
fi

curl -s -XPOST "http://127.0.0.1:$SVC/exit/3" >/dev/null 2>&1 || true
if wait_for 20 bash -c "[[ \$(curl -sf http://127.0.0.1:$DESK/api/v1/services/svc | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"restarts\"] >= 1 and d[\"state\"] == \"running\")') == True ]]"; then
    pid2=$(svc svc "['pid']")
    code=$(svc svc "['last_exit']['code']")
    if [[ "$pid2" != "$pid1" && "$code" == 3 ]]; then
        pass "crash (exit 3) -> restarted as pid $pid2"
    else
        fail "crash -> restart" "pid $pid1 -> $pid2, last exit code $code"
    fi
else
    fail "crash -> restart" "$(svc_logs svc | tail -8)"
fi

T2=$SECONDS
curl -sf -XPOST "http://127.0.0.1:$DESK/api/v1/services/svc/stop" >/dev/null
if wait_for 20 svc_is svc stopped && wait_for 10 port_closed "$SVC" && wait_for 10 no_test_procs; then
    pass "stop: stopped in $((SECONDS - T2)) s, port closed, the whole tree (grandchild included) gone"
else
    fail "stop" "state $(svc svc "['state']"); processes: $(test_procs | tr '\n' ' ')"
fi
logs=$(svc_logs svc)
echo "$logs" >"$OUT/svc.log"
ladder=$(grep '^stop: ' <<<"$logs" | tail -2 | tr '\n' ' ')
note "ladder: $ladder"
if grep -q '^stop: CTRL_BREAK to' <<<"$logs"; then
    if grep -q 'CTRL_BREAK received: exiting' <<<"$logs" && grep -q 'stopped gracefully' <<<"$logs"; then
        pass "stop ladder step 1: CTRL_BREAK delivered, the service exited by itself"
    else
        fail "stop ladder step 1" "CTRL_BREAK sent but the service did not exit on it"
    fi
else
    why=$(grep -o '^stop: no CTRL_BREAK (.*)' <<<"$logs" | tail -1)
    skip "stop ladder step 1 (CTRL_BREAK)" "Wine cannot deliver console control events [$why]; step 3 (TerminateJobObject) ended the tree"
fi

if [[ -n "${DISPLAY:-}" ]]; then
    curl -sf -XPOST "http://127.0.0.1:$DESK/api/v1/services/window/start" >/dev/null
    if wait_for 20 bash -c "curl -sf 'http://127.0.0.1:$DESK/api/v1/services/window/logs?tail=50' | grep -q 'window open'"; then
        curl -sf -XPOST "http://127.0.0.1:$DESK/api/v1/services/window/stop" >/dev/null
        wait_for 15 svc_is window stopped || true
        wlogs=$(svc_logs window)
        echo "$wlogs" >"$OUT/window.log"
        if grep -q 'WM_CLOSE received' <<<"$wlogs" && grep -q 'stopped gracefully' <<<"$wlogs"; then
            pass "stop ladder step 2: WM_CLOSE closed the windowed program, stopped gracefully"
        else
            fail "stop ladder step 2 (WM_CLOSE)" "$(tail -6 <<<"$wlogs" | tr '\n' '|')"
        fi
    else
        fail "windowed program" "did not open its window: $(svc_logs window | tail -4 | tr '\n' '|')"
    fi
else
    skip "stop ladder step 2 (WM_CLOSE)" "no X server (Xvfb) for Wine's windows"
fi

# --- Ctrl-C ------------------------------------------------------------------------------------
curl -sf -XPOST "http://127.0.0.1:$DESK/api/v1/services/svc/start" >/dev/null
wait_for 30 svc_is svc running || true
T3=$SECONDS
kill -INT "$SERVER_PID"
rc=0
for _ in $(seq 1 120); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.25
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "Ctrl-C" "still running 30 s after SIGINT"
else
    wait "$LOADER_PID" || rc=$?
    SERVER_PID=""
    if ((rc == 0)) && grep -q '"shutdown complete"' "$OUT/serve.log" && port_closed "$DESK" &&
        wait_for 10 no_test_procs; then
        pass "Ctrl-C: exit 0 in $((SECONDS - T3)) s, shutdown complete, port closed, no supervised process left"
    else
        fail "Ctrl-C" "exit $rc; processes: $(test_procs | tr '\n' ' '); $(tail -3 "$OUT/serve.log")"
    fi
fi
if grep -q 'panicked' "$OUT/serve.log"; then
    fail "no panic" "$(grep -m1 panicked "$OUT/serve.log")"
fi
skip "console close / logoff / shutdown events" "Wine does not raise CTRL_CLOSE/CTRL_SHUTDOWN for a console program; same handler as Ctrl-C (app::shutdown_signal)"
echo "smoke total (after wineboot): $((SECONDS - T1)) s" >>"$OUT/timings.txt"
cat "$OUT/timings.txt"
echo "wine-smoke: $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
