"""build.spec refuses a bad runtime selection before it starts the (slow) analysis."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyinstaller(tmp_path: Path, runtimes: str) -> subprocess.CompletedProcess[str]:
    importlib.import_module("PyInstaller")
    env = {**os.environ, "TATER_BUNDLE_RUNTIMES": runtimes}
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(tmp_path / "dist"),
           "--workpath", str(tmp_path / "work"), str(ROOT / "build.spec")]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_unknown_runtime_is_an_error(tmp_path: Path) -> None:
    proc = _pyinstaller(tmp_path, "llama_cpp,vllm")
    assert proc.returncode != 0
    assert "unknown runtime(s) ['vllm']" in proc.stderr + proc.stdout
    assert not (tmp_path / "dist" / "tater").exists()
