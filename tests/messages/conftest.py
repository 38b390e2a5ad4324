"""Fixtures for the Messages API: the real server on every local runtime, the anthropic SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

RUNTIMES = ["llama_cpp", "hf_transformers", "mlx_lm"]


def prompt_size(usage: object) -> int:
    """The whole prompt of a reply: Anthropic splits it into ``input_tokens`` and the part the
    prefix cache held, ``cache_read_input_tokens``."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0)  # type: ignore[attr-defined]


def anthropic_client(live: LiveServer, **kw: object):
    """The official anthropic SDK pointed at a live server (``x-api-key`` auth, no retries)."""
    import anthropic

    return anthropic.Anthropic(base_url=live.root, api_key=kw.pop("api_key", live.key), max_retries=0,
                               timeout=kw.pop("timeout", 60), **kw)


@pytest.fixture(params=RUNTIMES)
def served(request: pytest.FixtureRequest, clean_env: Path, tiny_gguf: Path, tiny_hf_folder: Path
           ) -> Iterator[LiveServer]:
    """The real server with one local runtime's tiny model active."""
    from app.providers import provider_class

    source = tiny_gguf if request.param == "llama_cpp" else tiny_hf_folder
    options = {"n_ctx": 1024} if request.param == "llama_cpp" else {}  # the HF models have 1024
    row = provider_class(request.param).row_for(str(source), **options)
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]
