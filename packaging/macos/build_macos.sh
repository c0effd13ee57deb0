#!/usr/bin/env bash
# Build the macOS app and disk image of fusion-gui: PyInstaller BUNDLE (dist/Fusion.app), then a .dmg.
#   packaging/macos/build_macos.sh
# Needs: macOS 11+, Python 3.11 (python3.11 on PATH), Xcode command line tools (hdiutil, codesign).
# Environment:
#   FUSION_GUI_VENV=.venv-mac     venv to create/use
#   CODESIGN_IDENTITY="Developer ID Application: ..."   sign the app (hardened runtime) when set
#   NOTARY_PROFILE=name           notarize and staple the .dmg (xcrun notarytool store-credentials name) when set
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${FUSION_GUI_VENV:-.venv-mac}"
PY="$VENV/bin/python"
ARCH="$(uname -m)"   # arm64 (Apple silicon) or x86_64; build on each for two images

[ -x "$PY" ] || python3.11 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0          # macOS wheels are CPU + MPS; there is no CUDA build for macOS
"$PY" -m pip install -q -e '.[gui]' pyinstaller
"$PY" packaging/make_icon.py

start=$SECONDS
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/fusion_gui.spec
echo "PyInstaller: $((SECONDS - start)) s"
APP="dist/Fusion.app"
"$APP/Contents/MacOS/fusion-gui" --selftest

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  # sign the nested libraries first, then the bundle, with the hardened runtime notarization requires
  find "$APP/Contents" \( -name '*.so' -o -name '*.dylib' \) -print0 \
    | xargs -0 codesign --force --timestamp --options runtime --sign "$CODESIGN_IDENTITY"
  codesign --force --deep --timestamp --options runtime --sign "$CODESIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict "$APP"
fi

VERSION="$("$PY" -c 'import fusion_gui; print(fusion_gui.__version__)')"
DMG="dist/fusion-gui-$VERSION-macos-$ARCH.dmg"
STAGE="build/dmg"
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"     # drag-to-install
hdiutil create -volname "Fusion $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -imagekey zlib-level=9 -ov "$DMG"
rm -rf "$STAGE"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$DMG"
fi
if [ -n "${NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
fi
ls -l "$DMG"
echo "done in $((SECONDS - start)) s"
