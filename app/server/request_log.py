"""A bounded, thread-safe record of recent requests, for the tray's request log window."""

from __future__ import annotations

import collections
import contextlib
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestRecord:
    """One finished request (the key is never stored)."""

    started: float
    client: str
    method: str
    path: str
    status: int
    model: str | None = None
    mode: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    stream: bool = False
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.latency_s if self.latency_s > 0 else 0.0

    def as_curl(self, base_url: str) -> str:
        """A curl command that repeats the request, with the key left as a placeholder."""
        parts = ["curl", "-sS", "-X", self.method, base_url.rstrip("/") + self.path,
                 "-H", "Authorization: Bearer $TATER_API_KEY"]
        for k, v in self.headers.items():
            parts += ["-H", f"{k}: {v}"]
        if self.body:
            parts += ["-d", self.body]
        return " ".join(shlex.quote(p) if not p.startswith("Authorization") else f'"{p}"' for p in parts)


class RequestLog:
    """Keeps the last ``size`` records and tells listeners (from the server thread)."""

    def __init__(self, size: int = 500) -> None:
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[RequestRecord], None]] = []
        self.served = 0
        self.in_flight = 0

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self.served += 1
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):  # the UI's problem must not break a request
                listener(record)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def subscribe(self, listener: Callable[[RequestRecord], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1

