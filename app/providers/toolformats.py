"""Tool calls in each model family's own format, parsed out of the reply while it streams.

:data:`TOOL_FORMATS` holds the families' call syntaxes; :func:`detect_tool_format` picks one
from the chat template (Hermes when nothing else matches: the project prompts templates
without tool support in that style).  gpt-oss's ``to=functions.…`` calls are read by the
harmony reasoning splitter (:mod:`app.providers.reasoning`), which sees the channels.

=============  ==============================================  ==========================
family         a call                                          ends
=============  ==============================================  ==========================
Hermes / Qwen  ``<tool_call>{"name", "arguments"}</tool_call>``  the close tag (several ok)
Llama 3.x      ``<|python_tag|>{"name", "parameters"}`` or a     the reply (``;`` between
               reply that is one such JSON object                calls)
Mistral        ``[TOOL_CALLS][{"name", "arguments"}, …]`` or     the reply
               ``[TOOL_CALLS]name[ARGS]{…}``
=============  ==============================================  ==========================

:func:`parser_for` picks the reader for a request.
:class:`FormatParser` is a drop-in for :class:`~app.providers.toolcalls.ToolCallParser`
(``feed`` / ``finish`` / ``calls``): text stays text until a call's marker; a call is held until
it is complete, then checked: a valid one goes out as OpenAI deltas (the first fragment carries
``index``, ``id``, ``name`` and ``arguments: ""``, the next one the arguments), a call that does
not parse goes out as the text the model wrote (so the reply finishes ``stop``, never a 500).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from app.providers.base import ChatChunk, ChatRequest, ToolCallDelta
from app.providers.toolcalls import ToolCallParser, new_call_id, validate_tool_choice

Call = tuple[str, str]
"""A parsed call: (function name, arguments as a JSON object string)."""


def _call_of(obj: Any) -> Call | None:
    """(name, arguments JSON) from ``{"name": …, "arguments" | "parameters": {…}}``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return obj["name"], json.dumps(args, ensure_ascii=False)


def _json_values(text: str, separator: str = "") -> list[Any] | None:
    """Consecutive JSON values in ``text`` (optionally separated by ``separator``), or None."""
    decoder, out, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            return None
        out.append(value)
        while i < len(text) and (text[i].isspace() or (separator and text[i] == separator)):
            i += 1
    return out


def parse_json_calls(body: str) -> list[Call] | None:
    """Calls from JSON objects or arrays of them (``;``-separated for Llama), or None."""
    values = _json_values(body, ";")
    if not values:
        return None
    objs = [o for v in values for o in (v if isinstance(v, list) else [v])]
    calls = [_call_of(o) for o in objs]
    return None if not calls or any(c is None for c in calls) else calls  # type: ignore[return-value]


_MISTRAL_ARGS = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*\[ARGS\]")


def parse_mistral_calls(body: str) -> list[Call] | None:
    """``[{"name", "arguments"}…]`` (Mistral v3) or ``name[ARGS]{…}[TOOL_CALLS]…`` (v11+)."""
    if "[ARGS]" not in body:
        return parse_json_calls(body)
    calls: list[Call] = []
    for part in body.split("[TOOL_CALLS]"):
        if not part.strip():
            continue
        m = _MISTRAL_ARGS.match(part)
        if m is None:
            return None
        call = _call_of({"name": m.group(1), "arguments": _json_or_none(part[m.end():])})
        if call is None:
            return None
        calls.append(call)
    return calls or None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ToolFormat:
    """A family's call syntax: ``open`` starts calls; ``close`` ends one (None: the reply)."""

    name: str
    open: str
    close: str | None
    template_markers: tuple[str, ...]
    parse: Callable[[str], list[Call] | None]
    bare_json: bool = False
    """A reply that is just a JSON call object (no marker) is a call too."""

    def detect(self, template: str) -> bool:
        return any(m in template for m in self.template_markers)


HERMES = ToolFormat("hermes", "<tool_call>", "</tool_call>", ("<tool_call>",), parse_json_calls,
                    bare_json=True)
LLAMA3 = ToolFormat("llama3", "<|python_tag|>", None, ("<|python_tag|>", "ipython"),
                    parse_json_calls, bare_json=True)
MISTRAL = ToolFormat("mistral", "[TOOL_CALLS]", None, ("[TOOL_CALLS]",), parse_mistral_calls)

TOOL_FORMATS: list[ToolFormat] = [MISTRAL, LLAMA3, HERMES]
"""Known call syntaxes, tried in order by :func:`detect_tool_format`; add one by inserting."""


def detect_tool_format(template: str | None) -> ToolFormat:
    """The call syntax a model with this chat template writes (Hermes by default)."""
    for fmt in TOOL_FORMATS:
        if fmt.detect(template or ""):
            return fmt
    return HERMES


def _partial_suffix(buf: str, token: str) -> int:
    for n in range(min(len(token) - 1, len(buf)), 0, -1):
        if buf.endswith(token[:n]):
            return n
    return 0


