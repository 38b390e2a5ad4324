"""Many clients at once on one model: Tater's batching vs one client, vs llama_cpp.server.

    .venv/bin/python bench/bench_parallel.py [--tiny-only] [--slots N] [--runtime RUNTIME]

Per model (the tiny GGUF, where per-token cost is all overhead, and a ~27M-parameter f32 one,
where decode dominates), side by side in one run:
- aggregate decode (completion tokens/s over the wall time) with 1, 4 and 16 concurrent
  streaming clients on Tater (``--parallel`` slots), and the ratios to one client;
- fairness at 16 clients: the slowest time to first token over the median;
- the same 4-client load on ``python -m llama_cpp.server`` (one sequence at a time), and Tater's ratio;
- whether the batched replies equal the one-at-a-time replies (temperature 0);
- on the ~27M model: time to first token of a request with a ~2,000-token prefix, first vs a
  second request sharing it, and two clients alternating between two such prefixes (cached
  tokens as the API reports them), on Tater and on llama_cpp.server.
Targets (printed): 4 clients >= 2.5 x one; 16 clients with zero errors and max TTFT <= 2 x
median; tater >= 2 x llama_cpp.server at 4 clients; second-request TTFT <= 0.25 x the first.

MLX rows (``--runtime mlx_lm``): the same 1 / 4 / 16 client loads and the batched = one at a
time check on Tater's MLX batching (mlx-lm's ``BatchGenerator``), on the tiny HF Llama and a
~5M-parameter f32 one (~10-20 ms per token here), and the same 4 and 16 client loads on
``python -m mlx_lm.server`` (mlx-lm's own server, which batches them too) for comparison.

Transformers rows (``--runtime hf_transformers``, :func:`run_transformers`: the tiny HF Llama
and a ~15M-parameter one (:func:`bench.harness.mid_hf_model`), ~10-20 ms per token here; ``--provider
hf_transformers --parallel N``): the same 1 / 4 / 16-client aggregate, TTFT and
batched-equals-sequential rows, plus one client on a ``--parallel 1`` server (our one-sequence
loop), so the continuous-batching manager's cost at one member shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BenchModel,
    ServerProcess,
    llama_cpp_server,
    mid_hf_model,
    mid_model,
    mlx_lm_server,
    table,
    tater_server,
    tiny_hf_model,
    tiny_model,
)

CLIENTS = (1, 4, 16)
ONE_CLIENT_ROUNDS = 3
"""One-client runs per server, interleaved, for the Transformers rows (the median is shown)."""
WORDS = ["river", "stone", "green", "house", "light", "table", "north", "quiet", "paper", "field"]


@dataclass
class StreamResult:
    text: str
    tokens: int
    ttft: float
    cached: int | None


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Client {i}: tell me about the {WORDS[i % 10]} and the "
                                        f"{WORDS[(i * 3 + 1) % 10]}."}]


async def stream_one(c: httpx.AsyncClient, server: ServerProcess, messages: list[dict[str, str]],
                     max_tokens: int) -> StreamResult:
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0, first, parts, tokens, cached = time.perf_counter(), None, [], 0, None
    async with c.stream("POST", server.base_url + "/chat/completions", json=body,
                        headers=server.headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                parts.append(event["choices"][0]["delta"]["content"])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
                cached = (event["usage"].get("prompt_tokens_details") or {}).get("cached_tokens")
    if first is None:
        raise RuntimeError(f"{server.name}: a stream carried no text")
    return StreamResult("".join(parts), tokens or len(parts), first - t0, cached)


def concurrent(server: ServerProcess, clients: int, tokens: int,
               rounds: int) -> tuple[float, int, list[StreamResult]]:
    """Aggregate completion tokens/s of ``clients`` streaming at once (``rounds`` each); errors."""
    async def run() -> tuple[float, int, list[StreamResult]]:
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 4)) as c:
            async def client(i: int) -> tuple[list[StreamResult], int]:
                out, errors = [], 0
                for _ in range(rounds):
                    try:
                        out.append(await stream_one(c, server, prompt(i), tokens))
                    except (httpx.HTTPError, RuntimeError):
                        errors += 1
                return out, errors

            t0 = time.perf_counter()
            done = await asyncio.gather(*[client(i) for i in range(clients)])
            wall = time.perf_counter() - t0
        results = [r for rs, _ in done for r in rs]
        return sum(r.tokens for r in results) / wall, sum(e for _, e in done), results

    return asyncio.run(run())


def sequential_texts(server: ServerProcess, clients: int, tokens: int) -> list[str]:
    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=600) as c:
            return [(await stream_one(c, server, prompt(i), tokens)).text for i in range(clients)]

    return asyncio.run(run())


def long_prefix(tag: str, words: int) -> list[dict[str, str]]:
    body = " ".join(f"{tag}{WORDS[(i * 7) % 10]}{i % 97}" for i in range(words))
    return [{"role": "system", "content": f"Notes {tag}: {body}"}]


def prefix_ttfts(server: ServerProcess, words: int) -> dict[str, Any]:
    """TTFT of a long prefix first, then a second request sharing it, then A/B alternating."""
    a, b = long_prefix("a", words), long_prefix("b", words)

    async def ask(c: httpx.AsyncClient, system: list[dict[str, str]], q: str) -> StreamResult:
        return await stream_one(c, server, [*system, {"role": "user", "content": q}], 4)

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=600) as c:
            first = await ask(c, a, "first question")
            second = await ask(c, a, "a different second question")
            await ask(c, b, "another client")
            alternating = [await ask(c, sys_, f"turn {n}") for n in range(2) for sys_ in (a, b)]
        return {"first": first, "second": second, "alternating": alternating}

    return asyncio.run(run())


def run_model(model: BenchModel, slots: int, tokens: int, rounds: int,
              prefix_words: int | None) -> tuple[list[list[str]], list[list[str]], list[str]]:
    print(f"\n## {model.label}: {model.path.name}", flush=True)
    rows, checks, prefix_rows = [], [], []
    # llama_cpp.server by default aborts the running stream when another request comes
    # (interrupt_requests): told not to, it queues them, one sequence at a time.
    with tater_server(model, "--parallel", str(slots)) as tater, \
            llama_cpp_server(model, "--interrupt_requests", "False") as peer:
        for server in (tater, peer):  # warm both
            concurrent(server, 1, 4, 1)
        same = sequential_texts(tater, 4, tokens)
        rates: dict[tuple[str, int], float] = {}
        for clients in CLIENTS:
            print(f"  {clients} clients x {rounds} streams of {tokens} tokens ...", flush=True)
            rate, errors, results = concurrent(tater, clients, tokens, rounds)
            rates["tater", clients] = rate
            ttfts = [r.ttft for r in results]
            med, worst = statistics.median(ttfts), max(ttfts)
            if clients == 4:
                equal = sum(r.text == t for r, t in zip(results[::rounds], same, strict=True))
                peer_rate, peer_errors, _ = concurrent(peer, clients, tokens, rounds)
                rates["peer", clients] = peer_rate
            rows.append([f"tater, {clients} client(s)", f"{rate:.1f}",
                         f"{rate / rates['tater', 1]:.2f} x", str(errors),
                         f"{med * 1000:.0f} / {worst * 1000:.0f} ms"])
            if clients == 16:
                checks.append(f"16 clients: {errors} errors, max TTFT {worst / med:.2f} x median "
                              f"(target <= 2): {'PASS' if not errors and worst <= 2 * med else 'FAIL'}")
        rows.append(["llama_cpp.server, 4 clients", f"{rates['peer', 4]:.1f}",
                     f"{rates['peer', 4] / rates['tater', 1]:.2f} x", str(peer_errors), "-"])
        four = rates["tater", 4] / rates["tater", 1]
        checks.append(f"4 clients / 1: {four:.2f} x (target >= 2.5): {'PASS' if four >= 2.5 else 'FAIL'}")
        vs_peer = rates["tater", 4] / rates["peer", 4]
        checks.append(f"tater / llama_cpp.server at 4 clients: {vs_peer:.2f} x (target >= 2): "
                      f"{'PASS' if vs_peer >= 2 else 'FAIL'}")
        checks.append(f"batched replies equal to one-at-a-time replies (temperature 0): {equal} of 4 "
                      f"({'PASS' if equal == 4 else 'DIFFER: batched matmul kernels sum in another order'})")
        if prefix_words:
            print(f"  long prefixes ({prefix_words} words) ...", flush=True)
            for name, server in (("tater", tater), ("llama_cpp.server", peer)):
                p = prefix_ttfts(server, prefix_words)
                ratio = p["second"].ttft / p["first"].ttft
                alt = p["alternating"]
                prefix_rows.append([name, f"{p['first'].ttft * 1000:.0f} ms",
                                    f"{p['second'].ttft * 1000:.0f} ms ({ratio:.2f} x)",
                                    str(p["second"].cached),
                                    " / ".join(f"{r.ttft * 1000:.0f}" for r in alt) + " ms",
                                    " / ".join(str(r.cached) for r in alt)])
                if name == "tater":
                    checks.append(f"shared-prefix TTFT second / first: {ratio:.2f} x (target <= 0.25): "
                                  f"{'PASS' if ratio <= 0.25 else 'FAIL'}")
    print(table(["load", "aggregate tok/s", "vs 1 client", "errors", "TTFT median / max"], rows))
    if prefix_rows:
        print(table(["server", "TTFT first", "TTFT second (ratio)", "cached", "A/B/A/B TTFT",
                     "A/B/A/B cached"], prefix_rows))
    for line in checks:
        print("  " + line)
    return rows, prefix_rows, checks


def run_mlx(model: BenchModel, slots: int, tokens: int, rounds: int) -> tuple[list[list[str]], list[str]]:
    """The 1 / 4 / 16 client loads on Tater's MLX batching, and batched = one at a time."""
    print(f"\n## MLX, {model.label}: {model.path.name}", flush=True)
    rows, checks, rates = [], [], {}
    with tater_server(model, "--provider", "mlx_lm", "--parallel", str(slots)) as tater, \
            mlx_lm_server(model) as peer:
        for server in (tater, peer):  # warm (MLX compiles its kernels on first use)
            concurrent(server, 1, 4, 1)
        same = sequential_texts(tater, 4, tokens)
        for clients in CLIENTS:
            print(f"  {clients} clients x {rounds} streams of {tokens} tokens ...", flush=True)
            rate, errors, results = concurrent(tater, clients, tokens, rounds)
            rates[clients] = rate
            ttfts = [r.ttft for r in results]
            med, worst = statistics.median(ttfts), max(ttfts)
            if clients == 4:
                equal = sum(r.text == t for r, t in zip(results[::rounds], same, strict=True))
            rows.append([f"tater MLX, {clients} client(s)", f"{rate:.1f}", f"{rate / rates[1]:.2f} x",
                         str(errors), f"{med * 1000:.0f} / {worst * 1000:.0f} ms"])
            if clients == 16:
                checks.append(f"16 clients: {errors} errors, max TTFT {worst / med:.2f} x median "
                              f"(target <= 2): {'PASS' if not errors and worst <= 2 * med else 'FAIL'}")
        for clients in CLIENTS[1:]:
            print(f"  mlx_lm.server: {clients} clients ...", flush=True)
            rate, errors, results = concurrent(peer, clients, tokens, rounds)
            ttfts = [r.ttft for r in results]
            rows.append([f"mlx_lm.server, {clients} clients", f"{rate:.1f}",
                         f"{rate / rates[1]:.2f} x", str(errors),
                         f"{statistics.median(ttfts) * 1000:.0f} / {max(ttfts) * 1000:.0f} ms"])
            checks.append(f"tater / mlx_lm.server at {clients} clients: {rates[clients] / rate:.2f} x")
    four = rates[4] / rates[1]
    checks.append(f"4 clients / 1: {four:.2f} x (target >= 2.5): {'PASS' if four >= 2.5 else 'FAIL'}")
    checks.append(f"16 clients / 1: {rates[16] / rates[1]:.2f} x")
    checks.append(f"batched replies equal to one-at-a-time replies (temperature 0): {equal} of 4 "
                  f"({'PASS' if equal == 4 else 'DIFFER: batched kernels sum in another order'})")
    print(table(["load", "aggregate tok/s", "vs 1 client", "errors", "TTFT median / max"], rows))
    for line in checks:
        print("  " + line)
    return rows, checks


