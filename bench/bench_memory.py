"""The memory estimate against the resident memory a loaded model really takes (issue 15).

    .venv/bin/python bench/bench_memory.py [--tiny-only]

For each bench model, a fresh process loads it through Tater's own llama.cpp provider with the
bench context, runs a prompt that fills the context (so the KV cache and the compute buffer
are touched, the peak a long conversation reaches), and reports how much its resident set
grew.  The estimate (app/memory_estimate.py) must be within 15 % of that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOLERANCE = 0.15


def measure(path: Path, n_ctx: int) -> dict[str, float]:
    """In this process: resident growth from loading ``path`` and filling its context."""
    import psutil

    from app.memory_estimate import estimate_row
    from app.providers.batch_jobs import SlotJob
    from app.providers.llama_cpp import LlamaCppProvider
    from app.providers.llama_sampling import SamplingParams, SlotSampler

    proc = psutil.Process()
    row = LlamaCppProvider.row_for(str(path), n_ctx=n_ctx)
    provider = LlamaCppProvider()
    import llama_cpp  # noqa: F401 - the runtime's own import is not the model's memory

    before = proc.memory_info().rss
    model = provider.load(row)
    llm = model.llm
    piece = llm.tokenize(b" river stone", add_bos=False)
    prompt = (piece * n_ctx)[: llm.n_ctx() - 8]
    llm.create_completion(prompt, max_tokens=4)
    engine = model.engine
    if engine is not None:  # the parallel slots' context: every slot filled at once
        jobs = [engine.submit(SlotJob(prompt=[*piece[i:], *prompt][: engine.slot_ctx - 8],
                                      sampler=SlotSampler(SamplingParams(temperature=0)),
                                      max_tokens=4, cancelled=threading.Event()))
                for i in range(engine.n_slots)]
        for job in jobs:
            list(job.tokens())
    grown = proc.memory_info().rss - before
    estimate = estimate_row(row)
    assert estimate is not None
    return {"estimate": estimate.total, "measured": grown, "ratio": estimate.total / grown,
            "context": llm.n_ctx(), "prompt_tokens": len(prompt),
            "slots": engine.n_slots if engine else 1}


def measure_in_subprocess(path: Path, n_ctx: int) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter (nothing else resident to blur the numbers)."""
    out = subprocess.run([sys.executable, __file__, "--measure", str(path), str(n_ctx)],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-only", action="store_true")
    parser.add_argument("--measure", nargs=2, metavar=("GGUF", "N_CTX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]))))
        return 0
    from app.memory_estimate import human_bytes
    from bench.harness import realistic_model, tiny_model

    models = [tiny_model()] if args.tiny_only else [tiny_model(), realistic_model()]
    worst = 0.0
    for model in models:
        r = measure_in_subprocess(model.path, model.n_ctx)
        worst = max(worst, abs(r["ratio"] - 1))
        print(f"{model.label:24} n_ctx {r['context']:6}  estimate {human_bytes(r['estimate']):>10}"
              f"  measured {human_bytes(r['measured']):>10}  ratio {r['ratio']:.3f}")
    print(f"worst deviation {worst:.1%} (target <= {TOLERANCE:.0%})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
