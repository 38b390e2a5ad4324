"""The last few prompts a model rendered and tokenized, so one request renders its prompt once.

A request's prompt is needed on the event loop (the context check counts it), again where the
runtime decides how to run it (does it fit a parallel slot) and once more on the generating
thread; rendering a chat template and tokenizing costs from tens of microseconds to milliseconds
for a long conversation. Entries are found by the identity of the request's message objects
(messages are frozen) and its tools list, and hold references to them, so an id is never reused
while its entry lives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

MEMO_SIZE = 16
"""Prompts kept per model (a few concurrent requests, each asked for its prompt a few times)."""


@dataclass
class _Entry:
    messages: list[Any]
    tools: Any
    ids: list[int]


class PromptMemo:
    """Token ids of recently rendered prompts, by the identity of their messages and tools."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def ids(self, messages: Sequence[Any], tools: Any, make: Callable[[], list[int]],
            extra: Hashable = None) -> list[int]:
        """The prompt's ids: remembered, or ``make()`` (outside the lock) and remembered.
        ``extra`` is whatever else the rendering depends on (template switches)."""
        key = (tuple(map(id, messages)), id(tools), extra)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.tools is tools and len(entry.messages) == len(messages) \
                    and all(a is b for a, b in zip(entry.messages, messages, strict=True)):
                self._entries.move_to_end(key)
                return list(entry.ids)
        ids = make()
        with self._lock:
            self._entries[key] = _Entry(list(messages), tools, list(ids))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return ids
