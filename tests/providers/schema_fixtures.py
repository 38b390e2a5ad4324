"""Helpers for the schema-to-constraints tests: llguidance's tokenizer for the tiny GGUF and a
random walk through a grammar (what a random-weight model does, without the model)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.providers.constraints import Matcher, json_source, schema_grammar
from app.providers.schema_vet import vet_schema


@pytest.fixture(scope="session")
def gguf_lltokenizer(tiny_gguf: Path) -> Iterator[Any]:
    """llguidance's tokenizer built from the tiny GGUF's vocabulary, as llama.cpp rows use it
    (it points into the vocabulary: the model stays open while it is used)."""
    import llama_cpp

    from app.providers.llama_run import lltokenizer

    llm = llama_cpp.Llama(model_path=str(tiny_gguf), vocab_only=True, verbose=False)
    yield lltokenizer(llm)
    llm.close()


CLOSERS = {'"', "}", "]", ","}


_ENDERS: dict[int, Any] = {}


def _enders(lltok: Any, eos: frozenset[int]) -> Any:
    """A boolean array: the tokens that end something (EOS or one of :data:`CLOSERS`)."""
    import numpy as np

    if id(lltok) not in _ENDERS:
        n = int(lltok.vocab_size)
        _ENDERS[id(lltok)] = np.array([t in eos or lltok.decode_str([t]) in CLOSERS
                                       for t in range(n)], dtype=bool)
    return _ENDERS[id(lltok)]


def random_walk(matcher: Matcher, lltok: Any, rnd: random.Random, steps: int) -> tuple[str, bool]:
    """Sample allowed tokens, a quarter of the time one that ends something (EOS, a quote,
    a bracket) when one is allowed; (text, reached the end of the grammar)."""
    import numpy as np

    out: list[int] = []
    eos = set(lltok.eos_tokens() if callable(lltok.eos_tokens) else lltok.eos_tokens)
    ender = _enders(lltok, frozenset(eos))
    for _ in range(steps):
        allowed = matcher.allowed()
        ids = np.nonzero(allowed)[0]
        assert len(ids), "the grammar allowed no token at all"
        enders = np.nonzero(allowed & ender[: len(allowed)])[0]
        pool = enders if len(enders) and rnd.random() < 0.25 else ids
        token = int(pool[rnd.randrange(len(pool))])
        if token in eos:
            return lltok.decode_str(out), True
        matcher.consume(token)
        out.append(token)
    return lltok.decode_str(out), False


def compile_and_walk(schema: Any, lltok: Any, seed: int = 0, steps: int = 40) -> tuple[str, bool, float]:
    """Vet, prepare, compile and walk ``schema``; (text, finished, worst mask seconds)."""
    grammar = schema_grammar(vet_schema(schema, param="response_format"), "response_format")
    matcher = Matcher(lltok, json_source(grammar), "response_format")
    started = time.monotonic()
    text, done = random_walk(matcher, lltok, random.Random(seed), steps)
    assert time.monotonic() - started < 5
    return text, done, matcher.worst_mask_s
