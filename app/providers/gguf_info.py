"""Read a GGUF file's metadata header without loading the model (and without ``gguf``).

Used to size a llama.cpp context from the trained context length before loading, and to
show a model's architecture and chat template.  Only the key/value section is parsed;
tensor data is never touched.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"

# GGUF value type -> struct format (scalars); 8 = string, 9 = array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFFormatError(ValueError):
    """The file is not a readable GGUF (v2/v3) file."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFFormatError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", _read(f, 12))
        if etype in _SCALARS and not keep:  # skip fixed-size arrays in one seek
            f.seek(struct.calcsize(_SCALARS[etype]) * count, 1)
            return None
        items = [_value(f, etype, keep) for _ in range(count)]
        return items if keep else None
    raise GGUFFormatError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: Path | str, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Metadata key/values of a GGUF file.

    With ``keys``, only those are returned, reading stops as soon as all are found, and
    arrays that are not asked for are skipped, so even a large vocabulary costs little.
    """
    wanted = set(keys) if keys is not None else None
    out: dict[str, Any] = {}
    with open(path, "rb", buffering=1 << 16) as f:
        if _read(f, 4) != GGUF_MAGIC:
            raise GGUFFormatError(f"{path} is not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise GGUFFormatError(f"GGUF version {version} is too old")
        _n_tensors, n_kv = struct.unpack("<QQ", _read(f, 16))
        for _ in range(n_kv):
            key = _string(f)
            (vtype,) = struct.unpack("<I", _read(f, 4))
            keep = wanted is None or key in wanted
            value = _value(f, vtype, keep)
            if keep:
                out[key] = value
                if wanted is not None and wanted.issubset(out):
                    break
    return out


def trained_context_length(path: Path | str) -> int | None:
    """``<arch>.context_length`` of a GGUF file, or None when absent."""
    arch = read_gguf_metadata(path, ["general.architecture"]).get("general.architecture")
    if not arch:
        return None
    value = read_gguf_metadata(path, [f"{arch}.context_length"]).get(f"{arch}.context_length")
    return int(value) if value else None
