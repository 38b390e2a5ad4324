"""Tool calls in the family's own format under ``auto``, through the real server, the real
runtimes (llama.cpp, MLX, Transformers) and the official openai SDK.

Scripted tiny models play: text then a Hermes call, two parallel Hermes calls, a malformed
call, a Llama 3.x JSON call, a Mistral ``[TOOL_CALLS]`` reply, and a gpt-oss harmony reply
that thinks, then calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.tinymodels.scripted import USER_TURN, ScriptedFiles, hermes_template, write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.reasoning import family_templates as fam

TOOLS = [{"type": "function", "function": {
    "name": "get_time", "description": "The time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
QUESTION = [{"role": "user", "content": "What time is it?"}]


def hermes(city: str) -> str:
    return f'<tool_call>\n{{"name": "get_time", "arguments": {{"city": "{city}"}}}}\n</tool_call>'


MALFORMED = 'Checking.<tool_call>\n{"name": "get_time", "arguments": {"city": }\n</tool_call>'

CASES: dict[str, dict[str, Any]] = {
    "text_then_call": {"template": hermes_template(), "turn": USER_TURN,
                       "script": "Let me check the clock." + hermes("Paris"),
                       "content": "Let me check the clock.", "calls": [{"city": "Paris"}]},
    "parallel": {"template": hermes_template(), "turn": USER_TURN,
                 "script": hermes("Paris") + "\n" + hermes("Tokyo"),
                 "content": None, "calls": [{"city": "Paris"}, {"city": "Tokyo"}]},
    "malformed": {"template": hermes_template(), "turn": USER_TURN, "script": MALFORMED,
                  "content": MALFORMED, "calls": []},
    "llama3": {"template": fam.LLAMA3, "turn": "<|start_header_id|>assistant<|end_header_id|>\n\n",
               "script": '{"name": "get_time", "parameters": {"city": "Rome"}}',
               "content": None, "calls": [{"city": "Rome"}]},
    "mistral": {"template": fam.MISTRAL, "turn": "[/INST]",
                "script": 'One moment.[TOOL_CALLS][{"name": "get_time", "arguments": {"city": "Oslo"}}]',
                "content": "One moment.", "calls": [{"city": "Oslo"}]},
    "harmony": {"template": fam.GPT_OSS, "turn": "?<|end|><|start|>assistant",
                "script": "<|channel|>analysis<|message|>Need the clock tool.<|end|><|start|>"
                          "assistant<|channel|>commentary to=functions.get_time <|constrain|>json"
                          '<|message|>{"city": "Lima"}',
                "content": None, "calls": [{"city": "Lima"}], "reasoning": "Need the clock tool."},
}
RUNTIMES = ("llama_cpp", "mlx_lm", "transformers")


def _row(runtime: str, files: ScriptedFiles) -> Any:
    from app.providers.hf_transformers import TransformersProvider
    from app.providers.llama_cpp import LlamaCppProvider
    from app.providers.mlx_lm import MlxProvider

    if runtime == "llama_cpp":
        return LlamaCppProvider.row_for(str(files.gguf))
    return (MlxProvider if runtime == "mlx_lm" else TransformersProvider).row_for(str(files.hf))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScriptedFiles]:
    root = tmp_path_factory.mktemp("toolcall-models")
    return {name: write_scripted(root / name, {c["turn"]: c["script"]}, chat_template=c["template"])
            for name, c in CASES.items()}


@pytest.fixture
def server(clean_env: Path, files: dict[str, ScriptedFiles]) -> Iterator[tuple[LiveServer, dict]]:
    rows = {(rt, name): _row(rt, f) for name, f in files.items() for rt in RUNTIMES}
    live = start_live_server(clean_env, list(rows.values()), None)
    yield live, rows
    live.services.shutdown()  # type: ignore[attr-defined]


def _args(calls: Any) -> list[dict]:
    assert all(c.type == "function" and c.function.name == "get_time" and c.id for c in calls or [])
    return [json.loads(c.function.arguments) for c in calls or []]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tool_calls_in_the_familys_format(server: tuple[LiveServer, dict], runtime: str) -> None:
    live, rows = server
    client = live.client()
    for name, case in CASES.items():
        kw = {"model": rows[(runtime, name)].id, "messages": QUESTION, "tools": TOOLS,
              "tool_choice": "auto", "temperature": 0}
        whole = client.chat.completions.create(**kw)
        msg, finish = whole.choices[0].message, whole.choices[0].finish_reason
        assert (msg.content, _args(msg.tool_calls)) == (case["content"], case["calls"]), name
        assert finish == ("tool_calls" if case["calls"] else "stop"), name
        assert (msg.model_extra or {}).get("reasoning_content") == case.get("reasoning"), name

        chunks = [c for c in client.chat.completions.create(**kw, stream=True) if c.choices]
        seen: set[int] = set()
        for chunk in chunks:
            frags = chunk.choices[0].delta.tool_calls or []
            assert len({f.index for f in frags}) == len(frags), "two fragments of one call"
            for f in frags:
                if f.index not in seen:  # the first fragment: id, type, name, empty arguments
                    seen.add(f.index)
                    assert f.id and f.type == "function" and f.function.name == "get_time"
                    assert f.function.arguments == ""
                else:
                    assert f.id is None and not f.function.name
        assert len(seen) == len(case["calls"]), name
        assert chunks[-1].choices[0].finish_reason == finish

        with client.chat.completions.stream(**kw) as s:
            final = s.get_final_completion()
        helper = final.choices[0].message
        assert helper.content == msg.content, name
        assert _args(helper.tool_calls) == _args(msg.tool_calls), name
        assert [c.function.name for c in helper.tool_calls or []] == \
            [c.function.name for c in msg.tool_calls or []]
        assert final.choices[0].finish_reason == finish
