"""The memory estimate: its parts from the GGUF header, its accuracy against the resident
memory of a really loaded model, and a model that does not fit refused with the numbers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app import memory_estimate
from app.memory_estimate import MIB, estimate_gguf, estimate_row, human_bytes, rough_total
from app.providers.llama_cpp import LlamaCppProvider
from bench.bench_memory import TOLERANCE, measure_in_subprocess
from tests.conftest import start_live_server


def test_parts_follow_the_header(tiny_gguf: Path) -> None:
    # the tiny model: 2 layers, 4 heads (= kv heads) of width 16, feed-forward 128
    e = estimate_gguf(tiny_gguf, 512)
    assert e.weights == tiny_gguf.stat().st_size
    assert e.kv_cache == 2 * 512 * 4 * (16 + 16) * 2
    assert e.compute == 512 * 4 * (512 * 5 + 128) + 512 * 2 * (512 * 4)
    assert estimate_gguf(tiny_gguf, 1024, slots=2).kv_cache == 4 * e.kv_cache
    assert e.context == 512 and estimate_gguf(tiny_gguf).context == 512  # trained length
    assert "KV cache 256 KiB for 512 tokens" in e.describe()
    assert human_bytes(1.5 * (1 << 30)) == "1.5 GiB" and human_bytes(300) == "300 B"
    assert rough_total(100 * MIB) > 100 * MIB


@pytest.mark.parametrize("n_ctx", [512, 2048])
def test_estimate_is_within_15_percent_of_the_resident_memory(tiny_gguf: Path, n_ctx: int) -> None:
    r = measure_in_subprocess(tiny_gguf, n_ctx)
    assert r["prompt_tokens"] >= n_ctx - 16  # the context really was filled
    assert abs(r["ratio"] - 1) <= TOLERANCE, r


def test_a_model_that_does_not_fit_is_refused_with_the_numbers(
        clean_env: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096)
    live = start_live_server(clean_env, [row], row.id)
    try:
        monkeypatch.setattr(memory_estimate, "available_memory", lambda: 3 * MIB)
        r = httpx.post(live.base_url + "/chat/completions", timeout=30,
                       headers={"Authorization": f"Bearer {live.key}"},
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "not_enough_memory"
        needed = human_bytes(estimate_row(row).total)  # weights, context and the parallel slots
        assert f"needs about {needed}" in err["message"] and "4096 tokens" in err["message"]
        assert "only 3.0 MiB of memory is available" in err["message"]
        monkeypatch.setattr(memory_estimate, "available_memory", lambda: 64 << 30)
        ok = live.client().chat.completions.create(
            model=row.id, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ok.usage.completion_tokens == 2
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]
