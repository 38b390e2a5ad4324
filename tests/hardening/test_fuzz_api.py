"""schemathesis against the server's own /openapi.json: every check, valid and invalid data.

Positive cases (schema-valid) must be accepted, negative ones refused with a 4xx envelope, and
every reply must match the document; so the document states every limit the routes enforce.
Bounded: a fixed number of examples per operation and mode, derandomized, loopback only.
"""

from __future__ import annotations

import importlib
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from app.settings import ModelRow
from tests.conftest import LiveServer, start_live_server
from tests.fakes import SCRIPTED, Script

schemathesis = importlib.import_module("schemathesis")
GenerationMode = importlib.import_module("schemathesis.generation").GenerationMode

EXAMPLES_PER_OPERATION = 30
TIME_BOX_SECONDS = 100
MODEL_DEPENDENT = ("dimensions", "logit_bias")
"""Valid or not depending on the model (its embedding width, whether its runtime applies a
bias): a 400 the schema cannot state, so positive cases leave them out."""
CONTEXT = 4096  # the scripted model's window: replies end there (or at max_tokens)


@pytest.fixture
def fuzz_server(clean_env: Path, script: Script) -> Iterator[LiveServer]:
    row = ModelRow(id="scripted::local", provider=SCRIPTED, source="-", options={"n_ctx": CONTEXT})
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def name_the_tools(body: dict, path: str) -> None:
    """A named tool choice must name one of the request's tools the model can call: a rule
    between two fields' values that JSON Schema cannot state, so a positive case names its first
    such tool (the negative cases and tests/surface check the 400 for a name that is not there).
    On the Messages API those are the client tools, with an ``input_schema``."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    if path.startswith("/v1/messages"):
        tools = [t for t in tools if isinstance(t.get("input_schema"), dict)]
    names = [t.get("name") or (t.get("function") or {}).get("name") for t in tools]
    names += [f.get("name") for f in body.get("functions") or [] if isinstance(f, dict)]
    choice, call = body.get("tool_choice"), body.get("function_call")
    if isinstance(choice, dict) and names:
        if isinstance(choice.get("function"), dict):
            choice["function"]["name"] = names[0]
        elif "name" in choice:
            choice["name"] = names[0]
    if isinstance(call, dict) and names:  # legacy: it names a function (or a tool)
        call["name"] = names[0]


def test_every_documented_operation_passes_every_check(fuzz_server: LiveServer, script: Script) -> None:
    script.delay = 0.0
    schema = schemathesis.openapi.from_url(fuzz_server.root + "/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_server.key}"}
    started = time.perf_counter()
    tested = []
    statuses: dict[tuple[str, str], set[int]] = defaultdict(set)
    def fuzz(operation, mode) -> None:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            generates = isinstance(case.body, dict) and ("messages" in case.body or "prompt" in case.body)
            # the scripted model generates until max_tokens: keep replies short (an invalid body
            # stays invalid: a valid max_tokens only replaces none or null)
            if generates and case.body.get("max_tokens") is None:
                case.body["max_tokens"] = 3
            if (isinstance(case.body, dict) and case.operation.path == "/v1/responses"
                    and case.body.get("max_output_tokens") is None):
                case.body["max_output_tokens"] = 3
            if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
                if "messages" in case.body or "prompt" in case.body:
                    case.body["max_tokens"] = 3
                    case.body.pop("max_completion_tokens", None)
                if case.operation.path == "/v1/responses":
                    case.body["max_output_tokens"] = 3
                for name in MODEL_DEPENDENT:
                    case.body.pop(name, None)
                name_the_tools(case.body, case.operation.path)
            response = case.call_and_validate(base_url=fuzz_server.root, headers=headers)
            statuses[(case.operation.label, mode.value)].add(response.status_code)

        check()

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
            assert time.perf_counter() - started < TIME_BOX_SECONDS
        tested.append(operation.label)
    print(dict(statuses))
    assert {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings",
            "GET /v1/models"} <= set(tested)
    for label in ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings"):
        assert 200 in statuses[(label, "positive")], f"{label}: the fuzzer must reach real replies"
        assert 400 in statuses[(label, "negative")], f"{label}: invalid data must be refused"
