"""Fill-in-the-middle prompts for the Hugging Face-format runtimes (Transformers, MLX).

The prompt is ``<prefix>PREFIX<suffix>SUFFIX<middle>`` with the first of the usual FIM token
sets (:data:`FIM_SETS`) the tokenizer knows; a model without one answers 400
(:func:`no_fim_error`, also used by llama.cpp, which reads its FIM tokens from the GGUF).
"""

from __future__ import annotations

import threading
from typing import Any

from app.providers.base import TextRequest, UnsupportedError

FIM_SETS = (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
            ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
            ("<PRE>", "<SUF>", "<MID>"))


def fim_ids(tokenizer: Any) -> tuple[int, int, int] | None:
    """(prefix, suffix, middle) token ids of the first FIM set the tokenizer knows."""
    vocab = tokenizer.get_vocab()
    for names in FIM_SETS:
        if all(n in vocab for n in names):
            return vocab[names[0]], vocab[names[1]], vocab[names[2]]
    return None


def no_fim_error(model_id: str) -> UnsupportedError:
    """The 400 for a ``suffix`` sent to a model without fill-in-the-middle tokens."""
    return UnsupportedError(f"model {model_id} has no fill-in-the-middle tokens, so "
                            "'suffix' is not supported; send the prompt without a suffix",
                            param="suffix")


def text_prompt_ids(tokenizer: Any, lock: threading.Lock, model_id: str,
                    request: TextRequest) -> list[int]:
    """The prompt's tokens (BOS as the tokenizer adds it), FIM-framed when there is a suffix.

    ``tokenizer`` is a Hugging Face tokenizer, used only while holding ``lock``.
    """
    with lock:
        if request.suffix is None:
            return list(tokenizer(request.prompt)["input_ids"])
        ids = fim_ids(tokenizer)
        if ids is None:
            raise no_fim_error(model_id)
        pre, suf, mid = ids

        def enc(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

        return [pre, *enc(request.prompt), suf, *enc(request.suffix), mid]
