"""Splitting a model's reasoning from its answer, for every local runtime.

A reasoning model writes its thinking in a format its chat template declares.  The formats
known here live in :data:`REASONING_FORMATS`, tried in order by :func:`detect_reasoning`:

- :class:`HarmonyFormat` (gpt-oss): messages on channels, ``<|channel|>analysis<|message|>…
  <|end|><|start|>assistant<|channel|>final<|message|>…``; ``analysis`` is reasoning,
  ``final`` (and ``commentary`` without a recipient) is the answer.
- :class:`ThinkTags` ``<think>…</think>`` (Qwen3, DeepSeek-R1 and its distills, …) and
  ``[THINK]…[/THINK]`` (Magistral).  Templates that open the block in the generation prompt
  (the output then holds only the closing tag) are recognised from the rendered prompt.

**Adding a format**: write a class with ``name``, ``detect(template, special_tokens)`` and
``splitter(prompt)`` (a :class:`Splitter`: ``feed(text)`` / ``finish()`` returning
:class:`Split` parts) and call :func:`register_reasoning_format`; a tag pair is one line:
``register_reasoning_format(ThinkTags("<reason>", "</reason>"))``.

:func:`split_reasoning` is the streaming normaliser the runtimes wrap their raw chunks in:
text goes through the splitter, and comes out as ``ChatChunk.reasoning`` and ``ChatChunk.text``
deltas (reasoning first, as the model wrote it).  :func:`template_switches` maps a request's
``reasoning_effort`` to the template's own variables (``enable_thinking``, ``reasoning_effort``);
:func:`budget_thinking` ends a reasoning block once a token budget is spent (a format ends by
writing :func:`close_marker`'s text; a registered format may give a ``close_text`` attribute).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.providers.base import ChatChunk, ToolCallDelta, Usage

MARKER_CANDIDATES = ("<think>", "</think>", "[THINK]", "[/THINK]", "<|channel|>")
"""Marker strings a runtime checks for among its special tokens (for :func:`detect_reasoning`)."""

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""``reasoning_effort`` values OpenAI defines."""


@dataclass
class Split:
    """What a piece of raw output turned into: reasoning, answer text, harmony tool calls."""

    reasoning: str = ""
    content: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __iadd__(self, other: Split) -> Split:
        self.reasoning += other.reasoning
        self.content += other.content
        self.calls += other.calls
        return self


class Splitter(Protocol):
    """Streaming splitter of one reply."""

    def feed(self, text: str) -> Split:
        """Add raw output; return what is certain so far."""

    def finish(self) -> Split:
        """Generation ended: release what is held back."""

    @property
    def thinking(self) -> bool:
        """True while the model is inside its reasoning."""


class ReasoningFormat(Protocol):
    """A reasoning format: how to recognise it and how to split a reply."""

    name: str

    def detect(self, template: str, special_tokens: Iterable[str]) -> bool:
        """True when a model with this template / these special tokens writes this format."""

    def splitter(self, prompt: str) -> Splitter:
        """A splitter for one reply to the rendered ``prompt``."""


