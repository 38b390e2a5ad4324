"""Settings survive bad values, killed writes and unknown keys (issue 11 defect 9, issue 17 item 5)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from app.settings import SettingsStore
from app.settings_repair import unknown_keys


def write(config: Path, data: dict) -> None:
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.json").write_text(json.dumps(data))


GOOD_ROW = {"id": "llama_cpp::a.gguf", "provider": "llama_cpp", "source": "/m/a.gguf"}


def test_one_bad_field_resets_only_that_field_and_says_which(clean_env: Path) -> None:
    write(clean_env, {"port": "abc", "api_enabled": True, "mode": "hydra", "active_model": GOOD_ROW["id"],
                      "models": [GOOD_ROW], "limits": {"queue_depth": 7, "max_messages": -1},
                      "hydra": {"max_steps": 3}})
    store = SettingsStore(clean_env, env={})
    s = store.current
    assert s.port == 8501 and s.limits.max_messages == 1000  # the bad ones: defaults
    assert s.api_enabled and s.mode == "hydra" and s.active_model == GOOD_ROW["id"]  # the rest kept
    assert [r.id for r in s.models] == [GOOD_ROW["id"]] and s.limits.queue_depth == 7
    assert s.hydra.max_steps == 3
    warning = " ".join(store.warnings)
    assert "port" in warning and "limits.max_messages" in warning
    assert list(clean_env.glob("settings.json.corrupt-*"))  # the original is kept for the user
    again = SettingsStore(clean_env, env={})  # the repaired file was saved
    assert again.current == s and not again.warnings


def test_a_row_that_cannot_stand_without_its_bad_field_is_dropped(clean_env: Path) -> None:
    write(clean_env, {"port": 9100, "models": [GOOD_ROW, {"id": "", "provider": "x", "source": "y"},
                                               {"provider": "x", "source": "no id"}]})
    store = SettingsStore(clean_env, env={})
    assert store.current.port == 9100
    assert [r.id for r in store.current.models] == [GOOD_ROW["id"]]
    assert "models.1" in " ".join(store.warnings)


def test_a_problem_with_no_field_to_drop_falls_back_to_defaults(clean_env: Path) -> None:
    write(clean_env, {"port": 9100, "models": [GOOD_ROW, GOOD_ROW]})  # duplicate ids
    store = SettingsStore(clean_env, env={})
    assert store.current.port == 8501 and "Starting from defaults" in " ".join(store.warnings)


def test_orphan_temp_files_from_killed_writes_are_removed_at_start(clean_env: Path) -> None:
    store = SettingsStore(clean_env, env={})
    store.update(port=9200)
    old = time.time() - 3600
    orphans = [clean_env / f".settings.json.{i}abc" for i in range(30)] + \
        [clean_env / ".settings.json.bak.zz1"]
    for path in orphans:
        path.write_text("{")
        os.utime(path, (old, old))
    fresh = clean_env / ".settings.json.live1"  # another process may be writing right now
    fresh.write_text("{")
    unrelated = clean_env / "notes.txt"
    unrelated.write_text("mine")
    again = SettingsStore(clean_env, env={})
    assert again.current.port == 9200
    assert not any(p.exists() for p in orphans)
    assert fresh.exists() and unrelated.exists()


def test_declared_keys_are_read_and_unknown_ones_reported(clean_env: Path) -> None:
    write(clean_env, {"hydra": {"tool_protocol": "native", "max_stpes": 9}, "limits": {"qeue_depth": 3},
                      "future_feature": {"on": True}})
    store = SettingsStore(clean_env, env={})
    assert store.current.hydra.tool_protocol == "native"
    assert unknown_keys(store.current) == ["future_feature", "hydra.max_stpes", "limits.qeue_depth"]
    warning = " ".join(store.warnings)
    assert "hydra.max_stpes" in warning and "limits.qeue_depth" in warning and "future_feature" in warning
    store.update(port=9300)  # kept, in case a newer version wrote them
    saved = json.loads((clean_env / "settings.json").read_text())
    assert saved["future_feature"] == {"on": True} and saved["hydra"]["max_stpes"] == 9
