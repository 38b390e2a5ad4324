"""Fixtures for Hydra's tests: settings on a temp dir, a registry, a trusted origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.hydra import HydraAgent, Origin
from app.keystore import SecretStore
from app.settings import SettingsStore
from app.verbas import VerbaRegistry


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    s = SettingsStore(tmp_path / "cfg", env={})
    s.update(mode="hydra", hydra_tools_allowed=True)
    return s


@pytest.fixture
def registry() -> VerbaRegistry:
    return VerbaRegistry.discover(None, entry_points=False)


@pytest.fixture
def origin() -> Origin:
    return Origin(session_id="sess-1", user="alice", api_key_id="key-abc")


@pytest.fixture
def agent(store: SettingsStore, registry: VerbaRegistry) -> HydraAgent:
    return HydraAgent(store, registry, SecretStore())
