"""Responses API request -> the provider's :class:`ChatRequest` (the one serving path's input).

The documented rules:

- ``instructions`` is the first system message (it is not carried over by
  ``previous_response_id``, as OpenAI does).  ``developer`` messages are system messages.
- Messages use their text parts (``input_text``, ``output_text``, ``text``); images and files are
  ignored, as the chat endpoint ignores them.
- ``function_call`` items become the assistant's tool calls and ``function_call_output`` items the
  tool results; ``custom_tool_call`` / ``_output`` and ``local_shell_call`` / ``_output`` the same
  (a custom call's arguments are ``{"input": ...}``, a shell call's its ``action``).
  ``reasoning`` items are kept in the stored conversation but not rendered into the prompt. Other
  item types (``web_search_call``, ``item_reference``, ``computer_call``…) are accepted and left out
  of the prompt.
- Tools: ``function`` tools are offered to the model as they are. ``custom`` (freeform) tools are
  offered as a function taking one string, ``input``; the model's call comes back as a
  ``custom_tool_call`` item. Every other tool type (``web_search``, ``local_shell``, ``file_search``,
  ``mcp``, ``code_interpreter``…) needs a hosted service or a model trained for it: it is accepted,
  echoed in the response's ``tools``, and not offered to the model. Forcing one with
  ``tool_choice`` is a 400, and so is naming a function the request does not offer (except in
  Hydra mode, where a named function is one of Hydra's Verbas).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.providers.base import ChatMessage, ChatRequest
from app.server.errors import ApiError
from app.server.protocol import has_text
from app.server.protocol_responses import (
    TEXT_PARTS,
    ContentPartIn,
    CustomTool,
    FunctionTool,
    ResponseCreateRequest,
    ToolChoiceObject,
)

CUSTOM_INPUT_SCHEMA = {"type": "object", "properties": {"input": {"type": "string"}},
                       "required": ["input"], "additionalProperties": False}


def parts_text(content: str | list[ContentPartIn] | list[dict[str, Any]] | None) -> str:
    """A message's or output's text: the string, or its text parts joined by newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else part.type
        text = part.get("text") if isinstance(part, dict) else part.text
        if kind in TEXT_PARTS and isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


