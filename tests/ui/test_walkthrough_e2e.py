"""The first-run walk-through as a user does it, under Xvfb + trayer, clicked with xdotool:
start, enable, add a model (it becomes the active one), Try it from the status window; the icon
state and the request log checked at each step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.xserver import xvfb

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.xvfb
def test_first_run_walkthrough_under_a_real_tray(tmp_path: Path) -> None:
    with xvfb() as env:
        proc = subprocess.run(["dbus-run-session", "--", sys.executable,
                               str(ROOT / "tests" / "ui" / "walkthrough_script.py"), str(tmp_path)],
                              env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                              text=True, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert result["platform"] == "xcb"
    start, enabled, added, tried = result["steps"]

    assert start["embedded"] and start["listening"]
    assert (start["icon"], start["state"]) == ("off", "API off") and start["requests"] == 0

    assert enabled["api_enabled"] and enabled["key_made"]
    assert (enabled["icon"], enabled["state"]) == ("error", "API on, no model")  # not green yet

    assert added["menu_opened"] and added["submenu_opened"], added
    assert added["added"] and added["loaded"], added
    assert added["rows"] == [added["active"]]  # the only model is the active one
    assert (added["icon"], added["state"]) == ("idle", "API on")
    assert "http://127.0.0.1:" in added["tooltip"]

    assert tried["window_shown"] and tried["answered"], tried
    assert tried["answer"] and not tried["answer"].startswith("Failed"), tried["answer"]
    assert tried["rows"] == [{**tried["rows"][0], "path": "/v1/chat/completions", "status": 200,
                              "model": added["active"], "app": "Tater (Try it)"}]
    assert tried["rows"][0]["tokens_out"] > 0 and tried["rows"][0]["ttft_s"] is not None
    assert "Tater (Try it) (1)" in tried["window_apps"]
    assert tried["icon"] == "idle"
    assert result["stopped"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("00-start", "01-enabled", "02-model_added", "03-tried"):
        assert (tmp_path / f"{step}.png").exists()
