"""Shared benchmark parts: model files, servers in subprocesses, and the measurements.

Every runtime gets the same GGUF, the same ``n_ctx`` and llama.cpp's default thread count.
Servers run in their own processes (so the load generator never shares a GIL with them);
"raw" is llama-cpp-python called in this process, the floor any server adds to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TATER_BENCH_CACHE", Path.home() / ".cache" / "tater-desktop" / "bench"))
MESSAGES = [{"role": "user", "content": "Tell me about the river and the stone."}]


@dataclass(frozen=True)
class BenchModel:
    """A GGUF to benchmark and how hard to push it."""

    label: str
    path: Path
    n_ctx: int
    latency_runs: int
    decode_tokens: int
    load_tokens: int
    load_requests: int  # per client
    decode_bound: bool = False  # decode dominates: the decode >= 0.97 x raw target applies
    decode_rounds: int = 5  # streams per runtime (best rate, median TTFT)


def tiny_model() -> BenchModel:
    from app.tinymodels.gguf_model import write_tiny_gguf

    path = CACHE / "tiny-chat.gguf"
    if not path.exists():
        write_tiny_gguf(path)
    return BenchModel("tiny (0.5 MB)", path, 512, latency_runs=300, decode_tokens=200, load_tokens=16,
                      load_requests=20)


def mid_model() -> BenchModel:
    """~27M parameters, float32: a few ms per token on a CPU core, where decode dominates."""
    from app.tinymodels.gguf_model import write_tiny_gguf

    path = CACHE / "mid-27m-f32.gguf"
    if not path.exists():
        write_tiny_gguf(path, n_layers=8, hidden=512, heads=8, ff=1536, dtype="float32",
                        context_length=4096, name="tater-bench-27m")
    return BenchModel("~27M f32 (0.1 GB)", path, 2560, latency_runs=40, decode_tokens=48,
                      load_tokens=32, load_requests=2, decode_bound=True)


def realistic_model() -> BenchModel:
    """~0.35B parameters, float16 (Qwen2-0.5B's shape without its 151k-token vocabulary)."""
    from app.tinymodels.gguf_model import write_tiny_gguf

    path = CACHE / "realistic-0.35b-f16.gguf"
    if not path.exists():
        write_tiny_gguf(path, n_layers=24, hidden=896, heads=14, kv_heads=2, ff=4864, dtype="float16",
                        context_length=2048, name="tater-bench-0.35b")
    return BenchModel("~0.35B f16 (0.7 GB)", path, 2048, latency_runs=40, decode_tokens=48,
                      load_tokens=6, load_requests=1, decode_bound=True)


def tiny_hf_model() -> BenchModel:
    """The tests' tiny random Llama in Hugging Face format (MLX, Transformers): all overhead."""
    from app.tinymodels.hf_model import write_tiny_hf_llama

    path = CACHE / "tiny-hf-llama"
    if not (path / "config.json").exists():
        write_tiny_hf_llama(path, seed=0)
    return BenchModel("tiny HF Llama (0.5 MB)", path, 1024, latency_runs=300, decode_tokens=200,
                      load_tokens=16, load_requests=20)


def mid_hf_model(runtime: str) -> BenchModel:
    """A Hugging Face-format Llama at ~10-20 ms per token on one of these CPU cores, where decode
    dominates: ~5M parameters for MLX's CPU backend, ~15M for Transformers (float32 both)."""
    from app.tinymodels.hf_model import write_tiny_hf_llama

    if runtime == "mlx_lm":
        path = CACHE / "mid-hf-llama-5m"
        if not (path / "config.json").exists():
            write_tiny_hf_llama(path, hidden_size=256, num_layers=6, num_heads=8,
                                intermediate_size=768, context_length=4096)
        return BenchModel("~5M f32 HF Llama (20 MB)", path, 2048, latency_runs=40, decode_tokens=48,
                          load_tokens=32, load_requests=2, decode_bound=True)
    path = CACHE / "hf-mid-15m"
    if not (path / "config.json").exists():
        write_tiny_hf_llama(path, seed=0, hidden_size=384, num_layers=8, num_heads=6,
                            intermediate_size=1152, context_length=2048)
    return BenchModel("HF ~15M f32 (60 MB)", path, 1024, latency_runs=0, decode_tokens=48,
                      load_tokens=0, load_requests=0, decode_bound=True)


# -- servers ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A server running in a subprocess."""

    name: str
    base_url: str
    key: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_ready(server: ServerProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base_url + "/models", headers=server.headers, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} did not become ready: {server.log.read_text()[-2000:]}")


@contextlib.contextmanager
def _server(name: str, cmd: list[str], port: int, *, key: str = "none",
            env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``cmd`` in a subprocess (output to a temporary log), ready to serve ``/v1`` on ``port``."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
            server = ServerProcess(name, f"http://127.0.0.1:{port}/v1", key, proc, log)
            try:
                _wait_ready(server)
                yield server
            finally:
                server.stop()


@contextlib.contextmanager
def tater_server(model: BenchModel, *extra: str) -> Iterator[ServerProcess]:
    """``tater serve --model PATH [extra...]`` in a subprocess, isolated config, key from the environment."""
    port, key = free_port(), "bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "TATER_CONFIG_DIR": config, "TATER_LOG_DIR": config,
               "TATER_OPENAI_API_KEY": key, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
               "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "app", "serve", "--model", str(model.path), "--port", str(port),
               "--context-size", str(model.n_ctx), *extra]
        with _server("tater", cmd, port, key=key, env=env) as server:
            yield server


def llama_cpp_server(model: BenchModel, *extra: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """``python -m llama_cpp.server [extra...]`` (FastAPI/uvicorn) on the same file."""
    port = free_port()
    return _server("llama_cpp.server", [sys.executable, "-m", "llama_cpp.server", "--model",
                                        str(model.path), "--n_ctx", str(model.n_ctx), "--port",
                                        str(port), "--host", "127.0.0.1", *extra], port)


def mlx_lm_server(model: BenchModel, *extra: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """``python -m mlx_lm.server`` (mlx-lm's own server, which batches) on the same folder."""
    port = free_port()
    return _server("mlx_lm.server", [sys.executable, "-m", "mlx_lm.server", "--model", str(model.path),
                                     "--port", str(port), "--host", "127.0.0.1", *extra], port)


def floor_server(stack: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """``bench.floor_apps`` on Hypercorn (uvloop, as Tater runs) or uvicorn: the stack alone."""
    port = free_port()
    if stack == "quart+hypercorn":
        cmd = [sys.executable, "-m", "hypercorn", "-k", "uvloop", "-b", f"127.0.0.1:{port}",
               "bench.floor_apps:make_quart_app()"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--factory", "bench.floor_apps:make_fastapi_app"]
    return _server(stack, cmd, port)


# -- one runtime, behind a common face -------------------------------------------------------

@dataclass
class Runtime:
    """``complete(max_tokens)`` -> completion tokens; ``stream(max_tokens)`` -> per-token times."""

    name: str
    complete: Callable[[int], int]
    stream: Callable[[int], list[float]]
    acomplete: Callable[[httpx.AsyncClient, int], Any] | None = None
    parallel_safe: bool = True
    closers: list[Callable[[], None]] = field(default_factory=list)


def raw_runtime(model: BenchModel) -> Runtime:
    """llama-cpp-python in this process (one lock: concurrent calls would abort the process)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model.path), n_ctx=model.n_ctx, verbose=False)
    lock = threading.Lock()

    def complete(max_tokens: int) -> int:
        with lock:
            r = llm.create_chat_completion(messages=MESSAGES, max_tokens=max_tokens, temperature=0)
        return r["usage"]["completion_tokens"]

    def stream(max_tokens: int) -> list[float]:
        times = [time.perf_counter()]
        with lock:
            for chunk in llm.create_chat_completion(messages=MESSAGES, max_tokens=max_tokens,
                                                    temperature=0, stream=True):
                if chunk["choices"][0]["delta"].get("content"):
                    times.append(time.perf_counter())
        return times

    return Runtime("raw llama.cpp", complete, stream, closers=[llm.close])


def http_runtime(server: ServerProcess) -> Runtime:
    client = httpx.Client(headers=server.headers, timeout=300)
    url = server.base_url + "/chat/completions"

    def body(max_tokens: int, stream: bool = False) -> dict[str, Any]:
        return {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": stream}

    def complete(max_tokens: int) -> int:
        r = client.post(url, json=body(max_tokens))
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    def stream(max_tokens: int) -> list[float]:
        times = [time.perf_counter()]
        with client.stream("POST", url, json=body(max_tokens, True)) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"] and \
                        json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    times.append(time.perf_counter())
        return times

    async def acomplete(c: httpx.AsyncClient, max_tokens: int) -> int:
        r = await c.post(url, json=body(max_tokens), headers=server.headers)
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    return Runtime(server.name, complete, stream, acomplete, closers=[client.close])


# -- measurements -----------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def latency_side_by_side(runtimes: dict[str, Runtime], runs: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 seconds of a max_tokens=1 request for each runtime, sampled in turns.

    One request to each runtime per round, so a slow spell on a shared machine hits all alike.
    """
    for rt in runtimes.values():
        for _ in range(3):
            rt.complete(1)
    samples: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(runs):
        for name, rt in runtimes.items():
            t0 = time.perf_counter()
            rt.complete(1)
            samples[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(s), percentile(s, 99)) for name, s in samples.items()}


def stream_side_by_side(runtimes: dict[str, Runtime], tokens: int,
                        rounds: int) -> dict[str, tuple[float, float]]:
    """Median time to first streamed token (s) and best decode rate (tokens/s after the first).

    One stream to each runtime per round, in turns.  Best-of-rounds for decode: on a shared
    machine other processes only ever slow a run down.
    """
    ttfts: dict[str, list[float]] = {name: [] for name in runtimes}
    rates: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, rt in runtimes.items():
            times = rt.stream(tokens)
            if len(times) < 3:
                raise RuntimeError(f"{rt.name}: the stream carried {len(times) - 1} tokens")
            ttfts[name].append(times[1] - times[0])
            rates[name].append((len(times) - 2) / (times[-1] - times[1]))
    return {name: (statistics.median(ttfts[name]), max(rates[name])) for name in runtimes}


def throughput(rt: Runtime, clients: int, requests_each: int, tokens: int) -> tuple[float, int, float]:
    """Completion tokens/s with ``clients`` concurrent clients; errors; wall seconds."""
    if rt.acomplete is None:  # in-process: threads (the lock serialises them, as llama.cpp must)
        errors, total = 0, 0
        lock = threading.Lock()

        def worker() -> None:
            nonlocal errors, total
            for _ in range(requests_each):
                try:
                    n = rt.complete(tokens)
                    with lock:
                        total += n
                except Exception:
                    with lock:
                        errors += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        return total / wall, errors, wall

    async def run() -> tuple[float, int, float]:
        limits = httpx.Limits(max_connections=clients + 4)
        async with httpx.AsyncClient(timeout=300, limits=limits) as c:
            async def worker() -> tuple[int, int]:
                done = errs = 0
                for _ in range(requests_each):
                    try:
                        done += await rt.acomplete(c, tokens)  # type: ignore[misc]
                    except Exception:
                        errs += 1
                return done, errs

            t0 = time.perf_counter()
            results = await asyncio.gather(*[worker() for _ in range(clients)])
            wall = time.perf_counter() - t0
        return sum(r[0] for r in results) / wall, sum(r[1] for r in results), wall

    return asyncio.run(run())


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.2f} ms"
    if unit == "tok/s":
        return f"{value:.1f} tok/s"
    return f"{value:.3f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *[line(r) for r in rows]])
