"""What the Hugging Face-format runtimes (Transformers, MLX) share.

* :func:`resolve_local_model` — a source is a local folder or a repo id already in the local
  Hugging Face cache.  Nothing is ever downloaded; a missing source is a clear
  :class:`~app.providers.base.ModelLoadError` naming it.
* :func:`render_prompt_ids` — the chat template rendered to text, then tokenised without
  adding special tokens again (templates carry their own BOS), so usage counts are exact.
* :func:`context_length_of` — the model's context window from its config.
* :class:`HfFormatModel` — a loaded model's chat prompts, decoding, tools/format plan, and
  chat and raw completions over the runtime's token loop (:meth:`HfFormatModel._tokens`), or
  over its batch engine (:attr:`HfFormatModel.engine`, :mod:`app.providers.batch_jobs`).

Batching: a model with an engine (the row's ``parallel`` option > 1) sends every request its
runtime can batch (:meth:`HfFormatModel.batchable`) to the engine, from the request's own
thread, so concurrent requests decode together; the rest (each runtime's
:meth:`HfFormatModel.runs_alone` rule, by default requests that ask for logprobs) run one at
a time on the runtime's own loop, between two batch steps (:meth:`BatchEngine.solo`).
"""

from __future__ import annotations

import json
import re
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ModelLoadError,
    ProviderError,
    TextRequest,
    UnsupportedError,
    Usage,
)
from app.providers.batch_jobs import SlotJob
from app.providers.fim import text_prompt_ids
from app.providers.local import LocalChatModel
from app.providers.local_structured import LocalPlan
from app.providers.prompt_memo import PromptMemo
from app.providers.reasoning import (
    HarmonyFormat,
    ReasoningFormat,
    budget_thinking,
    close_marker,
    detect_reasoning,
    split_reasoning,
    template_switches,
)
from app.providers.textstream import GenerationEnd, TokenStep, chat_chunks, text_chunks, token_steps
from app.providers.toolcalls import new_call_id
from app.providers.toolformats import detect_tool_format, parser_for

if TYPE_CHECKING:
    from app.settings import ModelRow

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_local_model(source: str, *, cache_dir: str | Path | None = None,
                        runtime: str = "this runtime") -> Path:
    """The local folder for ``source`` (a folder path or a cached repo id); never downloads."""
    text = source.strip()
    if not text:
        raise ModelLoadError("the model row has an empty source")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; {runtime} needs a model folder "
                                 "(config.json, tokenizer and weights)")
        return _check_folder(path)
    if not _REPO_ID.match(text) or text.startswith((".", "~")):
        raise ModelLoadError(f"model folder not found: {path}")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        raise ModelLoadError(f"model folder not found: {path} (and huggingface_hub is not "
                             "installed to look it up in the Hugging Face cache)") from None
    try:
        found = snapshot_download(text, local_files_only=True, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError) as exc:
        where = f" ({cache_dir})" if cache_dir else ""
        raise ModelLoadError(
            f"{text!r} is not a local folder and not in the local Hugging Face cache{where}. "
            f"Download it first (e.g. `hf download {text}`) or point the row at a folder. "
            f"[{type(exc).__name__}]") from None
    return _check_folder(Path(str(found)))


def _check_folder(folder: Path) -> Path:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a Hugging Face model folder")
    return folder


def render_prompt_ids(tokenizer: Any, messages: Sequence[ChatMessage], *,
                      tools: list[dict[str, Any]] | None = None,
                      template: str | None = None,
                      switches: dict[str, Any] | None = None) -> list[int]:
    """Render the chat template (with the generation prompt) and tokenise it exactly.

    ``switches`` are extra template variables (reasoning: ``enable_thinking`` ...)."""
    from app.providers.toolcalls import prepare_messages, template_supports_tools

    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False, **(switches or {})}
    native = template_supports_tools(template or getattr(tokenizer, "chat_template", None))
    if tools and native:
        kwargs["tools"] = tools
    if template:
        kwargs["chat_template"] = template
    try:
        text = tokenizer.apply_chat_template(prepare_messages(messages, tools, native), **kwargs)
    except Exception as exc:  # jinja errors (e.g. "roles must alternate") are the caller's input
        raise UnsupportedError(f"the model's chat template rejected the messages: {exc}") from exc
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def recorded(steps: Generator[TokenStep], into: list[int]) -> Generator[TokenStep]:
    """``steps``, with each token id appended to ``into`` (closing it closes ``steps``)."""
    try:
        for step in steps:
            if not step.eos:
                into.append(step.token)
            yield step
    finally:
        steps.close()


