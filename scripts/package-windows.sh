#!/usr/bin/env bash
# Builds the Windows installer and the portable zip from Linux, offline, into dist/:
#
#   bash scripts/package-windows.sh              # the dist build (what the owner installs:
#                                                # fat LTO, one codegen unit)
#   bash scripts/package-windows.sh --release    # from the release build (thin LTO, quicker)
#   bash scripts/package-windows.sh --debug      # from the debug build (quickest; for tests)
#   bash scripts/package-windows.sh --no-build   # package what is already built
#
#   dist/Sparklio-Desk-<version>-setup.exe          NSIS, per-user, no admin
#   dist/Sparklio-Desk-<version>-portable.zip       the same files, no installer
#   dist/SHA256SUMS
#
# Needs: the x86_64-pc-windows-gnu Rust target, MinGW (gcc-mingw-w64-x86-64), nsis, zip,
# python3-markdown (the guide as HTML). Cross-builds sparklio-desk.exe (headless) and
# sparklio-desk-app.exe (tray; links WebView2Loader.dll dynamically, which is shipped beside
# it), checks every import with scripts/windows-dll-check.sh, and refuses to ship the Wine
# test stub bcryptprimitives.dll.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET_TRIPLE=x86_64-pc-windows-gnu
PROFILE=dist
BUILD=1
for arg in "$@"; do
    case $arg in
    --release) PROFILE=release ;;
    --debug) PROFILE=debug ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$TARGET_TRIPLE/$PROFILE
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DIST=$ROOT/dist
STAGE=$TARGET/windows-package/$PROFILE/stage
NAME="Sparklio-Desk-$VERSION"
SUFFIX=$([[ $PROFILE == dist ]] && echo "" || echo "-$PROFILE")
SETUP=$DIST/$NAME$SUFFIX-setup.exe
ZIP=$DIST/$NAME$SUFFIX-portable.zip
PY=/usr/bin/python3

for tool in makensis zip x86_64-w64-mingw32-objdump; do
    command -v $tool >/dev/null || { echo "missing $tool (apt-get install nsis zip gcc-mingw-w64-x86-64)" >&2; exit 1; }
done

T0=$SECONDS
if ((BUILD)); then
    flag=$([[ $PROFILE == debug ]] && echo "" || echo "--profile $PROFILE")
    echo "==== cargo build $flag --target $TARGET_TRIPLE -p sparklio-desk -p sparklio-desk-app"
    # shellcheck disable=SC2086
    cargo build --locked $flag --target $TARGET_TRIPLE -p sparklio-desk -p sparklio-desk-app
    echo "build: $((SECONDS - T0)) s"
fi
T1=$SECONDS

rm -rf "$STAGE"
mkdir -p "$STAGE/docs" "$DIST"
cp "$BIN/sparklio-desk.exe" "$BIN/sparklio-desk-app.exe" "$STAGE/"
# The tray app's WebView2 loader: webview2-com-sys leaves it beside the exe it builds.
LOADER=$(find "$BIN" -maxdepth 1 -iname WebView2Loader.dll | head -1)
[[ -z "$LOADER" ]] && LOADER=$(find "$TARGET/$TARGET_TRIPLE/$PROFILE/build" -path '*x64*' -iname WebView2Loader.dll | head -1)
[[ -n "$LOADER" ]] || { echo "WebView2Loader.dll not found under $BIN" >&2; exit 1; }
cp "$LOADER" "$STAGE/WebView2Loader.dll"
if [[ $PROFILE == debug ]]; then
    # Debug exes keep line tables; strip them for a smaller test package.
    x86_64-w64-mingw32-strip "$STAGE/sparklio-desk.exe" "$STAGE/sparklio-desk-app.exe"
fi
cp crates/core/src/config/gpu-desktop.toml "$STAGE/gpu-desktop.toml"
cp icons/icon.ico "$STAGE/icon.ico"
cat >"$STAGE/README.txt" <<EOF
Sparklio Desk $VERSION for Windows 10/11 (x64)

sparklio-desk-app.exe   the tray app (dashboard window, tray icon); needs WebView2Loader.dll
                        beside it and the WebView2 runtime (part of Windows 11)
sparklio-desk.exe       the headless core: sparklio-desk serve | config | service
gpu-desktop.toml        the GPU desktop's config template

Config: %APPDATA%\\Sparklio\\Sparklio Desk\\config\\sparklio-desk.toml
  (portable zip: run "sparklio-desk.exe config init --profile gpu-desktop" to write it)
Data:   %APPDATA%\\Sparklio\\Sparklio Desk\\data
Guide:  docs\\windows.html

Licensed under the MIT license.
EOF
# The setup guide as HTML (the finish page offers it), with its screenshots.
$PY - "$ROOT/docs/windows.md" "$STAGE/docs/windows.html" <<'PYEOF'
import sys, markdown
src, out = sys.argv[1], sys.argv[2]
body = markdown.markdown(open(src, encoding="utf-8").read(), extensions=["tables", "fenced_code"])
css = ("body{font-family:Segoe UI,sans-serif;max-width:920px;margin:2em auto;padding:0 1em;line-height:1.5}"
       "code,pre{background:#f3f3f3;border-radius:4px}pre{padding:.6em;overflow:auto}"
       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em}img{max-width:100%}")
open(out, "w", encoding="utf-8").write(
    f'<!doctype html><meta charset="utf-8"><title>Sparklio Desk on Windows</title><style>{css}</style>{body}')
PYEOF
if [[ -d docs/img/windows ]]; then
    mkdir -p "$STAGE/docs/img/windows"
    cp docs/img/windows/*.png "$STAGE/docs/img/windows/"
fi

if find "$STAGE" -iname bcryptprimitives.dll | grep -q .; then
    echo "refusing to ship bcryptprimitives.dll (the Wine test stub): Windows has the real one" >&2
    exit 1
fi
bash scripts/windows-dll-check.sh "$STAGE"

echo "==== makensis"
rm -f "$SETUP" "$ZIP"
FAST=()
ZIPLEVEL=-9
if [[ $PROFILE == debug ]]; then
    FAST=(-DFAST_COMPRESSION) # a test package: zlib, not solid LZMA
    ZIPLEVEL=-1
fi
makensis -V2 -INPUTCHARSET UTF8 "${FAST[@]}" -DVERSION="$VERSION" -DSRC="$STAGE" -DOUTFILE="$SETUP" \
    packaging/windows/sparklio-desk.nsi

echo "==== zip"
ZIPROOT=$TARGET/windows-package/$PROFILE/zip
rm -rf "$ZIPROOT"
mkdir -p "$ZIPROOT/Sparklio Desk"
cp -r "$STAGE"/. "$ZIPROOT/Sparklio Desk/"
rm -f "$ZIPROOT/Sparklio Desk/icon.ico"
(cd "$ZIPROOT" && zip -q "$ZIPLEVEL" -r "$ZIP" "Sparklio Desk")

(cd "$DIST" && sha256sum "$(basename "$SETUP")" "$(basename "$ZIP")" >SHA256SUMS$SUFFIX)
echo "packaging: $((SECONDS - T1)) s"
echo "==== dist/ ($PROFILE)"
for f in "$STAGE/sparklio-desk.exe" "$STAGE/sparklio-desk-app.exe" "$STAGE/WebView2Loader.dll" "$SETUP" "$ZIP"; do
    size=$(stat -c %s "$f")
    printf '%-40s %10d bytes %6s MiB  %s\n' "$(basename "$f")" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')" "$(sha256sum "$f" | cut -d' ' -f1)"
done
