"""Fixtures for the OpenAI-surface proofs: a tools-aware, FIM-capable tiny GGUF behind the server."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 16},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER_TOOL, ADD_TOOL]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 24},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]},
                 "maxItems": 3},
        "ok": {"type": "boolean"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 8}]},
    },
    "required": ["title", "score", "tags", "ok", "note"],
    "additionalProperties": False,
}
JSON_FORMAT = {"type": "json_schema",
               "json_schema": {"name": "answer", "strict": True, "schema": ANSWER_SCHEMA}}


@pytest.fixture(scope="session")
def tools_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean tiny GGUF with a Hermes-style tools template, FIM tokens and a 4k context."""
    from app.tinymodels.gguf_model import TOOLS_TEMPLATE, write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-tools.gguf",
                           chat_template=TOOLS_TEMPLATE, fim=True, context_length=4096)


@pytest.fixture
def tools_server(clean_env: Path, tools_gguf: Path) -> Iterator[LiveServer]:
    """The real server with the tools GGUF as the active llama.cpp model (logprobs enabled)."""
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tools_gguf), logits_all=True)
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


@dataclass
class SurfacePeer:
    """``python -m llama_cpp.server`` with a chat model and an embedding model."""

    base_url: str
    chat_model: str = "tiny"
    embed_model: str = "tiny-embed"


@pytest.fixture(scope="module")
def surface_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SurfacePeer]:
    """A real llama_cpp.server (the tools GGUF with mean pooling) on a free port."""
    from app.tinymodels.gguf_model import TOOLS_TEMPLATE, write_tiny_gguf
    from tests.conftest import free_port
    from tests.providers.peer_fixtures import running_peer

    tmp = tmp_path_factory.mktemp("surface-peer")
    gguf = write_tiny_gguf(tmp / "tiny-peer.gguf", chat_template=TOOLS_TEMPLATE, fim=True,
                           context_length=4096, pooling="mean")
    port = free_port()
    config = {"host": "127.0.0.1", "port": port, "models": [
        {"model": str(gguf), "model_alias": "tiny", "n_ctx": 4096, "verbose": False},
        {"model": str(gguf), "model_alias": "tiny-embed", "n_ctx": 512, "embedding": True,
         "verbose": False}]}
    (tmp / "config.json").write_text(json.dumps(config))
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(tmp / "config.json")]
    with running_peer(cmd, base_url, tmp / "server.log"):
        yield SurfacePeer(base_url)


@pytest.fixture
def remote_server(clean_env: Path, surface_peer: SurfacePeer) -> Iterator[LiveServer]:
    """Our server with two remote rows (chat, embeddings) pointing at the peer."""
    from app.providers.remote import RemoteProvider

    chat = RemoteProvider.row_for(surface_peer.chat_model, base_url=surface_peer.base_url)
    emb = RemoteProvider.row_for(surface_peer.embed_model, base_url=surface_peer.base_url)
    live = start_live_server(clean_env, [chat, emb], chat.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


@pytest.fixture(params=["hf_transformers", "mlx_lm"])
def local_server(request: pytest.FixtureRequest, clean_env: Path,
                 tiny_hf_folder: Path) -> Iterator[LiveServer]:
    """The server with a tiny HF-format model on the given runtime (Hermes tools template)."""
    yield from serve_hf_model(request.param, tiny_hf_folder, clean_env)


def serve_hf_model(runtime: str, folder: Path, config_dir: Path) -> Iterator[LiveServer]:
    """The live server with ``folder`` on ``runtime`` (``mlx_lm`` or ``hf_transformers``) and
    the Hermes tools template; shut down when the generator closes."""
    from app.tinymodels.gguf_model import TOOLS_TEMPLATE

    if runtime == "mlx_lm":
        importlib.import_module("mlx_lm")
        from app.providers.mlx_lm import MlxProvider as Provider
    else:
        importlib.import_module("transformers")
        from app.providers.hf_transformers import TransformersProvider as Provider  # type: ignore[assignment]
    row = Provider.row_for(str(folder), chat_template=TOOLS_TEMPLATE)
    live = start_live_server(config_dir, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]
