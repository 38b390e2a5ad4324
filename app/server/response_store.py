"""The bounded in-memory store of Responses API responses (``store: true``, the default).

A stored response keeps its ``response`` object, the items of its own input, and the whole
conversation before it, so ``previous_response_id`` continues a conversation (function calls and
their outputs included) and ``GET .../input_items`` lists what went in.  The store is bounded by
count, by bytes and by age (``settings.responses``: read on every write, so a change applies at
once); the oldest entries go first.  It lives in memory: a restart forgets it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.settings import ResponseStoreSettings


@dataclass
class StoredResponse:
    """One response and the conversation that produced it."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    """The items of this request's own input (with ids), oldest first."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """The conversation before this request (earlier inputs and outputs), oldest first."""
    stored_at: float = field(default_factory=time.monotonic)
    size: int = 0

    def conversation(self) -> list[dict[str, Any]]:
        """Everything a follow-up continues from: history, this input, this output."""
        return [*self.history, *self.input_items, *self.response.get("output", [])]


class ResponseStore:
    """Thread-safe; bounded by ``settings()`` (count, bytes, TTL)."""

    def __init__(self, settings: Callable[[], ResponseStoreSettings],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, entry: StoredResponse) -> None:
        """Store (or replace) ``entry``, then evict expired and oldest entries past the bounds."""
        entry.size = len(json.dumps([entry.response, entry.input_items, entry.history],
                                    default=str).encode())
        entry.stored_at = self._clock()
        rid = entry.response["id"]
        with self._lock:
            self._drop(rid)
            self._items[rid] = entry
            self._bytes += entry.size
            self._evict()

    def get(self, response_id: str) -> StoredResponse | None:
        """The entry, or None when unknown or expired."""
        with self._lock:
            self._evict()
            return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        """True when something was deleted."""
        with self._lock:
            self._evict()
            return self._drop(response_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def _drop(self, response_id: str) -> bool:
        old = self._items.pop(response_id, None)
        if old is None:
            return False
        self._bytes -= old.size
        return True

    def _evict(self) -> None:
        limits = self._settings()
        cutoff = self._clock() - limits.ttl_minutes * 60
        while self._items:
            rid, oldest = next(iter(self._items.items()))
            if (oldest.stored_at >= cutoff and len(self._items) <= limits.max_responses
                    and self._bytes <= limits.max_bytes):
                break
            self._drop(rid)
