"""Tiny Hugging Face-format models and the contract every local runtime must meet.

``LocalContract`` holds the tests shared by Transformers and MLX; a runtime's test module
subclasses it and provides the ``model``, ``eos_model`` and ``provider`` fixtures plus
``reference_greedy`` (the runtime's own generate, to check our token loop against).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from app.providers.base import ChatMessage, ChatModel, ChatRequest, ModelLoadError, ProviderError

MESSAGES = [ChatMessage("system", "You are tiny."), ChatMessage("user", "Say something, please.")]


def fake_hf_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """Lay ``folder`` out as the Hugging Face cache does (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def req(**kw: Any) -> ChatRequest:
    """A request on the standard messages; greedy and 16 tokens unless told otherwise."""
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_tokens", 16)
    return ChatRequest(messages=list(MESSAGES), **kw)


async def collect(model: ChatModel, request: ChatRequest) -> list[Any]:
    return [c async for c in model.stream(request)]


class LocalContract:
    """The contract tests; subclasses supply the fixtures named in the module docstring."""

    def reference_greedy(self, model: ChatModel, n: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_prompt_tokens(self, model: ChatModel) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    async def test_non_stream_length_and_usage(self, model: ChatModel) -> None:
        result = await model.complete(req(max_tokens=12))
        assert result.text.strip()
        assert result.finish_reason == "length"
        assert result.usage.completion_tokens == 12
        assert result.usage.prompt_tokens == self.expected_prompt_tokens(model)

    async def test_stream_has_several_deltas_and_equals_non_stream(self, model: ChatModel) -> None:
        chunks = await collect(model, req(max_tokens=20))
        deltas = [c.text for c in chunks if c.text]
        assert len(deltas) >= 5
        assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
        assert chunks[-1].finish_reason == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
        whole = await model.complete(req(max_tokens=20))
        assert "".join(deltas) == whole.text

    async def test_matches_the_runtimes_own_greedy_generate(self, model: ChatModel) -> None:
        result = await model.complete(req(max_tokens=24))
        assert result.text == self.reference_greedy(model, 24)

    async def test_stop_sequence_applied_during_generation(self, model: ChatModel) -> None:
        base = (await model.complete(req(max_tokens=24))).text
        stop = next(base[i:i + 3] for i in range(6, len(base) - 3)
                    if base[i:i + 3].strip() and base.index(base[i:i + 3]) >= 4)
        expected = base[:base.index(stop)]
        assert expected.strip()
        chunks = await collect(model, req(max_tokens=24, stop=[stop]))
        text = "".join(c.text for c in chunks)
        assert text == expected
        assert stop not in text
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage.completion_tokens < 24
        earlier = base[2:4] if base[2:4].strip() else base[1:3]
        first = await model.complete(req(max_tokens=24, stop=[stop, earlier]))
        assert first.text == base[:min(base.index(stop), base.index(earlier))]
        assert first.finish_reason == "stop"

    async def test_seed_reproducible(self, model: ChatModel) -> None:
        a = await model.complete(req(temperature=1.0, top_p=0.95, seed=7, max_tokens=20))
        b = await model.complete(req(temperature=1.0, top_p=0.95, seed=7, max_tokens=20))
        c = await model.complete(req(temperature=1.0, top_p=0.95, seed=8, max_tokens=20))
        greedy = await model.complete(req(max_tokens=20))
        assert a.text == b.text
        assert a.text != c.text
        assert a.text != greedy.text
        unseeded = {(await model.complete(req(temperature=1.0, top_p=0.95, max_tokens=20))).text
                    for _ in range(3)}
        assert len(unseeded) > 1, "unseeded requests must not repeat"

    async def test_eos_finishes_with_stop(self, eos_model: ChatModel) -> None:
        result = await eos_model.complete(req(max_tokens=10))
        assert result.text == ""
        assert result.finish_reason == "stop"
        assert result.usage.completion_tokens == 1

    async def test_no_max_tokens_runs_to_the_context_end(self, small_ctx_model: ChatModel) -> None:
        result = await small_ctx_model.complete(req(max_tokens=None))
        assert result.finish_reason == "length"
        assert result.usage.total_tokens == small_ctx_model.context_length
        with pytest.raises(ProviderError) as err:
            await small_ctx_model.complete(ChatRequest([ChatMessage("user", "word " * 80)]))
        assert err.value.status == 400 and err.value.code == "context_length_exceeded"

    async def test_cancel_stops_generation(self, model: ChatModel) -> None:
        stream = model.stream(req(max_tokens=None, temperature=1.0))
        got = [await stream.__anext__() for _ in range(3)]
        assert all(c.finish_reason is None for c in got)
        await stream.aclose()
        t0 = time.monotonic()
        acquired = await asyncio.to_thread(model.lock.acquire, True, 10)  # type: ignore[attr-defined]
        assert acquired, "the generation thread did not stop after the consumer went away"
        model.lock.release()  # type: ignore[attr-defined]
        assert time.monotonic() - t0 < 5
        assert not model.busy

    async def test_logprobs(self, model: ChatModel) -> None:
        result = await model.complete(req(max_tokens=6, logprobs=True, top_logprobs=3))
        assert result.logprobs is not None and len(result.logprobs) == 6
        assert "".join(e["token"] for e in result.logprobs) == result.text
        for e in result.logprobs:
            assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
            assert e["top_logprobs"][0]["logprob"] >= e["logprob"]  # greedy picks the top token

    async def test_penalties_change_the_greedy_text(self, model: ChatModel) -> None:
        plain = await model.complete(req(max_tokens=24))
        penalised = await model.complete(req(max_tokens=24, frequency_penalty=2.0,
                                             presence_penalty=1.0))
        assert penalised.text != plain.text and penalised.usage.completion_tokens == 24

    async def test_count_tokens_while_generating_is_safe(self, model: ChatModel) -> None:
        counts = []
        async for _ in model.stream(req(max_tokens=48, temperature=1.0)):
            counts.append(await asyncio.to_thread(model.count_tokens, list(MESSAGES)))
        assert len(counts) > 10 and set(counts) == {self.expected_prompt_tokens(model)}

    async def test_bad_max_tokens_is_400(self, model: ChatModel) -> None:
        with pytest.raises(ProviderError) as err:
            await model.complete(req(max_tokens=0))
        assert err.value.status == 400 and err.value.param == "max_tokens"

    async def test_unloaded_model_says_so(self, provider: Any, tiny_hf_folder: Path) -> None:
        loaded = provider.load(provider.row_for(str(tiny_hf_folder)))
        await loaded.aclose()
        with pytest.raises(ProviderError, match="unloaded") as err:
            await loaded.complete(req(max_tokens=2))
        assert err.value.status == 503

    def test_missing_folder_is_a_clear_error(self, provider: Any, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-model"
        with pytest.raises(ModelLoadError, match="model folder not found") as err:
            provider.load(provider.row_for(str(missing)))
        assert str(missing) in str(err.value)
        with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
            provider.load(provider.row_for("nobody/not-a-cached-model",
                                           cache_dir=str(tmp_path / "hub")))

    async def test_repo_id_from_the_local_cache(self, provider: Any, tiny_hf_folder: Path,
                                                tmp_path: Path) -> None:
        cache = fake_hf_cache(tmp_path / "hub", "tater/tiny-llama", tiny_hf_folder)
        row = provider.row_for("tater/tiny-llama", cache_dir=str(cache))
        assert row.id == f"{provider.name}::tater/tiny-llama"
        loaded = provider.load(row)
        try:
            assert (await loaded.complete(req(max_tokens=8))).usage.completion_tokens == 8
        finally:
            await loaded.aclose()
