"""What the API costs over calling llama.cpp in-process (issue 2's target: decode >= 0.97 x raw).

    .venv/bin/python bench/bench_api_vs_raw.py [--tiny-only]

For each model: streamed decode tokens/s through Tater's API ÷ raw in-process llama.cpp, and the
p50 latency of a max_tokens=1 request through the API minus raw (the fixed cost per request).
Both are sampled side by side (raw and API in turns), so a slow spell hits both alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BenchModel,
    fmt,
    http_runtime,
    latency_side_by_side,
    raw_runtime,
    realistic_model,
    stream_side_by_side,
    table,
    tater_server,
    tiny_model,
)

TARGET = 0.97


def run(model: BenchModel) -> tuple[list[str], bool]:
    raw = raw_runtime(model)
    with tater_server(model) as server:
        api = http_runtime(server)
        both = {"raw": raw, "api": api}
        latency = latency_side_by_side(both, model.latency_runs)
        streams = stream_side_by_side(both, model.decode_tokens, model.decode_rounds)
        for rt in both.values():
            for close in rt.closers:
                close()
    (raw_p50, _), (api_p50, _) = latency["raw"], latency["api"]
    raw_decode, api_decode = streams["raw"][1], streams["api"][1]
    ratio = api_decode / raw_decode
    return [model.label, fmt(raw_decode, "tok/s"), fmt(api_decode, "tok/s"), f"{ratio:.3f}",
            fmt(raw_p50, "ms"), fmt(api_p50, "ms"), fmt(api_p50 - raw_p50, "ms")], ratio >= TARGET


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny-only", action="store_true", help="skip the ~0.35B model")
    args = ap.parse_args()
    models = [tiny_model()] + ([] if args.tiny_only else [realistic_model()])
    rows, ok = [], []
    for model in models:
        print(f"measuring {model.label} ...", flush=True)
        row, passed = run(model)
        rows.append(row)
        ok.append(passed)
    print(table(["model", "raw decode", "API decode (stream)", "API/raw", "raw p50 (1 tok)",
                 "API p50 (1 tok)", "API overhead"], rows))
    for row, passed in zip(rows, ok, strict=True):
        print(f"{'PASS' if passed else 'MISS'}  {row[0]}: decode through the API {row[3]} x raw "
              f"(target >= {TARGET})")
    return 0 if ok[-1] else 1  # the target is about the realistic (decode-bound) model


if __name__ == "__main__":
    sys.exit(main())
