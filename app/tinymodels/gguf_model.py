"""Write a tiny random-weight llama-architecture GGUF that llama.cpp loads and runs.

The vocabulary is SentencePiece style (``<unk> <s> </s>``, 256 byte tokens, the ChatML control
tokens, then a few hundred lower-case word pieces with ``▁`` prefixes), so generated text is
made of readable English words.  The chat template is ChatML (see :data:`CHATML_TEMPLATE`).

A *clean* model can never sample a special, control or byte token (nor a word fragment): every token embedding
carries a constant value on one channel, no layer writes to that channel (its row in each
attention-output and ffn-down matrix is zero), and the output head gives it a large negative
weight for the banned tokens only.  So generation never ends early, usage counts are exact,
``finish_reason`` is ``"length"`` whenever ``max_tokens`` is reached, and streamed text equals
the whole text (no multi-byte hold-back).

``gguf`` and ``numpy`` are imported inside the function: the app only needs them when it
builds a model (self-test, tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol


class TinyVocab(Protocol):
    """A vocabulary other than the built-in SentencePiece one (see :mod:`app.tinymodels.bpe`)."""

    tokens: list[str]
    types: list[int]
    sampleable: list[bool]

    def write_tokenizer(self, writer: Any) -> None:
        """Write the ``tokenizer.ggml.*`` metadata (model, tokens, merges, special ids)."""

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML as Hugging Face tokenizer configs write it (``\\n`` escapes inside Jinja strings).

Not byte-equal to llama-cpp-python's built-in ``CHATML_CHAT_TEMPLATE`` (raw newlines), so
the runtime renders it with Jinja, like most real GGUF files: no BOS is added."""

