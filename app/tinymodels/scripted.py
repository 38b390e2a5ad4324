"""Scripted tiny models: greedy decoding writes a chosen text after the prompt, then ends.

One spec builds the same model in both formats: a GGUF file for llama.cpp and a Hugging Face
folder that loads in Transformers and in mlx-lm.  Tests use it to drive the real runtimes
through exact replies (``"<think>plan</think>Hello"``, a text then a Hermes tool call, a
harmony reply ...) whatever the prompt, including prompts of tens of thousands of tokens.

How it works: the next token depends on the last token only.

- Each script is cut into *chunks* (word-like pieces, each glued to the next one when it
  already occurs in any script), so every chunk string is unique across all scripts and is one
  token of the vocabulary.  The script's tokens form a chain: chunk k is followed by chunk k+1,
  the last chunk by an end token (EOS by default).
- A script starts after its *trigger*: the exact text a rendered prompt ends with (e.g.
  ``"<|im_start|>assistant\\n"``).  Each trigger is one special token of the vocabulary, matched
  leftmost-longest by both tokenizers, so the prompt's last token tells which script to play.
  Two triggers can share a tail: ``"</tool_response><|im_end|>\\n<|im_start|>assistant\\n"``
  (a reply after a tool result) wins over ``"<|im_start|>assistant\\n"`` (a reply to the user).
  The trigger ``""`` is the catch-all: any other last token plays that script (without one,
  any other last token gives EOS at once).
- Weights: a one-layer Llama whose attention and MLP write nothing (their output projections
  are zero), so the residual stream is the token's embedding: a one-hot "state" vector.  The
  output head is the transition table: logit 30 for the state's successor, 0 for every other
  token.  Attention is one head of width 8, so a 50k-token prompt costs little.

The tokenizer is a byte-level BPE trained on an in-code corpus (so any prompt tokenizes), plus
the chunks as plain vocabulary entries (the model emits them; the prompt never needs them) and
the special tokens.  Chunks never equal a ``<|...|>`` marker on their own, because llama.cpp
turns tokens spelled like known end markers (``<|end|>``, ``<|return|>`` ...) into
end-of-generation tokens whatever their type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.tinymodels.byte_level import bytes_to_unicode

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Special tokens every scripted vocabulary has (``<|im_end|>`` is the default EOS)."""

USER_TURN = "<|im_start|>assistant\n"
"""Trigger: a ChatML generation prompt (the reply to a user message)."""

TOOL_RESULT_TURN = "</tool_response><|im_end|>\n<|im_start|>assistant\n"
"""Trigger: the generation prompt right after a Hermes-style tool result (see
:data:`HERMES_TEMPLATE`), longer than :data:`USER_TURN` so it wins where both match."""

HERMES_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{ '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{%- endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'assistant' %}"
    "{{ '<|im_start|>assistant' }}{%- if message.content %}{{ '\\n' + message.content }}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}{{ '\\n<tool_call>\\n{\"name\": \"' "
    "+ call.function.name + '\", \"arguments\": ' + (call.function.arguments if "
    "call.function.arguments is string else call.function.arguments | tojson) + '}\\n</tool_call>' }}"
    "{%- endfor %}{{ '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
    "{{ '<|im_start|>user' }}{%- endif %}"
    "{{ '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if think_opener %}{{ '<think>\\n' }}{%- endif %}{%- endif %}"
)
"""ChatML with Hermes / Qwen tools (tool list in the system turn, ``<tool_call>`` blocks, tool
results as ``<tool_response>`` in a user turn).  Use :func:`hermes_template` to get it with the
``<think>`` opener switched on (Qwen3-thinking / DeepSeek-R1 style generation prompt)."""


def hermes_template(*, think_opener: bool = False) -> str:
    """:data:`HERMES_TEMPLATE`, optionally opening ``<think>`` in the generation prompt."""
    value = "true" if think_opener else "false"
    return "{%- set think_opener = " + value + " %}" + HERMES_TEMPLATE


