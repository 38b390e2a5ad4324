"""The API key through a real Secret Service, and the message when no keyring exists at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "ui" / "keyring_script.py"


def run_script(cmd: list[str], env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines and proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TATER_", "DBUS_", "PYTHON_KEYRING", "XDG_"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", TATER_CONFIG_DIR=str(home / "config"),
               TATER_LOG_DIR=str(home / "logs"), XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CONFIG_HOME=str(home / ".config"))
    return env


@pytest.mark.secret_service
def test_key_round_trips_through_secret_service(tmp_path: Path) -> None:
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        assert shutil.which(tool), (f"{tool} missing: apt-get install --no-install-recommends "
                                    "dbus gnome-keyring")
    env = isolated_env(tmp_path)
    inner = (f"echo -n pass | gnome-keyring-daemon --unlock --components=secrets >/dev/null && "
             f"exec {sys.executable} {SCRIPT} secret {tmp_path}")
    result = run_script(["dbus-run-session", "--", "sh", "-c", inner], env)
    assert result["backend"] == "keyring.backends.SecretService.Keyring", result
    assert result["enabled"] is True
    assert result["stored"] and result["clipboard"], result
    assert any("copied to the clipboard" in n for n in result["notices"])  # type: ignore[union-attr]
    assert result["http_with_key"] == 200
    assert result["other_process_reads_same_key"], result
    assert result["old_key_after_rotate"] == 401 and result["new_key_after_rotate"] == 200
    assert result["cleared"]
    assert (tmp_path / ".local" / "share" / "keyrings").is_dir()  # the Secret Service kept it


def test_no_keyring_backend_clear_message_no_plaintext(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    result = run_script([sys.executable, str(SCRIPT), "fail", str(tmp_path)], env)
    assert result["backend"] == "keyring.backends.fail.Keyring"
    assert result["enabled"] is False and result["key"] is None
    assert result["http_status"] == 404  # the API stayed off
    notices = "\n".join(result["notices"])  # type: ignore[arg-type]
    assert "No OS keyring is available" in notices and "TATER_OPENAI_API_KEY" in notices
    assert "gnome-keyring" in notices  # says what to do
    key_shape = re.compile(r"tater-[0-9a-f]{64}")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not (tmp_path / ".local" / "share" / "python_keyring").exists()  # keyrings.alt's file store
    assert not [p for p in files if key_shape.search(p.read_text(errors="ignore"))]
