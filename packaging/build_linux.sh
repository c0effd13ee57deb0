#!/usr/bin/env bash
# Build the Linux packages of fusion-gui into dist/:
#   dist/fusion-gui/                              PyInstaller onedir (the app with its own Python, torch, Qt)
#   dist/fusion-gui_<version>_<arch>.deb          installs /opt/fusion-gui, /usr/bin/fusion-gui, .desktop, icon
#   dist/fusion-gui-<version>-linux-<arch>.tar.gz the onedir plus the .desktop file and icon
#
# Environment:
#   PYTHON=...            interpreter with the app, its GUI extras and pyinstaller (default .venv/bin/python)
#   DEB_COMPRESSION=zstd  zstd (default, fast), xz (release: smaller, several times slower), gzip or none
#   DEB_LEVEL=N           compression level (default: 3 for zstd, 6 for xz, 6 for gzip)
#   SKIP_PYINSTALLER=1    reuse an existing dist/fusion-gui (package it again without rebuilding)
#   SKIP_TARBALL=1        do not write the .tar.gz
#   STRIP=0               keep the symbol tables of the bundled libraries
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DIST="$ROOT/dist"
APPDIR="$DIST/fusion-gui"
NAME=fusion-gui
VERSION="$("$PYTHON" -c 'import fusion_gui; print(fusion_gui.__version__)')"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
DEB_COMPRESSION="${DEB_COMPRESSION:-zstd}"
case "$DEB_COMPRESSION" in
  zstd) DEB_LEVEL="${DEB_LEVEL:-3}" ;;
  xz|gzip) DEB_LEVEL="${DEB_LEVEL:-6}" ;;
  none) DEB_LEVEL=0 ;;
  *) echo "DEB_COMPRESSION must be zstd, xz, gzip or none" >&2; exit 2 ;;
esac

# System libraries the bundled Qt loads: the NEEDED entries (readelf -d) of the Qt libraries and plugins in
# dist/fusion-gui/_internal/PySide6/Qt/{lib,plugins} that are not in the bundle, mapped to packages with `dpkg -S`
# on Debian 12; libdbus-1 is loaded at run time by QtDBus. Alternatives cover the t64 renames of Debian 13 /
# Ubuntu 24.04.
GLIBC="$(ldd --version 2>/dev/null | awk 'NR==1 {print $NF}')"
DEPENDS="libc6 (>= ${GLIBC:-2.31}), libstdc++6, libgcc-s1, zlib1g, libzstd1, libglib2.0-0t64 | libglib2.0-0,
 libdbus-1-3, libfontconfig1, libfreetype6, libgl1, libegl1, libx11-6, libx11-xcb1, libxcb1, libxcb-cursor0,
 libxcb-glx0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render0, libxcb-render-util0,
 libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-util1, libxcb-xfixes0, libxcb-xkb1, libxkbcommon0,
 libxkbcommon-x11-0, libwayland-client0, libwayland-cursor0, libwayland-egl1"
DEPENDS="$(echo "$DEPENDS" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')"


step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "icon"
if [ ! -f resources/fusion-gui.png ]; then
  "$PYTHON" packaging/make_icon.py
fi

if [ "${SKIP_PYINSTALLER:-0}" != 1 ] || [ ! -x "$APPDIR/$NAME" ]; then
  step "PyInstaller onedir"
  "$PYTHON" -m PyInstaller --version >/dev/null 2>&1 || "$PYTHON" -m pip install -q pyinstaller
  "$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$ROOT/build/pyinstaller" \
    packaging/fusion_gui.spec
fi