@dataclass(frozen=True)
class Script:
    """A reply: ``text`` then ``end`` (a special token; None = the model's EOS)."""

    text: str
    end: str | None = None


_PIECE = re.compile(r"<\|[^|\s]{0,40}\|>|<｜[^｜]{0,40}｜>|</?[A-Za-z_][\w\-]{0,40}>|\[[A-Z_]{1,40}\]"
                    r"| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9<\[]+|[<\[]|\s+")
_MARKER = re.compile(r"<\|[^|]*\|>|<｜[^｜]*｜>")

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A tiny model says hello to the world.
You are a helpful assistant. You are a coding agent running in a terminal on the user's machine.
Read the files, run the tests, and make the smallest change that fixes the problem.
Use the tools when they help: read a file, write a file, run a shell command, search the code.
The user asked a question about the weather in Paris; answer it with the facts you have.
def add(a, b):\n    return a + b\n\nclass Agent:\n    def __init__(self, name: str) -> None:
        self.name = name\n\nimport os\nimport sys\nfrom pathlib import Path\n
{"type": "object", "properties": {"path": {"type": "string", "description": "The file path"}},
"required": ["path"], "additionalProperties": false}
{"name": "get_time", "arguments": {"city": "Paris"}} function parameters description
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2026. Unicode: café, naïve, 東京, €, ✓.
system user assistant tool message content role reasoning thinking answer result error
if else for while return true false null none string number integer boolean array object
"""

AUTO_EOG_SPELLINGS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<|return|>", "<|call|>",
    "<｜end▁of▁sentence｜>",
})
"""Token spellings llama.cpp treats as end-of-generation whatever their declared type."""

HEAD_DIM = 8
LOGIT = 30.0


@dataclass
class ScriptedModel:
    """The vocabulary and transition table of a scripted model, ready to write out."""

    tokenizer_json: str
    tokens: list[str]
    special_ids: set[int]
    eos_id: int
    end_ids: list[int]
    successor: dict[int, int]
    state_of: dict[int, int]
    n_states: int
    chat_template: str
    eos_token: str
    chunks: dict[str, list[str]] = field(default_factory=dict)
    context_length: int = 131072

    @property
    def hidden(self) -> int:
        """Width of the residual stream: one channel per state, padded to a multiple of 32."""
        return -(-self.n_states // 32) * 32

    def weights(self) -> dict[str, Any]:
        """HF-named float32 arrays (numpy shapes are (out, in))."""
        import numpy as np

        n_vocab, hidden, ff = len(self.tokens), self.hidden, HEAD_DIM
        emb = np.zeros((n_vocab, hidden), np.float32)
        for tid in range(n_vocab):
            emb[tid, self.state_of.get(tid, 0)] = 1.0
        head = np.zeros((n_vocab, hidden), np.float32)
        # RMSNorm scales a one-hot vector by sqrt(hidden): the successor's logit is LOGIT.
        for state, nxt in self.successor.items():
            head[nxt, state] = LOGIT / np.sqrt(hidden)
        zeros = np.zeros
        p = "model.layers.0."
        return {
            "model.embed_tokens.weight": emb,
            p + "input_layernorm.weight": np.ones(hidden, np.float32),
            p + "self_attn.q_proj.weight": zeros((HEAD_DIM, hidden), np.float32),
            p + "self_attn.k_proj.weight": zeros((HEAD_DIM, hidden), np.float32),
            p + "self_attn.v_proj.weight": zeros((HEAD_DIM, hidden), np.float32),
            p + "self_attn.o_proj.weight": zeros((hidden, HEAD_DIM), np.float32),
            p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
            p + "mlp.gate_proj.weight": zeros((ff, hidden), np.float32),
            p + "mlp.up_proj.weight": zeros((ff, hidden), np.float32),
            p + "mlp.down_proj.weight": zeros((hidden, ff), np.float32),
            "model.norm.weight": np.ones(hidden, np.float32),
            "lm_head.weight": head,
        }


def split_script(text: str, taken: set[str], forbidden: set[str]) -> list[str]:
    """Cut ``text`` into chunks not in ``taken`` (updated) nor ``forbidden``; they join to ``text``."""
    pieces = _PIECE.findall(text)
    if "".join(pieces) != text:  # pragma: no cover - the pattern covers every character
        raise AssertionError("script pieces do not cover the text")
    glued: list[str] = []
    carry = ""
    for piece in pieces:
        carry += piece
        if _MARKER.fullmatch(carry):
            continue  # a bare <|marker|> never stands alone (see the module docstring)
        glued.append(carry)
        carry = ""
    if carry:
        if glued:
            glued[-1] += carry
        else:
            glued.append(carry)
    chunks: list[str] = []
    i = 0
    while i < len(glued):
        current = glued[i]
        i += 1
        while current in taken or current in forbidden or _MARKER.fullmatch(current):
            if i < len(glued):
                current += glued[i]
                i += 1
            elif chunks:
                prev = chunks.pop()
                taken.discard(prev)
                current = prev + current
            else:
                raise ValueError(f"cannot cut {text!r} into chunks unique across the scripts")
        taken.add(current)
        chunks.append(current)
    return chunks


def build_scripted(scripts: Mapping[str, str | Script], *, chat_template: str,
                   eos_token: str = "<|im_end|>", special_tokens: Sequence[str] = (),
                   context_length: int = 131072) -> ScriptedModel:
    """The vocabulary and transition table for ``scripts`` (trigger -> reply).

    ``special_tokens`` adds control tokens (e.g. a family's markers, or the ``end`` tokens of
    :class:`Script` replies).  Raises ValueError for a script that uses a trigger or special
    token as text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    replies = {t: (s if isinstance(s, Script) else Script(s)) for t, s in scripts.items()}
    ends = [r.end for r in replies.values() if r.end]
    specials = list(dict.fromkeys([*CHATML_SPECIALS, eos_token, *special_tokens, *ends,
                                   *(t for t in replies if t)]))
    for trigger, reply in replies.items():
        for sp in specials:
            if sp in reply.text:
                raise ValueError(f"script for {trigger!r} contains the special token {sp!r}")

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer_tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    trainer_tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    spec = json.loads(trainer_tok.to_str())

    # Chunks, unique across all scripts; identical replies share one chain.
    taken: set[str] = set()
    chains: dict[Script, list[str]] = {}
    forbidden = set(specials) | AUTO_EOG_SPELLINGS
    for reply in replies.values():
        if reply not in chains:
            chains[reply] = split_script(reply.text, taken, forbidden) if reply.text else []

    vocab: dict[str, int] = spec["model"]["vocab"]
    byte_encode = bytes_to_unicode()
    for chunk in taken:
        encoded = "".join(byte_encode[b] for b in chunk.encode("utf-8"))
        vocab.setdefault(encoded, len(vocab))
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokens = [""] * len(vocab)
    for piece, idx in vocab.items():
        tokens[idx] = piece
    if "" in tokens:  # pragma: no cover - ids are dense by construction
        raise AssertionError("vocabulary ids are not dense")

    def tid(text: str) -> int:
        encoded = "".join(byte_encode[b] for b in text.encode("utf-8"))
        return vocab[text] if text in specials else vocab[encoded]

    eos_id = tid(eos_token)
    state_of: dict[int, int] = {}
    successor: dict[int, int] = {}

    def state(token_id: int) -> int:
        if token_id not in state_of:
            state_of[token_id] = len(state_of) + 1  # state 0: every other token
        return state_of[token_id]

    for trigger, reply in replies.items():
        chain = [tid(c) for c in chains[reply]]
        end = tid(reply.end) if reply.end else eos_id
        start = 0 if trigger == "" else state(tid(trigger))
        successor[start] = chain[0] if chain else end
        for a, b in zip(chain, [*chain[1:], end], strict=True):
            if successor.get(state(a), b) != b:  # pragma: no cover - chunks are unique
                raise AssertionError("conflicting successors")
            successor[state(a)] = b
    successor.setdefault(0, eos_id)
    return ScriptedModel(
        tokenizer_json=tokenizer.to_str(), tokens=tokens,
        special_ids={vocab[s] for s in specials}, eos_id=eos_id,
        end_ids=sorted({eos_id, *(tid(e) for e in ends)}), successor=successor,
        state_of=state_of, n_states=len(state_of) + 1, chat_template=chat_template,
        eos_token=eos_token, chunks={t: chains[r] for t, r in replies.items()},
        context_length=context_length)