TOOLS_TEMPLATE = (
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
    "{%- elif message.role == 'assistant' and message.tool_calls %}"
    "{{ '<|im_start|>assistant' }}{%- if message.content %}{{ '\\n' + message.content }}{%- endif %}"
    "{%- for call in message.tool_calls %}{{ '\\n<tool_call>\\n{\"name\": \"' + call.function.name"
    " + '\", \"arguments\": ' + (call.function.arguments | tojson) + '}\\n</tool_call>' }}"
    "{%- endfor %}{{ '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
    "{{ '<|im_start|>user' }}{%- endif %}"
    "{{ '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML with Hermes / Qwen 2.5 style tools: the tool list in the system prompt, assistant
calls as ``<tool_call>`` blocks, tool results as ``<tool_response>`` in a user turn (as
Qwen 2.5's own template renders them).  Optional: pass it as ``chat_template``."""

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
"""Fill-in-the-middle control tokens added (at the end of the vocabulary) with ``fim=True``."""

SPACE = "\u2581"  # ▁, SentencePiece's word-boundary marker

_WORDS = """
the of and to in is it you that he was for on are as with his they at be this from have
or by one had not but what all were when we there can an your which their said if do will
each about how up out them then she many some so these would other into has more her two
like him see time could no make than first been its who now people my made over did down
only way find use may water long little very after words called just where most know get
through back much before go good new write our used me man too any day same right look
think also around another came come work three word must because does part even place well
such here take why things help put years different away again off went old number great
tell men say small every found still between name should home big give air line set own
under read last never us left end along while might next sound below saw something thought
both few those always looked show large often together asked house world going want school
important until form food keep children feet land side without boy once animals life enough
took sometimes four head above kind began almost live page got earth need far hand high year
mother light parts country father let night following picture being study second eyes soon
times story boys since white days ever paper hard near sentence better best across during
today others however sure means knew try told young miles sun ways thing whole hear example
heard several change answer room sea against top turned learn point city play toward five
using himself usually money seen car morning given body family later order open red blue
green cat dog tree river bird fish stone road rain wind fire moon star quiet happy
"""
DEFAULT_PIECES: tuple[str, ...] = tuple(dict.fromkeys(_WORDS.split()))
"""Common English words: the default word pieces of the tiny vocabulary."""

_PUNCT = (".", ",", "!", "?", "'", "-", ":", ";")
_FIRST_PIECE_ID = 3 + 256 + 2  # after <unk> <s> </s>, bytes, <|im_start|> <|im_end|>


def build_vocab(words: Sequence[str]) -> tuple[list[str], list[float], list[int], list[bool]]:
    """Tokens, scores, token types and which tokens a clean model may sample.

    Order: specials, bytes, ChatML controls, then word pieces.  Every prefix of each ``▁word``
    is included so SentencePiece merges can reach whole words; only whole words and
    punctuation are sampleable, so clean output reads as words.
    """
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    types += [int(TokenType.BYTE)] * 256
    tokens += ["<|im_start|>", "<|im_end|>"]
    types += [int(TokenType.CONTROL)] * 2

    whole = {SPACE + w.strip().lower() for w in words} | set(_PUNCT)
    pieces: dict[str, None] = {SPACE: None}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789":
        pieces[ch] = None
        pieces[SPACE + ch] = None
    for p in _PUNCT:
        pieces[p] = None
    for word in words:
        full = SPACE + word.strip().lower()
        for end in range(2, len(full) + 1):
            pieces[full[:end]] = None
    for piece in pieces:
        if piece not in tokens:
            tokens.append(piece)
            types.append(int(TokenType.NORMAL))
    # Longer pieces score higher, so the tokenizer prefers whole words.
    scores = [0.0] * _FIRST_PIECE_ID + [float(len(t)) - i * 1e-4
                                        for i, t in enumerate(tokens[_FIRST_PIECE_ID:])]
    sampleable = [t in whole for t in tokens]
    return tokens, scores, types, sampleable


def write_tiny_gguf(path: Path, *, n_layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int | None = None, ff: int = 128,
                    vocab_pieces: Sequence[str] = DEFAULT_PIECES, seed: int = 0, clean: bool = True,
                    context_length: int = 512, dtype: str = "float32",
                    name: str = "tater-tiny", chat_template: str = CHATML_TEMPLATE,
                    fim: bool = False, pooling: str | None = None, vocab: TinyVocab | None = None) -> Path:
    """Write a random-weight llama GGUF to ``path`` and return the path.

    ``dtype`` is ``"float32"`` or ``"float16"`` for the 2-D weights (norms stay float32).
    Tensors are generated and written one at a time, so a ~0.4B-parameter model
    (``hidden=896, n_layers=24, heads=14, kv_heads=2, ff=4864``) needs little memory.
    ``fim`` appends the :data:`FIM_TOKENS` and declares them, so the file supports
    fill-in-the-middle completions.  ``pooling`` (``"mean"``, ``"cls"``, ``"last"``) declares
    how embedding mode pools hidden states (servers such as ``llama_cpp.server`` need it).
    ``vocab`` replaces the built-in vocabulary (``vocab_pieces`` is then unused; no ``fim``).
    """
    import gguf
    import numpy as np

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', not {dtype!r}")
    kv_heads = kv_heads or heads
    if hidden % heads or heads % kv_heads:
        raise ValueError("hidden must be divisible by heads, and heads by kv_heads")
    head_dim = hidden // heads
    kv_dim = head_dim * kv_heads
    np_dtype = np.float16 if dtype == "float16" else np.float32
    if vocab is not None:
        tokens, scores, types, sampleable = list(vocab.tokens), [], list(vocab.types), list(vocab.sampleable)
    else:
        tokens, scores, types, sampleable = build_vocab(vocab_pieces)
    if fim and vocab is None:
        tokens += list(FIM_TOKENS)
        scores += [0.0] * len(FIM_TOKENS)
        types += [int(gguf.TokenType.CONTROL)] * len(FIM_TOKENS)
        sampleable += [False] * len(FIM_TOKENS)
    n_vocab = len(tokens)
    banned = ~np.array(sampleable)
    const_ch = hidden - 1  # the channel that carries the "ban" signal

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16 if dtype == "float16"
                             else gguf.LlamaFileType.ALL_F32))
    if vocab is not None:
        vocab.write_tokenizer(writer)
    else:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template)
    if pooling:
        writer.add_pooling_type(gguf.PoolingType[pooling.upper()])
    if fim:
        first = n_vocab - len(FIM_TOKENS)
        for key, offset in ((gguf.Keys.Tokenizer.FIM_PRE_ID, 0), (gguf.Keys.Tokenizer.FIM_SUF_ID, 1),
                            (gguf.Keys.Tokenizer.FIM_MID_ID, 2)):
            writer.add_uint32(key, first + offset)

    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], fan_in: int) -> Any:
        out = rng.standard_normal(shape, dtype=np.float32)
        out *= 1.0 / np.sqrt(fan_in)
        return out

    def tensors() -> Iterator[tuple[str, Any]]:
        emb = rng.standard_normal((n_vocab, hidden), dtype=np.float32)
        if clean:
            emb[:, const_ch] = 1.0
        yield "token_embd.weight", emb
        for i in range(n_layers):
            p = f"blk.{i}."
            yield p + "attn_norm.weight", np.ones(hidden, np.float32)
            yield p + "attn_q.weight", normal((hidden, hidden), hidden)
            yield p + "attn_k.weight", normal((kv_dim, hidden), hidden)
            yield p + "attn_v.weight", normal((kv_dim, hidden), hidden)
            out = normal((hidden, hidden), hidden)
            if clean:
                out[const_ch, :] = 0.0
            yield p + "attn_output.weight", out
            yield p + "ffn_norm.weight", np.ones(hidden, np.float32)
            yield p + "ffn_gate.weight", normal((ff, hidden), hidden)
            yield p + "ffn_up.weight", normal((ff, hidden), hidden)
            down = normal((hidden, ff), ff)
            if clean:
                down[const_ch, :] = 0.0
            yield p + "ffn_down.weight", down
        yield "output_norm.weight", np.ones(hidden, np.float32)
        head = normal((n_vocab, hidden), hidden) * 4.0  # sharper logits: less word salad
        if clean:
            head[:, const_ch] = 0.0
            head[banned, :] = 0.0
            head[banned, const_ch] = -1.0e4
        yield "output.weight", head

    def cast(arr: Any) -> Any:
        return arr.astype(np_dtype) if arr.ndim == 2 and np_dtype is not np.float32 else arr

    # Declare every tensor first (shape, dtype, size), then stream the data out.
    shapes = _tensor_shapes(n_vocab, hidden, kv_dim, ff, n_layers)
    for tname, shape in shapes:
        dt = np.dtype(np_dtype if len(shape) == 2 else np.float32)
        writer.add_tensor_info(tname, shape, dt, int(np.prod(shape)) * dt.itemsize)
    try:
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for (tname, shape), (gname, arr) in zip(shapes, tensors(), strict=True):
            assert tname == gname and arr.shape == shape, (tname, gname, shape, arr.shape)
            writer.write_tensor_data(cast(arr))
    finally:
        writer.close()
    return path


def _tensor_shapes(n_vocab: int, hidden: int, kv_dim: int, ff: int,
                   n_layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and numpy shapes (out, in), in file order."""
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_vocab, hidden))]
    for i in range(n_layers):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (hidden,)), (p + "attn_q.weight", (hidden, hidden)),
                (p + "attn_k.weight", (kv_dim, hidden)), (p + "attn_v.weight", (kv_dim, hidden)),
                (p + "attn_output.weight", (hidden, hidden)), (p + "ffn_norm.weight", (hidden,)),
                (p + "ffn_gate.weight", (ff, hidden)), (p + "ffn_up.weight", (ff, hidden)),
                (p + "ffn_down.weight", (hidden, ff))]
    out += [("output_norm.weight", (hidden,)), ("output.weight", (n_vocab, hidden))]
    return out