def _partial_suffix(buf: str, token: str) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of ``token``."""
    for n in range(min(len(token) - 1, len(buf)), 0, -1):
        if buf.endswith(token[:n]):
            return n
    return 0


class StateSplitter:
    """A splitter as a state machine over its buffered text: :meth:`feed` runs ``_step`` until
    neither the state nor the buffer changes."""

    state: str
    buf: str

    def feed(self, text: str) -> Split:
        self.buf += text
        out = Split()
        while True:
            state, size = self.state, len(self.buf)
            out += self._step()
            if (self.state, len(self.buf)) == (state, size):
                return out

    def _step(self) -> Split:
        raise NotImplementedError


class TagSplitter(StateSplitter):
    """Splits ``open … close`` reasoning from the answer (see :class:`ThinkTags`)."""

    def __init__(self, open_tag: str, close_tag: str, opened: bool) -> None:
        self.open, self.close = open_tag, close_tag
        self.state = "think" if opened else "start"
        self.buf = ""

    @property
    def thinking(self) -> bool:
        return self.state == "think"

    def _step(self) -> Split:
        buf = self.buf
        if self.state == "start":
            s = buf.lstrip()
            if s.startswith(self.open):
                self.state, self.buf = "think", s[len(self.open):]
            elif not self.open.startswith(s):  # (an empty s is a prefix: wait)
                self.state = "answer"
            return Split()
        if self.state == "think":
            i = buf.find(self.close)
            if i >= 0:
                self.state, self.buf = "after", buf[i + len(self.close):]
                return Split(reasoning=buf[:i])
            keep = _partial_suffix(buf, self.close)
            self.buf = buf[len(buf) - keep:]
            return Split(reasoning=buf[:len(buf) - keep])
        if self.state == "after":  # the answer starts after the whitespace that follows </think>
            s = buf.lstrip()
            if s:
                self.state, self.buf = "answer", s
            else:
                self.buf = ""
            return Split()
        self.buf = ""
        return Split(content=buf)

    def finish(self) -> Split:
        rest, self.buf = self.buf, ""
        if self.state == "think":
            return Split(reasoning=rest)
        return Split(content=rest.lstrip() if self.state == "after" else rest)


@dataclass(frozen=True)
class ThinkTags:
    """Reasoning between a tag pair, e.g. ``<think>…</think>``."""

    open: str = "<think>"
    close: str = "</think>"

    @property
    def name(self) -> str:
        return f"tags:{self.open}"

    def detect(self, template: str, special_tokens: Iterable[str]) -> bool:
        return (self.open in template or self.close in template
                or any(t in (self.open, self.close) for t in special_tokens))

    def splitter(self, prompt: str) -> TagSplitter:
        # A generation prompt that ends inside an open block: the output starts in reasoning.
        tail = prompt.rstrip()
        return TagSplitter(self.open, self.close, opened=tail.endswith(self.open))


HARMONY_MARKERS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>",
                   "<|return|>", "<|constrain|>")
_RECIPIENT = re.compile(r"to=([^\s<]+)")
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")


class HarmonySplitter(StateSplitter):
    """Splits gpt-oss harmony messages by channel; calls (``to=functions.x``) are collected."""

    def __init__(self) -> None:
        self.state = "header"  # header | body | plain
        self.buf = ""
        self.channel = ""
        self.recipient: str | None = None
        self.body = ""

    @property
    def thinking(self) -> bool:
        return self.state == "body" and self.channel == "analysis"

    def _step(self) -> Split:
        buf = self.buf
        if self.state == "plain":
            self.buf = ""
            return Split(content=buf)
        if self.state == "header":
            s = buf.lstrip()
            if s and not s.startswith("<|") and not "<|".startswith(s) and \
                    not s.startswith(("assistant", "analysis", "final", "commentary")):
                self.state = "plain"  # not harmony at all: plain text
                return Split()
            i = buf.find("<|message|>")
            if i < 0:
                return Split()
            header = buf[:i]
            match = _CHANNEL.search(header)
            self.channel = match.group(1) if match else "final"
            recipient = _RECIPIENT.search(header)
            self.recipient = recipient.group(1) if recipient else None
            self.state, self.buf, self.body = "body", buf[i + len("<|message|>"):], ""
            return Split()
        # body: runs to the next end marker
        ends = [(buf.find(m), m) for m in ("<|end|>", "<|call|>", "<|return|>", "<|start|>")]
        found = [(i, m) for i, m in ends if i >= 0]
        if found:
            i, marker = min(found)
            part = self._body(buf[:i])
            part += self._close()
            self.state = "header"
            self.buf = buf[i + (0 if marker == "<|start|>" else len(marker)):]
            return part
        keep = max(_partial_suffix(buf, m) for m in HARMONY_MARKERS)
        self.buf = buf[len(buf) - keep:]
        return self._body(buf[:len(buf) - keep])

    def _body(self, text: str) -> Split:
        if self.recipient is not None:
            self.body += text
            return Split()
        if self.channel == "analysis":
            return Split(reasoning=text)
        return Split(content=text)

    def _close(self) -> Split:
        if self.recipient is None:
            return Split()
        name = self.recipient.removeprefix("functions.")
        call, self.body, self.recipient = (name, self.body.strip()), "", None
        return Split(calls=[call])

    def finish(self) -> Split:
        rest, self.buf = self.buf, ""
        if self.state == "body":
            out = self._body(rest)
            out += self._close()
            return out
        return Split(content=rest) if self.state == "plain" else Split()


@dataclass(frozen=True)
class HarmonyFormat:
    """gpt-oss's harmony response format."""

    name: str = "harmony"

    def detect(self, template: str, special_tokens: Iterable[str]) -> bool:
        return "<|channel|>" in template or "<|channel|>" in set(special_tokens)

    def splitter(self, prompt: str) -> HarmonySplitter:
        return HarmonySplitter()


REASONING_FORMATS: list[ReasoningFormat] = [HarmonyFormat(), ThinkTags("<think>", "</think>"),
                                            ThinkTags("[THINK]", "[/THINK]")]
"""Known formats, tried in order (the first that detects wins)."""


def register_reasoning_format(fmt: ReasoningFormat, *, first: bool = True) -> None:
    """Add a format (see the module docstring); ``first`` lets it win over the built-in ones."""
    if first:
        REASONING_FORMATS.insert(0, fmt)
    else:
        REASONING_FORMATS.append(fmt)


