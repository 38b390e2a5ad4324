"""Tool calling for local runtimes: rendering tools into prompts and parsing calls back out.

Models are prompted in the Hermes / Qwen style: tools are listed in the system prompt and a
call is written as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.  A chat
template that knows about tools (it mentions ``tools``) renders them itself; for any other
template :func:`prepare_messages` folds the tool list into the system message and turns tool
history into text, so nothing the client sent is dropped.

:class:`ToolCallParser` reads generated text incrementally and yields text deltas and
:class:`~app.providers.base.ToolCallDelta` fragments (id and name first, then argument text
as it is generated), so streamed calls reach clients in the shape the OpenAI SDK expects.
It understands ``<tool_call>{json}</tool_call>`` blocks and, when the whole reply is one,
a bare ``{"name": ..., "arguments": ...}`` object.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

from app.providers.base import ChatMessage, ToolCallDelta, UnsupportedError

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"

_SYSTEM_TOOLS = (
    "# Tools\nYou may call functions. Their signatures are within <tools></tools>:\n<tools>\n"
    "{tools}\n</tools>\nTo call a function, reply with:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>')

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


def new_call_id() -> str:
    """An OpenAI-style tool call id."""
    return "call_" + secrets.token_hex(12)


def first_fragments(raw: list[dict[str, Any]], started: set[int]) -> list[ToolCallDelta]:
    """OpenAI-shaped deltas: id and name only on the first fragment of each call index.

    For streamed ``tool_calls`` fragments from llama-cpp-python and remote servers, which
    may repeat them on every fragment (clients would concatenate them).
    """
    out = []
    for call in raw:
        index = int(call.get("index", 0))
        fn = call.get("function") or {}
        first = index not in started
        started.add(index)
        out.append(ToolCallDelta(index=index, id=call.get("id") if first else None,
                                 name=fn.get("name") if first else None,
                                 arguments=fn.get("arguments") or ""))
    return out


def template_supports_tools(template: str | None) -> bool:
    """True when a Jinja chat template renders a ``tools`` list itself."""
    return bool(template) and "tools" in str(template)


def validate_tool_choice(tools: list[dict[str, Any]] | None,
                         choice: str | dict[str, Any] | None) -> str | None:
    """The mode (``none``/``auto``/``required``) or the forced function's name; 400 if bad."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise UnsupportedError("tool_choice needs a non-empty tools list", param="tool_choice")
        return "none"
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    name = (choice.get("function") or {}).get("name")
    if name not in {t["function"]["name"] for t in tools}:
        raise UnsupportedError(f"tool_choice names function {name!r}, which is not in tools",
                               param="tool_choice")
    return f"function:{name}"


