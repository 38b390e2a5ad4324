"""A tiny GGUF whose tokenizer is a real byte-level BPE vocabulary (GPT-2 style, with merges).

The built-in tiny vocabulary (:mod:`app.tinymodels.gguf_model`) spells most text byte by byte,
so an agent's long prompt (Claude Code's ~76 KB, Codex's ~40 KB) becomes tens of thousands of
tokens, and prefill is quadratic.  A BPE trained with ``tokenizers`` on English prose and code
(here: Python standard library sources, read from this interpreter) needs about a quarter of
the tokens.  The GGUF carries it as ``tokenizer.ggml.model = gpt2`` with its merges, and the
model is *clean* as the other tiny models are: special tokens and tokens that are not whole
UTF-8 characters can never be sampled.

``write_tiny_bpe_gguf(path)`` trains (about a second for 8k tokens) and writes the file.
"""

from __future__ import annotations

import inspect
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.tinymodels.byte_level import bytes_to_unicode
from app.tinymodels.gguf_model import CHATML_TEMPLATE, write_tiny_gguf

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN = "<|im_end|>"
CORPUS_MODULES = ("argparse", "json.decoder", "textwrap", "dataclasses", "subprocess", "pathlib",
                  "logging", "unittest.case", "http.server", "email.message", "shutil", "typing",
                  "tarfile", "zipfile", "difflib", "inspect", "pydoc", "configparser", "asyncio.tasks",
                  "string", "tempfile", "glob", "fnmatch", "optparse", "urllib.request")
"""Standard library modules whose sources (English comments, docstrings and code) train the BPE."""


def corpus() -> Iterator[str]:
    """Training text: the sources of :data:`CORPUS_MODULES` (those this interpreter has)."""
    import importlib

    for name in CORPUS_MODULES:
        try:
            yield inspect.getsource(importlib.import_module(name))
        except (ImportError, OSError, TypeError):
            continue
    yield json.dumps({"type": "object", "properties": {"path": {"type": "string", "description": "x"}},
                      "required": ["path"], "additionalProperties": False}, indent=2)



def _whole_text(piece: str, byte_of: dict[str, int]) -> bool:
    """True when ``piece`` decodes to whole UTF-8 characters, none of them a control character."""
    try:
        text = bytes(byte_of[c] for c in piece).decode("utf-8")
    except (UnicodeDecodeError, KeyError):
        return False
    return not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text)


@dataclass
class BpeVocab:
    """A trained byte-level BPE in GGUF terms (see :class:`app.tinymodels.gguf_model.TinyVocab`)."""

    tokens: list[str]
    types: list[int]
    sampleable: list[bool]
    merges: list[str]
    eos_id: int
    bos_id: int

    def write_tokenizer(self, writer: Any) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        writer.add_token_merges(self.merges)
        writer.add_bos_token_id(self.bos_id)
        writer.add_eos_token_id(self.eos_id)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)


def train_bpe_vocab(vocab_size: int = 8192) -> BpeVocab:
    """Train the BPE on :func:`corpus` (deterministic for one Python version)."""
    from gguf import TokenType
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    tokens = [piece for piece, _ in by_id]
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    types = [int(TokenType.CONTROL if t in SPECIAL_TOKENS else TokenType.NORMAL) for t in tokens]
    sampleable = [t not in SPECIAL_TOKENS and _whole_text(t, byte_of) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    ids = {t: i for i, t in enumerate(tokens)}
    return BpeVocab(tokens, types, sampleable, merges, eos_id=ids[EOS_TOKEN], bos_id=ids["<|endoftext|>"])


def write_tiny_bpe_gguf(path: str | Path, *, vocab_size: int = 8192, context_length: int = 32768,
                        chat_template: str = CHATML_TEMPLATE, **kw: Any) -> Path:
    """Write a clean tiny llama GGUF with a trained BPE vocabulary; other options as
    :func:`~app.tinymodels.gguf_model.write_tiny_gguf`."""
    return write_tiny_gguf(Path(path), vocab=train_bpe_vocab(vocab_size), context_length=context_length,
                           chat_template=chat_template, **kw)
