"""The tiny GGUF writer: the file's layout, and a clean model never sampling banned tokens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.providers.base import ChatMessage, ChatRequest
from app.providers.gguf_info import GGUFFormatError, read_gguf_metadata, trained_context_length
from app.providers.llama_cpp import LlamaCppProvider
from app.tinymodels.gguf_model import CHATML_TEMPLATE, DEFAULT_PIECES, build_vocab, write_tiny_gguf

HOT = ChatRequest(messages=[ChatMessage("user", "hello")], temperature=2.0, max_tokens=300, seed=3,
                  extra={"top_k": 0, "min_p": 0.0})  # sample from the whole distribution


def test_vocab_layout() -> None:
    tokens, scores, types, sampleable = build_vocab(DEFAULT_PIECES)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    assert tokens[259:261] == ["<|im_start|>", "<|im_end|>"]
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == len(sampleable)
    assert not any(sampleable[:261])
    assert "\u2581river" in tokens and sampleable[tokens.index("\u2581river")]
    assert "\u2581riv" in tokens and not sampleable[tokens.index("\u2581riv")]  # fragment: tokenizer only


def test_metadata_is_readable_without_the_runtime(tiny_gguf: Path) -> None:
    meta = read_gguf_metadata(tiny_gguf, ["general.architecture", "tokenizer.chat_template",
                                          "tokenizer.ggml.eos_token_id"])
    assert meta == {"general.architecture": "llama", "tokenizer.chat_template": CHATML_TEMPLATE,
                    "tokenizer.ggml.eos_token_id": 2}
    assert trained_context_length(tiny_gguf) == 512
    assert len(read_gguf_metadata(tiny_gguf)["tokenizer.ggml.tokens"]) == len(build_vocab(DEFAULT_PIECES)[0])


def test_reading_a_non_gguf_file_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGML" + bytes(20))
    with pytest.raises(GGUFFormatError, match="not a GGUF"):
        read_gguf_metadata(bad)


def test_clean_model_never_samples_special_byte_or_fragment_tokens(tiny_gguf: Path) -> None:
    # One sequence (parallel 1): the runtime's own record of every sampled token is read below.
    model = LlamaCppProvider().load(LlamaCppProvider.row_for(str(tiny_gguf), parallel=1))
    try:
        result = asyncio.run(model.complete(HOT))
        sampleable = build_vocab(DEFAULT_PIECES)[3]
        sampled = model.llm.last_tokens
        assert len(sampled) == 300 and result.usage.completion_tokens == 300
        assert all(sampleable[t] for t in sampled)
        assert len(set(sampled)) > 50  # really sampling, not stuck on one token
        assert result.finish_reason == "length" and result.text.isascii()
    finally:
        model.close()


def test_float16_with_grouped_kv_heads_loads_and_runs(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "f16.gguf", hidden=128, heads=8, kv_heads=2, ff=256,
                           n_layers=3, dtype="float16", context_length=1024, seed=5)
    meta = read_gguf_metadata(path, ["general.file_type", "llama.attention.head_count_kv"])
    assert meta == {"general.file_type": 1, "llama.attention.head_count_kv": 2}
    model = LlamaCppProvider().load(LlamaCppProvider.row_for(str(path)))
    try:
        assert model.context_length == 1024
        result = asyncio.run(model.complete(HOT))
        assert result.usage.completion_tokens == 300 and result.text.strip()
    finally:
        model.close()


def test_same_seed_same_bytes_and_bad_arguments(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=1)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=1)
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    with pytest.raises(ValueError, match="dtype"):
        write_tiny_gguf(tmp_path / "d.gguf", dtype="bfloat16")
    with pytest.raises(ValueError, match="divisible"):
        write_tiny_gguf(tmp_path / "e.gguf", hidden=60, heads=8)
