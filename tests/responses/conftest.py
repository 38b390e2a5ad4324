"""A real server per local runtime (llama.cpp, Transformers, MLX) on the tiny self-made models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

RUNTIMES = ["llama_cpp", "hf_transformers", "mlx_lm"]


@pytest.fixture(params=RUNTIMES)
def runtime_server(request: pytest.FixtureRequest, clean_env: Path, tiny_gguf: Path,
                   tiny_hf_folder: Path) -> Iterator[LiveServer]:
    """The real server with the runtime's tiny model active."""
    from app.providers import provider_class

    if request.param == "llama_cpp":  # room for tool listings (the GGUF's own default is small)
        row = provider_class(request.param).row_for(str(tiny_gguf), n_ctx=4096)
    else:
        row = provider_class(request.param).row_for(str(tiny_hf_folder))
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]
