#!/usr/bin/env bash
# Lists every DLL each Windows exe (and each shipped DLL) imports and fails when one is
# neither a Windows system DLL (packaging/windows/system-dlls.txt, API sets) nor shipped in
# the same folder.
#
#   bash scripts/windows-dll-check.sh [FOLDER]     # default: target/x86_64-pc-windows-gnu/debug
#
# In the build folder the exes found are sparklio-desk.exe, sparklio-desk-app.exe (if built)
# and sparklio-test-service.exe; "shipped" means what scripts/package-windows.sh ships
# (WebView2Loader.dll beside the tray app). Run on a package staging folder it checks
# exactly what is shipped there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-pc-windows-gnu/debug}
OBJDUMP=${OBJDUMP:-x86_64-w64-mingw32-objdump}
SYSTEM=$(grep -v '^#' packaging/windows/system-dlls.txt | tr 'A-Z' 'a-z')
# What the installer and the zip put beside the exes (besides the exes themselves).
SHIPPED="webview2loader.dll"

shopt -s nullglob nocaseglob
files=()
for f in "$DIR"/sparklio-desk.exe "$DIR"/sparklio-desk-app.exe "$DIR"/sparklio-test-service.exe "$DIR"/*.dll; do
    [[ -f "$f" ]] && files+=("$f")
done
if ((${#files[@]} == 0)); then
    echo "no Windows exe in $DIR" >&2
    exit 1
fi
status=0
for f in "${files[@]}"; do
    name=$(basename "$f")
    imports=$("$OBJDUMP" -p "$f" | sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)
    echo "$name imports:"
    for dll in $imports; do
        if grep -qx "$dll" <<<"$SYSTEM" || [[ "$dll" == api-ms-win-* || "$dll" == ext-ms-win-* ]]; then
            echo "  $dll (Windows)"
        elif grep -qx "$dll" <<<"$SHIPPED" && [[ -n "$(ls "$DIR" | tr 'A-Z' 'a-z' | grep -x "$dll")" ]]; then
            echo "  $dll (shipped beside it)"
        else
            echo "  $dll  <-- NOT a Windows DLL and not shipped"
            status=1
        fi
    done
done
if ((status == 0)); then
    echo "dll check: every import of ${#files[@]} file(s) is a Windows DLL or shipped"
else
    echo "dll check: FAILED (ship the DLL beside the exe and list it in SHIPPED, or link it statically)" >&2
fi
exit $status
