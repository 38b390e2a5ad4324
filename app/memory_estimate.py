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
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.providers.base import ModelLoadError
from app.providers.gguf_info import GGUFFormatError, read_gguf_metadata, trained_context_length

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
    """The estimate for a row before loading (llama.cpp GGUF rows; None for other runtimes)."""
    if row.provider != "llama_cpp":
        return None
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


def weights_in_ram() -> bool:
    """Whether model weights live in this machine's RAM (CPU builds, Apple unified memory).

    A CUDA/ROCm/Vulkan build offloads them to VRAM, which this estimate does not see."""
    if sys.platform == "darwin":
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
    if not weights_in_ram():
        log.info("%s needs about %s; GPU memory is not checked", row.id, estimate.describe())
        return estimate
    check_fits(estimate, f"{row.label}", available)
    return estimate
