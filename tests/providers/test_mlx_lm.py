"""The MLX provider on the same tiny self-built Llama (mlx[cpu] on Linux, Metal on macOS)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.providers import get_provider
from app.providers.mlx_lm import MLX_THREAD, MlxModel, MlxProvider
from tests.providers.hf_fixtures import (
    MESSAGES,
    LocalContract,
    collect,
    req,
)


def _load(folder: Path, **options: object) -> Iterator[MlxModel]:
    provider = MlxProvider()
    model = provider.load(provider.row_for(str(folder), **options))
    yield model
    model.close()


@pytest.fixture(scope="module")
def provider() -> MlxProvider:
    return MlxProvider()


@pytest.fixture(scope="module", params=[4, 1], ids=["batched", "alone"])
def model(request: pytest.FixtureRequest, tiny_hf_folder: Path) -> Iterator[MlxModel]:
    """The tiny model batching (the default ``parallel``) and one request at a time."""
    yield from _load(tiny_hf_folder, parallel=request.param)


@pytest.fixture(scope="module")
def eos_model(tiny_hf_eos_folder: Path) -> Iterator[MlxModel]:
    yield from _load(tiny_hf_eos_folder)


@pytest.fixture(scope="module")
def small_ctx_model(tiny_hf_folder: Path) -> Iterator[MlxModel]:
    yield from _load(tiny_hf_folder, context_size=64)


class TestMlxContract(LocalContract):
    def reference_greedy(self, model: MlxModel, n: int) -> str:  # type: ignore[override]
        import mlx_lm

        ids = model.prompt_ids(list(MESSAGES))
        tokens = MLX_THREAD.call(lambda: [r.token for r in mlx_lm.stream_generate(
            model.model, model.tokenizer, ids, max_tokens=n)])
        return model.hf_tokenizer.decode(tokens, skip_special_tokens=True)

    def expected_prompt_tokens(self, model: MlxModel) -> int:  # type: ignore[override]
        tok = model.hf_tokenizer
        text = tok.apply_chat_template([m.to_dict() for m in MESSAGES], add_generation_prompt=True,
                                       tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])


def test_registry_row_ids_and_availability() -> None:
    provider = get_provider("mlx_lm")
    assert isinstance(provider, MlxProvider)
    assert provider.label == "MLX" and provider.local
    assert provider.available() is None
    assert provider.row_for("mlx-community/tiny").id == "mlx_lm::mlx-community/tiny"


def test_unavailable_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import sys

    real_import = builtins.__import__

    def no_mlx(name: str, *args: object, **kw: object) -> object:
        if name == "mlx_lm" or name.startswith("mlx."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_mlx)
    message = MlxProvider.available()
    assert message is not None and "MLX is not installed" in message
    if sys.platform.startswith("linux"):
        assert 'pip install "mlx[cpu]" mlx-lm' in message
    from app.providers.base import ModelLoadError

    with pytest.raises(ModelLoadError, match="MLX is not installed"):
        MlxProvider().load(MlxProvider.row_for("/nowhere"))


async def test_same_greedy_text_as_transformers(model: MlxModel, tiny_hf_folder: Path) -> None:
    importlib.import_module("torch")
    from app.providers.hf_transformers import TransformersProvider

    hf = TransformersProvider().load(TransformersProvider.row_for(str(tiny_hf_folder)))
    try:
        a = await model.complete(req(max_tokens=16))
        b = await hf.complete(req(max_tokens=16))
    finally:
        hf.close()
    assert a.text == b.text
    # MLX may reuse an earlier request's prompt from its prefix cache: only that count differs
    assert (a.usage.prompt_tokens, a.usage.completion_tokens) == (b.usage.prompt_tokens,
                                                                  b.usage.completion_tokens)


async def test_all_mlx_work_runs_on_the_one_mlx_thread(tiny_hf_folder: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """MLX state is per thread: load, generate and close all run on ``MLX_THREAD``."""
    import threading

    threads: set[str] = set()
    from app.providers.mlx_batch import MlxBatchEngine

    real_load, real_responses, real_close = MlxProvider._load, MlxModel._responses, MlxModel.close
    real_advance = MlxBatchEngine._advance

    def load(self: MlxProvider, row: object) -> MlxModel:
        threads.add(threading.current_thread().name)
        return real_load(self, row)  # type: ignore[arg-type]

    def responses(self: MlxModel, *args: object, **kw: object) -> object:
        threads.add(threading.current_thread().name)
        return real_responses(self, *args, **kw)  # type: ignore[arg-type]

    def close(self: MlxModel) -> None:
        threads.add(threading.current_thread().name)
        real_close(self)

    def advance(self: MlxBatchEngine) -> None:
        threads.add(threading.current_thread().name)
        real_advance(self)

    monkeypatch.setattr(MlxProvider, "_load", load)
    monkeypatch.setattr(MlxModel, "_responses", responses)
    monkeypatch.setattr(MlxModel, "close", close)
    monkeypatch.setattr(MlxBatchEngine, "_advance", advance)
    provider = MlxProvider()
    for parallel in (1, 4):  # one at a time on stream_generate; batched on the engine
        # asked from a pool thread, as the model hub does
        model = await asyncio.to_thread(provider.load, provider.row_for(str(tiny_hf_folder),
                                                                        parallel=parallel))
        assert (model.engine is None) == (parallel == 1)
        await model.complete(req(max_tokens=4, temperature=0.8))
        assert len(await collect(model, req(max_tokens=4))) >= 2
        await model.aclose()
    assert threads == {MLX_THREAD.name}


def test_unloading_never_waits_behind_another_mlx_generation(tiny_hf_folder: Path) -> None:
    """All MLX models share one thread: closing one is queued there, not waited for."""
    import threading
    import time

    provider = MlxProvider()
    model = provider.load(provider.row_for(str(tiny_hf_folder)))
    release = threading.Event()
    MLX_THREAD.spawn(lambda: release.wait(10))  # another model's long generation
    t0 = time.perf_counter()
    model.close_now()
    assert time.perf_counter() - t0 < 0.5
    assert model.model is not None  # not yet: the MLX thread is busy
    release.set()
    assert MLX_THREAD.call(lambda: model.model) is None  # closed in turn, before later work



_EXIT_MID_GENERATION = """
import sys, threading, time
from app.providers.batch_jobs import SlotJob
from app.providers.mlx_lm import MlxProvider
from tests.providers.hf_fixtures import req

