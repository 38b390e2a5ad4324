"""The small interface every model runtime implements.

A provider turns a configured model row into a loaded :class:`ChatModel`.  A chat model
streams :class:`ChatChunk` objects (text deltas as the runtime produces them, then a last
chunk carrying ``finish_reason`` and ``usage``); :meth:`ChatModel.complete` is the same
stream accumulated, so streamed and non-streamed text always agree.

Local runtimes are blocking C/Python libraries: they subclass ``app.providers.local.LocalChatModel``
and write a plain generator; it runs on a worker thread, one call at a time,
and stops between tokens when the consumer goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from app.providers.row_options import describe_errors, options_problem

if TYPE_CHECKING:
    from app.settings import ModelRow


class ProviderError(Exception):
    """A runtime failure with a message fit for the user (maps to an OpenAI error)."""

    status: int = 500
    code: str = "provider_error"
    error_type: str = "server_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param


class ModelLoadError(ProviderError):
    """The model could not be loaded (missing file, runtime not installed, bad format)."""

    status = 503
    code = "model_load_failed"


class UnsupportedError(ProviderError):
    """The model or runtime cannot do what the request asks (400)."""

    status = 400
    code = "unsupported"
    error_type = "invalid_request_error"


@dataclass(frozen=True)
class ChatMessage:
    """One normalised chat message (text only; tool-call fields kept for templates)."""

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI-shaped dict, as chat templates expect."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass
class ChatRequest:
    """What a provider is asked to do.  ``max_tokens=None`` means "until the context ends"."""

    messages: list[ChatMessage]
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    logit_bias: dict[int, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reasoning_effort: str | None = None
    """``none`` … ``xhigh``: reaches the chat template's own switches (``app.providers.reasoning``)."""
    thinking_budget: int | None = None
    """Most reasoning tokens; the runtime ends the thinking block once they are spent."""


@dataclass
class TextRequest:
    """A raw-prompt completion (``/v1/completions``); ``suffix`` asks for fill-in-the-middle."""

    prompt: str
    suffix: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """Token counts as the runtime counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the runtime did not process again (its prefix cache held them)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.cached_tokens + other.cached_tokens)

    def to_dict(self) -> dict[str, Any]:
        """Chat Completions' usage object (``prompt_tokens_details`` as OpenAI sends it)."""
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}


@dataclass
class ToolCallDelta:
    """A fragment of a tool call, OpenAI stream style: id and name first, then arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class ChatChunk:
    """One piece of a streamed reply.  The last chunk has ``finish_reason`` and ``usage``.

    ``reasoning`` is a delta of the model's thinking (split out of the raw output by
    ``app.providers.reasoning``), like ``text`` is a delta of the answer; a reply streams its
    reasoning before its answer.
    """

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[dict[str, Any]] | None = None
    reasoning: str = ""
    stop_sequence: str | None = None
    """On the last chunk: the stop string that ended the reply (the request's or the chat
    format's own; None when EOS, the token limit or anything else ended it, or the runtime
    does not say)."""


@dataclass
class ChatResult:
    """A whole reply; ``reasoning`` is the model's thinking, split from ``text`` (the answer)."""

    text: str
    finish_reason: str
    usage: Usage
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None
    reasoning: str = ""
    first_token_at: float | None = None  # time.perf_counter() when the first token came out
    stop_sequence: str | None = None
    """The stop string that ended the reply (see :attr:`ChatChunk.stop_sequence`)."""