def context_length_of(folder: Path, options: dict[str, Any]) -> int | None:
    """``context_size`` from the row options, else the model's configured maximum."""
    if options.get("context_size"):
        return int(options["context_size"])
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    cfg = cfg.get("text_config", cfg)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(cfg.get(key), int) and cfg[key] > 0:
            return int(cfg[key])
    return None


def planned_context_length(source: str, options: dict[str, Any]) -> int | None:
    """The context a Hugging Face-format row gets once loaded (see :func:`context_length_of`),
    read from its local folder or cached repo's ``config.json``; None when it is not there."""
    if options.get("context_size"):
        return int(options["context_size"])
    try:
        folder = resolve_local_model(source, cache_dir=options.get("cache_dir"))
    except ModelLoadError:
        return None
    return context_length_of(folder, options)


def parallel_option(row: ModelRow) -> int:
    """A Hugging Face-format row's ``parallel`` option (requests batched at once; 1 = off)."""
    from app.providers.row_options import DEFAULT_PARALLEL

    try:
        return max(1, int(row.options.get("parallel", DEFAULT_PARALLEL)))
    except (TypeError, ValueError):
        return 1


def generation_budget(max_tokens: int | None, prompt_len: int, context: int | None) -> int | None:
    """How many tokens may be generated (None = unbounded); 400 when the prompt fills the window."""
    if max_tokens is not None and max_tokens < 1:
        raise UnsupportedError("max_tokens must be at least 1", code="invalid_value",
                               param="max_tokens")
    if context is not None and prompt_len >= context:
        raise UnsupportedError(
            f"The prompt is {prompt_len} tokens long, but this model's context window is {context} "
            "tokens. Shorten the conversation, or set a larger context_size for the model.",
            code="context_length_exceeded", param="messages")
    room = None if context is None else context - prompt_len
    if max_tokens is None:
        return room
    return max_tokens if room is None else min(max_tokens, room)


def wants_logprobs(request: ChatRequest | TextRequest) -> bool:
    """Whether a chat or raw completion request asks for logprobs."""
    if isinstance(request, TextRequest):
        return request.logprobs is not None
    return bool(request.logprobs)


def ensure_loaded(model: object, model_id: str) -> None:
    """A closed model says so instead of failing obscurely."""
    if model is None:
        raise ProviderError(f"model {model_id} has been unloaded", status=503, code="model_unloaded")


def chat_template_of(tokenizer: Any, options: dict[str, Any], source: str) -> str | None:
    """The row's template override, else None if the tokenizer has one; error if neither."""
    override = options.get("chat_template") or None
    if override is None and not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"{source} has no chat template; set the row's chat_template option")
    return override