# -- Transformers (continuous batching on Transformers' own manager) ----------------------

def run_transformers(model: BenchModel, slots: int, tokens: int, rounds: int) -> list[str]:
    """1 / 4 / 16 streaming clients on a batched Transformers row, vs one client unbatched
    (torch on the app's default threads: half the cores)."""
    rows, checks = [], []
    provider = ("--provider", "hf_transformers")
    with tater_server(model, *provider, "--parallel", "1") as single, \
            tater_server(model, *provider, "--parallel", str(slots)) as tater:
        for server in (single, tater):  # warm both
            concurrent(server, 1, 4, 1)
        unbatched, same = sequential_texts(single, 4, tokens), sequential_texts(tater, 4, tokens)
        # one client on each, interleaved (the machine's load drifts): the medians
        ones: dict[str, list[tuple[float, int, list[StreamResult]]]] = {"single": [], "tater": []}
        for _ in range(ONE_CLIENT_ROUNDS):
            for name, server in (("single", single), ("tater", tater)):
                ones[name].append(concurrent(server, 1, tokens, rounds))
        rates: dict[int, float] = {}
        for clients in CLIENTS:
            print(f"  {clients} clients x {rounds} streams of {tokens} tokens ...", flush=True)
            if clients == 1:
                rate, errors, results = sorted(ones["tater"], key=lambda r: r[0])[ONE_CLIENT_ROUNDS // 2]
            else:
                rate, errors, results = concurrent(tater, clients, tokens, rounds)
            rates[clients] = rate
            ttfts = [r.ttft for r in results]
            med, worst = statistics.median(ttfts), max(ttfts)
            if clients == 4:
                equal = sum(r.text == t for r, t in zip(results[::rounds], same, strict=True))
            rows.append([f"tater --parallel {slots}, {clients} client(s)", f"{rate:.1f}",
                         f"{rate / rates[1]:.2f} x", str(errors),
                         f"{med * 1000:.0f} / {worst * 1000:.0f} ms"])
            if clients == 16:
                checks.append(f"16 clients: {errors} errors, max TTFT {worst / med:.2f} x median "
                              f"(target <= 2): {'PASS' if not errors and worst <= 2 * med else 'FAIL'}")
    single_rate, single_errors, single_results = sorted(ones["single"], key=lambda r: r[0])[
        ONE_CLIENT_ROUNDS // 2]
    ttfts = [r.ttft for r in single_results]
    rows.append(["tater --parallel 1 (one-sequence loop), 1 client", f"{single_rate:.1f}",
                 f"{single_rate / rates[1]:.2f} x", str(single_errors),
                 f"{statistics.median(ttfts) * 1000:.0f} / {max(ttfts) * 1000:.0f} ms"])
    four = rates[4] / rates[1]
    checks.append(f"4 clients / 1: {four:.2f} x (target >= 2.5): {'PASS' if four >= 2.5 else 'FAIL'}")
    checks.append(f"4 clients / one client unbatched: {rates[4] / single_rate:.2f} x; one client, "
                  f"batched / unbatched: {rates[1] / single_rate:.2f} x")
    checks.append(f"batched replies equal to one-at-a-time replies (temperature 0): {equal} of 4 "
                  f"({'PASS' if equal == 4 else 'DIFFER'})")
    unb = sum(a == b for a, b in zip(same, unbatched, strict=True))
    checks.append(f"batch engine replies equal to the one-sequence loop's (temperature 0): {unb} of 4 "
                  f"({'PASS' if unb == 4 else 'DIFFER'})")
    print(table(["load", "aggregate tok/s", "vs 1 client", "errors", "TTFT median / max"], rows))
    for line in checks:
        print("  " + line)
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny-only", action="store_true")
    parser.add_argument("--slots", type=int, default=16, help="tater's --parallel (default 16)")
    parser.add_argument("--runtime", choices=["llama_cpp", "mlx_lm", "hf_transformers", "all"],
                        default="all")
    args = parser.parse_args()
    if args.runtime in ("llama_cpp", "all"):
        print(f"tater --parallel {args.slots}; llama_cpp.server --interrupt_requests False; same "
              "GGUF, same n_ctx, llama.cpp's default threads (decode: half the cores, prompt: all)")
        run_model(tiny_model(), args.slots, tokens=128, rounds=2, prefix_words=None)
        if not args.tiny_only:
            run_model(mid_model(), args.slots, tokens=32, rounds=2, prefix_words=280)
    if args.runtime in ("mlx_lm", "all"):
        print(f"\nMLX: tater --provider mlx_lm --parallel {args.slots} (mlx-lm's BatchGenerator)")
        run_mlx(tiny_hf_model(), args.slots, tokens=128, rounds=2)
        if not args.tiny_only:
            run_mlx(mid_hf_model("mlx_lm"), args.slots, tokens=32, rounds=2)
    if args.runtime in ("hf_transformers", "all"):
        run_transformers(tiny_hf_model(), args.slots, tokens=128, rounds=2)
        if not args.tiny_only:
            run_transformers(mid_hf_model("hf_transformers"), args.slots, tokens=32, rounds=2)


if __name__ == "__main__":
    main()
