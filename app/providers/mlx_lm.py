"""Apple MLX via ``mlx-lm`` (Metal on macOS; the ``mlx[cpu]`` wheels on Linux).

``stream_generate`` produces one token at a time; we decode the tokens ourselves with the
shared :class:`~app.providers.textstream.IncrementalDecoder` (mlx-lm's BPE detokenizer drops
the first token's leading space, so its text would differ from the tokenizer's decode) and
apply stop sequences between tokens.  finish_reason and usage come from mlx-lm's own last
response (``prompt_tokens``, ``generation_tokens``), which counts an EOS token it produced.
Chat and raw completions (with fill-in-the-middle) share that loop (:class:`HfFormatModel`);
MLX rows are chat models, so embeddings are refused with a 400.

On Linux CPU, MLX compiles fused kernels with g++ on first use (cached under
``$TMPDIR/mlx/<version>/cpu``; measured 0.7-6 s once per fresh TMPDIR on 2 busy cores).
Without a compiler on PATH it silently runs uncompiled (measured: works, no cold start), and
``MLX_DISABLE_COMPILE=1`` forces that; nothing here changes the environment.

MLX keeps its compile cache, streams and random state per thread, so every MLX call (load,
generate, close) runs on one process-long thread, :data:`MLX_THREAD` (see
:mod:`app.providers.owner_thread`).  With the row's ``parallel`` option above 1 (the default
is 4) concurrent requests to one model decode in one batch: mlx-lm's ``BatchGenerator``,
stepped on that thread (:mod:`app.providers.mlx_batch`); every request joins the batch
(logprobs, tools, ``response_format`` and reasoning too), so nothing runs alone on a batching
model.  With ``parallel`` 1 (or a model whose caches mlx-lm cannot batch) requests run one at
a time on ``stream_generate``, in arrival order.  Sampling draws from a key of the request's
own (its seed, or a fresh one), never from MLX's per-thread global random state.

The process must not exit while MLX still has work in flight (a generation, a model being
released, or the next token mlx-lm evaluates ahead with ``async_eval``): MLX's static teardown
then aborts the process ("terminate called without an active exception", measured 10 of 10
exits).  An ``atexit`` hook stops the batch engines' steps, then waits for the MLX thread's
queue and MLX's streams to finish.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar

from app.providers.base import (
    ChatRequest,
    ModelLoadError,
    Provider,
    TextRequest,
    Usage,
)
from app.providers.hf_common import (
    HfFormatModel,
    chat_template_of,
    context_length_of,
    parallel_option,
    planned_context_length,
    resolve_local_model,
)
from app.providers.local_structured import LocalPlan
from app.providers.mlx_batch import EXITING, MemberSampling, MlxBatchEngine, batchable_model
from app.providers.owner_thread import OwnerThread
from app.providers.row_options import MlxOptions
from app.providers.textstream import GenerationEnd

if TYPE_CHECKING:
    from app.settings import ModelRow

INSTALL_HINT = ('pip install "mlx[cpu]" mlx-lm' if sys.platform.startswith("linux")
                else "pip install mlx mlx-lm")

MLX_THREAD = OwnerThread("tater-mlx")
"""The one thread that runs MLX code in this process."""

EXIT_SETTLE_SECONDS = 15.0
"""How long the process waits at exit for MLX work in flight (generations end when cancelled)."""

log = logging.getLogger(__name__)


def settle_mlx(timeout: float = EXIT_SETTLE_SECONDS) -> bool:
    """Wait until the MLX jobs queued so far and MLX's own streams are done; whether they were."""
    if "mlx.core" not in sys.modules or not MLX_THREAD.started():
        return True
    EXITING.set()  # batch engines queue no further steps

    def synchronize() -> None:
        import mlx.core as mx

        mx.synchronize()
        generate = sys.modules.get("mlx_lm.generate")
        if generate is not None:  # mlx-lm evaluates the next token ahead on its own stream
            mx.synchronize(generate.generation_stream)

    try:
        MLX_THREAD.call(synchronize, timeout=timeout)
    except TimeoutError:
        log.warning("MLX work still running after %.0f s at exit", timeout)
        return False
    return True


atexit.register(settle_mlx)


