#!/usr/bin/env python3
"""Render the icon set in ``resources/icons`` from its SVG sources.

Outputs (committed, so the app never renders SVG at runtime):

- ``resources/icons/app/tater-desktop-<N>.png`` for N in APP_SIZES
- ``resources/icons/tray/tray-<state>-<N>.png`` for every state and N in TRAY_SIZES
- ``resources/tater.ico`` (Windows; PNG-compressed entries) and ``resources/tater.icns`` (macOS)

Usage: ``python scripts/make_icons.py [--out DIR] [--preview sheet.png]``.
Rendering uses PySide6's QtSvg on the offscreen platform; ICO/ICNS are written by hand
(both are simple containers of PNG images), so no extra dependency is needed.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "resources" / "icons" / "src"
TRAY_STATES = ("off", "idle", "generating", "loading", "error")
APP_SIZES = (16, 22, 32, 48, 64, 128, 256, 512)
TRAY_SIZES = (16, 22, 32, 64)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS OSType -> pixel size; all entries hold PNG data (supported since macOS 10.7).
ICNS_TYPES = (
    ("icp4", 16), ("icp5", 32), ("icp6", 64), ("ic07", 128), ("ic08", 256), ("ic09", 512),
    ("ic10", 1024), ("ic11", 32), ("ic12", 64), ("ic13", 256), ("ic14", 512),
)  # fmt: skip


def _qt():
    """Import Qt lazily on the offscreen platform and make sure a QGuiApplication exists."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    return app


def render_png(svg: Path, size: int) -> bytes:
    """Render ``svg`` to a square ``size``×``size`` RGBA PNG and return the encoded bytes."""
    _qt()
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"invalid SVG: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.convertToFormat(QImage.Format.Format_ARGB32).save(buf, "PNG"):
        raise RuntimeError(f"PNG encoding failed for {svg} at {size}px")
    buf.close()
    return bytes(data.data())


def build_ico(pngs: dict[int, bytes]) -> bytes:
    """An ICO file whose entries are the given PNG images (size -> PNG bytes)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        data = pngs[size]
        dim = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def build_icns(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file with PNG entries for every type in ICNS_TYPES (pngs: size -> PNG bytes)."""
    body = b""
    for ostype, size in ICNS_TYPES:
        data = pngs[size]
        body += ostype.encode("ascii") + struct.pack(">I", len(data) + 8) + data
    return b"icns" + struct.pack(">I", len(body) + 8) + body


def write_preview(out: Path, tray_dir: Path, app_dir: Path) -> None:
    """A contact sheet: every tray state at 16/22/32 px on a light and a dark panel, plus the app icon."""
    _qt()
    from PySide6.QtGui import QColor, QImage, QPainter

    cell, pad = 40, 8
    cols = len(TRAY_STATES)
    image = QImage(cols * cell + 2 * pad + 140, 6 * cell + 2 * pad, QImage.Format.Format_ARGB32)
    image.fill(QColor("#808080"))
    painter = QPainter(image)
    for row, (bg, size) in enumerate(
        (("#f0f0f0", 16), ("#f0f0f0", 22), ("#f0f0f0", 32), ("#2b2b2b", 16), ("#2b2b2b", 22), ("#2b2b2b", 32))
    ):
        painter.fillRect(0, pad + row * cell, image.width(), cell, QColor(bg))
        for col, state in enumerate(TRAY_STATES):
            icon = QImage(str(tray_dir / f"tray-{state}-{size}.png"))
            painter.drawImage(
                pad + col * cell + (cell - size) // 2, pad + row * cell + (cell - size) // 2, icon
            )
    painter.drawImage(cols * cell + 2 * pad, pad, QImage(str(app_dir / "tater-desktop-128.png")))
    painter.end()
    image.save(str(out))


def make_icons(out_root: Path = ROOT / "resources") -> list[Path]:
    """Render every output under ``out_root`` (normally ``resources/``); return the written paths."""
    written: list[Path] = []

    def write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    for state in TRAY_STATES:
        for size in TRAY_SIZES:
            write(
                out_root / "icons" / "tray" / f"tray-{state}-{size}.png",
                render_png(SRC / f"tray-{state}.svg", size),
            )
    app_svg = SRC / "app.svg"
    all_sizes = sorted(set(APP_SIZES) | set(ICO_SIZES) | {s for _, s in ICNS_TYPES})
    app_pngs = {size: render_png(app_svg, size) for size in all_sizes}
    for size in APP_SIZES:
        write(out_root / "icons" / "app" / f"tater-desktop-{size}.png", app_pngs[size])
    write(out_root / "tater.ico", build_ico({s: app_pngs[s] for s in ICO_SIZES}))
    write(out_root / "tater.icns", build_icns(app_pngs))
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "resources", help="output root (default: resources/)"
    )
    parser.add_argument("--preview", type=Path, help="also write a light/dark contact sheet PNG here")
    args = parser.parse_args(argv)
    written = make_icons(args.out)
    if args.preview:
        write_preview(args.preview, args.out / "icons" / "tray", args.out / "icons" / "app")
    print(f"wrote {len(written)} files under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
