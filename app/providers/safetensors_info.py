"""Read a Hugging Face model folder's shape without loading it: its safetensors headers
(each tensor's dtype and shape) and its ``config.json`` (layers, heads, widths).

A safetensors file starts with an 8-byte little-endian header length and that many bytes of
JSON (``{"name": {"dtype": "BF16", "shape": [...], "data_offsets": [...]}, ...}``); only
that header is read, never the tensor data.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
               "F8_E8M0": 1}
"""Bytes per element of each safetensors dtype."""

FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
"""The floating dtypes a runtime casts when it loads in another precision (packed quantised
weights, integers and float8 stay as stored)."""

MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


class SafetensorsFormatError(ValueError):
    """A file is not a readable safetensors file."""


@dataclass(frozen=True)
class Tensor:
    """One stored tensor: its dtype (``"BF16"``) and number of elements."""

    dtype: str
    elements: int

    @property
    def nbytes(self) -> int:
        return self.elements * DTYPE_BYTES.get(self.dtype, 4)


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor name -> dtype, shape, offsets)."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsFormatError(f"{path.name}: truncated safetensors header")
        (size,) = struct.unpack("<Q", raw)
        if size > MAX_HEADER:
            raise SafetensorsFormatError(f"{path.name}: header of {size} bytes is not safetensors")
        text = f.read(size)
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise SafetensorsFormatError(f"{path.name}: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"{path.name}: the header is not a JSON object")
    return header


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files the loaders read: the index's shards when there is an index,
    else ``model.safetensors``, else every ``*.safetensors`` in the folder."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(folder.glob("*.safetensors"))


def tensors(folder: Path) -> Iterator[Tensor]:
    """Every tensor stored in ``folder``'s weight files."""
    for path in weight_files(folder):
        for name, info in read_header(path).items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            yield Tensor(str(info.get("dtype")), math.prod(int(d) for d in info.get("shape", [])))


@dataclass(frozen=True)
class ModelShape:
    """The widths that size a transformer's KV cache and activations."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int

    @property
    def kv_elements_per_token(self) -> int:
        """A token's KV cache entry: ``layers x kv_heads x head_dim``, once for K, once for V."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    @property
    def activations_per_token(self) -> int:
        """Elements one token's pass through a layer holds at once: the MLP's gate, up and
        product (3 x intermediate) and the attention's q, k, v, output and residuals (6 x
        hidden)."""
        return 3 * self.intermediate + 6 * self.hidden


def model_shape(folder: Path) -> ModelShape:
    """The model's shape from ``config.json`` (a multimodal model's ``text_config``)."""
    cfg = json.loads((folder / "config.json").read_text())
    cfg = cfg.get("text_config") or cfg

    def number(*keys: str, default: int = 0) -> int:
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, int) and value > 0:
                return value
        return default

    heads = number("num_attention_heads", "n_head", default=1)
    hidden = number("hidden_size", "n_embd", "d_model")
    return ModelShape(layers=number("num_hidden_layers", "n_layer"), heads=heads,
                      kv_heads=number("num_key_value_heads", "num_attention_heads", "n_head",
                                      default=1),
                      head_dim=number("head_dim", default=hidden // heads), hidden=hidden,
                      intermediate=number("intermediate_size", "n_inner", "ffn_dim",
                                          default=4 * hidden))
