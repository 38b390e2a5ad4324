"""The reasoning splitters, the format registry and the template switches (unit tests)."""

from __future__ import annotations

import pytest

from app.providers.base import ChatChunk, Usage
from app.providers.reasoning import (
    REASONING_FORMATS,
    HarmonyFormat,
    Split,
    ThinkTags,
    detect_reasoning,
    register_reasoning_format,
    split_reasoning,
    template_switches,
)
from tests.reasoning import family_templates as fam


def run(splitter, text: str, step: int) -> Split:
    """Feed ``text`` in pieces of ``step`` characters; the whole split."""
    out = Split()
    for i in range(0, len(text), step):
        out += splitter.feed(text[i:i + step])
    out += splitter.finish()
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_think_tags_split_whatever_the_chunking(step: int) -> None:
    fmt = ThinkTags()
    out = run(fmt.splitter("<|im_start|>assistant\n"), "<think>\nplan it</think>\n\nThe answer.", step)
    assert (out.reasoning, out.content) == ("\nplan it", "The answer.")
    # A template that opened the block: the output holds only the closing tag.
    out = run(fmt.splitter("<｜Assistant｜><think>\n"), "plan it</think>The answer.", step)
    assert (out.reasoning, out.content) == ("plan it", "The answer.")
    out = run(fmt.splitter("x"), "No thinking <think> here.", step)
    assert (out.reasoning, out.content) == ("", "No thinking <think> here.")
    out = run(fmt.splitter("x"), "<think>cut short by max_tok", step)
    assert (out.reasoning, out.content) == ("cut short by max_tok", "")
    out = run(fmt.splitter("x"), "<thin", step)  # a partial tag at the end is text
    assert (out.reasoning, out.content) == ("", "<thin")


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_harmony_channels(step: int) -> None:
    text = ("<|channel|>analysis<|message|>User wants time.<|end|><|start|>assistant"
            "<|channel|>final<|message|>It is noon.")
    out = run(HarmonyFormat().splitter("<|start|>assistant"), text, step)
    assert (out.reasoning, out.content, out.calls) == ("User wants time.", "It is noon.", [])
    call = ("<|channel|>analysis<|message|>Need the tool.<|end|><|start|>assistant<|channel|>"
            "commentary to=functions.get_time <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>")
    out = run(HarmonyFormat().splitter(""), call, step)
    assert out.reasoning == "Need the tool." and out.content == ""
    assert out.calls == [("get_time", '{"city": "Paris"}')]
    out = run(HarmonyFormat().splitter(""), "Plain text, no channels.", step)
    assert (out.reasoning, out.content) == ("", "Plain text, no channels.")


def test_split_reasoning_streams_deltas_and_keeps_the_end() -> None:
    raw = [ChatChunk(text=t) for t in ("<think>a", "b</th", "ink>c", "d")]
    raw.append(ChatChunk(finish_reason="stop", usage=Usage(3, 4)))
    out = list(split_reasoning(raw, ThinkTags().splitter("")))
    assert [(c.reasoning, c.text) for c in out[:-1]] == [("a", ""), ("b", ""), ("", "c"), ("", "d")]
    assert out[-1].finish_reason == "stop" and out[-1].usage == Usage(3, 4)


def test_split_reasoning_turns_harmony_calls_into_tool_calls() -> None:
    raw = [ChatChunk(text="<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}"),
           ChatChunk(finish_reason="stop")]
    out = list(split_reasoning(raw, HarmonyFormat().splitter(""), lambda: "call_1"))
    calls = [d for c in out for d in c.tool_calls or []]
    assert [(d.index, d.id, d.name, d.arguments) for d in calls] == [(0, "call_1", "f", ""),
                                                                      (0, None, None, "{}")]
    assert out[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(("template", "expected"), [
    (fam.QWEN3, "tags:<think>"), (fam.DEEPSEEK_R1, "tags:<think>"), (fam.LLAMA3, None),
    (fam.MISTRAL, None), (fam.MAGISTRAL, "tags:[THINK]"), (fam.GPT_OSS, "harmony")])
def test_detection_from_family_templates(template: str, expected: str | None) -> None:
    fmt = detect_reasoning(template)
    assert (fmt.name if fmt else None) == expected


def test_detection_from_special_tokens_and_prompt_opener() -> None:
    assert detect_reasoning("{{ messages }}", ["<think>", "</think>"]).name == "tags:<think>"
    assert detect_reasoning("{{ messages }}", ["<|channel|>"]).name == "harmony"
    fmt = detect_reasoning(fam.DEEPSEEK_R1)
    assert fmt.splitter("<｜User｜>hi<｜Assistant｜><think>\n").thinking
    assert not detect_reasoning(fam.QWEN3).splitter("<|im_start|>assistant\n").thinking


def test_a_format_can_be_registered() -> None:
    fmt = ThinkTags("<reason>", "</reason>")
    register_reasoning_format(fmt)
    try:
        found = detect_reasoning("... </reason> ...")
        assert found is fmt
        out = run(found.splitter(""), "<reason>r</reason>a", 1)
        assert (out.reasoning, out.content) == ("r", "a")
    finally:
        REASONING_FORMATS.remove(fmt)


def test_template_switches() -> None:
    assert template_switches(fam.QWEN3, "none") == {"enable_thinking": False}
    assert template_switches(fam.QWEN3, "high") == {"enable_thinking": True}
    assert template_switches(fam.GPT_OSS, "minimal") == {"reasoning_effort": "low"}
    assert template_switches(fam.GPT_OSS, "high") == {"reasoning_effort": "high"}
    assert template_switches(fam.LLAMA3, "high") == {}
    assert template_switches(fam.QWEN3, None) == {}
