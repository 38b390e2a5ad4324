"""The tiny BPE GGUF: llama.cpp loads it, tokenizes text back exactly, in far fewer tokens than
the built-in tiny vocabulary, and generates clean text."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tinymodels.bpe import write_tiny_bpe_gguf

PROSE = ("You are an interactive agent that helps users with software engineering tasks. Use the "
         "instructions below and the tools available to you to assist the user.\n"
         '{"type": "object", "properties": {"file_path": {"type": "string", "description": '
         '"The absolute path to the file to read"}}, "required": ["file_path"]}\n'
         "def read(path: str) -> str:\n    return Path(path).read_text()\n") * 4


@pytest.fixture(scope="module")
def bpe_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bpe_gguf(tmp_path_factory.mktemp("bpe") / "tiny-bpe.gguf", vocab_size=4096)


def test_round_trip_and_fewer_tokens(bpe_gguf: Path, tiny_gguf: Path) -> None:
    import llama_cpp

    bpe = llama_cpp.Llama(model_path=str(bpe_gguf), n_ctx=2048, verbose=False)
    words = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, verbose=False, vocab_only=True)
    ids = bpe.tokenize(PROSE.encode(), add_bos=False, special=False)
    assert bpe.detokenize(ids).decode() == PROSE
    baseline = words.tokenize(PROSE.encode(), add_bos=False, special=False)
    assert len(ids) * 2 < len(baseline), (len(ids), len(baseline))

    out = bpe.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=12,
                                     temperature=0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 12
    text = choice["message"]["content"]
    assert text and "<|" not in text and "\ufffd" not in text
