"""The API contract for ``/v1/completions`` and ``/v1/embeddings`` (OpenAI's shapes).

Like :mod:`app.server.protocol`: unknown fields are ignored, present values are validated
and a bad one is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.server.protocol import StreamOptions, UsageOut


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CompletionRequest(_Lenient):
    """``POST /v1/completions`` body."""

    model: str | None = None
    prompt: str | list[str] = Field(description="A string, or a list of strings (one choice each)")
    suffix: str | None = Field(default=None, description="Text after the gap: fill-in-the-middle")
    max_tokens: int | None = Field(default=16, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    best_of: int | None = Field(default=None, ge=1, le=16)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("must not be an empty list")
        if isinstance(v, list) and len(v) > 16:
            raise ValueError("at most 16 prompts per request")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and (len(v) > 4 or any(not s for s in v)):
            raise ValueError("at most 4 non-empty stop sequences")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class CompletionUsage(UsageOut):
    pass


class Completion(BaseModel):
    """A ``text_completion`` (also the shape of each streamed event)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


class EmbeddingRequest(_Lenient):
    """``POST /v1/embeddings`` body."""

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, a list of strings, or token ids (one list, or a list of lists): "
                    "ids are the model's own tokens, decoded by its tokenizer")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _inputs(cls, v: Any) -> Any:
        items = embedding_inputs(v)
        if not items:
            raise ValueError("must not be an empty list")
        if len(items) > 2048:
            raise ValueError("at most 2048 inputs per request")
        if any(not s for s in items):
            raise ValueError("inputs must not be empty strings or empty token lists")
        if any(t < 0 for s in items if isinstance(s, list) for t in s):
            raise ValueError("token ids must not be negative")
        return v

    @property
    def inputs(self) -> list[str | list[int]]:
        """One entry per input: a string, or a list of the model's token ids."""
        return embedding_inputs(self.input)


def embedding_inputs(value: Any) -> list[str | list[int]]:
    """``"a"`` / ``["a", "b"]`` / ``[1, 2]`` (one token input) / ``[[1, 2], [3]]``."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(t, int) for t in value):
        return [list(value)]
    return list(value)


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """``POST /v1/embeddings`` reply."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


def legacy_logprobs(entries: list[dict[str, Any]], start_offset: int) -> dict[str, Any]:
    """Chunk logprob entries -> the completions API's column form."""
    offsets, pos = [], start_offset
    for e in entries:
        offsets.append(pos)
        pos += len(e["token"])
    return {"tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [e.get("top_logprobs") or None for e in entries],
            "text_offset": offsets}
