"""llama.cpp (llama-cpp-python) provider: local GGUF files.

Row ids look like ``llama_cpp::<repo>::<file.gguf>``.  Prompts are rendered as stock
llama-cpp-python renders them (so counts and text match ``llama_cpp.server``), unless the
row's ``chat_template`` option overrides the template (then it is rendered with Jinja).

llama-cpp-python sends no usage in streams, so the provider records the prompt and the
sampled tokens of each generation itself (:func:`_counting_llama_class`); the counts equal
what a non-streamed call reports.  One ``Llama`` must never run on two threads at once
(the process aborts); :class:`~app.providers.local.LocalChatModel` serialises calls.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ModelLoadError,
    Provider,
    ProviderError,
    TextRequest,
    UnsupportedError,
    Usage,
)
from app.providers.gguf_info import GGUFFormatError, trained_context_length
from app.providers.local import LocalChatModel
from app.providers.reasoning import MARKER_CANDIDATES, ReasoningFormat, detect_reasoning
from app.providers.toolcalls import first_fragments

if TYPE_CHECKING:
    from app.settings import ModelRow

DEFAULT_MAX_CTX = 8192
"""Without an ``n_ctx`` option a model gets its trained context, capped at this."""

CTX_PAD = 256
"""llama.cpp rounds the context up to a multiple of this; n_ctx is rounded the same way."""

INSTALL_HINT = ("llama.cpp runtime is not installed: pip install 'llama-cpp-python==0.3.36' "
                "(or the app's [llama] extra)")

_CTX_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")

# Sampling knobs OpenAI does not have (values: llama-cpp-python's create_chat_completion
# defaults); rows (options) and requests (extra) may override them.
_SAMPLER_DEFAULTS: dict[str, float | int] = {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


@functools.cache
def _counting_llama_class() -> type:
    """A ``Llama`` subclass that remembers the prompt and the tokens of its last generation."""
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):  # type: ignore[misc, valid-type]
        last_prompt: list[int]
        last_tokens: list[int]

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
            self.last_prompt = list(tokens)
            self.last_tokens = []
            for token in super().generate(tokens, *args, **kwargs):
                self.last_tokens.append(int(token))
                yield token

    return CountingLlama


class LlamaCppModel(LocalChatModel):
    """A loaded GGUF model."""

    provider = "llama_cpp"

    def __init__(self, model_id: str, llm: Any, formatter: Callable[..., Any] | None,
                 sampler_defaults: dict[str, Any], reasoning: ReasoningFormat | None = None) -> None:
        super().__init__(model_id, context_length=int(llm.n_ctx()))
        self.llm = llm
        self.formatter = formatter
        self.sampler_defaults = sampler_defaults
        self.reasoning = reasoning  # the model's reasoning format (app.providers.reasoning)
        self._embedder: Any = None  # embedding-mode instance, made on first use (llama_text)

    # -- token counting -------------------------------------------------------------
    def render_prompt(self, messages: list[ChatMessage],
                      tools: list[dict[str, Any]] | None = None) -> tuple[str, bool]:
        """The prompt text the runtime will see, and whether BOS is added when tokenizing."""
        from app.providers.llama_tools import render

        if self.formatter is None:
            raise UnsupportedError(f"cannot render prompts for chat format {self.llm.chat_format!r}")
        result = render(self, messages, tools)
        return result.prompt, not result.added_special

    def prompt_tokens(self, messages: list[ChatMessage],
                      tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Tokenize the rendered prompt exactly as llama-cpp-python's chat handler does."""
        prompt, add_bos = self.render_prompt(messages, tools)
        return list(self._require_llm().tokenize(prompt.encode("utf-8"), add_bos=add_bos,
                                                 special=True))

    def count_tokens(self, messages: list[ChatMessage],
                     tools: list[dict[str, Any]] | None = None) -> int | None:
        # Tokenizing reads only the vocabulary: safe while another thread generates.
        return len(self.prompt_tokens(messages, tools)) if self.formatter is not None else None

    def last_usage(self) -> Usage:
        """Prompt and completion tokens of the last generation, as the runtime counted them."""
        import llama_cpp

        llm = self._require_llm()
        prompt = getattr(llm, "last_prompt", [])
        tokens = list(getattr(llm, "last_tokens", []))
        # An end-of-generation token ends the reply without being part of it.
        if tokens and llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model),
                                                   tokens[-1]):
            tokens.pop()
        return Usage(prompt_tokens=len(prompt), completion_tokens=len(tokens))

    # -- generation -----------------------------------------------------------------
    def completion_kwargs(self, request: ChatRequest | TextRequest) -> dict[str, Any]:
        """Keyword arguments for llama-cpp-python's chat or raw completion calls (validated).

        Chat asks for logprobs with ``logprobs=True`` + ``top_logprobs``; raw text with
        ``logprobs=<top alternatives>`` (None: no logprobs), as in the two OpenAI APIs.
        """
        text = isinstance(request, TextRequest)
        wants_logprobs = request.logprobs is not None if text else bool(request.logprobs)
        if wants_logprobs and not getattr(self._require_llm(), "_logits_all", False):
            raise UnsupportedError(
                f"logprobs need the model to keep all logits: set the option \"logits_all\": "
                f"true on row {self.model_id} (uses more memory) and reload it", param="logprobs")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise ProviderError("max_tokens must be at least 1", status=400,
                                code="invalid_value", param="max_tokens")
        kwargs: dict[str, Any] = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            # None = until the context is full (llama-cpp-python: None or <= 0).
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            # llama-cpp-python derives an unseeded call's seed from the last one, so equal
            # requests would repeat; OpenAI semantics are "random".
            "seed": request.seed if request.seed is not None else secrets.randbits(31),
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
        }
        for key, default in self.sampler_defaults.items():
            kwargs[key] = request.extra.get(key, default)
        if text:
            kwargs["logprobs"] = request.logprobs
        elif isinstance(request, ChatRequest) and request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = int(request.top_logprobs or 0)
        return kwargs

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        from app.providers.llama_tools import generate_planned, needs_plan

        # Tools, tool history, response_format or reasoning: rendered and parsed here.
        if needs_plan(request) or self.reasoning is not None or request.reasoning_effort:
            try:
                yield from generate_planned(self, request, cancelled)
            except ValueError as exc:
                raise _map_value_error(exc) from exc
            return
        llm = self._require_llm()
        kwargs = self.completion_kwargs(request)
        messages = [m.to_dict() for m in request.messages]
        finish: str | None = None
        stream: Any = None
        started: set[int] = set()  # tool calls whose id/name were already sent
        try:
            stream = llm.create_chat_completion(messages=messages, stream=True, **kwargs)
            for chunk in stream:
                if cancelled.is_set():
                    return
                choice = chunk["choices"][0]
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                tool_calls = first_fragments(delta.get("tool_calls") or [], started) or None
                finish = choice.get("finish_reason") or finish
                logprobs = chat_logprobs((choice.get("logprobs") or {}).get("content"))
                if text or tool_calls or logprobs:
                    yield ChatChunk(text=text, tool_calls=tool_calls, logprobs=logprobs)
        except ValueError as exc:
            raise _map_value_error(exc) from exc
        except RuntimeError as exc:
            raise ProviderError(f"llama.cpp failed: {exc}", code="runtime_error") from exc
        finally:
            if stream is not None and hasattr(stream, "close"):
                stream.close()
        if not cancelled.is_set():
            yield ChatChunk(finish_reason=finish or "stop", usage=self.last_usage())

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        from app.providers.llama_text import generate_text

        return generate_text(self, request, cancelled)

    def embed_texts(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        from app.providers.llama_text import embed_texts

        return embed_texts(self, texts)

    def close(self) -> None:
        from app.providers.llama_text import close_embedder

        close_embedder(self)
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def _require_llm(self) -> Any:
        if self.llm is None:
            raise ProviderError(f"model {self.model_id} has been unloaded", status=503,
                                code="model_unloaded")
        return self.llm


def chat_logprobs(content: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """llama-cpp-python's chat logprobs with ``bytes`` filled in (it sends None)."""
    if not content:
        return None
    out = []
    for entry in content:
        tops = [{**t, "bytes": list(str(t["token"]).encode())} for t in entry.get("top_logprobs") or []]
        out.append({**entry, "bytes": list(str(entry["token"]).encode()), "top_logprobs": tops})
    return out


def _map_value_error(exc: ValueError) -> ProviderError:
    """llama-cpp-python reports bad requests as ValueError: turn them into 400s."""
    match = _CTX_EXCEEDED.search(str(exc))
    if match:
        prompt, limit = match.groups()
        return ProviderError(
            f"The prompt is {prompt} tokens long, but this model's context window is {limit} "
            "tokens. Shorten the conversation, or load the model with a larger n_ctx.",
            status=400, code="context_length_exceeded", param="messages")
    return ProviderError(f"llama.cpp rejected the request: {exc}", status=400,
                         code="invalid_request")


# Formats llama-cpp-python picks by itself (guessed from a known template, or its fallback).
_BUILTIN_FORMATTERS = {"chatml": "format_chatml", "mistral-instruct": "format_mistral_instruct",
                       "llama-3": "format_llama3", "llama-2": "format_llama2"}


def _jinja_formatter(llm: Any, template: str) -> Any:
    """A Jinja formatter built exactly as ``Llama.__init__`` builds one from GGUF metadata."""
    from llama_cpp import llama_chat_format

    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    vocab = llm._model  # token text lookup, as Llama itself does it
    eos = vocab.token_get_text(eos_id) if eos_id != -1 else ""
    bos = vocab.token_get_text(bos_id) if bos_id != -1 else ""
    return llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos,
                                                 bos_token=bos, stop_token_ids=[eos_id])


def _runtime_formatter(llm: Any, template_override: str | None) -> Callable[..., Any] | None:
    """The chat formatter the runtime will use for this model (None if it is not knowable).

    With a template override the model gets a handler built from it.  Otherwise the runtime
    keeps its own choice: a template byte-equal to a known one maps to a built-in format
    (e.g. ChatML, which adds BOS), any other GGUF template is rendered with Jinja, and files
    without a template fall back to ``llama-2``.
    """
    from llama_cpp import llama_chat_format

    if template_override:
        formatter = _jinja_formatter(llm, template_override)
        llm.chat_handler = llama_chat_format.chat_formatter_to_chat_completion_handler(formatter)
        return formatter
    fmt = llm.chat_format
    if fmt and fmt.startswith("chat_template."):
        template = llm.metadata.get("tokenizer." + fmt if fmt != "chat_template.default"
                                    else "tokenizer.chat_template")
        return _jinja_formatter(llm, template) if template else None
    name = _BUILTIN_FORMATTERS.get(fmt or "")
    return getattr(llama_chat_format, name, None) if name else None


class LlamaCppProvider(Provider):
    """GGUF models through llama-cpp-python."""

    name = "llama_cpp"
    label = "llama.cpp"

    @classmethod
    def available(cls) -> str | None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return INSTALL_HINT
        except OSError as exc:  # the wheel is there but its shared library is not loadable
            return f"llama.cpp runtime is installed but cannot load: {exc}"
        return None

    @classmethod
    def row_for(cls, source: str, **options: Any) -> ModelRow:
        """``llama_cpp::<repo>::<file>``: repo is ``org/name`` for Hugging Face cache paths,
        else the folder holding the file."""
        from app.settings import ModelRow

        path = Path(source).expanduser()
        repo = _repo_from_path(path)
        return ModelRow(id=f"{cls.name}::{repo}::{path.name}", provider=cls.name,
                        source=str(path), display_name=path.name, options=options)

    def load(self, row: ModelRow) -> LlamaCppModel:
        missing = self.available()
        if missing:
            raise ModelLoadError(missing)
        path = Path(row.source).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        opts = dict(row.options)
        try:
            trained = trained_context_length(path)
        except (GGUFFormatError, OSError) as exc:
            raise ModelLoadError(f"{path} is not a readable GGUF model file: {exc}") from exc
        n_ctx = opts.get("n_ctx") or min(trained or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        kwargs: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": -(-int(n_ctx) // CTX_PAD) * CTX_PAD,
            "n_gpu_layers": int(opts.get("n_gpu_layers", -1)),
            "verbose": bool(opts.get("verbose", False)),
        }
        if opts.get("n_threads"):
            kwargs["n_threads"] = int(opts["n_threads"])
        if opts.get("n_batch"):
            kwargs["n_batch"] = int(opts["n_batch"])
        if opts.get("logits_all"):  # needed for logprobs; costs n_ctx x n_vocab floats
            kwargs["logits_all"] = True
        llm = _construct(kwargs, path)
        if llm.n_ctx() != len(llm.input_ids):
            # llama.cpp pads the context (to 256 today) but llama-cpp-python sizes its token
            # buffer by the requested n_ctx; a mismatch breaks long prompts. Ask for the real size.
            kwargs["n_ctx"] = llm.n_ctx()
            llm.close()
            llm = _construct(kwargs, path)
        formatter = _runtime_formatter(llm, opts.get("chat_template"))
        sampler = {k: opts.get(k, v) for k, v in _SAMPLER_DEFAULTS.items()}
        template = getattr(formatter, "template", None) or llm.metadata.get("tokenizer.chat_template")
        reasoning = detect_reasoning(template, special_markers(llm))
        return LlamaCppModel(row.id, llm, formatter, sampler, reasoning)


def special_markers(llm: Any) -> list[str]:
    """The reasoning markers (:data:`MARKER_CANDIDATES`) that are single tokens of the model."""
    return [m for m in MARKER_CANDIDATES
            if len(llm.tokenize(m.encode("utf-8"), add_bos=False, special=True)) == 1]


def _construct(kwargs: dict[str, Any], path: Path) -> Any:
    try:
        return _counting_llama_class()(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc


def _repo_from_path(path: Path) -> str:
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("models--") and i + 1 < len(parts) and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/")
    return path.parent.name or "local"
