"""MLX raw completions (``/v1/completions``, with fill-in-the-middle).

mlx-lm's ``stream_generate`` runs on the prompt's tokens, as chat does; FIM uses the
tokenizer's FIM tokens (see :data:`app.providers.fim.FIM_SETS`).  MLX rows are chat
models: embeddings are refused with a 400 (the base class's answer).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from app.providers.base import ChatChunk, TextRequest, Usage
from app.providers.fim import text_prompt_ids
from app.providers.hf_common import ensure_loaded, generation_budget
from app.providers.textstream import IncrementalDecoder, StopScanner, finish_text

if TYPE_CHECKING:
    from app.providers.mlx_lm import MlxModel


def generate_text(model: MlxModel, request: TextRequest,
                  cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Stream a raw completion; the last chunk has finish_reason and usage."""
    ensure_loaded(model.model, model.model_id)
    ids = text_prompt_ids(model.hf_tokenizer, model._tok_lock, model.model_id, request)
    budget = generation_budget(request.max_tokens, len(ids), model.context_length)
    responses = model._responses(ids, request, budget)
    decoder = IncrementalDecoder(model._decode)
    stops = StopScanner(request.stop)
    finish, usage = "length", Usage(len(ids), 0)
    try:
        for resp in responses:
            if cancelled.is_set():
                return
            usage = Usage(int(resp.prompt_tokens), int(resp.generation_tokens))
            token = int(resp.token)
            if resp.finish_reason == "stop" or token in model.eos_ids:
                finish = "stop"
                break
            entries = [_entry(model, resp.logprobs, token, request.logprobs)] \
                if request.logprobs is not None else None
            text, hit = stops.feed(decoder.add(token))
            if text or entries:
                yield ChatChunk(text=text, logprobs=entries)
            if hit:
                finish = "stop"
                break
            if resp.finish_reason:
                finish = resp.finish_reason
    finally:
        responses.close()
    tail, finish = finish_text(decoder, stops, finish)
    yield ChatChunk(text=tail, finish_reason=finish, usage=usage)


def _entry(model: MlxModel, logprobs: Any, token: int, top: int) -> dict[str, Any]:
    import numpy as np

    logp = np.asarray(logprobs, dtype=np.float32).reshape(-1)
    best = [int(t) for t in np.argsort(-logp)[:top]] if top else []
    return {"token": model._decode([token]), "logprob": float(logp[token]),
            "top_logprobs": {model._decode([t]): float(logp[t]) for t in best}}
