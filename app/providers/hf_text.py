"""Transformers raw completions (``/v1/completions``, with fill-in-the-middle) and embeddings.

Completions run the provider's own token loop (KV cache, seeded sampler, stop scanner) on
the prompt's tokens.  Fill-in-the-middle is offered when the tokenizer has one of the usual
FIM token sets; the prompt is ``<prefix>PREFIX<suffix>SUFFIX<middle>`` (:mod:`app.providers.fim`).
Embeddings are the last hidden states, mean-pooled over the input's tokens (the same pooling
llama.cpp uses for a chat model), one input at a time so equal inputs give equal vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from app.providers.base import ChatChunk, TextRequest, UnsupportedError, Usage
from app.providers.fim import text_prompt_ids
from app.providers.hf_common import ensure_loaded, generation_budget
from app.providers.textstream import IncrementalDecoder, StopScanner, finish_text

if TYPE_CHECKING:
    from app.providers.hf_transformers import TransformersModel

def generate_text(model: TransformersModel, request: TextRequest,
                  cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Stream a raw completion; the last chunk has finish_reason and usage."""
    import torch

    from app.providers.hf_transformers import _Sampler

    ensure_loaded(model.model, model.model_id)
    ids = text_prompt_ids(model.tokenizer, model._tok_lock, model.model_id, request)
    budget = generation_budget(request.max_tokens, len(ids), model.context_length)
    sampler = _Sampler(request)  # type: ignore[arg-type] - same sampling fields
    decoder = IncrementalDecoder(model._decode)
    stops = StopScanner(request.stop)
    generated, finish = 0, "length"
    pending: list[dict[str, Any]] = []
    with torch.inference_mode():
        logits, cache = model._forward([ids])
        while budget is None or generated < budget:
            if cancelled.is_set():
                return
            token = sampler.pick(logits)
            generated += 1
            if token in model.eos_ids:
                finish = "stop"
                break
            if request.logprobs is not None:
                pending.append(_entry(model, logits, token, request.logprobs))
            text, hit = stops.feed(decoder.add(token))
            if text or pending:
                yield ChatChunk(text=text, logprobs=pending or None)
                pending = []
            if hit:
                finish = "stop"
                break
            if budget is not None and generated >= budget:
                break
            logits, cache = model._forward([[token]], cache)
    tail, finish = finish_text(decoder, stops, finish)
    yield ChatChunk(text=tail, finish_reason=finish, usage=Usage(len(ids), generated))


def _entry(model: TransformersModel, logits: Any, token: int, top: int) -> dict[str, Any]:
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(logp, min(top, logp.shape[-1])).indices.tolist() if top else []
    return {"token": model._decode([token]), "logprob": float(logp[token]),
            "top_logprobs": {model._decode([t]): float(logp[t]) for t in best}}


def embed_texts(model: TransformersModel, texts: list[str]) -> tuple[list[list[float]], int]:
    """Mean-pooled last hidden states, one vector (the model's width) per text."""
    import torch

    ensure_loaded(model.model, model.model_id)
    vectors, total = [], 0
    with torch.inference_mode():
        for i, text in enumerate(texts):
            with model._tok_lock:
                ids = list(model.tokenizer(text)["input_ids"])
            if model.context_length and len(ids) > model.context_length:
                raise UnsupportedError(f"input[{i}] is {len(ids)} tokens long; this model embeds "
                                       f"at most {model.context_length} tokens per input",
                                       param="input", code="context_length_exceeded")
            out = model.model(input_ids=torch.tensor([ids], device=model.device),
                              output_hidden_states=True, use_cache=False)
            vectors.append(out.hidden_states[-1][0].float().mean(dim=0).cpu().tolist())
            total += len(ids)
    return vectors, total
