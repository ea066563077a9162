#!/usr/bin/env bash
# The Windows installer under Wine: silent install, files where they belong, the installed
# headless binary serves with the config the installer wrote, an upgrade keeps the owner's
# config, uninstall removes the program and keeps the config (and /PURGE removes it too).
#
#   bash scripts/wine-installer-test.sh [dist/Sparklio-Desk-<v>-setup.exe]
#
# Default: the newest dist/*-setup.exe. Uses the Wine prefix of scripts/wine-smoke.sh.
# The tray app itself is not started: Wine has no WebView2 runtime (docs/windows.md).
set -euo pipefail
set -m
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${ARTIFACTS:-$ROOT/ci-artifacts}/wine-installer
WINE=${WINE:-/usr/lib/wine/wine64}
export WINEPREFIX=${WINEPREFIX:-$TARGET/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml="
export USER=김민수 LOGNAME=김민수
unset DISPLAY
SETUP=${1:-$(ls -t dist/*-setup.exe 2>/dev/null | head -1)}
[[ -f "$SETUP" ]] || { echo "no installer: bash scripts/package-windows.sh first" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"

PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS  $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $1: $2"; }
wait_for() {
    local until=$((SECONDS + $1))
    shift
    while ((SECONDS < until)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}
gone() { [[ ! -e "$1" ]]; }
reg_has() { "$WINE" reg query "$1" /v "$2" >/dev/null 2>&1; }
SERVER_PID=""
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill -9 "$SERVER_PID" 2>/dev/null || true
    /usr/lib/wine/wineserver -k 2>/dev/null || true
}
trap cleanup EXIT

if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
    T0=$SECONDS
    "$WINE" wineboot --init >"$OUT/wineboot.log" 2>&1 || true
    /usr/lib/wine/wineserver -w 2>/dev/null || true
    echo "wineboot: $((SECONDS - T0)) s"
fi
PROFILE_DIR="$WINEPREFIX/drive_c/users/$USER"
INSTDIR="$PROFILE_DIR/AppData/Local/Programs/Sparklio Desk"
INSTDIR_WIN="C:\\users\\$USER\\AppData\\Local\\Programs\\Sparklio Desk"
APPDATA_DESK="$PROFILE_DIR/AppData/Roaming/Sparklio/Sparklio Desk"
CONFIG="$APPDATA_DESK/config/sparklio-desk.toml"
SHORTCUT="$PROFILE_DIR/AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Sparklio Desk.lnk"
RUN_KEY='HKCU\Software\Microsoft\Windows\CurrentVersion\Run'
UNINST_KEY='HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\SparklioDesk'
rm -rf "$INSTDIR" "$APPDATA_DESK" "$SHORTCUT"
"$WINE" reg delete "$RUN_KEY" /v "Sparklio Desk" /f >/dev/null 2>&1 || true
"$WINE" reg delete "$UNINST_KEY" /f >/dev/null 2>&1 || true
cp "$SETUP" "$WINEPREFIX/drive_c/setup.exe"

# --- install ---------------------------------------------------------------------------------
T1=$SECONDS
"$WINE" 'C:\setup.exe' /S >"$OUT/install.log" 2>&1 || true
echo "silent install: $((SECONDS - T1)) s"
missing=""
for f in sparklio-desk.exe sparklio-desk-app.exe WebView2Loader.dll uninstall.exe gpu-desktop.toml docs/windows.html; do
    [[ -f "$INSTDIR/$f" ]] || missing+=" $f"
done
if [[ -z "$missing" ]] && [[ ! -e "$INSTDIR/bcryptprimitives.dll" ]]; then
    pass "installed into %LOCALAPPDATA%\\Programs\\Sparklio Desk: $(ls "$INSTDIR" | tr '\n' ' ')"
else
    fail "install files" "missing:$missing (have: $(ls "$INSTDIR" 2>&1 | tr '\n' ' '))"
fi
[[ -f "$SHORTCUT" ]] && pass "Start menu shortcut" || fail "Start menu shortcut" "no $SHORTCUT"
if reg_has "$RUN_KEY" "Sparklio Desk" && reg_has "$UNINST_KEY" "UninstallString"; then
    pass "start at login (HKCU Run 'Sparklio Desk') and the uninstall entry are registered"
else
    fail "registry" "Run value or uninstall key missing"
fi
if [[ -f "$CONFIG" ]] && cmp -s "$CONFIG" crates/core/src/config/gpu-desktop.toml; then
    pass "no config existed: the gpu-desktop config was written to %APPDATA%"
else
    fail "config written" "$(ls -la "$APPDATA_DESK/config" 2>&1)"
fi

# --- the installed headless binary serves (the Wine-only ProcessPrng stub beside it, then removed)
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$INSTDIR/bcryptprimitives.dll" \
    packaging/windows/wine/bcryptprimitives.c packaging/windows/wine/bcryptprimitives.def -ladvapi32
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
check=$("$WINE" "$INSTDIR_WIN\\sparklio-desk.exe" config check 2>&1 || true)
echo "$check" >"$OUT/config-check.txt"
[[ "$check" == "config ok: "* ]] && pass "installed sparklio-desk.exe: config check ok" || fail "config check" "$check"
"$WINE" "$INSTDIR_WIN\\sparklio-desk.exe" serve --bind "127.0.0.1:$PORT" --log-format json >"$OUT/serve.log" 2>&1 &
if wait_for 60 curl -sf "http://127.0.0.1:$PORT/healthz"; then
    SERVER_PID=$(pgrep -f 'Sparklio Desk.sparklio-desk\.exe serve' | head -1)
    services=$(curl -sf "http://127.0.0.1:$PORT/api/v1/services" |
        python3 -c 'import json,sys; print(" ".join(s["name"] + "=" + s["state"] for s in json.load(sys.stdin)["services"]))')
    pass "installed sparklio-desk.exe serves with the installed config ($services)"
    kill -INT "$SERVER_PID" 2>/dev/null || true
    wait_for 40 bash -c "! kill -0 $SERVER_PID 2>/dev/null" || kill -9 "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
else
    fail "installed binary serves" "$(tail -5 "$OUT/serve.log")"
fi
/usr/lib/wine/wineserver -w 2>/dev/null || true
rm -f "$INSTDIR/bcryptprimitives.dll"

# --- upgrade keeps the owner's config -----------------------------------------------------------
echo '# edited by the owner' >>"$CONFIG"
cp "$CONFIG" "$OUT/config-before-upgrade.toml"
"$WINE" 'C:\setup.exe' /S /NOAUTOSTART >"$OUT/upgrade.log" 2>&1 || true
if cmp -s "$CONFIG" "$OUT/config-before-upgrade.toml"; then
    pass "upgrade (setup again) kept the owner's config"
else
    fail "upgrade" "the config changed"
fi

# --- uninstall keeps config and data; /PURGE removes them --------------------------------------
"$WINE" "$INSTDIR_WIN\\uninstall.exe" /S >"$OUT/uninstall.log" 2>&1 || true
# The uninstaller runs from a temporary copy: wait for it to finish.
if wait_for 60 gone "$INSTDIR/sparklio-desk.exe" && wait_for 30 gone "$INSTDIR"; then
    pass "uninstall removed %LOCALAPPDATA%\\Programs\\Sparklio Desk"
else
    fail "uninstall" "left: $(ls -R "$INSTDIR" 2>&1 | head -5 | tr '\n' ' ')"
fi
/usr/lib/wine/wineserver -w 2>/dev/null || true
if gone "$SHORTCUT" && ! reg_has "$RUN_KEY" "Sparklio Desk" && ! reg_has "$UNINST_KEY" "UninstallString"; then
    pass "shortcut, Run value and uninstall entry removed"
else
    fail "uninstall leftovers" "shortcut or registry values remain"
fi
if grep -q 'edited by the owner' "$CONFIG" 2>/dev/null; then
    pass "uninstall kept the owner's config"
else
    fail "config kept" "$CONFIG is gone or changed"
fi
"$WINE" 'C:\setup.exe' /S >>"$OUT/install.log" 2>&1 || true
"$WINE" "$INSTDIR_WIN\\uninstall.exe" /S /PURGE >>"$OUT/uninstall.log" 2>&1 || true
if wait_for 60 gone "$INSTDIR" && wait_for 30 gone "$APPDATA_DESK"; then
    pass "uninstall /PURGE also removed config and data"
else
    fail "uninstall /PURGE" "left: $(ls "$APPDATA_DESK" "$INSTDIR" 2>&1 | tr '\n' ' ')"
fi
rm -f "$WINEPREFIX/drive_c/setup.exe"
echo "wine-installer: $PASSED passed, $FAILED failed"
((FAILED == 0))
