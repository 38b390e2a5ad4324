"""Locate bundled resources (icons, desktop entry) from a source checkout or a PyInstaller bundle."""

from __future__ import annotations

import sys
from pathlib import Path

TRAY_STATES: tuple[str, ...] = ("off", "idle", "generating", "loading", "error")
TRAY_SIZES: tuple[int, ...] = (16, 22, 32, 64)
APP_ICON_SIZES: tuple[int, ...] = (16, 22, 32, 48, 64, 128, 256, 512)


def resources_dir() -> Path:
    """The ``resources`` folder: ``<_MEIPASS>/resources`` when frozen, else ``<repo>/resources``."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root is not None:
        return Path(bundle_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(name: str) -> Path:
    """Path of resource ``name`` (a relative path such as ``"tater.ico"`` or ``"icons/app/x.png"``).

    Raises ``ValueError`` for absolute paths or paths escaping the resources folder and
    ``FileNotFoundError`` when the file is missing (a broken checkout or bundle).
    """
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"resource name must be a relative path inside resources/: {name!r}")
    path = resources_dir() / rel
    if not path.exists():
        raise FileNotFoundError(f"missing resource {name!r} (looked in {resources_dir()})")
    return path


def _pick_size(wanted: int, available: tuple[int, ...]) -> int:
    """The smallest available size >= ``wanted`` (Qt scales down well), else the largest."""
    if wanted <= 0:
        raise ValueError(f"icon size must be positive, got {wanted}")
    return next((s for s in available if s >= wanted), available[-1])


def tray_icon_path(state: str, size: int = 64) -> Path:
    """PNG for tray ``state`` (one of TRAY_STATES) at the best rendered size for ``size`` px."""
    if state not in TRAY_STATES:
        raise ValueError(f"unknown tray state {state!r} (known: {', '.join(TRAY_STATES)})")
    return resource_path(f"icons/tray/tray-{state}-{_pick_size(size, TRAY_SIZES)}.png")


def app_icon_path(size: int = 256) -> Path:
    """PNG of the application icon at the best rendered size for ``size`` px."""
    return resource_path(f"icons/app/tater-desktop-{_pick_size(size, APP_ICON_SIZES)}.png")
