"""Streamed decode through the API against each Hugging Face-format runtime's own streaming loop.

    .venv/bin/python bench/bench_hf_stream.py [--runtime mlx_lm|hf_transformers] [--tiny-only]

For MLX (``mlx_lm.stream_generate``) and Transformers (``model.generate`` with a streamer), on
the tiny HF model (per-token cost is all overhead) and on a model at ~10-20 ms per token on a CPU
core (:func:`bench.harness.mid_hf_model`, where decode dominates): the decode rate of a stream
through ``tater serve`` ÷ the runtime's own loop in this process, and the time to first token of
each, sampled in turns (issue 18's target: >= 0.97 x on the decode-bound model).  Two tater
rows of the model: the default (its batch engine, which one client also goes through) and
``--parallel 1`` (the one-sequence loop): their difference is the batch engine's own cost for
a lone client.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    MESSAGES,
    BenchModel,
    Runtime,
    http_runtime,
    mid_hf_model,
    stream_side_by_side,
    table,
    tater_server,
    tiny_hf_model,
)

TARGET = 0.97
RUNTIMES = ("mlx_lm", "hf_transformers")


def mlx_runtime(model: BenchModel) -> Runtime:
    """``mlx_lm.stream_generate`` in this process."""
    import mlx.core as mx
    import mlx_lm

    lm, tokenizer = mlx_lm.load(str(model.path))
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)

    def stream(max_tokens: int) -> list[float]:
        times = [time.perf_counter()]
        for _ in mlx_lm.stream_generate(lm, tokenizer, mx.array(prompt), max_tokens=max_tokens):
            times.append(time.perf_counter())
        return times

    return Runtime("mlx_lm.stream_generate", _no_complete, stream)


def transformers_runtime(model: BenchModel) -> Runtime:
    """``model.generate(streamer=...)`` in this process, greedy, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    from app.providers.cpus import decode_threads

    torch.set_num_threads(decode_threads())  # what a Transformers row gets by default
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    lm = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]

    class Times(BaseStreamer):
        def __init__(self) -> None:
            self.times = [time.perf_counter()]
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() hands the prompt to the streamer first
                self.prompt_seen = True
                return
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def stream(max_tokens: int) -> list[float]:
        times = Times()
        with torch.inference_mode():
            lm.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                        streamer=times)
        return times.times

    return Runtime("transformers generate(streamer)", _no_complete, stream)


def _no_complete(max_tokens: int) -> int:
    raise NotImplementedError("this bench streams only")


RAW: dict[str, Callable[[BenchModel], Runtime]] = {
    "mlx_lm": mlx_runtime, "hf_transformers": transformers_runtime}


def run(runtime: str, model: BenchModel) -> list[list[str]]:
    """One row per server setting: the default row (its batch engine, 4 slots) and ``--parallel 1``
    (the one-sequence loop), each streamed in turns with the runtime's own loop."""
    raw = RAW[runtime](model)
    with tater_server(model, "--provider", runtime) as batched, \
            tater_server(model, "--provider", runtime, "--parallel", "1") as single:
        apis = {"parallel 4 (default)": http_runtime(batched), "parallel 1": http_runtime(single)}
        every = {"raw": raw, **apis}
        stream_side_by_side(every, 8, 1)  # warm them all (MLX compiles its kernels on first use)
        streams = stream_side_by_side(every, model.decode_tokens, model.decode_rounds)
        for api in apis.values():
            for close in api.closers:
                close()
    rows = []
    for name in apis:
        ratio = streams[name][1] / streams["raw"][1]
        rows.append([runtime, model.label, name, f"{1000 / streams['raw'][1]:.1f} ms",
                     f"{streams['raw'][1]:.0f}", f"{streams[name][1]:.0f}", f"{ratio:.2f} x",
                     f"{streams['raw'][0] * 1000:.0f} / {streams[name][0] * 1000:.0f} ms",
                     ("PASS" if ratio >= TARGET else "FAIL") if model.decode_bound else "-"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    parser.add_argument("--tiny-only", action="store_true")
    args = parser.parse_args()
    rows = []
    for runtime in args.runtime or RUNTIMES:
        for mid in (False,) if args.tiny_only else (False, True):
            model = mid_hf_model(runtime) if mid else tiny_hf_model()
            print(f"{runtime}: {model.label} ...", flush=True)
            rows.extend(run(runtime, model))
    print(table(["runtime", "model", "tater row", "raw ms/token", "raw tok/s", "API tok/s",
                 "API / raw", "TTFT raw / API", f">= {TARGET}"], rows))


if __name__ == "__main__":
    main()
