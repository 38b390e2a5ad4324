"""Schemas as real clients send them, on every local runtime, through the openai SDK.

The corpus (``tests/providers/schema_corpus.py``): pydantic v2 models (``Field(ge=…)``,
``EmailStr``, ``HttpUrl``, discriminated unions, nested and recursive models, enums,
optionals), zod 4 (``z.toJSONSchema`` through node) and MCP servers' tool lists.  Each is
accepted with ``tool_choice`` auto, as a ``response_format``, and forced; the forced call's
arguments validate against the whole schema (``format`` read as an annotation, as 2020-12
does: llguidance's format grammars follow the RFCs, which Python's checkers read more
strictly, e.g. a year 0000 date).

The model has random weights: free strings end only when it happens to pick a quote, so the
forced calls use :func:`tightened` schemas (short strings and lists, no extra keys), whose
valid values are a subset of the original's; what is validated is the original schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import LiveServer
from tests.providers.schema_corpus import corpus, mcp_tool_lists, tightened
from tests.surface.conftest import serve_hf_model

ASK = [{"role": "user", "content": "Use the tool."}]


def _problems(schema: dict[str, Any], value: Any) -> list[str]:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return [e.message for e in cls(schema).iter_errors(value)]


def _tool(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": "A tool.",
                                             "parameters": schema}}


def _forced(client: Any, tools: list[dict[str, Any]], choice: Any) -> list[str]:
    """A forced call with ``tightened`` tools; problems against the original schemas."""
    tight = [_tool(t["function"]["name"], tightened(t["function"]["parameters"])) for t in tools]
    resp = client.chat.completions.create(model="tater/direct", messages=ASK, max_tokens=600,
                                          temperature=1, seed=1, tools=tight, tool_choice=choice,
                                          parallel_tool_calls=False)
    if resp.choices[0].finish_reason != "tool_calls":
        return [f"finished {resp.choices[0].finish_reason}"]
    call = resp.choices[0].message.tool_calls[0]
    schema = next(t["function"]["parameters"] for t in tools
                  if t["function"]["name"] == call.function.name)
    return [f"{call.function.name}: {p}"
            for p in _problems(schema, json.loads(call.function.arguments))]


def forced_everywhere(live: LiveServer, group: str, *, lists: bool = True) -> None:
    """Every schema of ``group`` forced (named); with ``lists``, every MCP server's whole
    list as ``required`` too (long prompts: llama.cpp only, the HF runtimes are slow here)."""
    client = live.client()
    failures: list[str] = []
    for name, schema in corpus().items():
        if name.startswith(group):
            named = {"type": "function", "function": {"name": name}}
            failures += [f"{name}: {p}" for p in _forced(client, [_tool(name, schema)], named)]
    if group == "mcp" and lists:
        for server, tools in mcp_tool_lists().items():
            failures += [f"{server}: {p}" for p in _forced(client, tools, "required")]
    assert not failures, failures


def accepted_everywhere(live: LiveServer) -> None:
    """Every schema and MCP tool list accepted under ``auto`` and as a ``response_format``."""
    client = live.client()
    everything = [_tool(name, schema) for name, schema in corpus().items()]
    threes = [everything[i:i + 3] for i in range(0, len(everything), 3)]  # fits a 4k context
    for tools in [*threes, *mcp_tool_lists().values()]:
        auto = client.chat.completions.create(model="tater/direct", messages=ASK, max_tokens=2,
                                              tools=tools, tool_choice="auto")
        assert auto.choices[0].finish_reason in ("length", "stop", "tool_calls")
    for name, schema in corpus().items():
        fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
        resp = client.chat.completions.create(model="tater/direct", messages=ASK, max_tokens=2,
                                              response_format=fmt)
        assert resp.choices[0].finish_reason in ("length", "stop"), name


GROUPS = ["pydantic", "zod", "mcp"]


def test_corpus_is_accepted_on_llama_cpp(tools_server: LiveServer) -> None:
    accepted_everywhere(tools_server)


@pytest.mark.parametrize("group", GROUPS)
def test_forced_calls_validate_on_llama_cpp(tools_server: LiveServer, group: str) -> None:
    forced_everywhere(tools_server, group)


@pytest.fixture(scope="module")
def long_hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny HF Llama with a 4k context (MCP tool lists make prompts of ~1,100 tokens)."""
    from app.tinymodels.hf_model import write_tiny_hf_llama

    return write_tiny_hf_llama(tmp_path_factory.mktemp("hf") / "tiny-long", context_length=4096)


@pytest.fixture(params=["hf_transformers", "mlx_lm"])
def long_local_server(request: pytest.FixtureRequest, clean_env: Path,
                      long_hf_folder: Path) -> Iterator[LiveServer]:
    yield from serve_hf_model(request.param, long_hf_folder, clean_env)


def test_corpus_is_accepted_on_mlx_and_transformers(long_local_server: LiveServer) -> None:
    accepted_everywhere(long_local_server)


@pytest.mark.parametrize("group", GROUPS)
def test_forced_calls_validate_on_mlx_and_transformers(long_local_server: LiveServer,
                                                       group: str) -> None:
    forced_everywhere(long_local_server, group, lists=False)
