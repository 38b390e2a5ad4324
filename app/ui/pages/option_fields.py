"""The model options most people change, as typed fields with help text instead of raw JSON.

Each runtime names them its own way (llama.cpp ``n_ctx``, Transformers ``context_size``…); the
fields map to those keys, and every other option stays in the JSON box.  Help text and lowest
values come from the runtime's options model (``Provider.options_model``), the rows' contract.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.fields import FieldInfo

from app.providers import UnknownProvider, provider_class

FIELDS: tuple[str, ...] = ("context", "gpu_layers", "threads", "chat_template")
LABELS = {"context": "Context size", "gpu_layers": "GPU layers", "threads": "Threads",
          "chat_template": "Chat template"}
OPTION_KEYS: dict[str, dict[str, str]] = {
    "llama_cpp": {"context": "n_ctx", "gpu_layers": "n_gpu_layers", "threads": "n_threads",
                  "chat_template": "chat_template"},
    "hf_transformers": {"context": "context_size", "threads": "threads", "chat_template": "chat_template"},
    "mlx_lm": {"context": "context_size", "chat_template": "chat_template"},
}


def option_field(provider: str, key: str) -> FieldInfo | None:
    """The runtime's declaration of option ``key`` (None: the runtime has no such option)."""
    try:
        model = provider_class(provider).options_model
    except UnknownProvider:
        return None
    return None if model is None else model.model_fields.get(key)


def help_text(field: str, provider: str | None = None) -> str:
    """The help under a typed field: ``provider``'s description of its option (no provider, or
    one without it: the first runtime that has it)."""
    keys = OPTION_KEYS.get(provider or "", {})
    if field in keys and (info := option_field(provider or "", keys[field])) and info.description:
        return info.description
    for name, keys in OPTION_KEYS.items():
        info = option_field(name, keys[field]) if field in keys else None
        if info is not None and info.description:
            return info.description
    return ""


def lowest(provider: str, field: str) -> int | None:
    """The smallest value the runtime takes for a numeric field (None: no lower bound)."""
    info = option_field(provider, OPTION_KEYS.get(provider, {}).get(field, ""))
    bounds = [m.ge for m in info.metadata if hasattr(m, "ge")] if info is not None else []
    return int(bounds[0]) if bounds else None


def other_options_help(provider: str) -> str:
    """One line per option the runtime takes besides the typed fields: ``key: help``."""
    try:
        model = provider_class(provider).options_model
    except UnknownProvider:
        return ""
    typed = set(OPTION_KEYS.get(provider, {}).values())
    fields = model.model_fields.items() if model is not None else ()
    return "\n".join(f"{key}: {info.description}" for key, info in fields if key not in typed)


def options_problem(provider: str, options: dict[str, Any]) -> str | None:
    """Why the runtime would refuse these options (unknown or bad keys), or None."""
    try:
        return provider_class(provider).options_problem(options)
    except UnknownProvider:
        return None  # the row's own validation names the runtime


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
        least = lowest(provider, field)
        if least is not None and value < least:
            errors[field] = f"Must be at least {least}."
            continue
        options[key] = value
    return options, errors
