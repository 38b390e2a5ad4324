"""The API key, kept only in the OS keyring.

``TATER_OPENAI_API_KEY`` is a fallback for servers without a keyring: it is read when the
keyring holds no key (or cannot be used), and never written anywhere.  When no keyring
backend works, :class:`KeyStore` reports why and nothing falls back to a plaintext file.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import keyring
import keyring.errors

log = logging.getLogger(__name__)

SERVICE = "tater-desktop"
API_KEY_ENTRY = "openai-api-key"
KEY_PREFIX = "tater-"
ENV_KEY = "TATER_OPENAI_API_KEY"


class KeystoreUnavailable(Exception):
    """No usable keyring; ``str()`` says why and what to do."""


def generate_key() -> str:
    """A fresh key: ``tater-`` + 64 hex characters."""
    return KEY_PREFIX + secrets.token_hex(32)


def key_id(key: str) -> str:
    """A short, non-secret identifier of a key (for logs and Hydra's origin)."""
    import hashlib

    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def redact(text: str, key: str | None) -> str:
    """Replace the key (if any) in ``text``."""
    return text.replace(key, "[REDACTED]") if key else text


def _explain(exc: Exception) -> str:
    if isinstance(exc, keyring.errors.NoKeyringError):
        return ("No OS keyring is available (no Secret Service, Keychain or Credential Manager "
                "backend). Install and unlock one (e.g. gnome-keyring or KeePassXC on Linux), or "
                f"set {ENV_KEY} for a headless server.")
    if isinstance(exc, keyring.errors.KeyringLocked):
        return "The OS keyring is locked. Unlock it (log in to your desktop session) and retry."
    return f"The OS keyring failed: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class KeyStatus:
    """What the server knows about the key right now."""

    key: str | None
    source: str | None  # "keyring" | "environment" | None
    problem: str | None  # why there is no key, when there is none


class SecretStore:
    """Small wrapper over ``keyring`` for one service; turns backend failures into messages."""

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service

    def get(self, entry: str) -> str | None:
        try:
            return keyring.get_password(self.service, entry)
        except Exception as exc:  # keyring backends raise many kinds
            raise KeystoreUnavailable(_explain(exc)) from exc

    def set(self, entry: str, value: str) -> None:
        try:
            keyring.set_password(self.service, entry, value)
        except Exception as exc:
            raise KeystoreUnavailable(_explain(exc)) from exc

    def delete(self, entry: str) -> None:
        try:
            keyring.delete_password(self.service, entry)
        except keyring.errors.PasswordDeleteError:
            pass
        except Exception as exc:
            raise KeystoreUnavailable(_explain(exc)) from exc


class MemorySecretStore(SecretStore):
    """Secrets held in memory only (the selftest's throw-away key; never the user's keyring)."""

    def __init__(self) -> None:
        super().__init__("memory")
        self._values: dict[str, str] = {}

    def get(self, entry: str) -> str | None:
        return self._values.get(entry)

    def set(self, entry: str, value: str) -> None:
        self._values[entry] = value

    def delete(self, entry: str) -> None:
        self._values.pop(entry, None)


class KeyStore:
    """The API key: read (cached briefly), rotated, set and cleared through the keyring.

    Changes made through this object apply on the very next request.  A key changed by
    another process (``tater key rotate``) is picked up within ``refresh_seconds``, and at
    once for a request that presents the new key.
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, secrets_store: SecretStore | None = None,
                 refresh_seconds: float = 2.0) -> None:
        self._env = env if env is not None else os.environ
        self._secrets = secrets_store or SecretStore()
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._status: KeyStatus | None = None
        self._read_at = 0.0
        self._generation = 0  # bumped by every change made here: older reads are discarded
        self._refreshing = False

    def status(self, *, fresh: bool = False) -> KeyStatus:
        """The current key (or why there is none); ``fresh`` reads the keyring now."""
        if not fresh:
            cached = self.peek()
            if cached is not None:
                return cached
        with self._lock:
            generation = self._generation
        st = self._read()
        with self._lock:
            if generation == self._generation:
                self._status, self._read_at = st, time.monotonic()
            return self._status or st

    def peek(self) -> KeyStatus | None:
        """The cached status without waiting for the keyring (None before the first read).

        A stale answer is returned as is and read again on a background thread, so a slow or
        prompting keyring never stalls the caller (the server's event loop).
        """
        with self._lock:
            st = self._status
            if st is not None and not self._refreshing and \
                    time.monotonic() - self._read_at > self._refresh:
                self._refreshing = True
                threading.Thread(target=self._refresh_in_background, name="tater-keyring",
                                 daemon=True).start()
            return st

    def matches(self, candidate: str | None) -> bool:
        """Constant-time check against the cached key only (never waits for the keyring)."""
        st = self.peek()
        return bool(candidate and st and st.key) and hmac.compare_digest(
            st.key.encode(), candidate.encode())  # type: ignore[union-attr]

    def get(self) -> str | None:
        """The key, or None.  Never raises."""
        return self.status().key

    def verify(self, candidate: str | None) -> bool:
        """Constant-time check of a presented key against the current one (may read the keyring)."""
        if not candidate:
            return False
        self.status()  # reads the keyring once if nothing is cached yet
        if self.matches(candidate):
            return True
        # Maybe the key was changed by another process: look again, at most 4 times a second.
        if time.monotonic() - self._read_at > 0.25:
            st = self.status(fresh=True)
            return bool(st.key) and hmac.compare_digest(st.key.encode(), candidate.encode())
        return False

    def rotate(self) -> str:
        """Generate and store a new key; the old one stops working at once."""
        return self.set(generate_key())

    def ensure(self) -> str:
        """The existing key, or a newly generated one stored in the keyring."""
        st = self.status(fresh=True)
        return st.key if st.key else self.rotate()

    def set(self, key: str) -> str:
        """Store a key of the user's choosing (at least 16 printable characters)."""
        key = key.strip()
        if len(key) < 16 or not key.isprintable() or any(c.isspace() for c in key):
            raise ValueError("an API key must be at least 16 printable characters with no spaces")
        self._secrets.set(API_KEY_ENTRY, key)
        self._remember(KeyStatus(key, "keyring", None))
        log.info("API key stored (%s)", key_id(key))
        return key

    def clear(self) -> None:
        """Delete the key from the keyring (the API then answers 403)."""
        self._secrets.delete(API_KEY_ENTRY)
        with self._lock:
            self._status = None
            self._generation += 1
        log.info("API key removed from the keyring")

    def _remember(self, st: KeyStatus) -> None:
        with self._lock:
            self._status = st
            self._read_at = time.monotonic()
            self._generation += 1

    def _refresh_in_background(self) -> None:
        with self._lock:
            generation = self._generation
        try:
            st = self._read()
        except Exception:  # never seen (``_read`` explains keyring failures): keep the old answer
            log.exception("re-reading the API key failed")
            st = None
        with self._lock:
            self._refreshing = False
            if st is not None and generation == self._generation:
                self._status, self._read_at = st, time.monotonic()

    def _read(self) -> KeyStatus:
        problem = None
        try:
            key = self._secrets.get(API_KEY_ENTRY)
            if key:
                return KeyStatus(key, "keyring", None)
        except KeystoreUnavailable as exc:
            problem = str(exc)
        env_key = self._env.get(ENV_KEY, "").strip()
        if env_key:
            return KeyStatus(env_key, "environment", None)
        return KeyStatus(None, None, problem or "No API key is configured yet: enable the API "
                         "from the tray (or run `tater key rotate`).")
