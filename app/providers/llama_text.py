"""llama.cpp raw completions (``/v1/completions``, with fill-in-the-middle) and embeddings.

Both run under the model's lock (see :class:`~app.providers.local.LocalChatModel`).

- Fill-in-the-middle needs the GGUF's FIM tokens (``tokenizer.ggml.fim_pre/suf/mid``); the
  prompt is built here as ``<pre>prefix<suf>suffix<mid>`` (llama-cpp-python 0.3's own
  ``suffix`` handling uses token 0 instead of the model's tokens).  A model without them
  answers 400.
- ``logprobs`` need the row option ``logits_all: true`` (llama.cpp then keeps logits for
  every position, which costs memory); without it the request is a 400 that says so.
- Embeddings come from a second ``Llama(embedding=True)`` on the same file, created on first
  use and freed with the model.  It pools as the GGUF says, or by mean when the file names
  no pooling (a chat model's hidden states, averaged).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from app.providers.base import ChatChunk, ProviderError, TextRequest, Usage
from app.providers.fim import no_fim_error
from app.providers.llama_run import stream_choices
from app.providers.logprobs import logprob_entries

EMBED_MAX_CTX = 4096
"""The embedding instance's context (and batch): the longest input it accepts, in tokens."""


def fim_tokens(llm: Any) -> tuple[int, int, int] | None:
    """The model's (prefix, suffix, middle) FIM token ids, or None if it has none."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ids = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
           llama_cpp.llama_vocab_fim_mid(vocab))
    return None if any(i < 0 for i in ids) else (int(ids[0]), int(ids[1]), int(ids[2]))


def text_prompt(llm: Any, model_id: str, request: TextRequest) -> str | list[int]:
    """The prompt as llama-cpp-python takes it: a string, or FIM tokens when there is a suffix."""
    if request.suffix is None:
        return request.prompt
    ids = fim_tokens(llm)
    if ids is None:
        raise no_fim_error(model_id)
    pre, suf, mid = ids

    def tok(text: str) -> list[int]:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else []

    bos = [llm.token_bos()] if llm._model.add_bos_token() and llm.token_bos() >= 0 else []
    return [*bos, pre, *tok(request.prompt), suf, *tok(request.suffix), mid]


def generate_text(llm: Any, prompt: str | list[int], kwargs: dict[str, Any],
                  cancelled: threading.Event, usage: Callable[[], Usage]) -> Iterator[ChatChunk]:
    """Stream a raw completion; the last chunk has finish_reason and ``usage()``."""
    finish = None
    for choice in stream_choices(
            lambda: llm.create_completion(prompt=prompt, stream=True, **kwargs), cancelled):
        finish = choice.get("finish_reason") or finish
        entries = logprob_entries(choice.get("logprobs"))
        if choice.get("text") or entries:
            yield ChatChunk(text=choice.get("text") or "", logprobs=entries)
    if not cancelled.is_set():
        yield ChatChunk(finish_reason=finish or "stop", usage=usage())


class LlamaEmbedder:
    """The embedding-mode instance of a chat model's file (created on first use)."""

    def __init__(self) -> None:
        self.instance: Any = None

    def _open(self, llm: Any) -> Any:
        if self.instance is not None:
            return self.instance
        import llama_cpp

        arch = llm.metadata.get("general.architecture", "")
        own_pooling = f"{arch}.pooling_type" in llm.metadata
        n_ctx = min(int(llm.n_ctx()), EMBED_MAX_CTX)
        try:
            self.instance = llama_cpp.Llama(
                model_path=llm.model_path, embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                n_ubatch=n_ctx, n_gpu_layers=int(llm.model_params.n_gpu_layers), verbose=False,
                n_threads=int(llm.context_params.n_threads),
                n_threads_batch=int(llm.context_params.n_threads_batch),
                pooling_type=(llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if own_pooling
                              else llama_cpp.LLAMA_POOLING_TYPE_MEAN))
        except (ValueError, RuntimeError, OSError) as exc:
            raise ProviderError(f"llama.cpp could not open {llm.model_path} for embeddings: "
                                f"{exc}", code="model_load_failed", status=503) from exc
        return self.instance

    def embed(self, llm: Any, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """One pooled vector per input (text, or token ids of this vocabulary: see
        :func:`token_text`), the model's width, and the tokens read."""
        emb = self._open(llm)
        limit = int(emb.n_ctx())
        texts = [t if isinstance(t, str) else token_text(emb, t, i) for i, t in enumerate(inputs)]
        for i, text in enumerate(texts):
            n = len(emb.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if n > limit:
                raise ProviderError(f"input[{i}] is {n} tokens long; this model embeds at most "
                                    f"{limit} tokens per input", status=400,
                                    code="context_length_exceeded", param="input")
        vectors: list[list[float]] = []
        total = 0
        for text in texts:  # one at a time: batching sequences changes nothing but memory
            out, count = emb.embed([text], return_count=True)
            vectors.append([float(x) for x in out[0]])
            total += int(count)
        return vectors, total

    def close(self) -> None:
        """Free the embedding instance, if one was made."""
        if self.instance is not None:
            self.instance.close()
            self.instance = None


def token_text(llm: Any, ids: list[int], index: int) -> str:
    """Token-id input -> the text those ids of this model's vocabulary spell, which is embedded
    (the spelling the tokenizer reads back as exactly ``ids`` where there is one: a SentencePiece
    vocabulary spells a leading word piece with the space it adds itself)."""
    vocab = int(llm.n_vocab())
    bad = next((t for t in ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise ProviderError(f"input[{index}] has token id {bad}, outside this model's vocabulary "
                            f"(0..{vocab - 1})", status=400, code="invalid_value", param="input")
    text = llm.detokenize(ids).decode("utf-8", errors="replace")
    for candidate in (text, text[1:]) if text.startswith(" ") else (text,):
        if llm.tokenize(candidate.encode("utf-8"), add_bos=False, special=False) == ids:
            return candidate
    return text
