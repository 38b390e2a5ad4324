"""The app in the desktop's applications menu, with its icon (freedesktop: Linux and the BSDs).

On first run the tray app installs ``$XDG_DATA_HOME/applications/tater-desktop.desktop`` and the
icon at every size into the hicolor theme (``$XDG_DATA_HOME/icons/hicolor/NxN/apps``), so the
launcher and the autostart entry (both say ``Icon=tater-desktop``) show it.  :func:`remove`
takes both away again.  Nothing here needs Qt; paths follow ``HOME``/``XDG_DATA_HOME``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from app import APP_ID
from app.resources import APP_ICON_SIZES, app_icon_path, resource_path
from app.ui.autostart import launch_command


def data_home() -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    return Path(base) if base else Path(os.environ.get("HOME") or Path.home()) / ".local" / "share"


def launcher_path() -> Path:
    """The applications-menu entry."""
    return data_home() / "applications" / f"{APP_ID}.desktop"


def icon_paths() -> dict[int, Path]:
    """Size -> where the hicolor theme looks for the app icon at that size."""
    return {size: data_home() / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
            for size in APP_ICON_SIZES}


def launcher_text(command: list[str]) -> str:
    """The bundled desktop entry with ``Exec`` pointing at this installation."""
    lines = resource_path(f"{APP_ID}.desktop").read_text(encoding="utf-8").splitlines()
    exec_line = f"Exec={shlex.join(command)}"
    return "\n".join(exec_line if ln.startswith("Exec=") else ln for ln in lines) + "\n"


def is_installed() -> bool:
    """Whether the launcher and every icon size are in place."""
    return launcher_path().exists() and all(p.exists() for p in icon_paths().values())


def install(platform: str = sys.platform, command: list[str] | None = None) -> bool:
    """Install (or refresh) the launcher and icons; True when something was written.  A no-op on
    Windows and macOS, whose bundles carry their own.  Raises OSError when the home is read-only."""
    if platform in ("win32", "darwin"):
        return False
    text = launcher_text(command or launch_command())
    wrote = False
    for size, target in icon_paths().items():
        source = app_icon_path(size)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            wrote = True
    launcher = launcher_path()
    if not launcher.exists() or launcher.read_text(encoding="utf-8") != text:
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text(text, encoding="utf-8")
        wrote = True
    return wrote


def remove() -> None:
    """Take the launcher and the icons away (nothing else in the theme is touched)."""
    launcher_path().unlink(missing_ok=True)
    for path in icon_paths().values():
        path.unlink(missing_ok=True)
