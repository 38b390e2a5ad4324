"""How much memory a model will take, before it is loaded, and whether this machine has it.

For a GGUF file (llama.cpp) the estimate has the parts llama.cpp allocates, read from the
file's header:

* **weights**: the file's size (the tensors are memory-mapped; the header is a few MB at most);
* **KV cache**: ``layers x context x kv_heads x (key + value width) x 2 bytes`` (f16), once
  per slot;
* **compute buffer**: llama.cpp's scratch for one micro-batch; attention scores dominate it:
  ``ubatch x 4 bytes x (context x (heads + 1) + feed_forward)`` (scores and mask, then the
  feed-forward activations), plus the CPU backend's work buffer, where the scores are
  converted to f16 for the product with V: ``ubatch x 2 bytes x context x heads``;
* a fixed runtime overhead (thread pools, allocator arenas, the Python objects around it).

Checked against measured resident memory in ``bench/bench_memory.py`` (a prompt that fills
most of the context, so the compute buffer is touched): within a few percent for the bench
models.  A download that has no header yet is sized by its file size (:func:`rough_total`).

For a Hugging Face folder (Transformers, MLX) the parts come from its safetensors headers and
``config.json`` (:mod:`app.providers.safetensors_info`), never from loading it:

* **weights**: every stored tensor's elements x its dtype's bytes, in the dtype the runtime
  loads: Transformers casts floating tensors to float32 on the CPU and float16 on MPS
  (``DEVICE_DTYPES``) and keeps the checkpoint's dtype on CUDA; MLX keeps the file's dtypes;
* **KV cache**: ``layers x kv_heads x head_dim x 2 (K and V) x dtype bytes`` per token, for
  the tokens the runtime can hold.  Transformers with ``parallel`` > 1 allocates its paged
  cache at load: ``parallel`` slots of ``parallel_ctx`` tokens (default: the context, at most
  4096), rounded up to whole pages plus one (:func:`app.providers.hf_batching.cache_pages`).
  MLX's ``BatchGenerator`` (and the one-sequence loop of either runtime) grows its cache as
  tokens come, in steps of 256 tokens: the worst case is every slot at the row's whole
  context; a row without ``context_size`` is counted at the model's context up to
  :data:`GROWING_CONTEXT_CAP` (the context a llama.cpp row gets by default; a longer
  conversation costs more than shown: set ``context_size`` to have the estimate, and the
  limit, cover it);
* **compute**, the scratch of the largest step (``activations`` per token: the MLP's 3 x
  intermediate and the attention's 6 x hidden): Transformers' batch keeps a static attention
  mask of ``batch tokens x (cache tokens + batch tokens)``, a step's activations and one
  layer's K and V gathered from the pages; its one-sequence loop runs the whole prompt in one
  pass (its activations) and grows its cache by concatenation (a second copy while it does);
  MLX prefills every member at once, 2048 tokens a step (their activations, and on its CPU
  backend the unfused attention scores, ``heads x step x context``; Metal's kernel is fused);
* the finished requests' prompt caches (``prefix_cache_mb``) are not counted, as for
  llama.cpp rows: a budget filled over time, not what a load needs.

A repo id that is not downloaded has no estimate (None): nothing to read, and no guess.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.providers.base import ModelLoadError
from app.providers.gguf_info import GGUFFormatError, read_gguf_metadata, trained_context_length
from app.providers.safetensors_info import (
    DTYPE_BYTES,
    FLOAT_DTYPES,
    SafetensorsFormatError,
    model_shape,
    tensors,
)

if TYPE_CHECKING:
    from app.settings import ModelRow

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
RUNTIME_OVERHEAD = 5 * MIB  # measured: llama.cpp's threads and arenas, the Python objects
SLOT_CONTEXT_OVERHEAD = 3 * MIB  # measured: the parallel slots' second llama.cpp context
DEFAULT_UBATCH = 512  # llama.cpp's default micro-batch
KV_BYTES = 2  # f16 cache entries
ROUGH_FACTOR = 1.15  # headerless guess: weights plus a modest context
TRANSFORMERS_OVERHEAD = 22 * MIB  # measured (bench/bench_memory.py): torch's pools, the model's objects
TORCH_THREAD_OVERHEAD = 300 << 10
"""Measured (bench/bench_memory.py, tiny model, 1 to 32 threads): each torch worker thread
beyond the first, its stack and buffers."""
BATCH_ENGINE_OVERHEAD = 6 * MIB  # measured: Transformers' batching manager, its thread and tensors
MLX_OVERHEAD = 60 * MIB  # measured: MLX's compiled kernels, streams and allocator cache
MLX_PREFILL_STEP = 2048  # mlx-lm's prompt tokens per step (stream_generate, BatchGenerator)
GROWING_CONTEXT_CAP = 8192
"""Tokens per slot counted for a cache that grows (MLX, one-sequence Transformers) when the
row sets no ``context_size`` (llama.cpp's ``DEFAULT_MAX_CTX``)."""
MLX_KV_STEP = 256  # mlx-lm's KV caches grow in steps of this many tokens
HF_RUNTIMES = ("hf_transformers", "mlx_lm")


class NotEnoughMemory(ModelLoadError):
    """The model would not fit; the message has the numbers."""

    code = "not_enough_memory"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs, by part."""

    weights: int
    kv_cache: int
    compute: int
    overhead: int = RUNTIME_OVERHEAD
    context: int = 0
    slots: int = 1

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead

    def describe(self) -> str:
        """``1.2 GiB (weights 1.0 GiB + KV cache 128 MiB for 4096 tokens + compute 90 MiB)``."""
        slots = f" x {self.slots} slots" if self.slots > 1 else ""
        return (f"{human_bytes(self.total)} (weights {human_bytes(self.weights)} + KV cache "
                f"{human_bytes(self.kv_cache)} for {self.context} tokens{slots} + compute "
                f"{human_bytes(self.compute + self.overhead)})")


def human_bytes(n: float) -> str:
    """``512 KiB``, ``1.5 GiB``: binary units, one decimal above MiB."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if unit != "KiB" else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


def _int(meta: dict, key: str, default: int = 0) -> int:
    value = meta.get(key)
    if isinstance(value, list):  # per-layer values in some architectures: take the largest
        value = max((v for v in value if isinstance(v, int)), default=default)
    return int(value) if isinstance(value, int | float) and value else default


def estimate_gguf(path: Path | str, context: int | None = None, *, slots: int = 1,
                  ubatch: int = DEFAULT_UBATCH, parallel: int = 1,
                  slot_context: int | None = None) -> MemoryEstimate:
    """The memory llama.cpp needs for ``path`` with ``context`` tokens (default: trained).

    ``parallel`` > 1 adds the parallel slots' own context (app/providers/llama_slots.py): a KV
    cache of ``slot_context`` tokens (default ``context``) per slot and a second compute buffer."""
    path = Path(path)
    arch = read_gguf_metadata(path, ["general.architecture"]).get("general.architecture") or "llama"
    keys = [f"{arch}.{k}" for k in ("block_count", "embedding_length", "feed_forward_length",
                                    "attention.head_count", "attention.head_count_kv",
                                    "attention.key_length", "attention.value_length",
                                    "context_length")]
    meta = read_gguf_metadata(path, keys)
    layers = _int(meta, f"{arch}.block_count")
    embd = _int(meta, f"{arch}.embedding_length")
    heads = _int(meta, f"{arch}.attention.head_count", 1)
    kv_heads = _int(meta, f"{arch}.attention.head_count_kv", heads)
    head_dim = embd // heads if heads else 0
    k_dim = _int(meta, f"{arch}.attention.key_length", head_dim)
    v_dim = _int(meta, f"{arch}.attention.value_length", head_dim)
    ff = _int(meta, f"{arch}.feed_forward_length", 4 * embd)
    n_ctx = int(context or _int(meta, f"{arch}.context_length", 4096))
    slots = max(1, int(slots))

    def kv_bytes(tokens: int) -> int:
        return layers * tokens * kv_heads * (k_dim + v_dim) * KV_BYTES

    def compute_bytes(tokens: int) -> int:
        ub = min(ubatch, tokens)
        return ub * 4 * (tokens * (heads + 1) + ff) + ub * 2 * max(tokens * heads, ff)

    kv, compute = kv_bytes(n_ctx) * slots, compute_bytes(n_ctx)
    if parallel > 1:
        per_slot = int(slot_context or n_ctx)
        kv += kv_bytes(per_slot) * parallel
        # its scratch, whose attention mask spans every slot's cells, and its own arenas
        compute += (compute_bytes(per_slot) + min(ubatch, per_slot) * 4 * per_slot * (parallel - 1)
                    + SLOT_CONTEXT_OVERHEAD)
        slots = parallel
    return MemoryEstimate(weights=path.stat().st_size, kv_cache=kv, compute=compute,
                          context=n_ctx, slots=slots)


def rough_total(size: int) -> int:
    """A headerless guess (a file not downloaded yet): its size plus a modest context."""
    return int(size * ROUGH_FACTOR) + RUNTIME_OVERHEAD


def available_memory() -> int:
    """Bytes of RAM available to a new process now (free plus reclaimable cache)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(estimate: MemoryEstimate, what: str, available: int | None = None) -> None:
    """Raise :class:`NotEnoughMemory` with the numbers when ``estimate`` exceeds free RAM."""
    free = available_memory() if available is None else available
    if estimate.total > free:
        raise NotEnoughMemory(
            f"{what} needs about {estimate.describe()}, but only {human_bytes(free)} of memory "
            f"is available. Choose a smaller context (context size option), a smaller "
            f"quantisation, or close other programs.")


def estimate_row(row: ModelRow) -> MemoryEstimate | None:
    """The estimate for a local row before loading (llama.cpp, Transformers, MLX); None for a
    remote row, a missing or broken file, or a repo id that is not downloaded."""
    if row.provider == "llama_cpp":
        return _estimate_gguf_row(row)
    if row.provider in HF_RUNTIMES:
        return _estimate_hf_row(row)
    return None


def _estimate_gguf_row(row: ModelRow) -> MemoryEstimate | None:
    from app.providers.llama_cpp import DEFAULT_MAX_CTX

    path = Path(row.source).expanduser()
    try:
        n_ctx = row.options.get("n_ctx") or min(trained_context_length(path) or DEFAULT_MAX_CTX,
                                                DEFAULT_MAX_CTX)
        from app.providers.row_options import DEFAULT_PARALLEL

        parallel = int(row.options.get("parallel", DEFAULT_PARALLEL))
        return estimate_gguf(path, int(n_ctx), ubatch=int(row.options.get("n_batch") or
                                                         DEFAULT_UBATCH),
                             parallel=parallel, slot_context=row.options.get("parallel_ctx"))
    except (OSError, GGUFFormatError, ValueError, TypeError):
        return None  # the provider's own load reports a missing or broken file


def hf_weights(folder: Path, cast_bytes: int | None = None) -> tuple[int, int]:
    """Bytes of ``folder``'s weights once loaded (floating tensors at ``cast_bytes`` each when
    given, else as stored) and the bytes of its main floating dtype (the activations' and the
    KV cache's when nothing is cast)."""
    total, by_float = 0, {}
    for t in tensors(folder):
        if t.dtype in FLOAT_DTYPES:
            by_float[t.dtype] = by_float.get(t.dtype, 0) + t.nbytes
            total += t.elements * cast_bytes if cast_bytes else t.nbytes
        else:
            total += t.nbytes
    if not total:
        raise SafetensorsFormatError(f"{folder} has no safetensors weights")
    main = max(by_float, key=by_float.__getitem__) if by_float else "F16"
    return total, cast_bytes or DTYPE_BYTES[main]


def estimate_hf(folder: Path, runtime: str, *, parallel: int, context: int | None,
                parallel_ctx: int | None = None, device: str = "cpu",
                fused_attention: bool | None = None, threads: int = 1) -> MemoryEstimate:
    """The memory ``runtime`` (``hf_transformers`` or ``mlx_lm``) needs for the Hugging Face
    folder ``folder`` with ``parallel`` slots and a ``context`` of tokens (None: the model's;
    see the module docstring for the worst case counted).  ``fused_attention``: whether MLX's
    prefill attention is fused (Metal; default: on macOS), else its scores are counted.
    ``threads``: torch's threads (Transformers on the CPU)."""
    from app.providers.hf_common import context_length_of

    folder = Path(folder)
    shape = model_shape(folder)
    model_ctx = context_length_of(folder, {})
    grown = int(context or min(model_ctx or GROWING_CONTEXT_CAP, GROWING_CONTEXT_CAP))
    parallel = max(1, int(parallel))
    if runtime == "hf_transformers":
        from app.providers.hf_batching import PAGE_SIZE, batch_tokens, cache_pages, slot_context
        from app.providers.hf_transformers import DEVICE_DTYPES

        cast = {"float32": 4, "float16": 2}.get(DEVICE_DTYPES.get(device.split(":")[0], ""))
        weights, nbytes = hf_weights(folder, cast)
        overhead = TRANSFORMERS_OVERHEAD + TORCH_THREAD_OVERHEAD * (max(1, threads) - 1)
        if parallel > 1:  # the paged cache and the batch's attention mask, allocated at load
            per_slot = slot_context(parallel_ctx, context or model_ctx)
            cache_tokens = cache_pages(parallel, per_slot) * PAGE_SIZE
            batch = batch_tokens(parallel)
            # the mask, a step's activations, and one layer's K and V gathered from the pages
            compute = nbytes * (batch * (cache_tokens + batch) + batch * shape.activations_per_token
                                + cache_tokens * shape.kv_elements_per_token // shape.layers)
            overhead += BATCH_ENGINE_OVERHEAD
        else:  # one sequence: the whole prompt in one pass; the cache grows by concatenation
            per_slot = cache_tokens = grown
            compute = nbytes * grown * (shape.activations_per_token + shape.kv_elements_per_token)
    else:  # mlx_lm: a cache per member, grown to the whole context at worst
        weights, nbytes = hf_weights(folder)
        per_slot = grown
        cache_tokens = -(-grown // MLX_KV_STEP) * MLX_KV_STEP * parallel
        step = min(grown, MLX_PREFILL_STEP)  # every member prefilled at once, a step at a time
        if fused_attention is None:
            fused_attention = sys.platform == "darwin"
        scores = 0 if fused_attention else shape.heads * grown
        compute = nbytes * parallel * step * (shape.activations_per_token + scores)
        overhead = MLX_OVERHEAD
    kv = shape.kv_elements_per_token * cache_tokens * nbytes
    return MemoryEstimate(weights=weights, kv_cache=kv, compute=compute, overhead=overhead,
                          context=per_slot, slots=parallel)


def _estimate_hf_row(row: ModelRow) -> MemoryEstimate | None:
    from app.providers.hf_common import parallel_option, resolve_local_model

    opts = row.options
    try:
        folder = resolve_local_model(row.source, cache_dir=opts.get("cache_dir"))
        device, threads = "cpu", 1
        if row.provider == "hf_transformers":
            from app.providers.hf_transformers import torch_threads

            device = _transformers_device(opts.get("device"))
            threads = torch_threads(opts.get("threads"), device) or 1
        return estimate_hf(folder, row.provider, parallel=parallel_option(row),
                           context=opts.get("context_size"), parallel_ctx=opts.get("parallel_ctx"),
                           device=device, threads=threads)
    except (ModelLoadError, OSError, SafetensorsFormatError, ValueError, TypeError, KeyError):
        return None  # not downloaded, or not readable: the provider's own load says why


def _transformers_device(requested: str | None) -> str:
    try:
        from app.providers.hf_transformers import pick_device

        return pick_device(requested)
    except ImportError:  # no torch: the load will say so
        return requested or "cpu"


def weights_in_ram(row: ModelRow | None = None) -> bool:
    """Whether ``row``'s weights live in this machine's RAM (CPU, Apple unified memory).

    A CUDA/ROCm/Vulkan build of llama.cpp, or Transformers on a CUDA device, puts them in
    VRAM, which this estimate does not see.  MLX runs on Apple's unified memory or the CPU."""
    if row is not None and row.provider == "hf_transformers":
        return _transformers_device(row.options.get("device")) in ("cpu", "mps")
    if sys.platform == "darwin" or (row is not None and row.provider == "mlx_lm"):
        return True
    try:
        import llama_cpp

        return not llama_cpp.llama_supports_gpu_offload()
    except (ImportError, OSError, AttributeError):
        return True


def check_row_fits(row: ModelRow, available: int | None = None) -> MemoryEstimate | None:
    """Refuse (:class:`NotEnoughMemory`) a row whose estimate exceeds available memory."""
    estimate = estimate_row(row)
    if estimate is None:
        return None
    if not weights_in_ram(row):
        log.info("%s needs about %s; GPU memory is not checked", row.id, estimate.describe())
        return estimate
    check_fits(estimate, f"{row.label}", available)
    return estimate
