"""Process-level behaviour: no display, single instance, start at login."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from app.ui import autostart
from app.ui.main import NO_DISPLAY_MESSAGE, display_problem

ROOT = Path(__file__).resolve().parents[2]


def test_display_problem_detection() -> None:
    assert display_problem({}, "linux") == NO_DISPLAY_MESSAGE
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux") == NO_DISPLAY_MESSAGE
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "darwin") is None and display_problem({}, "win32") is None


def test_no_display_exits_2_pointing_at_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["TATER_CONFIG_DIR"] = str(tmp_path / "cfg")
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "tater serve" in proc.stderr
    assert "xcb" not in proc.stderr  # not Qt's misleading plugin message
    assert not (tmp_path / "cfg").exists()  # nothing was started or written


def test_second_launch_asks_first_and_exits(qtbot, tmp_path: Path) -> None:
    from app.ui.ipc import SingleInstance, server_name

    cfg = tmp_path / "cfg"
    received: list[str] = []
    instance = SingleInstance(server_name(cfg), received.append)
    assert instance.listen()
    env = {**os.environ, "TATER_CONFIG_DIR": str(cfg), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=30000)
        qtbot.waitUntil(lambda: received == ["show"], timeout=3000)
    finally:
        if proc.poll() is None:
            proc.kill()
        instance.close()
    assert proc.returncode == 0
    assert "already running" in proc.stderr.read()
    assert not (cfg / "settings.json").exists()  # the second one never touched the config


def test_ipc_names_differ_per_config_dir(tmp_path: Path) -> None:
    from app.ui.ipc import server_name

    assert server_name(tmp_path / "a") != server_name(tmp_path / "b")
    assert server_name(tmp_path / "a") == server_name(tmp_path / "a")


def test_autostart_freedesktop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert not autostart.is_enabled("linux")
    autostart.set_enabled(True, "linux", ["/opt/tater/tater"])
    entry = tmp_path / "xdg" / "autostart" / "tater-desktop.desktop"
    text = entry.read_text()
    assert "Exec=/opt/tater/tater" in text and "Type=Application" in text
    assert autostart.is_enabled("linux")
    autostart.set_enabled(False, "linux")
    assert not entry.exists() and not autostart.is_enabled("linux")


def test_autostart_freedesktop_default_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart.set_enabled(True, "linux")
    text = (tmp_path / ".config" / "autostart" / "tater-desktop.desktop").read_text()
    assert f"Exec={sys.executable} -m app" in text


def test_autostart_macos_launch_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart.set_enabled(True, "darwin", ["/Applications/Tater.app/Contents/MacOS/tater"])
    plist = tmp_path / "Library" / "LaunchAgents" / "org.tater.desktop.plist"
    data = plistlib.loads(plist.read_bytes())
    assert data["RunAtLoad"] is True and data["Label"] == "org.tater.desktop"
    assert data["ProgramArguments"] == ["/Applications/Tater.app/Contents/MacOS/tater"]
    assert autostart.is_enabled("darwin")
    autostart.set_enabled(False, "darwin")
    assert not plist.exists()


class FakeWinreg:
    """Just enough of ``winreg`` for the Run key logic (the real one exists on Windows only)."""

    HKEY_CURRENT_USER = "HKCU"
    REG_SZ = 1

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, str]] = {}

    class _Key:
        def __init__(self, values: dict[str, str]) -> None:
            self.values = values

        def __enter__(self) -> FakeWinreg._Key:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

    def OpenKey(self, root: str, path: str) -> FakeWinreg._Key:
        if f"{root}\\{path}" not in self.keys:
            raise FileNotFoundError(path)
        return self._Key(self.keys[f"{root}\\{path}"])

    def CreateKey(self, root: str, path: str) -> FakeWinreg._Key:
        return self._Key(self.keys.setdefault(f"{root}\\{path}", {}))

    def QueryValueEx(self, key: FakeWinreg._Key, name: str) -> tuple[str, int]:
        if name not in key.values:
            raise FileNotFoundError(name)
        return key.values[name], self.REG_SZ

    def SetValueEx(self, key: FakeWinreg._Key, name: str, _r: int, _t: int, value: str) -> None:
        key.values[name] = value

    def DeleteValue(self, key: FakeWinreg._Key, name: str) -> None:
        if name not in key.values:
            raise FileNotFoundError(name)
        del key.values[name]


def test_autostart_windows_run_key(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeWinreg()
    monkeypatch.setitem(sys.modules, "winreg", fake)
    assert not autostart.is_enabled("win32")
    autostart.set_enabled(True, "win32", ["C:\\Program Files\\Tater\\tater.exe"])
    run = fake.keys["HKCU\\" + autostart.RUN_KEY]
    assert run["TaterDesktop"] == '"C:\\Program Files\\Tater\\tater.exe"'
    assert autostart.is_enabled("win32")
    autostart.set_enabled(False, "win32")
    assert not autostart.is_enabled("win32")
    autostart.set_enabled(False, "win32")  # already off: no error