provider = MlxProvider()
model = provider.load(provider.row_for(sys.argv[1]))
sampling = model.batch_sampler(req(max_tokens=300, temperature=1.0), None, 19)

def generate():  # what a request alone runs on the MLX thread: mlx-lm's token loop
    for _ in model._responses(list(range(1, 20)), 300, sampling):
        pass

if sys.argv[2] == "batch":  # members decoding in the batch engine's steps
    for _ in range(3):
        model.engine.submit(SlotJob(prompt=list(range(1, 20)), sampler=sampling, max_tokens=300,
                                    cancelled=threading.Event()))
else:
    model.spawn(generate)
if sys.argv[2] == "close":
    model.close_now()  # queued behind it, not waited for
time.sleep(0.05)
print("leaving", flush=True)
"""


@pytest.mark.parametrize("then", ["exit", "close", "batch"])
def test_the_process_exits_cleanly_with_mlx_work_in_flight(tiny_hf_folder: Path, then: str) -> None:
    """Leaving while MLX computes aborted the process (SIGABRT, 5 of 5 without the exit hook)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _EXIT_MID_GENERATION, str(tiny_hf_folder), then],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "leaving\n"), done.stderr[-2000:]


def test_unloading_mid_batch_ends_its_members_with_503(tiny_hf_folder: Path) -> None:
    import threading

    from app.providers.base import ProviderError
    from app.providers.batch_jobs import SlotJob

    provider = MlxProvider()
    model = provider.load(provider.row_for(str(tiny_hf_folder)))
    engine = model.engine
    assert engine is not None
    sampling = model.batch_sampler(req(), None, 19)
    jobs = [engine.submit(SlotJob(prompt=list(range(1, 20)), sampler=sampling, max_tokens=900,
                                  cancelled=threading.Event())) for _ in range(2)]
    readers = [job.tokens() for job in jobs]
    assert all(isinstance(next(r)[0], int) for r in readers)  # both are decoding
    model.close()
    for reader in readers:
        with pytest.raises(ProviderError) as caught:
            for _ in reader:
                pass
        assert caught.value.status == 503
    with pytest.raises(ProviderError):
        engine.submit(SlotJob(prompt=[1, 2], sampler=sampling, max_tokens=4,
                              cancelled=threading.Event()))
    assert MLX_THREAD.call(lambda: engine.generator) is None and engine.active() == 0


def test_other_mlx_work_runs_between_batch_steps(tiny_hf_folder: Path) -> None:
    """The engine is one job per batch step on the shared MLX thread, not one job per batch."""
    import threading

    from app.providers.batch_jobs import SlotJob

    provider = MlxProvider()
    model = provider.load(provider.row_for(str(tiny_hf_folder)))
    try:
        cancelled = threading.Event()
        job = model.engine.submit(SlotJob(prompt=list(range(1, 20)), sampler=model.batch_sampler(
            req(), None, 19), max_tokens=900, cancelled=cancelled))
        reader = job.tokens()
        next(reader)  # decoding
        other = provider.load(provider.row_for(str(tiny_hf_folder), parallel=1))  # on MLX_THREAD
        other.close_now()
        assert model.engine.active() == 1 and job.generated < 900  # loaded mid-batch
        cancelled.set()
        assert sum(1 for _ in reader) < 900
    finally:
        model.close_now()


@pytest.mark.parametrize("megabytes", [1024, 0])
async def test_the_prefix_cache_and_its_budget(tiny_hf_folder: Path, megabytes: int) -> None:
    provider = MlxProvider()
    model = provider.load(provider.row_for(str(tiny_hf_folder), prefix_cache_mb=megabytes))
    try:
        first = await model.complete(req(max_tokens=4))
        again = await model.complete(req(max_tokens=4))
    finally:
        model.close_now()
    assert first.usage.cached_tokens == 0 and first.text == again.text
    want = again.usage.prompt_tokens - 1 if megabytes else 0  # all but the last token, or none
    assert again.usage.cached_tokens == want
