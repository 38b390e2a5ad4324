"""``GET /v1/models`` tells whether each model is loaded and its context window, through the
openai SDK on the real server: the numbers before loading are the ones the loaded runtimes report,
and the row files are read once, not per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.tinymodels.scripted import USER_TURN, write_scripted
from tests.conftest import start_live_server


def _listed(live: Any) -> dict[str, Any]:
    return {m.id: m for m in live.client().models.list()}


def _facts(card: Any) -> tuple[str, int | None, int | None]:
    return card.state, card.context_length, card.max_model_len


def test_models_report_loaded_state_and_context_length(
        clean_env: Path, tiny_gguf: Path, tiny_hf_folder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.providers import provider_class
    from app.providers.llama_cpp import LlamaCppProvider

    scripted = write_scripted(tmp_path / "sky", {USER_TURN: "Blue."}, hf=False).gguf
    llama = provider_class("llama_cpp").row_for(str(tiny_gguf))  # the GGUF's own (trained) context
    sized = provider_class("llama_cpp").row_for(str(scripted), n_ctx=600)  # padded as loading pads
    hf = provider_class("hf_transformers").row_for(str(tiny_hf_folder))  # config.json's context
    remote = provider_class("remote").row_for("upstream-model", base_url="http://127.0.0.1:9/v1")
    reads: list[str] = []
    planned = LlamaCppProvider.planned_context_length.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(LlamaCppProvider, "planned_context_length",
                        classmethod(lambda cls, row: reads.append(row.id) or planned(cls, row)))
    from app.settings import MemorySettings

    live = start_live_server(clean_env, [llama, sized, hf, remote], llama.id,
                             memory=MemorySettings(max_loaded_models=3))
    try:
        before = _listed(live)
        assert [m.id for m in before.values()][:3] == ["tater/base", "tater/direct", "tater/hydra"]
        assert _facts(before[llama.id]) == ("not-loaded", 512, 512)  # tiny GGUF: trained 512
        assert _facts(before[sized.id]) == ("not-loaded", 768, 768)
        assert _facts(before[hf.id]) == ("not-loaded", 1024, 1024)
        assert _facts(before[remote.id]) == ("not-loaded", None, None)  # unknown before loading
        assert _facts(before["tater/direct"]) == _facts(before[llama.id])  # the active model's

        client = live.client()
        for row in (llama, sized, hf):
            client.chat.completions.create(model=row.id, max_tokens=1,
                                           messages=[{"role": "user", "content": "hi"}])
        hub = live.services.hub  # type: ignore[attr-defined]
        after = _listed(live)
        for row in (llama, sized, hf):
            real = hub.load(row.id).result(timeout=60).context_length
            assert _facts(after[row.id]) == ("loaded", real, real)
            assert real == before[row.id].context_length  # what was listed before loading
        assert _facts(after["tater/base"]) == _facts(after[llama.id])

        hub.unload(sized.id)
        one = client.models.retrieve(sized.id)
        assert _facts(one) == ("not-loaded", 768, 768)
        raw = httpx.get(live.base_url + "/models", headers={"Authorization": f"Bearer {live.key}"}).json()
        assert {"state", "context_length", "max_model_len"} <= set(raw["data"][0])
        assert sorted(reads) == sorted([llama.id, sized.id])  # each GGUF header read once
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]
