"""schemathesis against the server's own /openapi.json (bounded, loopback only)."""

from __future__ import annotations

import importlib
import time
from collections import defaultdict

from hypothesis import HealthCheck, given, settings

from tests.conftest import LiveServer
from tests.hardening.conftest import Script

schemathesis = importlib.import_module("schemathesis")

EXAMPLES_PER_OPERATION = 40
# Not "positive_data_acceptance": schema-valid bodies are still refused on purpose (an unknown
# model id, every message empty, a prompt over the context, n > 1) with documented 4xx envelopes.
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.response_headers_conformance]
TIME_BOX_SECONDS = 60


def test_every_documented_operation_conforms_and_never_5xx(scripted_server: LiveServer,
                                                           script: Script) -> None:
    script.delay = 0.0
    schema = schemathesis.openapi.from_url(scripted_server.root + "/openapi.json")
    headers = {"Authorization": f"Bearer {scripted_server.key}"}
    started = time.perf_counter()
    tested = []
    statuses: dict[str, set[int]] = defaultdict(set)
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            if isinstance(case.body, dict):
                case.body["max_tokens"] = 3  # the scripted model generates until max_tokens
                if case.operation.path == "/v1/responses":
                    case.body["max_output_tokens"] = 3
                case.body.pop("max_completion_tokens", None)
                case.body["stream"] = bool(case.body.get("stream"))
            response = case.call_and_validate(base_url=scripted_server.root, headers=headers, checks=CHECKS)
            statuses[case.operation.label].add(response.status_code)

        check()
        tested.append(operation.label)
        assert time.perf_counter() - started < TIME_BOX_SECONDS
    assert "POST /v1/chat/completions" in tested and "GET /v1/models" in tested
    print(dict(statuses))
    assert {200, 400} <= statuses["POST /v1/chat/completions"], "the fuzzer must reach real replies"
