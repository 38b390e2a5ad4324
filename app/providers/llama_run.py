"""The one llama.cpp completion loop, its error mapping, and llguidance's view of a vocab.

Chat (stock and planned) and raw completions all stream through :func:`stream_choices`:
llama-cpp-python reports bad requests as ``ValueError`` (400s here, the context overflow
with both lengths) and runtime failures as ``RuntimeError`` (500s); the stream is closed
however the loop ends, and it stops between tokens once ``cancelled`` is set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from app.providers.base import ProviderError, UnsupportedError

CTX_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")

LLGUIDANCE_HINT = ("constrained output on llama.cpp needs llguidance: pip install "
                   "llguidance==1.9.1 (or the app's [llama] extra)")


def map_llama_error(exc: Exception) -> ProviderError:
    """A llama-cpp-python exception as the error the client should see."""
    if isinstance(exc, RuntimeError):
        return ProviderError(f"llama.cpp failed: {exc}", code="runtime_error")
    match = CTX_EXCEEDED.search(str(exc))
    if match:
        prompt, limit = match.groups()
        error = ProviderError(
            f"The prompt is {prompt} tokens long, but this model's context window is {limit} "
            "tokens. Shorten the conversation, or load the model with a larger n_ctx.",
            status=400, code="context_length_exceeded", param="messages")
    else:
        error = ProviderError(f"llama.cpp rejected the request: {exc}", status=400,
                              code="invalid_request")
    error.error_type = "invalid_request_error"
    return error


def stream_choices(start: Callable[[], Iterator[dict[str, Any]]],
                   cancelled: threading.Event) -> Iterator[dict[str, Any]]:
    """``choices[0]`` of each streamed chunk of the call ``start`` makes (errors mapped)."""
    stream: Any = None
    try:
        stream = start()
        for chunk in stream:
            if cancelled.is_set():
                return
            yield chunk["choices"][0]
    except (ValueError, RuntimeError) as exc:
        raise map_llama_error(exc) from exc
    finally:
        if stream is not None and hasattr(stream, "close"):
            stream.close()


def end_of_generation_tokens(llm: Any) -> list[int]:
    """Every token that ends a generation (EOS, EOT, ``<|im_end|>`` ...)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return [i for i in range(int(llama_cpp.llama_vocab_n_tokens(vocab)))
            if llama_cpp.llama_vocab_is_eog(vocab, i)]


def lltokenizer(llm: Any) -> Any:
    """llguidance's tokenizer for a loaded model's vocabulary (~1 s for 150k tokens: cache it).

    It points into the model's vocabulary: drop it before the model is closed."""
    try:
        import llguidance.llamacpp
    except ImportError as exc:
        raise UnsupportedError(LLGUIDANCE_HINT) from exc
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return llguidance.llamacpp.lltokenizer_from_vocab(
        vocab, eos_token=end_of_generation_tokens(llm) or None)
