"""Incremental decoding, stop sequences and token steps, on a real byte-level BPE tokenizer."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.providers.base import ChatChunk, Usage
from app.providers.textstream import (
    GenerationEnd,
    IncrementalDecoder,
    StopScanner,
    chat_chunks,
    first_stop,
    text_chunks,
    token_steps,
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    importlib.import_module("transformers")
    from transformers import AutoTokenizer

    from app.tinymodels.hf_model import write_tiny_hf_llama

    folder: Path = write_tiny_hf_llama(tmp_path_factory.mktemp("tok") / "m")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _decode(tok: object) -> Callable[[Sequence[int]], str]:
    return lambda ids: tok.decode(list(ids), skip_special_tokens=True,  # type: ignore[attr-defined]
                                  clean_up_tokenization_spaces=False)


def test_multi_token_characters_are_never_split(tokenizer: object) -> None:
    # "€" (3 bytes) and "✓" fed one raw byte token at a time, between ordinary tokens.
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    byte_tokens = [vocab[c] for c in "âĤ¬"]  # GPT-2 byte chars for E2 82 AC
    ids = tokenizer("Hi ")["input_ids"] + byte_tokens + tokenizer(" and ✓ ok")["input_ids"]  # type: ignore[operator]
    dec = IncrementalDecoder(_decode(tokenizer))
    deltas = [dec.add(i) for i in ids]
    deltas.append(dec.flush())
    assert "".join(deltas) == _decode(tokenizer)(ids) == "Hi € and ✓ ok"
    assert not any("\ufffd" in d for d in deltas)
    assert deltas[len(tokenizer("Hi ")["input_ids"]) + 2] == "€"  # type: ignore[operator]
    assert sum(1 for d in deltas if d) >= 4


def test_incomplete_tail_is_flushed_as_replacement(tokenizer: object) -> None:
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    dec = IncrementalDecoder(_decode(tokenizer))
    assert dec.add(vocab["H"]) == "H"
    assert dec.add(vocab["â"]) == ""
    assert dec.flush() == "\ufffd"


@pytest.mark.parametrize(("deltas", "stops", "out", "hit"), [
    (["Hel", "lo wo", "rld"], ["o w"], "Hell", True),
    (["ab", "c", "d"], ["cd", "bc"], "a", True),  # earliest occurrence wins
    (["a<", "|en", "d|>b"], ["<|end|>"], "a", True),  # spans three deltas
    (["a<", "|x"], ["<|end|>"], "a<|x", False),  # a false start is released
    (["abc"], [], "abc", False),
    (["abc"], [""], "abc", False),
])
def test_stop_scanner(deltas: list[str], stops: list[str], out: str, hit: bool) -> None:
    scanner = StopScanner(stops)
    emitted, stopped = [], False
    for d in deltas:
        text, stopped = scanner.feed(d)
        emitted.append(text)
        for s in scanner.stops:
            assert s not in "".join(emitted)
        if stopped:
            break
    emitted.append(scanner.flush())
    assert "".join(emitted) == out and stopped is hit


# -- token steps to chunks (the loop the Transformers and MLX runtimes share) ---------------

def _run(tokenizer: object, text: str, *, eos: int | None = None, stop: list[str] | None = None,
         cancel_after: int | None = None, chat: bool = True) -> list[ChatChunk]:
    """Feed ``text``'s tokens (then ``eos``) through token_steps and the chat or text chunker."""
    ids = tokenizer(text)["input_ids"] + ([eos] if eos is not None else [])  # type: ignore[operator]
    cancelled = threading.Event()
    end = GenerationEnd(Usage(3, 0))

    def tokens() -> Generator[tuple[int, Any, bool]]:
        for n, token in enumerate(ids, 1):
            end.usage = Usage(3, n)
            if cancel_after is not None and n > cancel_after:
                cancelled.set()
            yield token, f"scores-{token}", token == eos

    steps = token_steps(tokens(), _decode(tokenizer), stop or [], cancelled, end)
    entry = (lambda s: {"token": s.token, "scores": s.scores})  # noqa: E731 - a tiny probe
    chunker = chat_chunks if chat else text_chunks
    return list(chunker(steps, end, entry))


def test_chat_chunks_carry_each_tokens_logprob_and_the_eos_one_last(tokenizer: object) -> None:
    eos = tokenizer.eos_token_id  # type: ignore[attr-defined]
    chunks = _run(tokenizer, "Hi there", eos=eos)
    assert "".join(c.text for c in chunks) == "Hi there"
    n = len(tokenizer("Hi there")["input_ids"])  # type: ignore[operator]
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("stop", Usage(3, n + 1))  # EOS counts
    entries = [e for c in chunks for e in (c.logprobs or [])]
    assert [e["token"] for e in entries] == [*tokenizer("Hi there")["input_ids"], eos]  # type: ignore[operator]
    assert chunks[-1].logprobs == [{"token": eos, "scores": f"scores-{eos}"}]


def test_text_chunks_leave_the_eos_token_out(tokenizer: object) -> None:
    eos = tokenizer.eos_token_id  # type: ignore[attr-defined]
    chunks = _run(tokenizer, "Hi there", eos=eos, chat=False)
    entries = [e["token"] for c in chunks for e in (c.logprobs or [])]
    assert entries == tokenizer("Hi there")["input_ids"]  # type: ignore[operator]
    assert chunks[-1].finish_reason == "stop" and not chunks[-1].logprobs


def test_a_stop_string_ends_the_steps_and_the_budget_says_length(tokenizer: object) -> None:
    stopped = _run(tokenizer, "one two three four", stop=[" three"])
    assert "".join(c.text for c in stopped) == "one two"
    assert stopped[-1].finish_reason == "stop" and stopped[-1].stop_sequence == " three"
    assert stopped[-1].usage == Usage(3, len(tokenizer("one two three")["input_ids"]))  # type: ignore[operator]
    ran_out = _run(tokenizer, "one two")
    assert ("".join(c.text for c in ran_out), ran_out[-1].finish_reason) == ("one two", "length")
    assert ran_out[-1].stop_sequence is None


@pytest.mark.parametrize(("text", "stops", "found"), [
    ("abcd", ["cd", "bc"], (1, "bc")),  # the earliest occurrence
    ("abcd", ["b", "bcd", "bc"], (1, "bcd")),  # the longest of those starting there
    ("abcd", ["x", ""], None),
])
def test_first_stop_names_the_stop_string(text: str, stops: list[str],
                                          found: tuple[int, str] | None) -> None:
    assert first_stop(text, stops) == found
    scanner = StopScanner(stops)
    scanner.feed(text)
    assert scanner.matched == (found[1] if found else None)


def test_a_cancelled_generation_ends_without_a_last_chunk(tokenizer: object) -> None:
    chunks = _run(tokenizer, "one two three four five", cancel_after=2)
    assert len(chunks) <= 2 and all(c.finish_reason is None for c in chunks)
