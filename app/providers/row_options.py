"""The options each runtime's model rows take, as pydantic models (the rows' contract).

Every runtime names its options its own way (llama.cpp ``n_ctx``, Transformers ``context_size``);
each model below lists exactly the keys its runtime reads, with the help text the Models page
shows.  An option a runtime does not know is an error, not silently kept: :func:`options_problem`
names it, and providers turn that into a :class:`~app.providers.base.ModelLoadError` at load.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_PARALLEL = 4
"""Requests batched at once on a local row (llama.cpp, MLX, Transformers) without a ``parallel``
option."""

DEFAULT_PREFIX_CACHE_MB = 1024
"""RAM for saved prompt prefixes beyond a llama.cpp row's slots, without a ``prefix_cache_mb`` option."""

CONTEXT_HELP = "Tokens the model can see at once (prompt + answer). Empty: the model's own, capped."
TEMPLATE_HELP = "A Jinja chat template to use instead of the model's own. Empty: the model's."
CACHE_DIR_HELP = "Hugging Face cache folder to find the model in. Empty: the default cache."


class RowOptions(BaseModel):
    """Base of every runtime's row options: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class LlamaCppOptions(RowOptions):
    """A llama.cpp (GGUF) row's ``options``."""

    n_ctx: int | None = Field(default=None, ge=16, description=CONTEXT_HELP)
    n_gpu_layers: int = Field(default=-1, ge=-1, description=(
        "Layers to put on the GPU: -1 all, 0 none (CPU only). Empty: all."))
    n_threads: int | None = Field(default=None, ge=1, description=(
        "CPU threads for generation. Empty: half the usable cores."))
    n_threads_batch: int | None = Field(default=None, ge=1, description=(
        "CPU threads for reading the prompt. Empty: all usable cores."))
    n_batch: int | None = Field(default=None, ge=1, description=(
        "Prompt tokens processed per step. Empty: the runtime's default."))
    flash_attn: bool = Field(default=False, description="Use flash attention where supported.")
    seed: int | None = Field(default=None, description=(
        "Seed of the runtime's random generator when a request gives none. Empty: random."))
    logits_all: bool = Field(default=False, description=(
        "Keep every token's logits (needed for prompt logprobs; costs n_ctx x vocabulary floats)."))
    verbose: bool = Field(default=False, description="Let llama.cpp log to stderr.")
    chat_template: str | None = Field(default=None, description=TEMPLATE_HELP)
    top_k: int = Field(default=40, ge=0, description="Default top-k sampling (0: off).")
    min_p: float = Field(default=0.05, ge=0, le=1, description="Default min-p sampling (0: off).")
    repeat_penalty: float = Field(default=1.0, gt=0, description=(
        "Default repetition penalty (1: off)."))
    parallel: int = Field(default=DEFAULT_PARALLEL, ge=1, description=(
        f"Requests generated at the same time (batched slots). Empty: {DEFAULT_PARALLEL}."))
    parallel_ctx: int | None = Field(default=None, ge=16, description=(
        "Context of each parallel slot, in tokens. Empty: the whole context."))
    prefix_cache_mb: int = Field(default=DEFAULT_PREFIX_CACHE_MB, ge=0, description=(
        "MiB of RAM for prompt caches saved beyond the parallel slots (a slot's cache is saved "
        f"before the slot is reused; 0: off). Empty: {DEFAULT_PREFIX_CACHE_MB}."))


class HfOptions(RowOptions):
    """A Hugging Face-format row's ``options`` (the parts MLX and Transformers share)."""

    context_size: int | None = Field(default=None, ge=16, description=CONTEXT_HELP)
    cache_dir: str | None = Field(default=None, description=CACHE_DIR_HELP)
    chat_template: str | None = Field(default=None, description=TEMPLATE_HELP)
    parallel: int = Field(default=DEFAULT_PARALLEL, ge=1, description=(
        f"Requests generated at the same time (one batch). 1: one at a time. "
        f"Empty: {DEFAULT_PARALLEL}."))


class MlxOptions(HfOptions):
    """An MLX row's ``options``."""

    prefix_cache_mb: int = Field(default=DEFAULT_PREFIX_CACHE_MB, ge=0, description=(
        "MiB of RAM for the prompt caches of finished requests, reused by prompts that share "
        f"their prefix (0: off). Empty: {DEFAULT_PREFIX_CACHE_MB}."))


class TransformersOptions(HfOptions):
    """A Transformers row's ``options``."""

    threads: int | None = Field(default=None, ge=1, description=(
        "CPU threads for generation (torch's, for the whole process). Empty: half the usable cores."))
    device: str | None = Field(default=None, description=(
        "Torch device, e.g. cpu, cuda or mps. Empty: the best one here."))
    parallel_ctx: int | None = Field(default=None, ge=16, description=(
        "Tokens of KV cache per parallel request (allocated at load). Empty: the context, "
        "at most 4096."))


class RemoteOptions(RowOptions):
    """A remote (OpenAI-compatible server) row's ``options``; its API key lives in the keyring."""

    base_url: str = Field(description="The server's API root, e.g. http://127.0.0.1:11434/v1.")
    timeout: float | None = Field(default=None, gt=0, description=(
        "Seconds to wait for the upstream. Empty: the default."))
    max_parallel: int | None = Field(default=None, ge=1, description=(
        "Requests the upstream serves at once (pools use it). Empty: the default."))


def options_problem(model: type[BaseModel], runtime: str, options: dict[str, Any]) -> str | None:
    """A readable message naming each unknown or bad option, or None when they are all right."""
    try:
        model.model_validate(options)
    except ValidationError as exc:
        return describe_errors(exc, model, runtime)
    return None


def describe_errors(exc: ValidationError, model: type[BaseModel], runtime: str) -> str:
    """``exc`` (validating ``model``) as one readable message, an entry per bad option."""
    return "; ".join(_describe(e, runtime, model) for e in exc.errors())


def _describe(error: Any, runtime: str, model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "options"
    if error["type"] == "extra_forbidden":
        known = ", ".join(model.model_fields)
        return f"unknown option {key!r} for {runtime} (known: {known})"
    if error["type"] == "missing":
        return f"option {key!r} is required for {runtime}"
    return f"option {key!r} for {runtime}: {error['msg']} (got {error['input']!r})"
