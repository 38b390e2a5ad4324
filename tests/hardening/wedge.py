"""A real llama.cpp model whose sampling can be made to hang, for the watchdog tests.

``WedgingLlama`` is the real :class:`LlamaCppModel` on the tiny GGUF; a chat request whose last
message contains ``wedge`` gets a logits processor that blocks inside llama-cpp-python's
sampling call (the same call path as a grammar that pins the sampler), until :data:`RELEASE`
is set, which the subprocess server never does.

Run as ``python -m tests.hardening.wedge serve ...`` it is ``tater serve`` (``app.cli.main``)
with this provider registered.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from app import providers
from app.providers.base import ChatRequest, TextRequest
from app.providers.llama_cpp import LlamaCppModel, LlamaCppProvider
from app.settings import ModelRow

WEDGE = "hardening_wedge"
RELEASE = threading.Event()
STUCK = threading.Event()
"""Set when a call is blocked in the runtime."""


def _stuck(_input_ids: Any, scores: Any) -> Any:
    STUCK.set()
    RELEASE.wait()
    return scores


class WedgingLlama(LlamaCppModel):
    """The real llama.cpp model; ``wedge`` in the prompt blocks its first sampling step."""

    def completion_kwargs(self, request: ChatRequest | TextRequest) -> dict[str, Any]:
        kwargs = super().completion_kwargs(request)
        if isinstance(request, ChatRequest) and "wedge" in request.messages[-1].content:
            from llama_cpp import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([_stuck])
        return kwargs


class WedgeProvider(LlamaCppProvider):
    name = WEDGE
    label = "llama.cpp that can hang (watchdog tests)"

    def load(self, row: ModelRow) -> LlamaCppModel:
        base = super().load(row)
        return WedgingLlama(base.model_id, base.llm, base.formatter, base.sampler_defaults)


def register() -> None:
    """Make rows with provider ``hardening_wedge`` load :class:`WedgingLlama`."""
    providers.PROVIDER_PATHS[WEDGE] = "tests.hardening.wedge:WedgeProvider"


if __name__ == "__main__":
    from app.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