def _args_value(arguments: Any) -> Any:
    """Arguments as templates expect them: a dict when the JSON string parses."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def call_text(call: dict[str, Any]) -> str:
    """One history tool call in the Hermes form."""
    fn = call.get("function") or {}
    body = {"name": fn.get("name", ""), "arguments": _args_value(fn.get("arguments", ""))}
    return f"{TOOL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{TOOL_CLOSE}"


def prepare_messages(messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None,
                     native: bool) -> list[dict[str, Any]]:
    """Message dicts for a chat template.

    ``native``: the template renders tools and tool history itself; tool-call arguments are
    given as dicts (the Hugging Face convention).  Otherwise tools go into the system message
    and tool calls / results become Hermes-style text the template can show.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        d = m.to_dict()
        if native:
            if m.tool_calls:
                d["tool_calls"] = [{**c, "function": {**c.get("function", {}), "arguments":
                                   _args_value(c.get("function", {}).get("arguments", ""))}}
                                   for c in m.tool_calls]
            out.append(d)
            continue
        if m.tool_calls:
            text = "\n".join(([m.content] if m.content else []) + [call_text(c) for c in m.tool_calls])
            out.append({"role": "assistant", "content": text})
        elif m.role == "tool":
            out.append({"role": "user",
                        "content": f"<tool_response>\n{m.content}\n</tool_response>"})
        else:
            out.append(d)
    if tools and not native:
        listing = _SYSTEM_TOOLS.format(tools="\n".join(
            json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{listing}"}
        else:
            out.insert(0, {"role": "system", "content": listing})
    return out


class ToolCallParser:
    """Incremental parser of generated text into content deltas and tool-call fragments."""

    def __init__(self, *, bare_json: bool = True) -> None:
        self.bare_json = bare_json
        self.calls = 0
        self._buf = ""
        self._mode = "start"  # start | text | open | args | close | bare
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._args = ""

    def feed(self, delta: str) -> tuple[str, list[ToolCallDelta]]:
        """Add generated text; return (content to send, tool-call fragments)."""
        self._buf += delta
        text, frags = "", []
        while True:
            before = (self._mode, len(self._buf))
            t, f = self._step()
            text += t
            frags += f
            if (self._mode, len(self._buf)) == before:
                return text, frags

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """Generation ended: whatever is left (an unfinished bare object becomes text)."""
        rest, self._buf = self._buf, ""
        if self._mode == "bare":
            call = _whole_call(rest)
            if call is not None:
                return "", self._emit_whole(*call)
            return rest, []
        if self._mode in ("start", "text"):
            return rest, []
        if self._mode == "args" and rest:  # cut short (max_tokens): send what there is
            self._args += rest
            return "", [ToolCallDelta(index=self.calls - 1, arguments=rest)]
        return "", []

    # -- states ---------------------------------------------------------------------
    def _step(self) -> tuple[str, list[ToolCallDelta]]:
        mode, buf = self._mode, self._buf
        if mode == "text":
            if TOOL_OPEN in buf:
                i = buf.index(TOOL_OPEN)
                self._buf, self._mode = buf[i:], "open"
                return buf[:i], []
            keep = _partial_suffix(buf, TOOL_OPEN)
            self._buf = buf[len(buf) - keep:] if keep else ""
            return buf[:len(buf) - keep], []
        if mode == "start":
            s = buf.lstrip()
            if not s:
                return "", []
            if s.startswith(TOOL_OPEN):
                self._buf, self._mode = s, "open"
            elif TOOL_OPEN.startswith(s):
                pass  # could still become a tool call
            elif self.bare_json and s.startswith("{"):
                self._mode = "bare"
            else:
                self._mode = "text"
            return "", []
        if mode == "open":
            body = buf[len(TOOL_OPEN):] if buf.startswith(TOOL_OPEN) else buf
            m = _HEAD.match(body)
            if m:
                name = json.loads(f'"{m.group(1)}"')
                self._buf, self._mode = body[m.end():], "args"
                self._depth, self._in_str, self._esc, self._args = 0, False, False, ""
                self.calls += 1
                return "", [ToolCallDelta(index=self.calls - 1, id=new_call_id(), name=name)]
            if TOOL_CLOSE in body:  # another key order: parse the block whole
                i = body.index(TOOL_CLOSE)
                self._buf, self._mode = body[i + len(TOOL_CLOSE):], "start"
                call = _whole_call(body[:i])
                return ("", self._emit_whole(*call)) if call else (buf[:len(buf) - len(self._buf)], [])
            return "", []
        if mode == "args":
            n = self._scan_args(buf)
            self._buf = buf[n:]
            self._args += buf[:n]
            if self._depth == 0 and self._args.strip() and not self._in_str:
                self._mode = "close"
            return "", ([ToolCallDelta(index=self.calls - 1, arguments=buf[:n])] if n else [])
        if mode == "close":
            i = buf.find(TOOL_CLOSE)
            if i < 0:
                return "", []
            self._buf, self._mode = buf[i + len(TOOL_CLOSE):], "start"
            return "", []
        return "", []  # bare: wait for finish()

    def _scan_args(self, buf: str) -> int:
        """How many chars of ``buf`` belong to the arguments value (stops after it closes)."""
        for i, ch in enumerate(buf):
            if self._in_str:
                if self._esc:
                    self._esc = False
                elif ch == "\\":
                    self._esc = True
                elif ch == '"':
                    self._in_str = False
                    if self._depth == 0:
                        return i + 1
                continue
            if ch == '"':
                self._in_str = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                if self._depth == 0:  # the call object's own closing brace
                    return i
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
            elif self._depth == 0 and ch in ",}" and self._args.strip():
                return i
        return len(buf)

    def _emit_whole(self, name: str, arguments: str) -> list[ToolCallDelta]:
        self.calls += 1
        return [ToolCallDelta(index=self.calls - 1, id=new_call_id(), name=name,
                              arguments=arguments)]


def _whole_call(text: str) -> tuple[str, str] | None:
    """(name, arguments JSON) from a complete ``{"name":..,"arguments":..}`` object."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return obj["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _partial_suffix(buf: str, token: str) -> int:
    for n in range(min(len(token) - 1, len(buf)), 0, -1):
        if buf.endswith(token[:n]):
            return n
    return 0


def parse_tool_output(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A whole reply -> (content, OpenAI ``tool_calls`` dicts)."""
    from app.providers.base import accumulate_tool_calls

    parser = ToolCallParser()
    t1, f1 = parser.feed(text)
    t2, f2 = parser.finish()
    calls: dict[int, dict[str, Any]] = {}
    accumulate_tool_calls(calls, f1 + f2)
    return t1 + t2, [calls[i] for i in sorted(calls)]
