"""Turning generated token ids into clean text deltas, shared by the local runtimes.

:class:`IncrementalDecoder` yields text as tokens arrive without ever splitting a UTF-8
character that spans several tokens, and its deltas always add up to the tokenizer's own
decode of the whole sequence.  :class:`StopScanner` applies stop sequences during
generation: it holds back text that could be the start of a stop string, so a stop string
never reaches the client.  :func:`finish_text` releases what both hold back when generation
ends.

The Hugging Face-format runtimes (Transformers, MLX) differ only in how they make the next
token.  Each yields ``(token, scores, is_eos)`` triples; :func:`token_steps` applies
cancellation, EOS, decoding and stop sequences to them, and :func:`chat_chunks` /
:func:`text_chunks` turn the steps into chunks for chat and for raw completions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from app.providers.base import ChatChunk, Usage

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Token ids in, text deltas out (the prefix/read-offset scheme used by TGI and vLLM).

    Each step decodes a small window that starts one token before the new ones, so
    tokenizers that strip a leading space (SentencePiece) or merge bytes across tokens
    (byte-level BPE) give the same text as decoding everything at once.  A window that
    ends in an incomplete character (U+FFFD) is held back until the character completes.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    @property
    def ids(self) -> list[int]:
        """Every id added so far."""
        return self._ids

    def add(self, token_id: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character decodes as U+FFFD)."""
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return after[len(before):] if len(after) > len(before) else ""


class StopScanner:
    """Applies stop sequences to a stream of text deltas.

    ``feed`` returns the text that is safe to send and whether a stop sequence was hit;
    after a hit the output ends just before the stop string, and ``matched`` is that string.
    Call ``flush`` when generation ends for another reason, to release the held-back tail.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self._held = ""
        self.hit = False
        self.matched: str | None = None

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add ``delta``; return ``(text_to_emit, stopped)``."""
        if self.hit:
            return "", True
        if not self.stops:
            return delta, False
        buf = self._held + delta
        found = first_stop(buf, self.stops)
        if found is not None:
            cut, self.matched = found
            self._held = ""
            self.hit = True
            return buf[:cut], True
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        """Release held-back text (no stop sequence completed)."""
        out, self._held = self._held, ""
        return "" if self.hit else out

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that starts some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the first stop string in ``text`` starts, and which one (the longest of those
    starting there); None when there is none."""
    hits = [(i, -len(s), s) for s in stops if s and (i := text.find(s)) >= 0]
    if not hits:
        return None
    at, _, stop = min(hits)
    return at, stop


def finish_text(decoder: IncrementalDecoder, stops: StopScanner, finish: str) -> tuple[str, str]:
    """The last text and finish_reason once generation ends.

    Unless a stop sequence already ended the text, the decoder's held-back characters go
    through ``stops`` (they may complete a stop string, making the reason ``"stop"``) and the
    scanner releases what it held; ``finish`` is returned otherwise unchanged.
    """
    if stops.hit:
        return "", finish
    tail, hit = stops.feed(decoder.flush())
    tail += stops.flush()
    return tail, "stop" if hit else finish


@dataclass
class TokenStep:
    """One generated token: its id, the runtime's scores for it, and the text it releases."""

    token: int
    scores: Any
    text: str
    eos: bool = False


@dataclass
class GenerationEnd:
    """How a generation ended: finish reason, usage, and the text held back to the end.

    The runtime keeps ``usage`` current (and may set ``finish``); :func:`token_steps` sets
    the rest (``stop_sequence``: the stop string that ended it, if one did).
    """

    usage: Usage
    finish: str = "length"
    tail: str = ""
    cancelled: bool = False
    stop_sequence: str | None = None


def token_steps(tokens: Generator[tuple[int, Any, bool]], decode: Callable[[Sequence[int]], str],
                stop: Sequence[str], cancelled: threading.Event,
                end: GenerationEnd) -> Generator[TokenStep]:
    """Steps from a runtime's ``(token, scores, is_eos)``; stops at EOS, a stop string or cancel.

    EOS comes as a last step with ``eos`` set and no text.  ``tokens`` is closed on the way out.
    """
    decoder, stops = IncrementalDecoder(decode), StopScanner(stop)
    with closing(tokens):
        for token, scores, eos in tokens:
            if cancelled.is_set():
                end.cancelled = True
                return
            if eos:
                end.finish = "stop"
                yield TokenStep(token, scores, "", eos=True)
                break
            text, hit = stops.feed(decoder.add(token))
            yield TokenStep(token, scores, text)
            if hit:
                end.finish = "stop"
                break
    end.tail, end.finish = finish_text(decoder, stops, end.finish)
    end.stop_sequence = stops.matched


def chat_chunks(steps: Generator[TokenStep], end: GenerationEnd,
                logprob: Callable[[TokenStep], dict[str, Any]] | None) -> Iterator[ChatChunk]:
    """Chat deltas; with ``logprob``, each token's entry goes out with the text it is part of.

    The EOS token's entry rides on the last chunk.  Nothing more after a cancel.
    """
    pending: list[dict[str, Any]] = []
    with closing(steps):
        for step in steps:
            if logprob is not None:
                pending.append(logprob(step))
            if step.text:
                yield ChatChunk(text=step.text, logprobs=pending or None)
                pending = []
    if not end.cancelled:
        yield ChatChunk(text=end.tail, finish_reason=end.finish, usage=end.usage,
                        logprobs=pending or None, stop_sequence=end.stop_sequence)


def text_chunks(steps: Generator[TokenStep], end: GenerationEnd,
                logprob: Callable[[TokenStep], dict[str, Any]] | None) -> Iterator[ChatChunk]:
    """Raw-completion deltas: one chunk per token with text or a ``logprob`` entry; no EOS entry."""
    with closing(steps):
        for step in steps:
            if step.eos:
                continue
            entries = [logprob(step)] if logprob is not None else None
            if step.text or entries:
                yield ChatChunk(text=step.text, logprobs=entries)
    if not end.cancelled:
        yield ChatChunk(text=end.tail, finish_reason=end.finish, usage=end.usage,
                        stop_sequence=end.stop_sequence)
