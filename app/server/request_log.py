"""A bounded, thread-safe record of recent requests, for the tray's request log window."""

from __future__ import annotations

import collections
import contextlib
import re
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
    app: str = ""  # the calling app, from its User-Agent
    error: str = ""  # why it failed (the error envelope's message)
    ttft_s: float | None = None  # time to the first token (streamed replies)
    decode_tokens_per_s: float | None = None  # generation speed, load and prefill excluded when known

    @property
    def tokens_per_s(self) -> float:
        """The decode rate when it was measured, else completion tokens over the whole latency."""
        if self.decode_tokens_per_s is not None:
            return self.decode_tokens_per_s
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


_KNOWN_APPS: tuple[tuple[str, str], ...] = (
    (r"^claude-cli/", "Claude Code"),
    (r"^codex", "Codex CLI"),
    (r"^OpenAI/Python", "OpenAI Python SDK"),
    (r"^OpenAI/JS", "OpenAI JS SDK"),
    (r"^Anthropic/Python", "Anthropic Python SDK"),
    (r"^Anthropic/JS", "Anthropic JS SDK"),
    (r"^Tater(-| )?Desktop", "Tater (Try it)"),
    (r"^curl/", "curl"),
    (r"^python-httpx/", "httpx"),
    (r"^python-requests/", "requests"),
    (r"^aiohttp/|Python/3\.\d+ aiohttp", "aiohttp"),
    (r"^node-fetch|^undici|^node$", "Node.js"),
    (r"^Mozilla/", "Browser"),
)


def calling_app(user_agent: str) -> str:
    """A short name for the app behind a User-Agent (``Claude Code``, ``OpenAI Python SDK``…);
    an unknown agent is shown as its first product token; none at all is ""."""
    ua = user_agent.strip()
    if not ua:
        return ""
    for pattern, name in _KNOWN_APPS:
        if re.search(pattern, ua, re.IGNORECASE):
            return name
    return ua.split()[0][:40]


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

