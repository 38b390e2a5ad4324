"""Hugging Face Transformers: ``AutoModelForCausalLM`` + the tokenizer's chat template.

Generation is our own token loop over the model's KV cache (not ``model.generate``), so
each token is streamed the moment it is produced, stop sequences and cancellation are
checked between tokens, and finish_reason/usage are exact.  Sampling draws from a private
``torch.Generator`` (seeded per request) on the CPU, so a seed reproduces on any device.
The device is chosen automatically (CUDA, MPS, CPU) unless the row sets ``device``.

With the row's ``parallel`` option > 1 (the default) concurrent requests decode in one batch on
Transformers' own continuous batching (:mod:`app.providers.hf_batching`: what our sampler
picks inside the batch, and which requests run alone and why).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, ClassVar

from app.providers.base import (
    ChatRequest,
    ModelLoadError,
    Provider,
    TextRequest,
    Usage,
)
from app.providers.cpus import decode_threads
from app.providers.hf_batching import Sampling, TransformersBatchEngine, slot_context
from app.providers.hf_common import (
    HfFormatModel,
    chat_template_of,
    context_length_of,
    parallel_option,
    planned_context_length,
    resolve_local_model,
)
from app.providers.local_structured import LocalPlan
from app.providers.row_options import TransformersOptions
from app.providers.textstream import GenerationEnd

if TYPE_CHECKING:
    from app.settings import ModelRow

log = logging.getLogger(__name__)


def torch_threads(requested: int | None, device: str) -> int | None:
    """torch's threads for a row: its own ``threads``, else on the CPU half the usable cores
    (:func:`~app.providers.cpus.decode_threads`); None off the CPU (torch's default)."""
    if requested:
        return int(requested)
    return decode_threads() if device == "cpu" else None


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else cuda, mps or cpu, whichever is available first."""
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


DEVICE_DTYPES = {"cpu": "float32", "mps": "float16"}
"""The torch dtype weights are loaded in on these devices; elsewhere (CUDA) the checkpoint's own."""


BATCHED_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3")
"""Attention implementations the continuous-batching manager runs as they are (with "eager" it
would switch the model to a paged variant that our one-sequence loop cannot use)."""


class TransformersModel(HfFormatModel):
    """A loaded causal LM and its tokenizer (``tokenizer`` is ``hf_tokenizer``)."""

    engine: TransformersBatchEngine | None = None

    provider: ClassVar[str] = "hf_transformers"

    def __init__(self, model_id: str, model: Any, tokenizer: Any, *, device: str,
                 context_length: int | None, chat_template: str | None = None) -> None:
        super().__init__(model_id, tokenizer, context_length=context_length,
                         chat_template=chat_template)
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        self.eos_ids = {int(e) for e in eos if e is not None}
        params = inspect.signature(model.forward).parameters
        # Transformers 5.x renamed ``past_key_values`` to ``cache``; support both.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _forward(self, ids: list[list[int]], cache: Any = None) -> tuple[Any, Any]:
        import torch

        kwargs = {self._cache_arg: cache} if cache is not None else {}
        with self.between_batch_steps():
            out = self.model(input_ids=torch.tensor(ids, device=self.device), use_cache=True,
                             **kwargs, **self._extra)
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits[0, -1].float(), new_cache

    def between_batch_steps(self) -> contextlib.AbstractContextManager[Any]:
        """Around a forward pass outside the batch (a request running alone, embeddings)."""
        engine = self.engine
        return engine.between_steps() if engine is not None else contextlib.nullcontext()

    # -- batching (see app/providers/hf_batching.py) -------------------------------------
    def runs_alone(self, request: ChatRequest | TextRequest) -> bool:
        """Nothing stays off the batch for its features: the manager samples plain members
        itself, and our own sampler picks for the rest (see :meth:`batch_sampler`); only a
        prompt too long for a slot, or any request once the manager's thread has died, runs
        alone (decided in :meth:`_engine_tokens`, once the prompt is known)."""
        return False

    def batch_sampler(self, request: ChatRequest | TextRequest, plan: LocalPlan | None,
                      prompt_len: int) -> Sampling:
        """The manager's own sampling for plain requests; for a grammar, a seed at temperature
        > 0 or presence/frequency penalties (which the manager has no per-request form of), our
        one-sequence sampler picks this member's token from its row of the batch's logits."""
        constrained = plan is not None and plan.constraint is not None
        own = (constrained or (request.seed is not None and request.temperature > 0)
               or bool(request.presence_penalty) or bool(request.frequency_penalty))
        picker = None
        if own:
            picker = _Sampler(request)
            if plan is not None:
                picker = plan.torch_sampler(picker)
        return Sampling(temperature=float(request.temperature), top_p=float(request.top_p),
                        picker=picker)

    def _engine_tokens(self, ids: list[int], request: ChatRequest | TextRequest,
                       budget: int | None, end: GenerationEnd, plan: LocalPlan | None,
                       cancelled: threading.Event) -> Generator[tuple[int, Any, bool]]:
        engine = self.engine
        if engine is None or engine.broken or not engine.fits(len(ids)):
            with engine.solo() if engine is not None else contextlib.nullcontext():
                yield from self._tokens(ids, request, budget, end, plan)  # alone, between steps
            return
        yield from super()._engine_tokens(ids, request, engine.room(len(ids), budget), end, plan,
                                          cancelled)

    def _tokens(self, ids: list[int], request: ChatRequest | TextRequest, budget: int | None,
                end: GenerationEnd, plan: LocalPlan | None) -> Generator[tuple[int, Any, bool]]:
        import torch

        sampler = _Sampler(request)
        if plan is not None:
            sampler = plan.torch_sampler(sampler)
        generated = 0
        with torch.inference_mode():
            logits, cache = self._forward([ids])
            while budget is None or generated < budget:
                token = sampler.pick(logits)
                generated += 1
                end.usage = Usage(len(ids), generated)
                yield token, logits, token in self.eos_ids
                if budget is not None and generated >= budget:
                    break
                logits, cache = self._forward([[token]], cache)

    def embed_texts(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        from app.providers.hf_embeddings import embed_texts

        return embed_texts(self, texts)

    def _ranked(self, scores: Any, top: int) -> tuple[Any, list[int]]:
        import torch

        logp = torch.log_softmax(scores, dim=-1)
        k = min(top, logp.shape[-1])
        return logp, torch.topk(logp, k).indices.tolist() if k else []

    def close(self) -> None:
        import gc

        if self.engine is not None:
            self.engine.close()  # its thread and paged cache go before the model they use
        self.model = None
        gc.collect()
        try:
            import torch

            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            elif self.device == "mps":
                torch.mps.empty_cache()
        except Exception:  # freeing caches is best effort
            log.debug("could not empty the device cache", exc_info=True)


class _Sampler:
    """Greedy at temperature 0, else temperature + top_p sampling from a seeded generator.

    Presence/frequency penalties (OpenAI semantics) apply to the tokens generated so far.
    """

    def __init__(self, request: ChatRequest | TextRequest) -> None:
        import torch

        self.temperature = max(0.0, float(request.temperature))
        self.top_p = float(request.top_p)
        self.presence = float(request.presence_penalty)
        self.frequency = float(request.frequency_penalty)
        self.counts: dict[int, int] = {}
        self.gen = torch.Generator(device="cpu")
        if request.seed is not None:
            self.gen.manual_seed(int(request.seed) & 0xFFFF_FFFF_FFFF_FFFF)
        else:
            self.gen.seed()

    def pick(self, logits: Any) -> int:
        import torch

        if self.counts and (self.presence or self.frequency):
            idx = torch.tensor(list(self.counts), device=logits.device)
            cnt = torch.tensor(list(self.counts.values()), device=logits.device, dtype=logits.dtype)
            logits = logits.clone()
            logits[idx] -= self.presence + self.frequency * cnt
        if self.temperature == 0.0:
            token = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits.cpu() / self.temperature, dim=-1)
            if 0.0 < self.top_p < 1.0:
                sorted_p, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < self.top_p
                keep[0] = True
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            token = int(torch.multinomial(probs, 1, generator=self.gen))
        self.counts[token] = self.counts.get(token, 0) + 1
        return token


class TransformersProvider(Provider):
    """Loads a local folder or cached repo id with ``AutoModelForCausalLM``."""

    name: ClassVar[str] = "hf_transformers"
    label: ClassVar[str] = "Transformers"
    options_model = TransformersOptions

    @classmethod
    def available(cls) -> str | None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            return (f"Transformers is not installed ({exc.name} missing): "
                    "pip install torch transformers tokenizers safetensors")
        return None

    @classmethod
    def planned_context_length(cls, row: ModelRow) -> int | None:
        return planned_context_length(row.source, row.options)

    def load(self, row: ModelRow) -> TransformersModel:
        problem = self.available()
        if problem:
            raise ModelLoadError(problem)
        typed: TransformersOptions = self.parse_options(row)
        opts = row.options
        folder = resolve_local_model(row.source, cache_dir=typed.cache_dir, runtime="Transformers")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = pick_device(typed.device)
        threads = torch_threads(typed.threads, device)
        if threads:
            torch.set_num_threads(threads)
        dtype: Any = getattr(torch, DEVICE_DTYPES[device]) if device in DEVICE_DTYPES else "auto"
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
            model.to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"could not load {row.source} with Transformers: {exc}") from exc
        template = chat_template_of(tokenizer, opts, row.source)
        loaded = TransformersModel(row.id, model, tokenizer, device=device,
                                   context_length=context_length_of(folder, opts),
                                   chat_template=template)
        parallel = parallel_option(row)
        attention = getattr(model.config, "_attn_implementation", None)
        if parallel > 1 and attention not in BATCHED_ATTENTION:
            log.warning("%s: attention %r cannot be batched here; one request at a time",
                        row.id, attention)
        elif parallel > 1:
            slot_ctx = slot_context(typed.parallel_ctx, loaded.context_length)
            try:
                loaded.engine = TransformersBatchEngine(model, parallel, slot_ctx, loaded.eos_ids)
            except (RuntimeError, ValueError, TypeError) as exc:
                loaded.close()
                raise ModelLoadError(f"could not start continuous batching for {row.source}: "
                                     f"{exc}") from exc
        return loaded
