"""Provider fixtures.  ``tiny_gguf`` (a session-scoped clean tiny GGUF) is in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def load_llama(tiny_gguf: Path) -> Iterator[Callable[..., Any]]:
    """Load the tiny GGUF through the real llama.cpp provider; every model is closed after."""
    from app.providers.llama_cpp import LlamaCppModel, LlamaCppProvider

    loaded: list[LlamaCppModel] = []

    def load(path: Path | None = None, **options: Any) -> LlamaCppModel:
        row = LlamaCppProvider.row_for(str(path or tiny_gguf), **options)
        model = LlamaCppProvider().load(row)
        loaded.append(model)
        return model

    yield load
    for model in loaded:
        model.close()
