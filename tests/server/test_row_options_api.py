"""Typed row options through the real server: an unknown or badly typed option is the API's own
error envelope naming the key (nothing loaded), while the runtime's declared options load and chat."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import start_live_server


def _chat(live, model: str) -> httpx.Response:
    return httpx.post(live.base_url + "/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": model, "max_tokens": 2,
                            "messages": [{"role": "user", "content": "hi"}]})


def test_unknown_and_bad_options_are_load_errors_naming_the_key(
        clean_env: Path, tiny_gguf: Path, tiny_hf_folder: Path) -> None:
    from app.providers.hf_transformers import TransformersProvider
    from app.providers.llama_cpp import LlamaCppProvider
    from app.settings import ModelRow

    typo = LlamaCppProvider.row_for(str(tiny_gguf), n_ctxx=512)
    bad = ModelRow(id="hf-bad-threads", provider="hf_transformers", source=str(tiny_hf_folder),
                   options={"threads": "many"})
    good = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=512, flash_attn=True, seed=3,
                                    parallel=1).model_copy(update={"id": "llama-good"})
    fine_hf = TransformersProvider.row_for(str(tiny_hf_folder), context_size=256, threads=1)
    live = start_live_server(clean_env, [typo, bad, good, fine_hf], good.id)
    try:
        reply = _chat(live, typo.id)
        assert reply.status_code == 503
        error = reply.json()["error"]
        assert error["code"] == "model_load_failed"
        assert "unknown option 'n_ctxx' for llama_cpp (known: n_ctx," in error["message"]
        assert typo.id not in live.services.hub.loaded_ids()  # type: ignore[attr-defined]

        reply = _chat(live, bad.id)
        assert reply.status_code == 503
        assert "option 'threads' for hf_transformers" in reply.json()["error"]["message"]
        assert "'many'" in reply.json()["error"]["message"]

        for row in (good, fine_hf):  # declared options load, and the runtime gets them
            reply = _chat(live, row.id)
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] is not None
        hub = live.services.hub  # type: ignore[attr-defined]
        assert hub.load(fine_hf.id).result(timeout=60).context_length == 256
        assert hub.load(good.id).result(timeout=60).require_llm().n_ctx() == 512
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]