class MlxModel(HfFormatModel):
    """A model loaded by ``mlx_lm.load``."""

    provider: ClassVar[str] = "mlx_lm"

    def __init__(self, model_id: str, model: Any, tokenizer: Any, *,
                 context_length: int | None, chat_template: str | None = None) -> None:
        super().__init__(model_id, getattr(tokenizer, "_tokenizer", tokenizer),
                         context_length=context_length, chat_template=chat_template)
        self.model = model
        self.tokenizer = tokenizer  # mlx_lm TokenizerWrapper
        self.eos_ids = {int(t) for t in getattr(tokenizer, "eos_token_ids", ()) or ()}

    def runs_alone(self, request: ChatRequest | TextRequest) -> bool:
        """Nothing: the engine hands each member's log-probabilities when it asks for logprobs."""
        return False

    def batch_sampler(self, request: ChatRequest | TextRequest, plan: LocalPlan | None,
                      prompt_len: int) -> MemberSampling:
        return MemberSampling(
            temperature=max(0.0, float(request.temperature)), top_p=float(request.top_p),
            seed=secrets.randbits(32) if request.seed is None else int(request.seed) & 0xFFFF_FFFF,
            presence_penalty=float(request.presence_penalty or 0.0),
            frequency_penalty=float(request.frequency_penalty or 0.0),
            grammar=plan.mlx_processor(prompt_len) if plan is not None else None)

    def _tokens(self, ids: list[int], request: ChatRequest | TextRequest, budget: int | None,
                end: GenerationEnd, plan: LocalPlan | None) -> Generator[tuple[int, Any, bool]]:
        responses = self._responses(ids, budget, self.batch_sampler(request, plan, len(ids)))
        try:
            for resp in responses:
                end.usage = Usage(int(resp.prompt_tokens), int(resp.generation_tokens))
                token = int(resp.token)
                yield token, resp.logprobs, resp.finish_reason == "stop" or token in self.eos_ids
                if resp.finish_reason:
                    end.finish = resp.finish_reason
        finally:
            responses.close()

    def _responses(self, ids: list[int], budget: int | None, sampling: MemberSampling) -> Any:
        """mlx-lm's ``stream_generate`` on ``ids`` with the request's sampler and processors
        (the same as a batch member's); the caller closes the generator."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        sampler, processors = sampling.build()
        return stream_generate(self.model, self.tokenizer, mx.array(ids),
                               max_tokens=budget if budget is not None else -1,
                               sampler=sampler, logits_processors=processors or None)

    def _ranked(self, scores: Any, top: int) -> tuple[Any, list[int]]:
        import numpy as np

        logp = np.asarray(scores, dtype=np.float32).reshape(-1)  # mlx-lm gives log-probabilities
        k = min(top, logp.shape[0])
        return logp, [int(t) for t in np.argsort(-logp)[:k]] if k else []

    def spawn(self, job: Callable[[], None]) -> None:
        MLX_THREAD.spawn(job)

    def close_now(self) -> None:
        # Queued, not waited for: the caller (the UI, the hub) must not wait behind another MLX
        # model's generation; a load queued later still runs after it.
        MLX_THREAD.spawn(super().close_now)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.model = None
        try:
            import mlx.core as mx

            mx.clear_cache()
        except Exception:  # best effort
            pass


class MlxProvider(Provider):
    """Loads a local MLX/Hugging Face folder or a cached repo id with ``mlx_lm.load``."""

    name: ClassVar[str] = "mlx_lm"
    label: ClassVar[str] = "MLX"
    options_model = MlxOptions

    @classmethod
    def available(cls) -> str | None:
        try:
            import mlx.core  # noqa: F401
            import mlx_lm  # noqa: F401
        except ImportError as exc:
            return f"MLX is not installed ({exc.name} missing): {INSTALL_HINT}"
        except OSError as exc:  # the native library failed to load
            return f"MLX could not be loaded here: {exc}"
        return None

    @classmethod
    def planned_context_length(cls, row: ModelRow) -> int | None:
        return planned_context_length(row.source, row.options)

    @classmethod
    def parallelism_hint(cls, row: ModelRow) -> int:
        """The row's ``parallel`` option (requests batched at once)."""
        return parallel_option(row)

    def load(self, row: ModelRow) -> MlxModel:
        return MLX_THREAD.call(self._load, row)

    def _load(self, row: ModelRow) -> MlxModel:
        problem = self.available()
        if problem:
            raise ModelLoadError(problem)
        typed: MlxOptions = self.parse_options(row)
        opts = row.options
        # mlx_lm.load raises HFValidationError for a missing path: resolve it ourselves first.
        folder = resolve_local_model(row.source, cache_dir=typed.cache_dir, runtime="MLX")
        import mlx_lm

        try:
            model, tokenizer = mlx_lm.load(str(folder))
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"could not load {row.source} with MLX: {exc}") from exc
        template = chat_template_of(getattr(tokenizer, "_tokenizer", tokenizer), opts, row.source)
        loaded = MlxModel(row.id, model, tokenizer, context_length=context_length_of(folder, opts),
                          chat_template=template)
        if typed.parallel > 1:
            if batchable_model(model):
                loaded.engine = MlxBatchEngine(model, typed.parallel, loaded.eos_ids, MLX_THREAD,
                                               cache_bytes=typed.prefix_cache_mb * 2**20)
            else:
                log.info("%s: mlx-lm cannot batch this model's caches; requests run one at a time",
                         row.id)
        return loaded
