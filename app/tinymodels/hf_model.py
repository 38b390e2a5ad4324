"""A tiny random-weight Llama in Hugging Face format, built in about a second.

The folder (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, ``generation_config.json``) loads in Transformers
(``AutoModelForCausalLM`` + ``AutoTokenizer``) and in mlx-lm (``mlx_lm.load``), so the same
contract tests run on both runtimes.  Nothing is downloaded.

Random models emit any token, which makes tests flaky: special tokens (EOS) and byte
tokens that are not whole UTF-8 characters are made impossible to sample.  One hidden
channel carries a constant through every layer (its embedding column is 1 and its rows in
the attention-output and MLP-down projections are 0); the output head puts a large negative
weight on that channel for the banned tokens.  ``force_eos=True`` instead makes EOS the
certain next token, to test a natural ``finish_reason == "stop"``.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

from app.tinymodels.byte_level import bytes_to_unicode

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML, as used by many instruct models."""

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN = "<|im_end|>"

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A tiny model says hello to the world.
Tater is a tray app that serves a local chat API. It runs llama, MLX and Transformers.
Hello! How are you today? I am fine, thank you. What is the weather like in Paris?
The cat sat on the mat. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2026.
Stream tokens as they are produced; stop when the stop sequence appears.
Café, naïve, déjà vu, 東京, €, ✓ — unicode words live here too.
def add(a, b):\n    return a + b\n{"key": "value", "list": [1, 2, 3]}
user assistant system tool message content role
"""

_CONST_CHANNEL = 0
_BAN_WEIGHT = -50.0


def _build_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE on the in-code corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok


def _banned_ids(tok: Any) -> list[int]:
    """Special tokens and tokens whose bytes are not whole UTF-8 characters."""
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    banned = []
    for piece, idx in tok.get_vocab().items():
        if piece in SPECIAL_TOKENS:
            banned.append(idx)
            continue
        try:
            text = bytes(byte_of[c] for c in piece).decode("utf-8")
        except (UnicodeDecodeError, KeyError):
            banned.append(idx)
            continue
        if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
            banned.append(idx)
    return sorted(banned)



def write_tiny_hf_llama(folder: str | Path, *, seed: int = 0, vocab_size: int = 512,
                        hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                        intermediate_size: int = 128, context_length: int = 1024,
                        force_eos: bool = False) -> Path:
    """Write a tiny random Llama (+ tokenizer with a ChatML template) to ``folder``.

    The same ``seed`` gives byte-identical weights.  See the module docstring for how
    special/byte tokens are banned (or EOS forced).  Returns the folder.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer(vocab_size)
    eos_id = tok.token_to_id(EOS_TOKEN)
    pad_id = tok.token_to_id("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden_size,
        intermediate_size=intermediate_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=context_length, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, initializer_range=0.2, bos_token_id=None, eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    _shape_output(model, _banned_ids(tok), eos_id, force_eos)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out, safe_serialization=True)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = context_length
    fast.save_pretrained(out)
    _normalise_tokenizer_config(out)
    return out


def _shape_output(model: Any, banned: list[int], eos_id: int, force_eos: bool) -> None:
    """Make banned tokens impossible (or EOS certain) via a constant hidden channel."""
    import torch

    c = _CONST_CHANNEL
    with torch.no_grad():
        inner = model.model
        inner.embed_tokens.weight[:, c] = 1.0
        inner.norm.weight[c] = 10.0  # the channel dominates the head whatever the other weights
        for layer in inner.layers:
            layer.self_attn.o_proj.weight[c, :] = 0.0
            layer.mlp.down_proj.weight[c, :] = 0.0
        head = model.lm_head.weight
        head[:, c] = 0.0
        head[banned, c] = _BAN_WEIGHT
        if force_eos:
            head[eos_id, c] = -_BAN_WEIGHT


def _normalise_tokenizer_config(folder: Path) -> None:
    """Make tokenizer_config.json explicit for every loader (Transformers and mlx-lm)."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["eos_token"] = EOS_TOKEN
    cfg["chat_template"] = CHATML_TEMPLATE
    cfg["clean_up_tokenization_spaces"] = False
    cfg.setdefault("bos_token", None)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    # Some loaders read the template only from chat_template.jinja; keep one source of truth.
    (folder / "chat_template.jinja").unlink(missing_ok=True)
