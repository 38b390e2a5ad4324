"""The API contract of Anthropic's Messages API, as this server accepts and returns it.

``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.  Requests ignore unknown fields
(clients send many: ``context_management``, ``mcp_servers``...); values that are present are
validated, and a bad one is a 400 in Anthropic's error shape.  Content blocks of a type this
server does not use (``image``, ``document``, server-tool results...) are accepted and left
out of the prompt, as the chat endpoint does with non-text parts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.server.protocol import HAS_TEXT, integer


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # JSON types as the API states them


def _type_required(schema: dict[str, Any]) -> None:
    schema["required"] = ["type", *[k for k in schema.get("required", []) if k != "type"]]


class _Block(_Lenient):
    """A content block: ``type`` defaults here (blocks built in code) but clients must send it."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=_type_required)


class TextBlock(_Block):
    """``{"type": "text", "text": ...}`` (``cache_control`` and ``citations`` accepted)."""

    type: Literal["text"] = "text"
    text: str
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(_Block):
    """An assistant's tool call: ``toolu_`` id, tool name and its JSON input."""

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    cache_control: dict[str, Any] | None = None


class ToolResultBlock(_Block):
    """A tool's result in a user turn; ``content`` is a string or blocks (text is used)."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(_Block):
    """An assistant's visible reasoning (round-tripped; ``signature`` accepted)."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str | None = None


class OtherBlock(BaseModel):
    """Any other block type (``image``, ``document``, ``redacted_thinking``...): accepted, not
    rendered (images are treated as the chat endpoint treats image parts)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(json_schema_extra={"not": {"enum": ["text", "tool_use", "tool_result",
                                                          "thinking"]}})


KNOWN_BLOCKS = frozenset({"text", "tool_use", "tool_result", "thinking"})


def _block_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in KNOWN_BLOCKS else "other"


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")] | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_kind),
]
ToolResultBlock.model_rebuild()


class MessageParam(_Lenient):
    """One turn: ``user`` or ``assistant``, content as a string or blocks; ``system`` turns in
    the conversation (Claude Code's ``mid-conversation-system`` beta) are accepted too."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class SystemBlock(_Lenient):
    """A text block of the system prompt."""

    type: Literal["text"] = "text"
    text: str
    cache_control: dict[str, Any] | None = None


class ToolParam(_Lenient):
    """A client tool (``input_schema``).  Anthropic's server tools (``web_search_…``,
    ``bash_…``: a ``type`` and no ``input_schema``) cannot run here and are ignored."""

    type: str | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


CLIENT_TOOL: dict[str, Any] = {"properties": {"input_schema": {"type": "object"}},
                               "required": ["input_schema"]}
"""A tool the model can be made to call: ``tool_choice`` ``any`` / ``tool`` needs one."""


class ToolChoice(_Lenient):
    """``auto`` / ``any`` / ``tool`` (with ``name``) / ``none``."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"anyOf": [
        {"properties": {"type": {"enum": ["auto", "any", "none"]}}},
        {"properties": {"type": {"const": "tool"}, "name": {"type": "string", "minLength": 1}},
         "required": ["name"]}]})

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Lenient):
    user_id: str | None = None


class ThinkingConfig(_Lenient):
    """``{"type": "enabled", "budget_tokens": N}`` / ``disabled`` / ``adaptive`` (accepted)."""

    type: str
    budget_tokens: integer(ge=0) | None = None


class OutputFormat(_Lenient):
    """``{"type": "json_schema", "schema": {...}}``: the reply is JSON valid against ``schema``."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Lenient):
    """``output_config``: ``format`` is enforced; ``effort`` is accepted."""

    effort: str | None = None
    format: OutputFormat | None = None


def _blocks_contain(block: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"content": {"type": "array", "contains": block}}, "required": ["content"]}


def _role_blocks(role: str, kind: str) -> dict[str, Any]:
    """A ``role`` turn with a ``kind`` block (a tool call, a tool result)."""
    out = _blocks_contain({"properties": {"type": {"const": kind}}, "required": ["type"]})
    return {"properties": {**out["properties"], "role": {"const": role}},
            "required": ["role", "content"]}


NON_EMPTY_TURN: dict[str, Any] = {"anyOf": [
    {"properties": {"content": HAS_TEXT}, "required": ["content"]},
    _blocks_contain({"properties": {"type": {"const": "text"}, "text": HAS_TEXT},
                     "required": ["type", "text"]}),
    _role_blocks("assistant", "tool_use"),
    _role_blocks("user", "tool_result"),
]}
"""What :func:`~app.server.messages_request.chat_messages` needs from at least one turn."""


class CountTokensRequest(_Lenient):
    """``POST /v1/messages/count_tokens`` body."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"anyOf": [
        # a tool choice other than auto/none needs a client tool to choose from
        {"properties": {"tool_choice": {"anyOf": [
            {"type": "null"}, {"properties": {"type": {"enum": ["auto", "none"]}}}]}}},
        {"properties": {"tools": {"type": "array", "contains": CLIENT_TOOL}}, "required": ["tools"]}]})

    model: str
    messages: list[MessageParam] = Field(min_length=1, json_schema_extra={
        "description": "At least one turn must carry text, a tool call or a tool result.",
        "contains": NON_EMPTY_TURN})
    system: str | list[SystemBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None

    @model_validator(mode="after")
    def _choice_has_a_client_tool(self) -> CountTokensRequest:
        """The document's rule (:data:`CLIENT_TOOL`): ``any`` / ``tool`` needs a tool to call."""
        forced = self.tool_choice is not None and self.tool_choice.type in ("any", "tool")
        if forced and not any(t.input_schema is not None for t in self.tools or []):
            raise ValueError(f"tool_choice.type '{self.tool_choice.type}' needs a client tool (one "
                             "with an input_schema) in tools; server tools cannot run here")
        return self


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages`` body."""

    max_tokens: integer(ge=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=16)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: integer(ge=0) | None = None
    metadata: Metadata | None = None
    stream: bool | None = False


# -- responses ---------------------------------------------------------------------------

class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(BaseModel):
    """The reply (``type: message``)."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[dict[str, Any]]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"] | None
    stop_sequence: str | None = None
    usage: Usage


class MessageTokensCount(BaseModel):
    """``count_tokens``'s reply."""

    input_tokens: int


class AnthropicErrorBody(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Every error on the Messages routes: ``{"type": "error", "error": {"type", "message"}}``."""

    type: Literal["error"] = "error"
    error: AnthropicErrorBody