class HfFormatModel(LocalChatModel):
    """A model with a Hugging Face tokenizer: chat prompts, decoding and the tools plan.

    Subclasses set ``eos_ids`` and implement :meth:`_tokens` (the runtime's token loop) and
    :meth:`_ranked` (log-probabilities for ``logprobs``); chat and raw completions both run
    through :meth:`_steps`.  Rust tokenizers raise "Already borrowed" when two threads use one
    at once, so every use of ``hf_tokenizer`` (here and in other modules) holds
    ``tokenizer_lock``.

    A runtime that batches sets :attr:`engine` (its provider, from the row's ``parallel``
    option) and implements :meth:`batch_sampler`; :meth:`runs_alone` is its rule for what
    stays off the batch.
    """

    eos_ids: set[int]
    model: Any  # the runtime's model object; None once closed

    def __init__(self, model_id: str, hf_tokenizer: Any, *, context_length: int | None,
                 chat_template: str | None = None) -> None:
        super().__init__(model_id, context_length=context_length)
        self.hf_tokenizer = hf_tokenizer
        self.chat_template = chat_template
        self.tokenizer_lock = threading.Lock()
        self.prompts = PromptMemo()
        template = chat_template or getattr(hf_tokenizer, "chat_template", None)
        self.template_text = template if isinstance(template, str) else None
        added = getattr(hf_tokenizer, "get_added_vocab", dict)()
        self.reasoning: ReasoningFormat | None = detect_reasoning(self.template_text, added)
        # Harmony's markers are special tokens: the splitter must see them in the text.
        self.keep_special_text = isinstance(self.reasoning, HarmonyFormat)
        self.tool_format = detect_tool_format(self.template_text)

    # -- batching: batchable requests run on their own thread, not the model's worker ---------
    @property  # type: ignore[override]
    def parallelism(self) -> int:
        """The engine's members at once (1 without one: the runtime's loop serialises)."""
        return self.engine.n_slots if self.engine is not None else 1

    def runs_alone(self, request: ChatRequest | TextRequest) -> bool:
        """Whether ``request`` stays off the batch even with an engine (this runtime's rule).

        By default a request that asks for logprobs (an engine hands scores only when it
        keeps them: runtimes that do override this)."""
        return wants_logprobs(request)

    def batchable(self, request: ChatRequest | TextRequest) -> bool:
        """Whether ``request`` is generated by the engine (else alone, on :meth:`_tokens`)."""
        return self.engine is not None and not self.runs_alone(request)

    def batch_sampler(self, request: ChatRequest | TextRequest, plan: LocalPlan | None,
                      prompt_len: int) -> Any:
        """The :attr:`SlotJob.sampler` of a batched request, in the engine's terms: the request's
        sampling, penalties and seed, and ``plan``'s grammar (its generated tokens start after
        ``prompt_len``)."""
        raise NotImplementedError(f"{type(self).__name__} has no batch engine")

    def _engine_tokens(self, ids: list[int], request: ChatRequest | TextRequest,
                       budget: int | None, end: GenerationEnd, plan: LocalPlan | None,
                       cancelled: threading.Event) -> Generator[tuple[int, Any, bool]]:
        """:meth:`_tokens`' contract, on the engine: a job per generation, its tokens as they
        come (every token counts in usage, EOS too, as the runtimes' own loops count it)."""
        engine = self.engine
        if engine is None:
            raise ProviderError(f"model {self.model_id} has been unloaded", status=503,
                                code="model_unloaded")
        job = engine.submit(SlotJob(prompt=ids, sampler=self.batch_sampler(request, plan, len(ids)),
                                    max_tokens=budget, cancelled=cancelled,
                                    keep_scores=wants_logprobs(request)))
        tokens = job.tokens()
        try:
            for token, scores, eos in tokens:
                end.usage.cached_tokens = job.cached_tokens
                end.usage.completion_tokens += 1
                yield token, scores, eos
        finally:
            tokens.close()

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not self.batchable(request):
            async for chunk in self._alone(super()._stream(request)):
                yield chunk
            return
        async for chunk in self._run_batched(lambda cancel: self.generate(request, cancel)):
            yield chunk

    async def stream_text(self, request: TextRequest) -> AsyncIterator[ChatChunk]:
        if not self.batchable(request):
            async for chunk in self._alone(super().stream_text(request)):
                yield chunk
            return
        with self._active_lock:
            self._active += 1
        try:
            async for chunk in self._run_batched(lambda cancel: self.generate_text(request, cancel)):
                yield chunk
        finally:
            with self._active_lock:
                self._active -= 1

    async def _alone(self, chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
        """``chunks`` of a request on the runtime's own loop, with the engine paused around it."""
        if self.engine is None:
            async for chunk in chunks:
                yield chunk
            return
        with self.engine.solo():
            async for chunk in chunks:
                yield chunk

    async def complete(self, request: ChatRequest) -> ChatResult:
        if not self.batchable(request):
            if self.engine is None:
                return await super().complete(request)
            with self.engine.solo():
                return await super().complete(request)

        return await self._complete_batched(lambda cancel: self.generate(request, cancel), request)

    def prompt_ids(self, messages: list[ChatMessage], tools: list[dict[str, Any]] | None = None,
                   switches: dict[str, Any] | None = None) -> list[int]:
        """The rendered chat template as token ids (what usage.prompt_tokens counts), rendered once
        per request (:class:`~app.providers.prompt_memo.PromptMemo`)."""
        def make() -> list[int]:
            with self.tokenizer_lock:
                return render_prompt_ids(self.hf_tokenizer, messages, tools=tools,
                                         template=self.chat_template, switches=switches)

        try:
            extra = tuple(sorted((switches or {}).items()))
            hash(extra)
        except TypeError:  # a switch value that cannot be a key: render it every time
            return make()
        return self.prompts.ids(messages, tools, make, extra)

    def count_tokens(self, messages: list[ChatMessage],
                     tools: list[dict[str, Any]] | None = None) -> int | None:
        return len(self.prompt_ids(messages, tools))

    def _decode(self, ids: Any) -> str:
        with self.tokenizer_lock:
            return self.hf_tokenizer.decode(list(ids), skip_special_tokens=not self.keep_special_text,
                                            clean_up_tokenization_spaces=False)

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        with self.tokenizer_lock:  # tools / response_format: grammar and tool-call parsing
            plan = LocalPlan.build(request, self.hf_tokenizer, self.eos_ids)
        return plan.wrap(self._generate(request, cancelled, plan),
                         parser_for(request, self.tool_format) if request.tools else None)

    def _generate(self, request: ChatRequest, cancelled: threading.Event,
                  plan: LocalPlan) -> Iterator[ChatChunk]:
        """Chat deltas from the runtime's token loop, constrained by ``plan``."""
        ensure_loaded(self.model, self.model_id)
        switches = template_switches(self.template_text, request.reasoning_effort)
        ids = self.prompt_ids(request.messages, request.tools, switches)
        logprob = self._chat_logprob(request.top_logprobs) if request.logprobs else None

        generated: list[int] = []

        def run(extra: str) -> Iterator[ChatChunk]:
            """Generate from the prompt; with ``extra``, go on from the last run's tokens +
            ``extra`` (a thinking budget's continuation, see budget_thinking)."""
            more: list[int] = []
            if extra:
                with self.tokenizer_lock:
                    more = generated + list(self.hf_tokenizer(extra, add_special_tokens=False)
                                            ["input_ids"])
            limit = request.max_tokens
            step_request = replace(request, max_tokens=max(1, limit - len(more))) if limit else request
            steps, end = self._steps(ids + more, step_request, cancelled, plan)
            generated.clear()
            return chat_chunks(recorded(steps, generated), end, logprob)

        if self.reasoning is None:
            yield from run("")
            return
        with self.tokenizer_lock:  # the prompt's tail tells whether it opened the reasoning
            tail = self.hf_tokenizer.decode(ids[-32:], skip_special_tokens=False)
        close = close_marker(self.reasoning)
        chunks = run("") if close is None or request.thinking_budget is None else budget_thinking(
            run, self.reasoning.splitter(tail), request.thinking_budget, close, len(ids))
        yield from split_reasoning(chunks, self.reasoning.splitter(tail), new_call_id)

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        """A raw completion (with fill-in-the-middle) through the same token loop as chat."""
        ensure_loaded(self.model, self.model_id)
        ids = text_prompt_ids(self.hf_tokenizer, self.tokenizer_lock, self.model_id, request)
        steps, end = self._steps(ids, request, cancelled, None)
        yield from text_chunks(steps, end, self._text_logprob(request.logprobs)
                               if request.logprobs is not None else None)

    def _steps(self, ids: list[int], request: ChatRequest | TextRequest, cancelled: threading.Event,
               plan: LocalPlan | None) -> tuple[Generator[TokenStep], GenerationEnd]:
        """The generation from ``ids`` as token steps, and where its ending will be recorded."""
        budget = generation_budget(request.max_tokens, len(ids), self.context_length)
        end = GenerationEnd(Usage(len(ids), 0))
        tokens = (self._engine_tokens(ids, request, budget, end, plan, cancelled)
                  if self.batchable(request) else self._tokens(ids, request, budget, end, plan))
        return token_steps(tokens, self._decode, request.stop, cancelled, end), end

    def _chat_logprob(self, top: int | None) -> Callable[[TokenStep], dict[str, Any]]:
        """A step's chat ``logprobs.content`` entry with ``top`` alternatives."""

        def entry(step: TokenStep) -> dict[str, Any]:
            logp, best = self._ranked(step.scores, int(top or 0))

            def item(tid: int) -> dict[str, Any]:
                piece = self._decode([tid])
                return {"token": piece, "logprob": float(logp[tid]), "bytes": list(piece.encode())}

            return {**item(step.token), "top_logprobs": [item(t) for t in best]}

        return entry

    def _text_logprob(self, top: int) -> Callable[[TokenStep], dict[str, Any]]:
        """A step's raw-completion logprobs entry (token, logprob, top alternatives by text)."""

        def entry(step: TokenStep) -> dict[str, Any]:
            logp, best = self._ranked(step.scores, top)
            return {"token": self._decode([step.token]), "logprob": float(logp[step.token]),
                    "top_logprobs": {self._decode([t]): float(logp[t]) for t in best}}

        return entry

    @abstractmethod
    def _tokens(self, ids: list[int], request: ChatRequest | TextRequest, budget: int | None,
                end: GenerationEnd, plan: LocalPlan | None) -> Generator[tuple[int, Any, bool]]:
        """The runtime's token loop from prompt ``ids``: ``(token, scores, is_eos)`` per token.

        At most ``budget`` tokens (None: until EOS); keeps ``end.usage`` current; ``plan``
        (chat only) constrains sampling to its grammar.
        """

    @abstractmethod
    def _ranked(self, scores: Any, top: int) -> tuple[Any, list[int]]:
        """Log-probabilities from a step's ``scores`` and the ``top`` most likely token ids."""