def detect_reasoning(template: str | None, special_tokens: Iterable[str] = ()) -> ReasoningFormat | None:
    """The reasoning format of a model with this chat template and these special tokens."""
    tokens = list(special_tokens)
    for fmt in REASONING_FORMATS:
        if fmt.detect(template or "", tokens):
            return fmt
    return None


def template_switches(template: str | None, effort: str | None) -> dict[str, Any]:
    """Template variables for ``reasoning_effort``: the template's own switches, if it has them.

    ``enable_thinking`` (Qwen3 and friends) is False for ``none`` and True otherwise;
    ``reasoning_effort`` (gpt-oss) gets low / medium / high (``none``/``minimal`` -> low,
    ``xhigh`` -> high).  No effort, or a template without the switch: nothing.
    """
    if effort is None or not template:
        return {}
    out: dict[str, Any] = {}
    if "enable_thinking" in template:
        out["enable_thinking"] = effort != "none"
    if "reasoning_effort" in template:
        out["reasoning_effort"] = {"none": "low", "minimal": "low", "xhigh": "high"}.get(effort, effort)
    return out


def split_reasoning(chunks: Iterable[ChatChunk], splitter: Splitter,
                    new_call_id: Callable[[], str] | None = None) -> Iterator[ChatChunk]:
    """The runtime's raw chunks with reasoning split from the text (the streaming normaliser).

    Harmony tool calls come out as whole tool-call deltas (``new_call_id`` makes their ids)
    and make a ``stop`` finish ``tool_calls``.
    """
    calls = 0
    for chunk in chunks:
        part = splitter.feed(chunk.text) if chunk.text else Split()
        if chunk.finish_reason:
            part += splitter.finish()
        deltas = []
        for name, args in part.calls:  # header first (arguments ""), then the arguments
            deltas.append(ToolCallDelta(index=calls, id=new_call_id() if new_call_id else None,
                                        name=name, arguments=""))
            deltas.append(ToolCallDelta(index=calls, arguments=args or "{}"))
            calls += 1
        finish = chunk.finish_reason
        if finish == "stop" and calls:
            finish = "tool_calls"
        if part.reasoning or part.content or deltas or chunk.tool_calls or finish or chunk.logprobs:
            yield ChatChunk(text=part.content, reasoning=part.reasoning,
                            tool_calls=(chunk.tool_calls or []) + deltas or None,
                            finish_reason=finish, usage=chunk.usage, logprobs=chunk.logprobs,
                            stop_sequence=chunk.stop_sequence)


def close_marker(fmt: ReasoningFormat) -> str | None:
    """The text that ends a reasoning block in ``fmt`` (None: it cannot be ended by text)."""
    if isinstance(fmt, ThinkTags):
        return fmt.close + "\n\n"
    if isinstance(fmt, HarmonyFormat):
        return "<|end|><|start|>assistant<|channel|>final<|message|>"
    return getattr(fmt, "close_text", None)


def budget_thinking(run: Callable[[str], Iterator[ChatChunk]], splitter: Splitter, budget: int,
                    close: str, prompt_tokens: int) -> Iterator[ChatChunk]:
    """Raw chunks of a reply whose reasoning ends after ``budget`` tokens.

    ``run("")`` generates from the prompt; ``run(extra)`` goes on from the tokens the last run
    generated followed by ``extra`` (raw chunks, the last with finish_reason and usage).
    ``splitter`` is a fresh splitter for the same prompt, used only to see whether the model
    is thinking.  When the budget is spent mid-thought the generation is stopped, ``close`` is
    written for the model, and it goes on from there; usage then counts the whole continued
    sequence (``prompt_tokens`` is the original prompt's length).
    """
    spent = 0
    first = run("")
    if not (budget <= 0 and splitter.thinking):
        try:
            for chunk in first:
                if chunk.finish_reason:
                    yield chunk
                    return
                spent += 1 if splitter.thinking and chunk.text else 0  # a token of the thought
                splitter.feed(chunk.text)
                yield chunk
                if splitter.thinking and spent >= budget:
                    break
            else:
                return
        finally:
            first.close()  # stops the runtime between tokens
    yield ChatChunk(text=close)
    for chunk in run(close):
        if chunk.usage is not None:  # the second run's prompt holds the first run's output
            total = chunk.usage.prompt_tokens + chunk.usage.completion_tokens
            chunk = ChatChunk(text=chunk.text, reasoning=chunk.reasoning, tool_calls=chunk.tool_calls,
                              finish_reason=chunk.finish_reason, logprobs=chunk.logprobs,
                              usage=Usage(prompt_tokens, total - prompt_tokens),
                              stop_sequence=chunk.stop_sequence)
        yield chunk
