"""Settings: defaults, atomic saves with a backup, corrupt files set aside, env overlay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings import ModelRow, Settings, SettingsStore, env_overrides, parse_bool


def test_defaults_match_the_brief(clean_env: Path) -> None:
    s = SettingsStore(clean_env, env={}).current
    assert (s.api_enabled, s.mode, s.hydra_tools_allowed, s.host, s.port) == (
        False,
        "direct",
        False,
        "127.0.0.1",
        8501,
    )
    assert s.active_model is None and s.models == []


def test_update_persists_and_keeps_previous_good_copy(clean_env: Path) -> None:
    store = SettingsStore(clean_env, env={})
    store.update(port=9000)
    store.update(mode="hydra")
    on_disk = json.loads((clean_env / "settings.json").read_text())
    backup = json.loads((clean_env / "settings.json.bak").read_text())
    assert on_disk["mode"] == "hydra" and on_disk["port"] == 9000
    assert backup["mode"] == "direct" and backup["port"] == 9000
    assert SettingsStore(clean_env, env={}).current.mode == "hydra"


def test_invalid_update_is_rejected_and_nothing_changes(clean_env: Path) -> None:
    store = SettingsStore(clean_env, env={})
    store.update(port=9000)
    before = (clean_env / "settings.json").read_bytes()
    with pytest.raises(ValueError, match="port"):
        store.update(port=70000)
    row = ModelRow(id="a", provider="llama_cpp", source="/x.gguf")
    with pytest.raises(ValueError, match="duplicate model id 'a'"):
        store.update(models=[row, row])
    assert (clean_env / "settings.json").read_bytes() == before
    assert store.current.port == 9000


@pytest.mark.parametrize("garbage", [b"{not json", b'{"port": "eighty"}', b"\x00\xff", b"[]"])
def test_corrupt_file_is_set_aside_and_backup_restored(clean_env: Path, garbage: bytes) -> None:
    store = SettingsStore(clean_env, env={})
    store.update(port=9001)
    store.update(port=9002)  # backup now holds 9001
    (clean_env / "settings.json").write_bytes(garbage)
    again = SettingsStore(clean_env, env={})
    assert again.current.port == 9001
    aside = list(clean_env.glob("settings.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # never overwritten
    assert any("moved to" in w and "Restored" in w for w in again.warnings)


def test_corrupt_file_without_backup_starts_from_defaults(clean_env: Path) -> None:
    clean_env.mkdir(parents=True)
    (clean_env / "settings.json").write_text('{"api_enabled": "maybe"}')
    store = SettingsStore(clean_env, env={})
    assert store.current == Settings()
    assert any("api_enabled" in w and "defaults" in w for w in store.warnings)
    assert list(clean_env.glob("settings.json.corrupt-*"))


def test_unknown_keys_survive_a_save(clean_env: Path) -> None:
    clean_env.mkdir(parents=True)
    (clean_env / "settings.json").write_text('{"port": 8600, "future_feature": {"x": 1}}')
    store = SettingsStore(clean_env, env={})
    store.update(mode="hydra")
    assert json.loads((clean_env / "settings.json").read_text())["future_feature"] == {"x": 1}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_parse_bool(raw: str, value: bool) -> None:
    assert parse_bool(raw) is value


def test_env_overlays_without_being_written(clean_env: Path) -> None:
    env = {
        "TATER_OPENAI_API_ENABLED": "yes",
        "TATER_OPENAI_API_MODE": "hydra",
        "TATER_OPENAI_API_HYDRA_TOOLS_ENABLED": "on",
    }
    store = SettingsStore(clean_env, env=env)
    s = store.current
    assert (s.api_enabled, s.mode, s.hydra_tools_allowed) == (True, "hydra", True)
    store.update(port=8600)
    on_disk = json.loads((clean_env / "settings.json").read_text())
    assert on_disk["api_enabled"] is False and on_disk["mode"] == "direct"
    assert store.current.api_enabled is True  # still overlaid
    store.update(api_enabled=False)  # an explicit change wins over the environment
    assert store.current.api_enabled is False


def test_bad_env_values_warn_and_are_ignored() -> None:
    out, warnings = env_overrides({"TATER_OPENAI_API_ENABLED": "perhaps", "TATER_OPENAI_API_MODE": "turbo"})
    assert out == {}
    assert len(warnings) == 2 and "perhaps" in warnings[0] and "turbo" in warnings[1]


def test_listeners_see_changes(clean_env: Path) -> None:
    store = SettingsStore(clean_env, env={})
    seen = []
    store.subscribe(lambda old, new: seen.append((old.port, new.port)))
    store.update(port=8700)
    assert seen == [(8501, 8700)]
