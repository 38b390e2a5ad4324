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
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from app.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ModelLoadError,
    Provider,
    ProviderError,
    TextRequest,
    UnsupportedError,
    Usage,
)
from app.providers.cpus import decode_threads, usable_cpus
from app.providers.gguf_info import GGUFFormatError, trained_context_length
from app.providers.llama_parallel import batchable, generate_on_slots
from app.providers.llama_run import lltokenizer, stream_choices
from app.providers.llama_slots import SlotEngine
from app.providers.llama_text import LlamaEmbedder, generate_text, text_prompt
from app.providers.llama_tools import generate_planned, needs_plan
from app.providers.local import LocalChatModel
from app.providers.logprobs import chat_logprobs
from app.providers.prompt_memo import PromptMemo
from app.providers.reasoning import MARKER_CANDIDATES, ReasoningFormat, detect_reasoning
from app.providers.row_options import DEFAULT_PARALLEL, LlamaCppOptions
from app.providers.textstream import first_stop
from app.providers.toolcalls import (
    first_fragments,
    prepare_messages,
    template_supports_tools,
)

if TYPE_CHECKING:
    from app.settings import ModelRow

DEFAULT_MAX_CTX = 8192
"""Without an ``n_ctx`` option a model gets its trained context, capped at this."""

CTX_PAD = 256
"""llama.cpp rounds the context up to a multiple of this; n_ctx is rounded the same way."""

INSTALL_HINT = ("llama.cpp runtime is not installed: pip install 'llama-cpp-python==0.3.36' "
                "(or the app's [llama] extra)")

