"""Each family's tool-call syntax, parsed while streaming (unit tests of the parser)."""

from __future__ import annotations

import json

import pytest

from app.providers.base import accumulate_tool_calls
from app.providers.toolformats import (
    HERMES,
    LLAMA3,
    MISTRAL,
    FormatParser,
    ToolFormat,
    detect_tool_format,
)
from tests.reasoning import family_templates as fam

CALL = '{"name": "get_time", "arguments": {"city": "Paris"}}'


def run(fmt: ToolFormat, text: str, step: int, **kw: bool) -> tuple[str, list[dict], FormatParser]:
    parser = FormatParser(fmt, **kw)
    out, frags = "", []
    for i in range(0, len(text), step):
        t, f = parser.feed(text[i:i + step])
        out, frags = out + t, frags + f
    t, f = parser.finish()
    calls: dict = {}
    accumulate_tool_calls(calls, frags + f)
    # The first fragment of each call has id and name and empty arguments.
    firsts = {}
    for frag in frags + f:
        firsts.setdefault(frag.index, frag)
    assert all(d.id and d.name and d.arguments == "" for d in firsts.values())
    return out + t, [calls[i] for i in sorted(calls)], parser


def simple(calls: list[dict]) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_hermes_text_then_calls(step: int) -> None:
    text, calls, _ = run(HERMES, f"Let me check.<tool_call>\n{CALL}\n</tool_call>", step)
    assert text == "Let me check." and simple(calls) == [("get_time", {"city": "Paris"})]
    two = f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n{CALL.replace('Paris', 'Oslo')}\n</tool_call>"
    text, calls, _ = run(HERMES, two, step)
    assert text == "" and simple(calls) == [("get_time", {"city": "Paris"}), ("get_time", {"city": "Oslo"})]
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize("step", [1, 1000])
def test_malformed_call_is_text(step: int) -> None:
    bad = 'Oops.<tool_call>\n{"name": "get_time", "arguments": {"city": }\n</tool_call>'
    text, calls, parser = run(HERMES, bad, step)
    assert (text, calls, parser.calls, parser.malformed) == (bad, [], 0, True)
    cut = 'Sure.<tool_call>\n{"name": "get_ti'  # cut short by max_tokens
    assert run(HERMES, cut, step)[:2] == (cut, [])


@pytest.mark.parametrize("step", [1, 1000])
def test_llama3_and_mistral(step: int) -> None:
    llama = '<|python_tag|>{"name": "get_time", "parameters": {"city": "Paris"}}'
    assert simple(run(LLAMA3, llama, step)[1]) == [("get_time", {"city": "Paris"})]
    bare = '{"name": "get_time", "parameters": {"city": "Paris"}}; {"name": "f", "parameters": {}}'
    assert simple(run(LLAMA3, bare, step)[1]) == [("get_time", {"city": "Paris"}), ("f", {})]
    v3 = f'[TOOL_CALLS][{CALL}, {{"name": "f", "arguments": {{}}}}]'
    assert simple(run(MISTRAL, v3, step)[1]) == [("get_time", {"city": "Paris"}), ("f", {})]
    v11 = 'I will look.[TOOL_CALLS]get_time[ARGS]{"city": "Paris"}[TOOL_CALLS]f[ARGS]{}'
    text, calls, _ = run(MISTRAL, v11, step)
    assert text == "I will look." and simple(calls) == [("get_time", {"city": "Paris"}), ("f", {})]
    assert run(MISTRAL, "[TOOL_CALLS]not json", step)[:2] == ("[TOOL_CALLS]not json", [])


@pytest.mark.parametrize(("template", "expected"), [
    (fam.QWEN3, "hermes"), (fam.LLAMA3, "llama3"), (fam.MISTRAL, "mistral"),
    (fam.MAGISTRAL, "mistral"), (fam.DEEPSEEK_R1, "hermes"), (fam.GPT_OSS, "hermes")])
def test_detection_from_family_templates(template: str, expected: str) -> None:
    assert detect_tool_format(template).name == expected
