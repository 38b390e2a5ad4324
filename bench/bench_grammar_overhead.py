"""Per-token cost of llguidance's mask on llama.cpp: the tiny GGUF, tokens/s side by side.

Five runs of each, 300 tokens each (``max_tokens``), temperature 1, all through the same
rendered completion path: no grammar; llama.cpp's ``logits_processor`` hook with a processor
that returns the logits unchanged (the hook's own cost); and a JSON-schema grammar
(``{"type": "string"}``: one llguidance mask per token).  Run: ``python bench/bench_grammar_overhead.py``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.providers.base import ChatMessage, ChatRequest
from app.providers.llama_cpp import LlamaCppProvider
from app.tinymodels.gguf_model import TOOLS_TEMPLATE, write_tiny_gguf

TOKENS = 300
RUNS = 3
ROUNDS = 3


def rate(model: object, **kw: object) -> float:
    """Completion tokens per second over RUNS runs."""
    total, spent = 0, 0.0
    for seed in range(RUNS):
        req = ChatRequest(messages=[ChatMessage("user", "go")], max_tokens=TOKENS,
                          temperature=1.0, seed=seed, **kw)  # type: ignore[arg-type]
        started = time.perf_counter()
        chunks = list(model.generate(req, threading.Event()))  # type: ignore[attr-defined]
        spent += time.perf_counter() - started
        total += chunks[-1].usage.completion_tokens
    return total / spent


def main() -> None:
    import llama_cpp

    from app.providers import constraints

    masks: list[float] = []
    original_allowed = constraints.Matcher.allowed

    def timed_allowed(self: constraints.Matcher, favourite: int | None = None) -> object:
        started = time.perf_counter()
        try:
            return original_allowed(self, favourite)
        finally:
            masks.append(time.perf_counter() - started)

    constraints.Matcher.allowed = timed_allowed  # type: ignore[method-assign]
    original = llama_cpp.Llama.create_completion

    def with_identity(self: object, *a: object, **kw: object) -> object:
        kw.setdefault("logits_processor", llama_cpp.LogitsProcessorList([lambda ids, s: s]))
        return original(self, *a, **kw)  # type: ignore[arg-type]

    no_tools = {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}
    text_fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string"}}}
    best = {"plain": 0.0, "hook": 0.0, "grammar": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tiny_gguf(Path(tmp) / "tiny.gguf", chat_template=TOOLS_TEMPLATE,
                               context_length=4096)
        model = LlamaCppProvider().load(LlamaCppProvider.row_for(str(path)))
        for _ in range(ROUNDS):  # interleaved; the best round of each (the machine is shared)
            best["plain"] = max(best["plain"], rate(model, **no_tools))
            best["grammar"] = max(best["grammar"], rate(model, response_format=text_fmt))
            llama_cpp.Llama.create_completion = with_identity  # type: ignore[method-assign]
            best["hook"] = max(best["hook"], rate(model, **no_tools))
            llama_cpp.Llama.create_completion = original  # type: ignore[method-assign]
        model.close()
    plain, hook, grammar = best["plain"], best["hook"], best["grammar"]
    masks.sort()
    print(f"tiny GGUF (vocab 1125), {RUNS} x {TOKENS} tokens per round, best of {ROUNDS} rounds")
    print(f"  no grammar                     {plain:7.0f} tokens/s")
    print(f"  logits_processor hook only     {hook:7.0f} tokens/s  ({hook / plain:.2f}x)")
    print(f"  llguidance mask every token    {grammar:7.0f} tokens/s  ({grammar / plain:.2f}x)")
    print(f"  one mask: median {1000 * masks[len(masks) // 2]:.3f} ms, "
          f"p99 {1000 * masks[int(len(masks) * 0.99)]:.3f} ms, max {1000 * masks[-1]:.3f} ms "
          f"({len(masks)} masks)")


if __name__ == "__main__":
    main()
