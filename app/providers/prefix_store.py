"""Saved prompt prefixes beyond the parallel slots: a RAM budget of KV states, least recently used out.

A slot keeps its request's KV until another request needs the slot (:mod:`app.providers.llama_slots`).
With more conversations than slots (an agent, its sub-agents, a chat window, autocomplete) a
conversation's cache would be lost the moment its slot is reused. Before that happens the slot's
KV state is copied here (llama.cpp's ``llama_state_seq_get_data``), with the tokens it holds; a
later request whose prompt shares a longer prefix with a saved state than with any free slot gets
that state copied back into a slot and only the rest is processed. llama-server's ``--cache-ram``
does the same.

The store is plain data: what to keep, what to find, what to drop. The engine does the copying.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

MIN_SAVED_TOKENS = 64
"""Shorter caches are not worth a copy: processing them again is as quick."""


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x, y = np.asarray(a[:n]), np.asarray(b[:n])
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


@dataclass
class SavedPrefix:
    """One saved KV state and the tokens it holds."""

    tokens: list[int]
    state: bytes
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.state)


@dataclass
class PrefixStore:
    """Saved states within ``budget`` bytes; the least recently used go first."""

    budget: int
    entries: list[SavedPrefix] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(e.nbytes for e in self.entries)

    def worth_saving(self, tokens: list[int]) -> bool:
        """Whether a slot's cache of ``tokens`` should be saved before it is overwritten: long
        enough, and not already held (a saved state covering the same tokens)."""
        if self.budget <= 0 or len(tokens) < MIN_SAVED_TOKENS:
            return False
        return not any(len(e.tokens) >= len(tokens) and common_prefix(e.tokens, tokens) == len(tokens)
                       for e in self.entries)

    def put(self, tokens: list[int], state: bytes) -> bool:
        """Keep ``state`` (the KV of ``tokens``); whether it fits the budget. Saved states that are
        a prefix of the new one are dropped (it covers them)."""
        if len(state) > self.budget:
            return False
        self.entries = [e for e in self.entries
                        if not (len(e.tokens) <= len(tokens)
                                and common_prefix(e.tokens, tokens) == len(e.tokens))]
        self.entries.append(SavedPrefix(list(tokens), state, next(self._clock)))
        while self.nbytes > self.budget:
            self.entries.remove(min(self.entries, key=lambda e: e.last_used))
        return True

    def best(self, prompt: list[int]) -> tuple[SavedPrefix, int] | None:
        """The saved state sharing the longest prefix with ``prompt``, and that length (None if none
        shares a token); it counts as used."""
        found = max(((e, common_prefix(e.tokens, prompt)) for e in self.entries),
                    key=lambda pair: pair[1], default=None)
        if found is None or found[1] == 0:
            return None
        found[0].last_used = next(self._clock)
        return found
