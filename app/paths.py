"""Where Tater keeps its files (platform conventions via platformdirs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from app import APP_ID


def config_dir() -> Path:
    """``TATER_CONFIG_DIR``, else the platform's user config dir."""
    override = os.environ.get("TATER_CONFIG_DIR", "").strip()
    return Path(override).expanduser() if override else Path(platformdirs.user_config_dir(APP_ID))


def log_dir() -> Path:
    """``TATER_LOG_DIR``, else the platform's user log dir."""
    override = os.environ.get("TATER_LOG_DIR", "").strip()
    return Path(override).expanduser() if override else Path(platformdirs.user_log_dir(APP_ID))
