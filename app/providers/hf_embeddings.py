"""Transformers embeddings (``/v1/embeddings``).

Embeddings are the last hidden states, mean-pooled over the input's tokens (the same pooling
llama.cpp uses for a chat model), one input at a time so equal inputs give equal vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.providers.base import UnsupportedError
from app.providers.hf_common import ensure_loaded

if TYPE_CHECKING:
    from app.providers.hf_transformers import TransformersModel


def embed_texts(model: TransformersModel, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
    """Mean-pooled last hidden states, one vector (the model's width) per text."""
    import torch

    ensure_loaded(model.model, model.model_id)
    vectors, total = [], 0
    with torch.inference_mode():
        for i, text in enumerate(texts):
            if isinstance(text, list):  # the model's own token ids
                vocab = len(model.tokenizer)
                bad = next((t for t in text if not 0 <= t < vocab), None)
                if bad is not None:
                    raise UnsupportedError(f"input[{i}] has token id {bad}, outside this model's "
                                           f"vocabulary (0..{vocab - 1})", param="input",
                                           code="invalid_value")
                ids = list(text)
            else:
                with model.tokenizer_lock:
                    ids = list(model.tokenizer(text)["input_ids"])
            if model.context_length and len(ids) > model.context_length:
                raise UnsupportedError(f"input[{i}] is {len(ids)} tokens long; this model embeds "
                                       f"at most {model.context_length} tokens per input",
                                       param="input", code="context_length_exceeded")
            with model.between_batch_steps():  # never during a batch step of the model's engine
                out = model.model(input_ids=torch.tensor([ids], device=model.device),
                                  output_hidden_states=True, use_cache=False)
            vectors.append(out.hidden_states[-1][0].float().mean(dim=0).cpu().tolist())
            total += len(ids)
    return vectors, total
