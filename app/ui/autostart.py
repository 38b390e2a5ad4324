"""Start at login through the platform's own mechanism.

- Linux/BSD: a freedesktop autostart entry ``$XDG_CONFIG_HOME/autostart/tater-desktop.desktop``.
- macOS: a LaunchAgent ``~/Library/LaunchAgents/org.tater.desktop.plist`` (RunAtLoad).
- Windows: the ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` value ``TaterDesktop``.

Nothing here needs Qt; the paths follow ``HOME``/``XDG_CONFIG_HOME`` so tests use a temp home.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import sys
from pathlib import Path

from app import APP_ID, APP_NAME

DESKTOP_FILE = f"{APP_ID}.desktop"
LAUNCH_AGENT_LABEL = "org.tater.desktop"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "TaterDesktop"


def launch_command() -> list[str]:
    """How to start the tray app again: the frozen binary, else this Python with ``-m app``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "app"]


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def desktop_entry_path() -> Path:
    """The freedesktop autostart file."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base else _home() / ".config"
    return root / "autostart" / DESKTOP_FILE


def launch_agent_path() -> Path:
    """The macOS LaunchAgent plist."""
    return _home() / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def desktop_entry(command: list[str]) -> str:
    """Text of the autostart ``.desktop`` file."""
    return ("[Desktop Entry]\n"
            "Type=Application\n"
            f"Name={APP_NAME}\n"
            "Comment=Local OpenAI-compatible chat API in the tray\n"
            f"Exec={shlex.join(command)}\n"
            f"Icon={APP_ID}\n"
            "Terminal=false\n"
            "X-GNOME-Autostart-enabled=true\n")


def is_enabled(platform: str = sys.platform) -> bool:
    """Whether Tater starts at login."""
    if platform == "win32":
        return _win_get() is not None
    if platform == "darwin":
        return launch_agent_path().exists()
    return desktop_entry_path().exists()


def set_enabled(enabled: bool, platform: str = sys.platform,
                command: list[str] | None = None) -> None:
    """Turn start-at-login on or off.  Raises OSError when the platform refuses."""
    command = command or launch_command()
    if platform == "win32":
        _win_set(subprocess_line(command) if enabled else None)
    elif platform == "darwin":
        path = launch_agent_path()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(plistlib.dumps({"Label": LAUNCH_AGENT_LABEL, "ProgramArguments": command,
                                             "RunAtLoad": True, "ProcessType": "Interactive"}))
        else:
            path.unlink(missing_ok=True)
    else:
        path = desktop_entry_path()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(desktop_entry(command), encoding="utf-8")
        else:
            path.unlink(missing_ok=True)


def subprocess_line(command: list[str]) -> str:
    """A Windows command line with each part quoted."""
    import subprocess

    return subprocess.list2cmdline(command)


def _win_get() -> str | None:
    import winreg  # type: ignore[import-not-found]

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            value, _ = winreg.QueryValueEx(key, RUN_VALUE)
            return str(value)
    except FileNotFoundError:
        return None


def _win_set(line: str | None) -> None:
    import winreg  # type: ignore[import-not-found]

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
        if line is None:
            with contextlib.suppress(FileNotFoundError):
                winreg.DeleteValue(key, RUN_VALUE)
        else:
            winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, line)