class Accumulator:
    """Folds a reply's chunks into a :class:`ChatResult`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.thoughts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[dict[str, Any]] = []
        self.finish, self.usage = "stop", Usage()
        self.first_token_at: float | None = None
        self.stop_sequence: str | None = None

    def add(self, chunk: ChatChunk) -> None:
        if self.first_token_at is None and (chunk.text or chunk.tool_calls or chunk.reasoning):
            self.first_token_at = time.perf_counter()  # the request log's time to first token
        self.parts.append(chunk.text)
        if chunk.reasoning:
            self.thoughts.append(chunk.reasoning)
        if chunk.tool_calls:
            accumulate_tool_calls(self.calls, chunk.tool_calls)
        if chunk.logprobs:
            self.logprobs.extend(chunk.logprobs)
        if chunk.finish_reason:
            self.finish = chunk.finish_reason
            self.stop_sequence = chunk.stop_sequence
        if chunk.usage:
            self.usage = chunk.usage

    def result(self, request: ChatRequest) -> ChatResult:
        tool_calls = [self.calls[i] for i in sorted(self.calls)] or None
        return ChatResult("".join(self.parts), self.finish, self.usage, tool_calls,
                          self.logprobs if request.logprobs else None,
                          reasoning="".join(self.thoughts), first_token_at=self.first_token_at,
                          stop_sequence=self.stop_sequence)


def accumulate_tool_calls(calls: dict[int, dict[str, Any]], deltas: list[ToolCallDelta]) -> None:
    """Fold streamed tool-call fragments into OpenAI ``tool_calls`` dicts keyed by index."""
    for d in deltas:
        call = calls.setdefault(d.index, {"id": None, "type": "function",
                                          "function": {"name": "", "arguments": ""}})
        if d.id:
            call["id"] = d.id
        if d.name:
            call["function"]["name"] += d.name
        call["function"]["arguments"] += d.arguments


DEFAULT_PARALLELISM = 4
"""Requests at once on a model that does not serialise (a remote upstream batches them)."""


class ChatModel(ABC):
    """A loaded model.  Subclasses implement :meth:`_stream`; callers use :meth:`stream`."""

    provider: ClassVar[str] = ""
    parallelism: int = DEFAULT_PARALLELISM
    """How many requests may run on this model at once: the server's queue gives it this many slots."""
    supports_logit_bias: ClassVar[bool] = False
    """Whether the runtime applies ``ChatRequest.logit_bias`` (else such requests get 400)."""
    native_tool_calls: bool = False
    """Whether Hydra's doer should use the model's own tool calls when ``hydra.tool_protocol`` is
    ``auto`` (else it asks for JSON in text, grammar-enforced where the runtime can)."""

    def __init__(self, model_id: str, *, context_length: int | None = None) -> None:
        self.model_id = model_id
        self.context_length = context_length
        self._active = 0
        self._active_lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """True while a generation is running (the hub never evicts a busy model)."""
        return self._active > 0

    @property
    def in_flight(self) -> int:
        """How many generations run on this model right now."""
        return self._active

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield chunks as the runtime produces them; the last one has finish_reason/usage."""
        with self._active_lock:
            self._active += 1
        try:  # closed at once when the consumer leaves, not whenever the collector gets to it
            async with contextlib.aclosing(self._stream(request)) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    yield chunk
        finally:
            with self._active_lock:
                self._active -= 1

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole reply: the stream, accumulated."""
        acc = Accumulator()
        async for chunk in self.stream(request):
            acc.add(chunk)
        return acc.result(request)

    @abstractmethod
    def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Runtime-specific streaming."""

    def check_request(self, request: ChatRequest) -> None:  # noqa: B027 - optional hook
        """Raise a 4xx :class:`ProviderError` for a request this model would refuse anyway,
        before the prompt is measured against the context (the server calls it first)."""

    def count_tokens(self, messages: list[ChatMessage],
                     tools: list[dict[str, Any]] | None = None) -> int | None:
        """Prompt length in tokens with ``tools`` rendered as the runtime renders them, if the
        runtime can tell cheaply (None otherwise)."""
        return None

    async def stream_text(self, request: TextRequest) -> AsyncIterator[ChatChunk]:
        """Raw-prompt completion chunks (``/v1/completions``); chunks' logprobs, if asked,
        are ``{"token", "logprob", "top_logprobs": {token: logprob}}`` entries."""
        raise UnsupportedError(f"model {self.model_id} does not support text completions "
                               "(/v1/completions)", param="model")
        yield ChatChunk()  # pragma: no cover - makes this an async generator

    async def embed(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """Embedding vectors for ``texts`` and the prompt tokens used; an input may be a list of
        the model's own token ids."""
        raise UnsupportedError(f"model {self.model_id} is a chat model and does not support "
                               "embeddings", param="model", code="model_not_embedding")

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory / connections."""

    def stalled(self, step_seconds: float) -> bool:
        """Whether a call is stuck in the runtime past its time limit (``step_seconds`` per token)."""
        return False

    def abandon(self, reason: str) -> None:  # noqa: B027 - optional hook
        """Give up on a stuck runtime: fail its waiting requests; the hub loads a fresh instance."""

    def close_now(self) -> None:
        """Free the model from any thread: on the caller's loop in the background, else at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.aclose())
            return
        task = loop.create_task(self.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()
"""Background closes in flight (a task nobody references may be collected before it runs)."""


class ModelSource(Protocol):
    """What a provider built from other rows (a pool) needs: the hub that loads them."""

    def row(self, model_id: str) -> ModelRow | None:
        """The configured row with this id, or None."""

    def loaded_model(self, model_id: str) -> ChatModel | None:
        """The model if it is loaded now (never starts a load)."""

    async def acquire(self, model_id: str) -> ChatModel:
        """The loaded model, loading it if needed."""


class Provider(ABC):
    """A runtime: knows whether it is installed and how to load a model row."""

    name: ClassVar[str]
    """Row id prefix and ``owned_by`` value, e.g. ``llama_cpp``."""
    label: ClassVar[str]
    """Human name shown in the UI."""
    local: ClassVar[bool] = True
    """Local runtimes count against the hub's memory budget; remote ones do not."""
    options_model: ClassVar[type[BaseModel] | None] = None
    """The pydantic model of the row's ``options`` (unknown keys refused); None: not checked."""

    @classmethod
    def options_problem(cls, options: dict[str, Any]) -> str | None:
        """A readable message naming each unknown or bad option, or None when they are fine."""
        if cls.options_model is None:
            return None
        return options_problem(cls.options_model, cls.name, options)

    @classmethod
    def parse_options(cls, row: ModelRow) -> Any:
        """The row's options as :attr:`options_model`; ModelLoadError naming each bad key."""
        if cls.options_model is None:
            return None
        try:
            return cls.options_model.model_validate(row.options)
        except ValidationError as exc:
            raise ModelLoadError(f"model row {row.id!r}: "
                                 f"{describe_errors(exc, cls.options_model, cls.name)}") from exc

    @classmethod
    def available(cls) -> str | None:
        """None when the runtime can be used here, else a message saying what is missing."""
        return None

    @classmethod
    def row_for(cls, source: str, **options: Any) -> ModelRow:
        """A model row for a source (path, repo id, upstream name) with this provider's id style."""
        from app.settings import ModelRow

        return ModelRow(id=f"{cls.name}::{source}", provider=cls.name, source=source,
                        options=options)

    @classmethod
    def planned_context_length(cls, row: ModelRow) -> int | None:
        """The context window (tokens) the row's model gets once loaded, from its options and
        small file headers: never loads it, but may read files (keep it off the event loop).
        None when it is not known before loading (a remote upstream's)."""
        return None

    def attach(self, models: ModelSource) -> None:  # noqa: B027 - optional hook
        """Called by the hub before :meth:`load`: a provider whose models are made of other rows
        (a pool) keeps ``models`` to reach them; other runtimes ignore it."""

    @classmethod
    def parallelism_hint(cls, row: ModelRow) -> int:
        """The requests at once a row's model will take, told from the row without loading it."""
        return 1

    @abstractmethod
    def load(self, row: ModelRow) -> ChatModel:
        """Load the row's model (blocking; runs on a worker thread).  Raise ModelLoadError."""
