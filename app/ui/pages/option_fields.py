"""The model options most people change, as typed fields with help text instead of raw JSON.

Each runtime names them its own way (llama.cpp ``n_ctx``, Transformers ``context_size``…); the
fields map to those keys, and every other option stays in the JSON box.
"""

from __future__ import annotations

import re
from typing import Any

FIELDS: tuple[str, ...] = ("context", "gpu_layers", "threads", "chat_template")
LABELS = {"context": "Context size", "gpu_layers": "GPU layers", "threads": "Threads",
          "chat_template": "Chat template"}
HELP = {
    "context": "Tokens the model can see at once (prompt + answer). Empty: the model's own, capped.",
    "gpu_layers": "Layers to put on the GPU: -1 all, 0 none (CPU only). Empty: all.",
    "threads": "CPU threads for generation. Empty: the runtime decides.",
    "chat_template": "A Jinja chat template to use instead of the model's own. Empty: the model's.",
}
OPTION_KEYS: dict[str, dict[str, str]] = {
    "llama_cpp": {"context": "n_ctx", "gpu_layers": "n_gpu_layers", "threads": "n_threads",
                  "chat_template": "chat_template"},
    "hf_transformers": {"context": "context_size", "threads": "threads", "chat_template": "chat_template"},
    "mlx_lm": {"context": "context_size", "chat_template": "chat_template"},
}
_LOWEST = {"context": 16, "gpu_layers": -1, "threads": 1}


def fields_for(provider: str) -> tuple[str, ...]:
    """The typed fields a runtime understands (none for remote rows)."""
    return tuple(f for f in FIELDS if f in OPTION_KEYS.get(provider, {}))


def split_options(provider: str, options: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(field -> text for the typed fields, every other option)."""
    keys = OPTION_KEYS.get(provider, {})
    typed = {f: str(options[k]) for f, k in keys.items() if options.get(k) not in (None, "")}
    rest = {k: v for k, v in options.items() if k not in keys.values()}
    return typed, rest


def merge_options(provider: str, typed: dict[str, str],
                  rest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the row's options, field -> error).  A blank field leaves its option out."""
    keys = OPTION_KEYS.get(provider, {})
    options = {k: v for k, v in rest.items() if k not in keys.values()}
    errors: dict[str, str] = {}
    for field, key in keys.items():
        text = typed.get(field, "")
        if not text.strip():
            continue
        if field == "chat_template":
            options[key] = text
            continue
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            errors[field] = "Enter a whole number, or leave it empty."
            continue
        value = int(text.strip())
        if value < _LOWEST[field]:
            errors[field] = f"Must be at least {_LOWEST[field]}."
            continue
        options[key] = value
    return options, errors
