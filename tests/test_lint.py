"""The code base stays ruff-clean and files stay small (one concern per module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "app", "tests", "bench", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_app_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "app").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not big, f"split these by concern: {big}"


def test_server_never_imports_qt() -> None:
    offenders = [str(p) for p in (ROOT / "app" / "server").rglob("*.py") if "PySide6" in p.read_text()]
    assert not offenders