def write_hf(model: ScriptedModel, folder: str | Path) -> Path:
    """Write the Hugging Face folder (Transformers and mlx-lm load it); return it."""
    from safetensors.numpy import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    hidden = model.hidden
    eos = model.end_ids if len(model.end_ids) > 1 else model.eos_id
    pad = model.tokens.index("<|endoftext|>")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": len(model.tokens), "hidden_size": hidden, "intermediate_size": HEAD_DIM,
        "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
        "head_dim": HEAD_DIM, "max_position_embeddings": model.context_length,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": None, "eos_token_id": eos, "pad_token_id": pad,
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"do_sample": False, "eos_token_id": eos, "pad_token_id": pad}, indent=2))
    save_file(model.weights(), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_text(model.tokenizer_json)
    specials = [model.tokens[i] for i in sorted(model.special_ids)]
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": model.eos_token,
        "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None,
        "additional_special_tokens": [s for s in specials
                                      if s not in (model.eos_token, "<|endoftext|>")],
        "chat_template": model.chat_template, "clean_up_tokenization_spaces": False,
        "model_max_length": model.context_length,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    return out


def write_gguf(model: ScriptedModel, path: str | Path, *, name: str = "tater-scripted") -> Path:
    """Write the GGUF file (llama.cpp loads it); return its path."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = model.hidden
    spec = json.loads(model.tokenizer_json)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    types = [int(gguf.TokenType.CONTROL) if i in model.special_ids else int(gguf.TokenType.NORMAL)
             for i in range(len(model.tokens))]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_context_length(model.context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(HEAD_DIM)
    writer.add_head_count(1)
    writer.add_head_count_kv(1)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(model.tokens))
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(model.tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(model.tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(model.eos_id)
    writer.add_pad_token_id(model.tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(model.chat_template)
    renames = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
        "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
        "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
        "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
        "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
        "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
        "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
        "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
        "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for hf_name, arr in model.weights().items():
        writer.add_tensor(renames[hf_name], arr)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


@dataclass(frozen=True)
class ScriptedFiles:
    """Where :func:`write_scripted` put the model: a GGUF file and a Hugging Face folder."""

    gguf: Path
    hf: Path
    model: ScriptedModel


def write_scripted(folder: str | Path, scripts: Mapping[str, str | Script], *,
                   chat_template: str | None = None, eos_token: str = "<|im_end|>",
                   special_tokens: Sequence[str] = (), context_length: int = 131072,
                   gguf: bool = True, hf: bool = True) -> ScriptedFiles:
    """Build the scripted model once and write it as ``folder/model.gguf`` and ``folder/hf``.

    ``scripts`` maps a trigger (the text the rendered prompt ends with, see the module
    docstring) to the reply; ``chat_template`` defaults to :data:`HERMES_TEMPLATE` without
    the think opener.
    """
    model = build_scripted(scripts, chat_template=chat_template or hermes_template(),
                           eos_token=eos_token, special_tokens=special_tokens,
                           context_length=context_length)
    out = Path(folder)
    gguf_path = write_gguf(model, out / "model.gguf") if gguf else out / "model.gguf"
    hf_path = write_hf(model, out / "hf") if hf else out / "hf"
    return ScriptedFiles(gguf_path, hf_path, model)

