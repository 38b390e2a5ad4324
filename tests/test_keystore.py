"""The API key lives in the keyring only; failures are explained, never turned into plaintext."""

from __future__ import annotations

import re
import time
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from app.keystore import (
    API_KEY_ENTRY,
    SERVICE,
    KeyStore,
    KeystoreUnavailable,
    MemorySecretStore,
    generate_key,
)


def test_generated_key_shape() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"tater-[0-9a-f]{64}", k) for k in keys)


def test_rotate_stores_in_keyring_and_replaces(memory_keyring) -> None:
    ks = KeyStore(env={})
    first = ks.rotate()
    assert memory_keyring.store[(SERVICE, API_KEY_ENTRY)] == first
    second = ks.rotate()
    assert second != first and ks.get() == second
    assert ks.verify(second) and not ks.verify(first)


def test_key_changed_by_another_process_is_seen_by_verify(memory_keyring) -> None:
    server_side = KeyStore(env={}, refresh_seconds=60)
    server_side.rotate()
    other_process = KeyStore(env={})
    new = other_process.rotate()
    import time

    time.sleep(0.3)
    assert server_side.verify(new)


def test_set_validates(memory_keyring) -> None:
    ks = KeyStore(env={})
    with pytest.raises(ValueError):
        ks.set("short")
    with pytest.raises(ValueError):
        ks.set("has a space in it here")
    ks.set("my-own-key-123456789")
    assert ks.get() == "my-own-key-123456789"
    ks.clear()
    assert ks.status(fresh=True).key is None


def test_environment_key_is_a_fallback_only(memory_keyring) -> None:
    ks = KeyStore(env={"TATER_OPENAI_API_KEY": "env-key-0123456789abcdef"})
    assert ks.status(fresh=True).source == "environment"
    stored = ks.rotate()
    assert ks.status(fresh=True).key == stored


def test_no_keyring_is_explained_and_nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.setenv("HOME", str(tmp_path))
    ks = KeyStore(env={})
    st = ks.status(fresh=True)
    assert st.key is None and "No OS keyring is available" in (st.problem or "")
    with pytest.raises(KeystoreUnavailable, match="No OS keyring"):
        ks.rotate()
    assert ks.get() is None
    assert not any(tmp_path.rglob("*")), "nothing may be written as a plaintext fallback"


class SlowSecrets(MemorySecretStore):
    """A keyring that takes ``delay`` seconds per read (a locked or remote Secret Service)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.reads = 0

    def get(self, entry: str) -> str | None:
        self.reads += 1
        value = super().get(entry)
        time.sleep(self.delay)
        return value


def test_a_stale_key_is_served_at_once_and_refreshed_in_the_background() -> None:
    slow = SlowSecrets(0.3)
    ks = KeyStore(env={}, secrets_store=slow, refresh_seconds=0.05)
    key = ks.rotate()
    slow._values[API_KEY_ENTRY] = "tater-" + "1" * 64  # another process rotates it
    time.sleep(0.1)
    t0 = time.perf_counter()
    assert ks.status().key == key  # stale, but no wait for the keyring
    assert ks.matches(key)
    assert time.perf_counter() - t0 < 0.1
    deadline = time.monotonic() + 5
    while ks.peek().key == key and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.02)
    assert ks.peek().key == "tater-" + "1" * 64  # type: ignore[union-attr]


def test_a_background_read_never_undoes_a_rotation() -> None:
    slow = SlowSecrets(0.3)
    ks = KeyStore(env={}, secrets_store=slow, refresh_seconds=0.05)
    old = ks.rotate()
    time.sleep(0.1)
    ks.status()  # starts a background read that will see ``old``
    new = ks.rotate()  # ...while this rotation lands
    time.sleep(0.5)
    assert ks.status().key == new and not ks.matches(old)
