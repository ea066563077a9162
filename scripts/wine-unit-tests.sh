#!/usr/bin/env bash
# The core's unit tests built for Windows and run under Wine (not in CI: ~1 min to build
# warm, more cold, beyond the Windows CI budget; run it by hand after Windows changes).
#
#   bash scripts/wine-unit-tests.sh [-- TEST-FILTER]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export WINEPREFIX=${WINEPREFIX:-$TARGET/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml="
exe=$(cargo test --target x86_64-pc-windows-gnu -p sparklio-desk-core --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' | tail -1)
[[ -n "$exe" ]] || { echo "no test executable built" >&2; exit 1; }
dir=$(dirname "$exe")
# Wine 8.0 lacks ProcessPrng: the test-only stand-in beside the exe (packaging/windows/wine/README.md).
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dir/bcryptprimitives.dll" \
    packaging/windows/wine/bcryptprimitives.c packaging/windows/wine/bcryptprimitives.def -ladvapi32
trap 'rm -f "$dir/bcryptprimitives.dll"' EXIT
if [[ "${1:-}" == "--" ]]; then shift; fi
/usr/lib/wine/wine64 "$exe" "$@"
