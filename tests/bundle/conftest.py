"""A PyInstaller bundle built once per session (slow: ~1-2 min on 2 cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dist/tater`` built from build.spec into a temp dir, or ``$TATER_BUNDLE_DIR`` if given.

    Linux only (the Windows/macOS layouts are built by the same spec on those runners).
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("not on this platform: bundle tests run on Linux")
    prebuilt = os.environ.get("TATER_BUNDLE_DIR")
    if prebuilt:
        return Path(prebuilt)
    base = tmp_path_factory.mktemp("bundle")
    env = {
        **os.environ,
        "DIST_DIR": str(base / "dist"),
        "WORK_DIR": str(base / "work"),
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_bundle.sh")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"bundle build failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    print(proc.stdout)  # size and build time, shown with -s
    return base / "dist" / "tater"
