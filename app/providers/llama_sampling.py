"""Per-sequence sampling from a logits row, for the batched llama.cpp slots.

Each member of a batch has its own :class:`SlotSampler` (its seed, temperature, penalties,
logit bias and constraint), so members never share random state. The order follows
llama-cpp-python's default chain: penalties, logit bias / constraint mask, then greedy at
temperature 0, else top-k, top-p, min-p, temperature and a draw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PENALTY_LAST_N = 64
"""Tokens (prompt and reply) the repeat/presence/frequency penalties look back over (llama.cpp's default)."""

LogitsProcessor = Callable[[Any, Any], Any]
"""llama-cpp-python's processor signature: ``(token ids so far, logits row) -> logits row``."""


@dataclass
class SamplingParams:
    """What one request asks of its sampler."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    processor: LogitsProcessor | None = None


class SlotSampler:
    """Picks a batch member's next token from its logits row."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def pick(self, logits: np.ndarray, history: list[int]) -> int:
        """The next token; ``history`` is the prompt and the reply so far (the processor's input)."""
        p = self.params
        row = np.array(logits, dtype=np.float32, copy=True)
        self._penalise(row, history)
        for token, bias in p.logit_bias.items():
            if 0 <= token < row.shape[0]:
                row[token] += bias
        if p.processor is not None:
            row = np.asarray(p.processor(np.asarray(history, dtype=np.intc), row), dtype=np.float32)
        if p.temperature <= 0:
            return int(np.argmax(row))
        return self._draw(row)

    def _penalise(self, row: np.ndarray, history: list[int]) -> None:
        p = self.params
        if p.repeat_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty:
            return
        for token, count in Counter(history[-PENALTY_LAST_N:]).items():
            value = row[token]
            if p.repeat_penalty != 1.0:
                value = value / p.repeat_penalty if value > 0 else value * p.repeat_penalty
            row[token] = value - count * p.frequency_penalty - p.presence_penalty

    def _draw(self, row: np.ndarray) -> int:
        p = self.params
        candidates = np.flatnonzero(np.isfinite(row))
        if candidates.size == 0:
            return int(np.argmax(row))
        scores = row[candidates]
        order = np.argsort(-scores, kind="stable")
        if p.top_k > 0:
            order = order[:p.top_k]
        candidates, scores = candidates[order], scores[order]
        probs = _softmax(scores)
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            candidates, scores = candidates[:keep], scores[:keep]
            probs = _softmax(scores)
        if p.min_p > 0.0:
            keep_mask = probs >= p.min_p * probs[0]
            candidates, scores = candidates[keep_mask], scores[keep_mask]
        probs = _softmax(scores / p.temperature)
        return int(candidates[self.rng.choice(candidates.size, p=probs)])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()