class FormatParser:
    """Streaming reader of one reply in ``fmt`` (see the module docstring)."""

    def __init__(self, fmt: ToolFormat = HERMES, *, bare_json: bool = True) -> None:
        self.fmt = fmt
        self.bare_json = bare_json and fmt.bare_json
        self.calls = 0
        self.malformed = False
        self._buf = ""
        self._state = "start"  # start | text | call | bare
        self._seen_text = False

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        """Add generated text; return (content to send, tool-call fragments)."""
        self._buf += delta
        text, frags = "", []
        while True:
            before = (self._state, len(self._buf))
            t, f = self._step()
            text, frags = text + t, frags + f
            if (self._state, len(self._buf)) == before:
                return text, frags

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """Generation ended: a call still open is parsed as it stands; text is released."""
        rest, self._buf = self._buf, ""
        if self._state in ("call", "bare"):
            marker = self.fmt.open if self._state == "call" else ""
            body = rest[len(marker):] if rest.startswith(marker) else rest
            return self._emit(rest, body)
        if self._state == "start" and not rest.strip() and self.calls:
            return "", []
        return rest, []

    def _step(self) -> tuple[str, list[ToolCallDelta]]:
        buf, fmt = self._buf, self.fmt
        if self._state == "start":
            s = buf.lstrip()
            if not s:
                return "", []
            if self.bare_json and not self._seen_text and not self.calls and s.startswith("{"):
                self._state, self._buf = "bare", s
                return "", []
            if self.calls:  # whitespace between calls is not content
                self._buf = s
            self._state = "text"
            return "", []
        if self._state == "text":
            i = buf.find(fmt.open)
            if i >= 0:
                self._state, self._buf = "call", buf[i:]
                return self._text(buf[:i]), []
            keep = _partial_suffix(buf, fmt.open)
            self._buf = buf[len(buf) - keep:]
            return self._text(buf[:len(buf) - keep]), []
        if self._state == "call" and fmt.close is not None:
            i = buf.find(fmt.close)
            if i < 0:
                return "", []
            raw = buf[:i + len(fmt.close)]
            self._state, self._buf = "start", buf[i + len(fmt.close):]
            return self._emit(raw, raw[len(fmt.open):-len(fmt.close)])
        return "", []  # calls that run to the end of the reply: wait for finish()

    def _text(self, text: str) -> str:
        if text.strip():
            self._seen_text = True
        return text

    def _emit(self, raw: str, body: str) -> tuple[str, list[ToolCallDelta]]:
        calls = self.fmt.parse(body)
        if calls is None:
            self.malformed = True
            return raw, []
        frags: list[ToolCallDelta] = []
        for name, arguments in calls:
            frags.append(ToolCallDelta(index=self.calls, id=new_call_id(), name=name, arguments=""))
            frags.append(ToolCallDelta(index=self.calls, arguments=arguments))
            self.calls += 1
        return "", frags


class CallParser(Protocol):
    """What :func:`parse_tool_chunks` needs: :class:`FormatParser` or ``ToolCallParser``."""

    calls: int

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]: ...

    def finish(self) -> tuple[str, list[ToolCallDelta]]: ...


def parse_tool_chunks(chunks: Iterable[ChatChunk], parser: CallParser) -> Iterator[ChatChunk]:
    """``chunks`` with the calls in their text turned into tool-call deltas.

    Reasoning passes untouched (a call written while thinking is not a call); calls already on
    a chunk (harmony's) are kept; a reply that made calls finishes ``tool_calls``."""
    for chunk in chunks:
        text, calls = parser.feed(chunk.text) if chunk.text else ("", [])
        calls = (chunk.tool_calls or []) + calls
        if chunk.finish_reason:
            rest, more = parser.finish()
            text, calls = text + rest, calls + more
            finish = chunk.finish_reason
            if parser.calls and finish == "stop":
                finish = "tool_calls"
            yield ChatChunk(text=text, reasoning=chunk.reasoning, tool_calls=calls or None,
                            finish_reason=finish, usage=chunk.usage, logprobs=chunk.logprobs,
                            stop_sequence=chunk.stop_sequence)
        elif text or calls or chunk.reasoning or chunk.logprobs:
            yield ChatChunk(text=text, reasoning=chunk.reasoning, tool_calls=calls or None,
                            logprobs=chunk.logprobs)


def parser_for(request: ChatRequest, fmt: ToolFormat, *, bare_json: bool = True) -> CallParser:
    """The reader of a reply's calls: under ``auto`` (nothing constrains the model) each call
    is checked whole before it is sent (:class:`FormatParser`); a forced call (``required`` or
    a named function) follows the Hermes grammar, so its arguments stream token by token."""
    mode = validate_tool_choice(request.tools, request.tool_choice)
    if mode in ("auto", "none"):
        return FormatParser(fmt, bare_json=bare_json)
    return ToolCallParser(bare_json=bare_json)
