"""The API contract: pydantic models of OpenAI's chat API, as this server accepts and returns it.

Requests ignore unknown fields (clients send many); values that are present are validated
strictly (``true`` is not a temperature, ``"10"`` is not a token count, ``"yes"`` is not a
boolean; an integer is a fine float), and a bad one is a 400 naming the parameter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**limits: int) -> Any:
    """A JSON integer as JSON Schema means it (``8`` or ``8.0``; never ``"8"``, ``true`` or
    ``8.5``) within ``limits`` (``ge``, ``le``)."""
    return Annotated[int, Field(**limits), BeforeValidator(_integral)]  # limits first: they document

LOGIT_BIAS_MAX_ENTRIES = 1024
LOGIT_BIAS_MAX_TOKEN_ID = 2**31 - 1


def parse_logit_bias(value: dict[str, float] | None) -> dict[int, float] | None:
    """OpenAI's ``logit_bias`` (token id strings -> -100..100) as ``{token_id: bias}``; ValueError."""
    if value is None:
        return None
    if len(value) > LOGIT_BIAS_MAX_ENTRIES:
        raise ValueError(f"at most {LOGIT_BIAS_MAX_ENTRIES} tokens may be biased")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not (key.isascii() and key.isdigit()) or int(key) > LOGIT_BIAS_MAX_TOKEN_ID:
            raise ValueError(f"keys must be token ids (decimal strings), not {key[:40]!r}")
        if not -100 <= bias <= 100:
            raise ValueError(f"biases must be between -100 and 100, not {bias}")
        out[int(key)] = float(bias)
    return out


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

NonEmptyStr = Annotated[str, Field(min_length=1)]

JSON_SCHEMA_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
"""What ``\\s`` matches in a JSON Schema ``pattern`` (ECMA-262); Python's ``str.isspace`` also
counts the separators ``\\x1c``-``\\x1f`` and ``\\x85``, which clients may send as text."""
_NOT_SPACE = re.compile(f"[^{JSON_SCHEMA_SPACE}]")

HAS_TEXT: dict[str, Any] = {"type": "string", "pattern": r"\S"}
"""The documents' "a string with text" (see :func:`has_text`, the routes' test of it)."""


def has_text(text: str) -> bool:
    """Whether ``text`` has a character other than whitespace, as :data:`HAS_TEXT` documents it."""
    return _NOT_SPACE.search(text) is not None


NON_EMPTY_MESSAGE: dict[str, Any] = {"anyOf": [
    {"properties": {"content": HAS_TEXT}, "required": ["content"]},
    {"properties": {"content": {"type": "array", "contains": {
        "properties": {"type": {"enum": ["text", "input_text"]}, "text": HAS_TEXT},
        "required": ["type", "text"]}}}, "required": ["content"]},
    {"properties": {"tool_calls": {"type": "array", "minItems": 1}}, "required": ["tool_calls"]},
    {"properties": {"role": {"enum": ["tool", "function"]}}, "required": ["role"]},
]}
"""What the chat route needs from at least one message (the JSON Schema of ``normalise_messages``)."""


class JsonSchemaSpec(_Lenient):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    """``text``, ``json_object`` (optionally with llama.cpp's ``schema``) or ``json_schema``."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [  # the validator below, documented
        {"properties": {"type": {"enum": ["text", "json_object"]}}},
        {"properties": {"type": {"const": "json_schema"},
                        "json_schema": {"type": "object", "required": ["schema"],
                                        "properties": {"schema": {"type": "object"}}}},
         "required": ["json_schema"]}]})

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


_HARMLESS_CHOICE = {"anyOf": [{"enum": ["none", "auto"]}, {"type": "null"}]}
TOOLS_FOR_CHOICE: dict[str, Any] = {
    "anyOf": [  # a tool choice other than none/auto needs tools (or legacy functions) to choose from
        {"properties": {"tool_choice": _HARMLESS_CHOICE, "function_call": _HARMLESS_CHOICE}},
        {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]},
        {"properties": {"functions": {"type": "array", "minItems": 1}}, "required": ["functions"]}],
    "not": {"properties": {"tools": {"type": "array", "minItems": 1},
                           "functions": {"type": "array", "minItems": 1}},
            "required": ["tools", "functions"]}}
"""What the tool-choice checks need, stated in the OpenAPI document."""


class ChatCompletionRequest(LegacyFunctions):
    """``POST /v1/chat/completions`` body."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=TOOLS_FOR_CHOICE)

    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1, json_schema_extra={
        "description": "At least one message must carry text (or tool calls, or be a tool result).",
        "contains": NON_EMPTY_MESSAGE})
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: integer(ge=1) | None = None
    max_completion_tokens: integer(ge=1) | None = None
    stop: str | Annotated[list[NonEmptyStr], Field(max_length=16)] | None = None
    seed: integer() | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: integer(ge=1, le=1) | None = Field(default=None, description="Only 1: send separate requests")
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: integer(ge=0, le=20) | None = None
    logit_bias: dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")],
                     Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        default=None, max_length=LOGIT_BIAS_MAX_ENTRIES,
        description="Token id (a decimal string) -> bias from -100 to 100; refused (400) by "
                    "runtimes that cannot apply it")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    thinking_budget: integer(ge=0) | None = None
    """Extension: at most this many reasoning tokens, then the model must answer."""

    @model_validator(mode="after")
    def _legacy_functions(self) -> ChatCompletionRequest:
        self.map_legacy_functions()
        return self

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        parse_logit_bias(v)
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
    def logit_bias_ids(self) -> dict[int, float] | None:
        """``logit_bias`` keyed by token id (None when absent or empty)."""
        return parse_logit_bias(self.logit_bias) or None

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

class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    """Prompt tokens the model's prefix cache already held (not processed again)."""


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


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
    """One model of ``GET /v1/models``: OpenAI's four fields, then what local servers add.

    ``state`` is LM Studio's (``loaded`` / ``not-loaded``: whether the model is in memory now);
    the context window in tokens is ``context_length`` (OpenRouter's name) and, the same
    number, ``max_model_len`` (vLLM's): the loaded model's, else the one loading it gives (null
    when that is not known before loading, as for a remote upstream).  An alias reports the
    model it runs on (the active one)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    state: Literal["loaded", "not-loaded"] = "not-loaded"
    context_length: int | None = None
    max_model_len: int | None = None


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
