"""A real tray under Xvfb + trayer: available, visible, left click enables, right click opens the menu."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.xserver import xvfb

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.xvfb
def test_real_tray_under_xvfb(tmp_path: Path) -> None:
    with xvfb() as env:
        proc = subprocess.run(["dbus-run-session", "--", sys.executable,
                               str(ROOT / "tests" / "ui" / "real_tray_script.py"), str(tmp_path)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert result["platform"] == "xcb"
    assert result["tray_available"] is True
    assert result["embedded"], result
    assert result["icon_pixels_differ"] > 20 and result["icon_colours"] > 3, result  # icon visible
    assert result["before_click"] == 404
    assert result["enabled_by_click"] and result["after_click"] == 200, result
    assert "API on" in result["tooltip"] and "http://127.0.0.1:" in result["tooltip"]
    assert result["menu_opened"], result
    assert result["server_stopped"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "tray.png").exists() and (tmp_path / "menu.png").exists()


@pytest.mark.xvfb
def test_port_conflict_shows_the_error_badge_in_a_real_tray(tmp_path: Path) -> None:
    with xvfb() as env:
        proc = subprocess.run(["dbus-run-session", "--", sys.executable,
                               str(ROOT / "tests" / "ui" / "port_conflict_script.py"), str(tmp_path)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert result["embedded"] and not result["listening"]
    assert result["conflict_red"] >= 6, result  # the red badge is on screen, not the grey "off" icon
    assert "already in use" in result["tooltip"]
    assert "The API server could not start" in result["notices"]