if [ "${STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
  # torch ships its libraries with full symbol tables (libtorch_cpu.so: 434 -> 345 MB); drop the static symbols
  # as Debian's dh_strip does (the dynamic symbols stay). Only torch's own libraries: strip breaks libraries that
  # auditwheel patched with patchelf (numpy's OpenBLAS: "ELF load command address/offset not page-aligned").
  # Idempotent, so SKIP_PYINSTALLER is fine.
  step "strip symbol tables of torch's libraries"
  find "$APPDIR/_internal/torch/lib" -type f \( -name 'libtorch*.so*' -o -name 'libc10*.so*' \) -print0 \
    | xargs -0 strip --strip-unneeded
fi
du -sh "$APPDIR"

step "check for system libraries the bundle needs but the machine lacks"
missing="$(find "$APPDIR/_internal/PySide6" -name '*.so*' -type f -print0 \
  | xargs -0 ldd 2>/dev/null | awk '/not found/ {print $1}' | sort -u || true)"
if [ -n "$missing" ]; then
  echo "warning: not found on this machine (the .deb Depends must provide them):"; echo "$missing"
fi

step "desktop entry"
DESKTOP="$ROOT/build/$NAME.desktop"
mkdir -p "$ROOT/build"
cat > "$DESKTOP" <<DESK
[Desktop Entry]
Type=Application
Name=Fusion
GenericName=Model merger
Comment=Merge Hugging Face models with live per-layer plots
Exec=$NAME
Icon=$NAME
Terminal=false
Categories=Science;Development;
Keywords=merge;mergekit;transformers;LLM;
StartupWMClass=Fusion
DESK

step ".deb ($DEB_COMPRESSION -$DEB_LEVEL)"
STAGE="$ROOT/build/deb/${NAME}_${VERSION}_${ARCH}"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
  "$STAGE/usr/share/icons/hicolor/256x256/apps" "$STAGE/usr/share/doc/$NAME"
cp -al "$APPDIR" "$STAGE/opt/$NAME" 2>/dev/null || cp -a "$APPDIR" "$STAGE/opt/$NAME"
cat > "$STAGE/usr/bin/$NAME" <<'LAUNCH'
#!/bin/sh
# Launcher of the packaged fusion-gui: the app brings its own Python, torch and Qt.
exec /opt/fusion-gui/fusion-gui "$@"
LAUNCH
chmod 755 "$STAGE/usr/bin/$NAME"
install -m 644 "$DESKTOP" "$STAGE/usr/share/applications/$NAME.desktop"
install -m 644 resources/fusion-gui.png "$STAGE/usr/share/icons/hicolor/256x256/apps/$NAME.png"
printf 'fusion-gui %s\nLicense: Apache-2.0\nBundles Python, PyTorch, Qt (PySide6, LGPLv3) and their dependencies.\n' \
  "$VERSION" > "$STAGE/usr/share/doc/$NAME/copyright"
INSTALLED_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<CTRL
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: fusion-gui developers <fusion-gui@users.noreply.github.com>
Installed-Size: $INSTALLED_KB
Depends: $DEPENDS
Section: science
Priority: optional
Description: merge Hugging Face models on your workstation
 Load models, pick a merge method (TIES, DARE, SLERP, ...), watch per-layer plots
 while the merge streams tensor by tensor, and get a folder that transformers loads.
 The same engine runs headless as 'fusion-gui merge'. CPU build of PyTorch.
CTRL
DEB="$DIST/${NAME}_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" -z"$DEB_LEVEL" --build "$STAGE" "$DEB"
rm -rf "$ROOT/build/deb"
ls -l "$DEB"

if [ "${SKIP_TARBALL:-0}" != 1 ]; then
  step "tarball"
  TGZ="$DIST/$NAME-$VERSION-linux-$ARCH.tar.gz"
  cp "$DESKTOP" "$APPDIR/$NAME.desktop"
  cp resources/fusion-gui.png "$APPDIR/$NAME.png"
  tar -C "$DIST" -czf "$TGZ" "$NAME"
  rm -f "$APPDIR/$NAME.desktop" "$APPDIR/$NAME.png"
  ls -l "$TGZ"
fi
step "done"
