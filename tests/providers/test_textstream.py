"""Incremental decoding and stop sequences, on a real byte-level BPE tokenizer."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from app.providers.textstream import IncrementalDecoder, StopScanner


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