@dataclass
class Offered:
    """The tools offered to the model, and which of them are freeform (``custom``) tools."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    custom: set[str] = field(default_factory=set)
    echoed: list[dict[str, Any]] = field(default_factory=list)
    """Every tool as the client sent it (the response's ``tools``)."""


def offered_tools(data: ResponseCreateRequest) -> Offered:
    """Function and custom tools in chat form; the other types are echoed only."""
    out = Offered()
    for tool in data.tools or []:
        out.echoed.append(tool.model_dump(by_alias=True, exclude_none=True))
        if isinstance(tool, FunctionTool):
            fn: dict[str, Any] = {"name": tool.name}  # (chat's key order: templates render it)
            if tool.description:
                fn["description"] = tool.description
            fn["parameters"] = tool.parameters or {"type": "object", "properties": {}}
            if tool.strict is not None:
                fn["strict"] = tool.strict
            out.tools.append({"type": "function", "function": fn})
        elif isinstance(tool, CustomTool):
            text = (tool.description or "") + "\nPut the whole input, as plain text, in `input`."
            out.tools.append({"type": "function", "function": {
                "name": tool.name, "description": text.strip(), "parameters": CUSTOM_INPUT_SCHEMA}})
            out.custom.add(tool.name)
    return out


def chat_tool_choice(choice: str | ToolChoiceObject | None, offered: Offered, *, hydra: bool = False
                     ) -> tuple[str | dict[str, Any] | None, list[dict[str, Any]]]:
    """The chat ``tool_choice`` and the tools it leaves on offer (for Hydra, a named function
    is one of its Verbas)."""
    names = {t["function"]["name"] for t in offered.tools}
    if choice is None or isinstance(choice, str):
        return choice, offered.tools
    if choice.type in ("function", "custom"):
        if not choice.name or (choice.name not in names and not hydra):
            raise ApiError(400, f"tool_choice names {choice.type} tool {choice.name!r}, which is not "
                           "among the request's function or custom tools.", code="invalid_value",
                           param="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}, offered.tools
    if choice.type == "allowed_tools":
        allowed = {t.get("name") for t in choice.tools or []}
        kept = [t for t in offered.tools if t["function"]["name"] in allowed]
        return (choice.mode or "auto") if kept else "none", kept
    raise ApiError(400, f"tool_choice type {choice.type!r} names a built-in tool this server does not "
                   "run (only function and custom tools are offered to the model).",
                   code="unsupported_value", param="tool_choice")


def response_format(data: ResponseCreateRequest) -> dict[str, Any] | None:
    """``text.format`` as the chat ``response_format``."""
    fmt = data.text.format if data.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema_ is None:
        raise ApiError(400, "text.format.schema is required when type is 'json_schema'.",
                       code="missing_required_parameter", param="text.format.schema")
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


class _Builder:
    """Folds items into chat messages, joining consecutive tool calls into one assistant turn."""

    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []
        self.calls: list[dict[str, Any]] = []
        self.text = ""

    def flush(self) -> None:
        if self.calls or self.text:
            self.messages.append(ChatMessage("assistant", self.text, tool_calls=tuple(self.calls) or None))
        self.calls, self.text = [], ""

    def say(self, role: str, text: str) -> None:
        if role == "assistant":
            if self.calls:
                self.flush()
            self.text = f"{self.text}\n{text}" if self.text else text
            return
        self.flush()
        if has_text(text):
            self.messages.append(ChatMessage("system" if role == "developer" else role, text))

    def call(self, call_id: str, name: str, arguments: str) -> None:
        self.calls.append({"id": call_id, "type": "function",
                           "function": {"name": name, "arguments": arguments}})

    def result(self, call_id: str, output: str) -> None:
        self.flush()
        self.messages.append(ChatMessage("tool", output, tool_call_id=call_id))


def item_messages(items: list[dict[str, Any]]) -> list[ChatMessage]:
    """Conversation items (plain dicts, as stored) -> chat messages, by the module's rules."""
    b = _Builder()
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            b.say(item.get("role", "user"), parts_text(item.get("content")))
        elif kind == "function_call":
            b.call(item["call_id"], item["name"], item.get("arguments") or "")
        elif kind == "custom_tool_call":
            b.call(item["call_id"], item["name"], json.dumps({"input": item.get("input", "")}))
        elif kind == "local_shell_call":
            b.call(item.get("call_id") or item.get("id") or "call", "local_shell",
                   json.dumps(item.get("action") or {}))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            output = item.get("output")
            b.result(item.get("call_id") or item.get("id") or "call",
                     output if isinstance(output, str) else parts_text(output))
    b.flush()
    return b.messages


def to_chat_request(data: ResponseCreateRequest, conversation: list[dict[str, Any]],
                    offered: Offered, *, hydra: bool = False) -> ChatRequest:
    """The provider request for ``conversation`` (earlier items, then this input)."""
    messages = item_messages(conversation)
    if data.instructions and has_text(data.instructions):
        messages.insert(0, ChatMessage("system", data.instructions))
    if not any(m.role != "system" for m in messages):
        raise ApiError(400, "The input has no message with text, function call or function output: "
                       "send at least one.", code="invalid_value", param="input")
    choice, tools = chat_tool_choice(data.tool_choice, offered, hydra=hydra)
    return ChatRequest(
        messages=messages,
        temperature=1.0 if data.temperature is None else data.temperature,
        top_p=1.0 if data.top_p is None else data.top_p,
        max_tokens=data.max_output_tokens,
        seed=data.seed,
        user=data.user,
        tools=tools or None,
        tool_choice=choice if tools or hydra else None,
        parallel_tool_calls=data.parallel_tool_calls,
        response_format=response_format(data),
        reasoning_effort=data.reasoning.effort if data.reasoning else None,
    )
