"""The API contract of ``POST /v1/responses``: pydantic models of OpenAI's Responses API as the
official SDKs type it (the request this server accepts, and the response object it returns).

Requests ignore unknown fields (clients send many); a present value that is wrong is a 400 naming
its parameter.  Input items and tools are typed by their ``type``; a type this server does not
model is still accepted (:class:`OtherItem`, :class:`OtherTool`) and handled by the documented rule
in :mod:`app.server.responses_input`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from app.server.protocol import HAS_TEXT, integer


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # JSON types as the API states them


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- input items -----------------------------------------------------------------------------

TEXT_PARTS = ("input_text", "output_text", "text")
"""Message parts whose ``text`` is read (images and files are accepted and left out)."""
CALL_ITEMS = ("function_call", "custom_tool_call", "local_shell_call", "function_call_output",
              "custom_tool_call_output", "local_shell_call_output")
"""Items that are a tool call or its output (each is a turn of the conversation)."""


class ContentPartIn(_Open):
    """A part of a message: ``input_text`` / ``output_text`` (used), images and files (ignored)."""

    type: str
    text: str | None = None


class MessageItem(_Lenient):
    """A message (``type`` may be left out, as the SDK's ``EasyInputMessage`` does)."""

    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[ContentPartIn]
    status: str | None = None


class FunctionCallItem(_Lenient):
    """A function call the model made earlier (round-tripped by clients)."""

    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str = ""
    status: str | None = None


class FunctionCallOutputItem(_Lenient):
    """The client's result for a function call."""

    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str
    output: str | list[ContentPartIn]
    status: str | None = None


class CustomToolCallItem(_Lenient):
    """A call of a freeform (``custom``) tool the model made earlier."""

    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str
    name: str
    input: str = ""


class CustomToolCallOutputItem(_Lenient):
    """The client's result for a custom tool call."""

    type: Literal["custom_tool_call_output"]
    id: str | None = None
    call_id: str
    output: str | list[ContentPartIn]


class ReasoningItem(_Open):
    """A reasoning item: accepted, and kept in the conversation's items (never re-rendered)."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None


_ITEM_TAGS = {"message", "function_call", "function_call_output", "custom_tool_call",
              "custom_tool_call_output", "reasoning"}


class OtherItem(_Open):
    """Any other item type (``local_shell_call``, ``web_search_call``, ``item_reference``…)."""

    # not one of the known types: the document's oneOf must match a known item only once
    type: str = Field(json_schema_extra={"not": {"enum": sorted(_ITEM_TAGS)}})


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type")
        if kind is None and "role" in value:
            return "message"
        return kind if kind in _ITEM_TAGS else "other"
    kind = getattr(value, "type", "other")
    return kind if kind in _ITEM_TAGS else "other"



InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[CustomToolCallItem, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(_item_kind),
]


# -- tools -----------------------------------------------------------------------------------

class FunctionTool(_Lenient):
    """``{"type": "function", "name", "description", "parameters", "strict"}`` (flat, unlike chat)."""

    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(_Open):
    """A freeform tool (``type: custom``): the model writes its input as plain text."""

    type: Literal["custom"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    format: dict[str, Any] | None = None


class OtherTool(_Open):
    """A hosted or client-side built-in tool (``web_search``, ``local_shell``, ``mcp``…)."""

    type: str


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("function", "custom") else "other"


ToolIn = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[OtherTool, Tag("other")],
    Discriminator(_tool_kind),
]


class ToolChoiceObject(_Open):
    """``{"type": "function"|"custom", "name"}``, ``{"type": "allowed_tools", "mode", "tools"}``,
    or a hosted tool type."""

    type: str
    name: str | None = None
    mode: Literal["auto", "required"] | None = None
    tools: list[dict[str, Any]] | None = None


# -- text, reasoning -------------------------------------------------------------------------

class TextFormat(_Lenient):
    """``text``, ``json_object`` or ``json_schema`` (``name``, ``schema``, ``strict`` flat here)."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Lenient):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Lenient):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseCreateRequest(_Lenient):
    """``POST /v1/responses`` body."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"allOf": [
        {"anyOf": [  # a tool choice other than none/auto needs tools to choose from
            {"properties": {"tool_choice": {"anyOf": [{"enum": ["none", "auto"]}, {"type": "null"}]}}},
            {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]}]},
        {"anyOf": [  # something to answer: this input, or the stored conversation it continues
            {"properties": {"previous_response_id": {"type": "string", "minLength": 1}},
             "required": ["previous_response_id"]},
            {"properties": {"input": {"anyOf": [HAS_TEXT, {"type": "array", "contains": {"anyOf": [
                {"properties": {"type": {"enum": list(CALL_ITEMS)}}, "required": ["type"]},
                {"properties": {"role": {"enum": ["user", "assistant"]},
                                "type": {"const": "message"},
                                "content": {"anyOf": [HAS_TEXT, {"type": "array", "contains": {
                                    "properties": {"type": {"enum": list(TEXT_PARTS)},
                                                   "text": HAS_TEXT},
                                    "required": ["type", "text"]}}]}},
                 "required": ["role", "content"]}]}}]}},
             "required": ["input"]}]}]})

    model: str | None = None
    input: str | list[InputItem] = ""
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: integer(ge=1) | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = True
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    stream: bool | None = False
    seed: integer() | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    top_logprobs: integer(ge=0, le=20) | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (len(v) > 16 or any(len(k) > 64 or len(s) > 512 for k, s in v.items())):
            raise ValueError("at most 16 pairs, keys up to 64 and values up to 512 characters")
        return v


# -- the response object ---------------------------------------------------------------------

class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class OutputCustomToolCall(BaseModel):
    type: Literal["custom_tool_call"] = "custom_tool_call"
    id: str
    call_id: str
    name: str
    input: str
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class OutputReasoning(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseErrorInfo(BaseModel):
    code: str
    message: str


class ResponseObject(BaseModel):
    """The ``response`` object (``GET /v1/responses/{id}`` returns the same)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    error: ResponseErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputMessage | OutputFunctionCall | OutputCustomToolCall | OutputReasoning]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool
    temperature: float | None = None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None = None
    truncation: str
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class InputItemList(BaseModel):
    """``GET /v1/responses/{id}/input_items``: the items that made the response's input."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputItemsQuery(_Lenient):
    """Query of ``GET /v1/responses/{id}/input_items``."""

    model_config = ConfigDict(extra="ignore", strict=False)  # query values arrive as text

    limit: int = Field(default=20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None
