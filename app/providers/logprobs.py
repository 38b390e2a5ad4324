"""Logprob shaping shared by runtimes and remote pass-through (OpenAI's two layouts).

The Completions API reports logprobs as columns (``tokens``, ``token_logprobs``,
``top_logprobs`` as dicts); Chat Completions as ``logprobs.content`` entries with ``bytes``
and ``top_logprobs`` lists.  llama-cpp-python produces the first and a chat form without
``bytes``; remote servers send either.
"""

from __future__ import annotations

from typing import Any


def logprob_entries(raw: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Completions-API column logprobs -> per-token ``{"token", "logprob", "top_logprobs"}``."""
    if not raw or not raw.get("tokens"):
        return None
    tops = raw.get("top_logprobs") or [None] * len(raw["tokens"])
    return [{"token": t, "logprob": lp, "top_logprobs": top or {}}
            for t, lp, top in zip(raw["tokens"], raw.get("token_logprobs") or [], tops,
                                  strict=False)]


def chat_logprobs(content: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Chat ``logprobs.content`` entries with ``bytes`` filled in (llama-cpp-python sends None)."""
    if not content:
        return None
    out = []
    for entry in content:
        tops = [{**t, "bytes": list(str(t["token"]).encode())} for t in entry.get("top_logprobs") or []]
        out.append({**entry, "bytes": list(str(entry["token"]).encode()), "top_logprobs": tops})
    return out


def completion_to_chat_logprobs(raw: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Completion-style column logprobs -> chat ``logprobs.content`` entries."""
    entries = logprob_entries(raw)
    if not entries:
        return None
    return chat_logprobs([{"token": e["token"], "logprob": e["logprob"], "top_logprobs": [
        {"token": t, "logprob": lp} for t, lp in (e["top_logprobs"] or {}).items()]}
        for e in entries])
