"""Where the suite finds ``@modelcontextprotocol/server-everything`` (cached by ./dev.sh setup test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PACKAGE = "@modelcontextprotocol/server-everything"
VERSION = "2026.8.31"  # keep equal to MCP_EVERYTHING_VERSION in dev.sh


def everything_entry() -> Path:
    """``dist/index.js`` of the pinned package; fails the test (never skips) when it is missing."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    entry = (cache / "tater-desktop" / "npm" / f"server-everything-{VERSION}" / "node_modules"
             / PACKAGE / "dist" / "index.js")
    if not entry.is_file():
        pytest.fail(f"{PACKAGE}@{VERSION} is not cached at {entry}: run ./dev.sh setup test "
                    "(it installs it with npm)")
    return entry


def node() -> str:
    """The ``node`` executable; fails the test when Node.js is not installed."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: run ./dev.sh setup test (apt-get install nodejs npm)")
    return found
