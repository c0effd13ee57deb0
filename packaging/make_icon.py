"""Draw the application icon with Qt and write resources/fusion-gui.{png,ico,icns}.

Run with the project's venv: `.venv/bin/python packaging/make_icon.py`. Needs no display
(it sets QT_QPA_PLATFORM=offscreen). The .ico and .icns are written by hand: both formats
are a small header and a table of PNG images, so no extra tool (Pillow, iconutil) is needed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import (QBrush, QColor, QGuiApplication, QImage, QLinearGradient,  # noqa: E402
                           QPainter, QPainterPath, QPen)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources"


def draw(size: int) -> QImage:
    """Two overlapping weight curves flowing into one: the 'merge' of the app's name."""
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 256.0
    p.scale(s, s)
    # rounded-square background
    grad = QLinearGradient(0, 0, 256, 256)
    grad.setColorAt(0.0, QColor("#2b3a67"))
    grad.setColorAt(1.0, QColor("#14182b"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(grad))
    p.drawRoundedRect(QRectF(8, 8, 240, 240), 48, 48)

    def stream(y0: float, color: str) -> None:
        path = QPainterPath(QPointF(40, y0))
        path.cubicTo(QPointF(110, y0), QPointF(110, 128), QPointF(150, 128))
        pen = QPen(QColor(color), 22, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)

    stream(72, "#4fc3f7")
    stream(184, "#ff8a65")
    p.setPen(QPen(QColor("#ffffff"), 24, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(150, 128), QPointF(208, 128))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#ffffff"))
    p.drawEllipse(QPointF(150, 128), 20, 20)
    p.end()
    return img


def png_bytes(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    buf.close()
    return bytes(data)


def write_ico(path: Path, sizes: list[int]) -> None:
    """ICO with PNG-compressed entries (Windows Vista and later read these)."""
    images = [png_bytes(draw(n)) for n in sizes]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for n, blob in zip(sizes, images):
        dim = 0 if n >= 256 else n  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
        blobs += blob
    path.write_bytes(header + entries + blobs)


def write_icns(path: Path) -> None:
    """ICNS with PNG entries: ic07 128, ic08 256, ic09 512, ic10 1024 (macOS 10.7+)."""
    chunks = b""
    for code, n in (("ic07", 128), ("ic08", 256), ("ic09", 512), ("ic10", 1024)):
        blob = png_bytes(draw(n))
        chunks += code.encode("ascii") + struct.pack(">I", 8 + len(blob)) + blob
    path.write_bytes(b"icns" + struct.pack(">I", 8 + len(chunks)) + chunks)


def main() -> int:
    QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    OUT.mkdir(exist_ok=True)
    draw(256).save(str(OUT / "fusion-gui.png"), "PNG")
    write_ico(OUT / "fusion-gui.ico", [16, 24, 32, 48, 64, 128, 256])
    write_icns(OUT / "fusion-gui.icns")
    for name in ("fusion-gui.png", "fusion-gui.ico", "fusion-gui.icns"):
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
