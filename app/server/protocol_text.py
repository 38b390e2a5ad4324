"""The API contract for ``/v1/completions`` and ``/v1/embeddings`` (OpenAI's shapes).

Like :mod:`app.server.protocol`: unknown fields are ignored, present values are validated
strictly and a bad one is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.server.protocol import NonEmptyStr, StreamOptions, UsageOut, integer


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class CompletionRequest(_Lenient):
    """``POST /v1/completions`` body."""

    model: str | None = None
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=16)] = Field(
        description="A string, or a list of up to 16 strings (one choice each)")
    suffix: str | None = Field(default=None, description="Text after the gap: fill-in-the-middle")
    max_tokens: integer(ge=1) | None = 16
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: integer(ge=1, le=1) | None = Field(default=None, description="Only 1: send separate requests")
    best_of: integer(ge=1, le=1) | None = Field(default=None, description="Only 1")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: integer(ge=0, le=5) | None = None
    echo: Literal[False] | None = Field(default=False, description="Not supported: false only")
    stop: str | Annotated[list[NonEmptyStr], Field(max_length=4)] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: integer() | None = None
    user: str | None = None

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


TokenId = integer(ge=0, le=2**31 - 1)
"""One of the model's token ids (embeddings accept token-id inputs)."""


class EmbeddingRequest(_Lenient):
    """``POST /v1/embeddings`` body."""

    model: str | None = None
    input: (NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1, max_length=2048)]
            | Annotated[list[TokenId], Field(min_length=1)]
            | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]],
                        Field(min_length=1, max_length=2048)]) = Field(
        description="A non-empty string, a list of 1 to 2048 of them, or token ids (one list, or "
                    "a list of lists): ids are the model's own tokens, decoded by its tokenizer")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: integer(ge=1) | None = None
    user: str | None = None

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