# Sampling knobs OpenAI does not have (values: llama-cpp-python's create_chat_completion
# defaults); rows (options) and requests (extra) may override them.
_SAMPLER_OPTIONS = ("top_k", "min_p", "repeat_penalty")
"""Row options that set the default sampling (``LlamaCppOptions`` holds their defaults)."""


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
    supports_logit_bias = True

    def __init__(self, model_id: str, llm: Any, formatter: Callable[..., Any] | None,
                 sampler_defaults: dict[str, Any], reasoning: ReasoningFormat | None = None) -> None:
        super().__init__(model_id, context_length=int(llm.n_ctx()))
        self.llm = llm
        self.formatter = formatter
        self.sampler_defaults = sampler_defaults
        self.reasoning = reasoning  # the model's reasoning format (app.providers.reasoning)
        self.embedder = LlamaEmbedder()
        self._lltokenizer: Any = None  # llguidance's view of the vocab, made on first use
        self.engine: SlotEngine | None = None  # parallel slots (llama_slots), set by the provider
        self.prompts = PromptMemo()

    @property  # type: ignore[override]
    def parallelism(self) -> int:
        """The parallel slots (1 without them: the high-level ``Llama`` serialises)."""
        return self.engine.n_slots if self.engine is not None else 1

    # -- parallel slots: batched requests run on their own thread, not the model's worker ------
    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not batchable(self, request):
            async for chunk in self._stream_alone(request):
                yield chunk
            return
        async for chunk in self._run_batched(lambda cancel: generate_on_slots(self, request, cancel)):
            yield chunk

    async def _stream_alone(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The high-level path (one request at a time), with the slots paused around it."""
        if self.engine is None:
            async for chunk in super()._stream(request):
                yield chunk
            return
        with self.engine.solo():
            async for chunk in super()._stream(request):
                yield chunk

    async def complete(self, request: ChatRequest) -> ChatResult:
        if not batchable(self, request):
            if self.engine is None:
                return await super().complete(request)
            with self.engine.solo():
                return await super().complete(request)

        return await self._complete_batched(lambda cancel: generate_on_slots(self, request, cancel),
                                            request)

    # -- token counting -------------------------------------------------------------
    def render_prompt(self, messages: list[ChatMessage],
                      tools: list[dict[str, Any]] | None = None) -> tuple[str, bool]:
        """The prompt text the runtime will see, and whether BOS is added when tokenizing."""
        if self.formatter is None:
            raise UnsupportedError(f"cannot render prompts for chat format {self.llm.chat_format!r}")
        result = self.render(messages, tools)
        return result.prompt, not result.added_special

    def render(self, messages: list[ChatMessage], tools: list[dict[str, Any]] | None,
               switches: dict[str, Any] | None = None) -> Any:
        """The formatter's response (prompt, added_special, stop, stopping_criteria).

        A template that does not render tools itself gets them (and tool history) as text:
        see :func:`app.providers.toolcalls.prepare_messages`; ``switches`` are extra
        template variables (reasoning: ``enable_thinking`` ...)."""
        if self.formatter is None:
            raise UnsupportedError(f"model {self.model_id} has no known chat template, so tools, "
                                   "tool history and response_format cannot be rendered; set the "
                                   "row's chat_template option")
        native = template_supports_tools(getattr(self.formatter, "template", None))
        dicts = prepare_messages(messages, tools, native)
        return self.formatter(messages=dicts, tools=tools if native else None, **(switches or {}))

    def prompt_tokens(self, messages: list[ChatMessage],
                      tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Tokenize the rendered prompt exactly as llama-cpp-python's chat handler does (once per
        request: :class:`~app.providers.prompt_memo.PromptMemo`)."""
        def make() -> list[int]:
            prompt, add_bos = self.render_prompt(messages, tools)
            return list(self.require_llm().tokenize(prompt.encode("utf-8"), add_bos=add_bos,
                                                     special=True))

        return self.prompts.ids(messages, tools, make)

    def count_tokens(self, messages: list[ChatMessage],
                     tools: list[dict[str, Any]] | None = None) -> int | None:
        # Tokenizing reads only the vocabulary: safe while another thread generates.
        return len(self.prompt_tokens(messages, tools)) if self.formatter is not None else None

    def last_usage(self) -> Usage:
        """Prompt and completion tokens of the last generation, as the runtime counted them."""
        import llama_cpp

        llm = self.require_llm()
        prompt = getattr(llm, "last_prompt", [])
        tokens = list(getattr(llm, "last_tokens", []))
        # An end-of-generation token ends the reply without being part of it.
        if tokens and llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model),
                                                   tokens[-1]):
            tokens.pop()
        return Usage(prompt_tokens=len(prompt), completion_tokens=len(tokens))

    def last_stop(self, stops: Sequence[str]) -> str | None:
        """Which of ``stops`` ended the last generation, or None.  llama-cpp-python cuts the text
        at the first stop string it sees without saying which, so it is the first one in the
        generated text (none can appear earlier: generation would have ended there)."""
        if not stops:
            return None
        llm = self.require_llm()
        text = llm.detokenize(list(getattr(llm, "last_tokens", []))).decode("utf-8", errors="replace")
        found = first_stop(text, stops)
        return found[1] if found else None

    # -- generation -----------------------------------------------------------------
    def completion_kwargs(self, request: ChatRequest | TextRequest) -> dict[str, Any]:
        """Keyword arguments for llama-cpp-python's chat or raw completion calls (validated).

        Chat asks for logprobs with ``logprobs=True`` + ``top_logprobs``; raw text with
        ``logprobs=<top alternatives>`` (None: no logprobs), as in the two OpenAI APIs.
        """
        text = isinstance(request, TextRequest)
        wants_logprobs = request.logprobs is not None if text else bool(request.logprobs)
        if wants_logprobs and not getattr(self.require_llm(), "_logits_all", False):
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
        if isinstance(request, ChatRequest) and request.logit_bias:
            self._check_logit_bias(request.logit_bias)
            kwargs["logit_bias"] = dict(request.logit_bias)
        return kwargs

    def check_request(self, request: ChatRequest) -> None:
        """Schemas and tools (see LocalChatModel), and ``logit_bias`` token ids in the vocabulary."""
        super().check_request(request)
        if request.logit_bias:
            self._check_logit_bias(request.logit_bias)

    def _check_logit_bias(self, bias: dict[int, float]) -> None:
        vocab = int(self.require_llm().n_vocab())
        if max(bias) >= vocab:
            raise UnsupportedError(f"logit_bias names token {max(bias)}, but this model's "
                                   f"vocabulary has {vocab} tokens", param="logit_bias")

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        # Tools, tool history, response_format or reasoning: rendered and parsed here.
        if needs_plan(request) or self.reasoning is not None or request.reasoning_effort:
            yield from generate_planned(self, request, cancelled)
            return
        llm = self.require_llm()
        kwargs = self.completion_kwargs(request)
        messages = [m.to_dict() for m in request.messages]
        finish: str | None = None
        started: set[int] = set()  # tool calls whose id/name were already sent
        for choice in stream_choices(
                lambda: llm.create_chat_completion(messages=messages, stream=True, **kwargs),
                cancelled):
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            tool_calls = first_fragments(delta.get("tool_calls") or [], started) or None
            finish = choice.get("finish_reason") or finish
            logprobs = chat_logprobs((choice.get("logprobs") or {}).get("content"))
            if text or tool_calls or logprobs:
                yield ChatChunk(text=text, tool_calls=tool_calls, logprobs=logprobs)
        if not cancelled.is_set():
            finish = finish or "stop"
            yield ChatChunk(finish_reason=finish, usage=self.last_usage(),
                            stop_sequence=self.last_stop(request.stop) if finish == "stop" else None)

    def lltokenizer(self) -> Any:
        """llguidance's tokenizer for this model's vocabulary (made once)."""
        if self._lltokenizer is None:
            self._lltokenizer = lltokenizer(self.require_llm())
        return self._lltokenizer

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        llm = self.require_llm()
        kwargs = self.completion_kwargs(request)
        prompt = text_prompt(llm, self.model_id, request)
        return generate_text(llm, prompt, kwargs, cancelled, self.last_usage)

    def embed_texts(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        return self.embedder.embed(self.require_llm(), texts)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()  # its context goes before the model it uses
        self.embedder.close()
        self._lltokenizer = None  # it points into the vocabulary freed below
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def require_llm(self) -> Any:
        if self.llm is None:
            raise ProviderError(f"model {self.model_id} has been unloaded", status=503,
                                code="model_unloaded")
        return self.llm


def _context_for(path: Path, options: dict[str, Any]) -> int:
    """The ``n_ctx`` a row loads with: its option, else the trained context capped at
    :data:`DEFAULT_MAX_CTX` (read from the GGUF header), rounded up to :data:`CTX_PAD`."""
    trained = trained_context_length(path)  # read even with the option: the file must be a GGUF
    n_ctx = options.get("n_ctx") or min(trained or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
    return -(-int(n_ctx) // CTX_PAD) * CTX_PAD


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
    options_model = LlamaCppOptions
    model_class: ClassVar[type[LlamaCppModel]] = LlamaCppModel
    """What :meth:`load` makes (a subclass may wrap the runtime, as the watchdog tests do)."""
    engine_class: ClassVar[type[SlotEngine]] = SlotEngine
    """The parallel slots :meth:`load` gives a row with ``parallel`` > 1."""

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

    @classmethod
    def planned_context_length(cls, row: ModelRow) -> int | None:
        """The row's ``n_ctx`` option, else the GGUF's trained context (at most
        :data:`DEFAULT_MAX_CTX`), padded as loading pads it."""
        try:
            return _context_for(Path(row.source).expanduser(), row.options)
        except (GGUFFormatError, OSError, ValueError, TypeError):
            return None

    @classmethod
    def parallelism_hint(cls, row: ModelRow) -> int:
        """The row's parallel slots (``options.parallel``, default :data:`DEFAULT_PARALLEL`)."""
        try:
            return max(1, int(row.options.get("parallel", DEFAULT_PARALLEL)))
        except (TypeError, ValueError):
            return 1

    def load(self, row: ModelRow) -> LlamaCppModel:
        missing = self.available()
        if missing:
            raise ModelLoadError(missing)
        opts: LlamaCppOptions = self.parse_options(row)
        path = Path(row.source).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        try:
            n_ctx = _context_for(path, row.options)
        except (GGUFFormatError, OSError) as exc:
            raise ModelLoadError(f"{path} is not a readable GGUF model file: {exc}") from exc
        kwargs: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": n_ctx,
            "n_gpu_layers": opts.n_gpu_layers,
            "verbose": opts.verbose,
        }
        # llama-cpp-python's own defaults count the host's cores, not the usable ones
        kwargs["n_threads"] = opts.n_threads or decode_threads()
        kwargs["n_threads_batch"] = opts.n_threads_batch or usable_cpus()  # prompt processing
        if opts.n_batch:
            kwargs["n_batch"] = opts.n_batch
        if opts.flash_attn:
            kwargs["flash_attn"] = True
        if opts.seed is not None:
            kwargs["seed"] = opts.seed
        if opts.logits_all:  # needed for logprobs; costs n_ctx x n_vocab floats
            kwargs["logits_all"] = True
        llm = _construct(kwargs, path)
        if llm.n_ctx() != len(llm.input_ids):
            # llama.cpp pads the context (to 256 today) but llama-cpp-python sizes its token
            # buffer by the requested n_ctx; a mismatch breaks long prompts. Ask for the real size.
            kwargs["n_ctx"] = llm.n_ctx()
            llm.close()
            llm = _construct(kwargs, path)
        formatter = _runtime_formatter(llm, opts.chat_template)
        sampler = {k: getattr(opts, k) for k in _SAMPLER_OPTIONS}
        template = getattr(formatter, "template", None) or llm.metadata.get("tokenizer.chat_template")
        reasoning = detect_reasoning(template, special_markers(llm))
        model = self.model_class(row.id, llm, formatter, sampler, reasoning)
        if opts.parallel > 1:
            slot_ctx = opts.parallel_ctx or llm.n_ctx()
            model.engine = self.engine_class(llm, opts.parallel, -(-slot_ctx // CTX_PAD) * CTX_PAD,
                                             model.lock, saved_bytes=opts.prefix_cache_mb * 2**20)
        return model


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
