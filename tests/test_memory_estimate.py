"""The memory estimate: its parts from the GGUF header and a Hugging Face folder, its accuracy
against the resident memory of a really loaded model, and a model that does not fit refused
with the numbers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app import memory_estimate
from app.memory_estimate import (
    MIB,
    NotEnoughMemory,
    check_row_fits,
    estimate_gguf,
    estimate_hf,
    estimate_row,
    hf_weights,
    human_bytes,
    rough_total,
)
from app.providers.hf_transformers import TransformersProvider
from app.providers.llama_cpp import LlamaCppProvider
from app.providers.mlx_lm import MlxProvider
from bench.bench_memory import HF_NOISE, TOLERANCE, measure_hf_in_subprocess, measure_in_subprocess
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


# -- Hugging Face folders (Transformers, MLX) -----------------------------------------------

def test_hf_weights_are_the_tensors_in_the_dtype_the_runtime_loads(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    # a sharded folder: a bf16 tensor, and a packed (uint32) one that no runtime casts
    save_file({"a": torch.zeros(4, 8, dtype=torch.bfloat16)}, str(tmp_path / "m-1.safetensors"))
    save_file({"b": torch.zeros(10, dtype=torch.int32).to(torch.uint32)},
              str(tmp_path / "m-2.safetensors"))
    save_file({"stale": torch.zeros(1000)}, str(tmp_path / "consolidated.safetensors"))  # not indexed
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}')
    assert hf_weights(tmp_path) == (32 * 2 + 10 * 4, 2)  # as stored; bf16 is the main dtype
    assert hf_weights(tmp_path, 4) == (32 * 4 + 10 * 4, 4)  # Transformers on the CPU: float32


def test_hf_parts_follow_the_folder(tiny_hf_folder: Path) -> None:
    # the tiny Llama: 2 layers, 4 heads (= kv heads) of width 16, hidden 64, MLP 128, f32 file
    from safetensors import safe_open

    with safe_open(str(tiny_hf_folder / "model.safetensors"), "pt") as f:
        elements = sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118 - not a dict
    per_token = 2 * 2 * 4 * 16  # K and V, layers, kv heads, head width
    acts = 3 * 128 + 6 * 64
    one = estimate_hf(tiny_hf_folder, "hf_transformers", parallel=1, context=512)
    assert one.weights == elements * 4
    assert one.kv_cache == per_token * 512 * 4 and one.slots == 1 and one.context == 512
    assert one.compute == 4 * 512 * (acts + per_token)
    # the paged cache: 4 slots of parallel_ctx rounded up to 32-token pages, plus a page each
    four = estimate_hf(tiny_hf_folder, "hf_transformers", parallel=4, context=None,
                       parallel_ctx=100)
    assert four.kv_cache == per_token * 4 * (4 + 1) * 32 * 4 and four.context == 100
    assert four.compute == 4 * (512 * (640 + 512) + 512 * acts + 640 * per_token // 2)
    assert four.overhead > one.overhead and "x 4 slots" in four.describe()
    # MLX: the file's dtype, every member's cache at the whole context (256-token steps)
    mlx = estimate_hf(tiny_hf_folder, "mlx_lm", parallel=4, context=300, fused_attention=True)
    assert mlx.weights == elements * 4 and mlx.kv_cache == per_token * 4 * 512 * 4
    assert mlx.compute == 4 * 4 * 300 * acts
    unfused = estimate_hf(tiny_hf_folder, "mlx_lm", parallel=4, context=300, fused_attention=False)
    assert unfused.compute - mlx.compute == 4 * 4 * 300 * 4 * 300  # the prefill's scores
    assert estimate_hf(tiny_hf_folder, "mlx_lm", parallel=1, context=None).context == 1024


@pytest.mark.parametrize("runtime", ["hf_transformers", "mlx_lm"])
@pytest.mark.parametrize("parallel", [1, 4])
def test_hf_estimate_is_within_15_percent_of_the_peak_resident_memory(
        tiny_hf_folder: Path, runtime: str, parallel: int) -> None:
    r = measure_hf_in_subprocess(runtime, tiny_hf_folder, parallel, 1024)
    assert r["prompt_tokens"] >= r["context"] - 64  # every slot really was filled
    # the tiny model is mostly the runtime's overhead, whose pages vary from run to run
    assert abs(r["estimate"] - r["measured"]) <= max(TOLERANCE * r["measured"], HF_NOISE), r


def test_hf_rows_are_estimated_and_a_missing_repo_is_not(tiny_hf_folder: Path) -> None:
    for provider in (TransformersProvider, MlxProvider):
        row = provider.row_for(str(tiny_hf_folder), parallel=2, context_size=256)
        e = estimate_row(row)
        assert e is not None and e.slots == 2 and e.context == 256
    assert estimate_row(TransformersProvider.row_for("nobody/not-downloaded")) is None
    assert estimate_row(MlxProvider.row_for(str(tiny_hf_folder.parent / "gone"))) is None


def test_a_transformers_row_on_a_gpu_is_not_refused_for_ram(tiny_hf_folder: Path) -> None:
    gpu = TransformersProvider.row_for(str(tiny_hf_folder), device="cuda")
    assert not memory_estimate.weights_in_ram(gpu)
    assert check_row_fits(gpu, available=1) is not None  # its VRAM is not what RAM checks see
    cpu = TransformersProvider.row_for(str(tiny_hf_folder), device="cpu")
    assert memory_estimate.weights_in_ram(cpu)
    with pytest.raises(NotEnoughMemory, match="needs about"):
        check_row_fits(cpu, available=1)


@pytest.mark.parametrize("runtime", ["llama_cpp", "hf_transformers", "mlx_lm"])
def test_a_model_that_does_not_fit_is_refused_with_the_numbers(
        clean_env: Path, tiny_gguf: Path, tiny_hf_folder: Path, monkeypatch: pytest.MonkeyPatch,
        runtime: str) -> None:
    rows = {"llama_cpp": lambda: LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096),
            "hf_transformers": lambda: TransformersProvider.row_for(str(tiny_hf_folder),
                                                                    context_size=512, parallel=4),
            "mlx_lm": lambda: MlxProvider.row_for(str(tiny_hf_folder), context_size=512, parallel=4)}
    row = rows[runtime]()
    live = start_live_server(clean_env, [row], row.id)
    try:
        monkeypatch.setattr(memory_estimate, "available_memory", lambda: 3 * MIB)
        r = httpx.post(live.base_url + "/chat/completions", timeout=30,
                       headers={"Authorization": f"Bearer {live.key}"},
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "not_enough_memory"
        needed = human_bytes(estimate_row(row).total)  # weights, every slot's KV cache, scratch
        assert f"needs about {needed}" in err["message"], err["message"]
        slots = "4096 tokens" if runtime == "llama_cpp" else "for 512 tokens x 4 slots"
        assert slots in err["message"]
        assert "only 3.0 MiB of memory is available" in err["message"]
        monkeypatch.setattr(memory_estimate, "available_memory", lambda: 64 << 30)
        ok = live.client().chat.completions.create(
            model=row.id, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ok.usage.completion_tokens == 2
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]
