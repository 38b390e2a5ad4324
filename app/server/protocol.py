"""The API contract: pydantic models of OpenAI's chat API, as this server accepts and returns it.

Requests ignore unknown fields (clients send many); values that are present are validated,
and a bad one is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(BaseModel):
    """A part of a message's content; only text parts are used."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ToolCallFunction(_Lenient):
    name: str
    arguments: str = ""


class ToolCallIn(_Lenient):
    id: str | None = None
    type: str = "function"
    function: ToolCallFunction


class ChatMessageIn(_Lenient):
    """A message as clients send it."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    function_call: ToolCallFunction | None = None
    """Legacy: the assistant's function call (mapped to ``tool_calls``, see LegacyFunctions)."""


class FunctionDef(_Lenient):
    """A tool's function: name, description and a JSON schema for its arguments."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    """``{"type": "function", "function": {"name": ...}}``: call exactly this function."""

    type: Literal["function"] = "function"
    function: NamedFunction


TOOL_CHOICE_MODES = ("none", "auto", "required")


class JsonSchemaSpec(_Lenient):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    """``text``, ``json_object`` (optionally with llama.cpp's ``schema``) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _needs_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("json_schema.schema is required when type is 'json_schema'")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False


class LegacyFunctions(_Lenient):
    """OpenAI's deprecated ``functions`` / ``function_call``, mapped onto ``tools`` / ``tool_choice``.

    ``functions`` become function tools and ``function_call`` (``"none"``, ``"auto"`` or
    ``{"name": ...}``) the tool choice; in the history an assistant ``function_call`` becomes a
    tool call and a ``function`` message its result (both given the id ``call_<name>``). The reply
    then uses the legacy shape too (``message.function_call``, ``finish_reason: "function_call"``).
    Sending both ``functions`` and ``tools`` is a 400.
    """

    functions: list[FunctionDef] | None = Field(default=None, min_length=1, max_length=128)
    function_call: Literal["none", "auto"] | NamedFunction | None = None

    @property
    def uses_legacy_functions(self) -> bool:
        return bool(self.functions)

    def map_legacy_functions(self) -> None:
        """Fill ``tools`` / ``tool_choice`` / message tool fields from the legacy fields."""
        if self.functions:
            if self.tools:  # type: ignore[attr-defined]
                raise ValueError("send either 'tools' or the legacy 'functions', not both")
            self.tools = [ToolDef(function=f) for f in self.functions]  # type: ignore[attr-defined]
            if self.parallel_tool_calls is None:  # type: ignore[attr-defined]
                self.parallel_tool_calls = False  # a legacy reply holds one call
        if self.function_call is not None and self.tool_choice is None:  # type: ignore[attr-defined]
            fc = self.function_call
            self.tool_choice = (NamedToolChoice(function=fc) if isinstance(fc, NamedFunction)
                                else fc)
        for m in self.messages:  # type: ignore[attr-defined]
            if m.role == "assistant" and m.function_call and not m.tool_calls:
                m.tool_calls = [ToolCallIn(id=f"call_{m.function_call.name}", function=m.function_call)]
            elif m.role == "function" and m.name and not m.tool_call_id:
                m.tool_call_id = f"call_{m.name}"


class ChatCompletionRequest(LegacyFunctions):
    """``POST /v1/chat/completions`` body."""

    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=16)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    """Extension: at most this many reasoning tokens, then the model must answer."""

    @model_validator(mode="after")
    def _legacy_functions(self) -> ChatCompletionRequest:
        self.map_legacy_functions()
        return self

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list):
            if len(v) > 16:
                raise ValueError("at most 16 stop sequences")
            if any(not s for s in v):
                raise ValueError("stop sequences must not be empty")
        return v

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in TOOL_CHOICE_MODES:
            raise ValueError("must be 'none', 'auto', 'required' or "
                             "{\"type\": \"function\", \"function\": {\"name\": ...}}")
        if v is not None and not isinstance(v, str | dict):
            raise ValueError("must be a string or an object")
        return v

    @property
    def tools_list(self) -> list[dict[str, Any]] | None:
        """Tools as plain OpenAI dicts (None when absent or empty)."""
        return [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None

    @property
    def tool_choice_value(self) -> str | dict[str, Any] | None:
        tc = self.tool_choice
        return tc.model_dump() if isinstance(tc, NamedToolChoice) else tc

    @property
    def response_format_dict(self) -> dict[str, Any] | None:
        rf = self.response_format
        return rf.model_dump(by_alias=True, exclude_none=True) if rf else None

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the older ``max_tokens``; None = until context."""
        return self.max_completion_tokens or self.max_tokens


# -- responses ---------------------------------------------------------------------------

class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: str
    logprobs: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    """A non-streamed reply (``object: chat.completion``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageOut
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE ``data:`` event of a streamed reply (``object: chat.completion.chunk``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error: OpenAI's envelope."""

    error: ErrorBody
