"""Hydra's loop driven by a scripted model: exact calls made and answers given."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.hydra import HydraAgent, HydraRequestError, Origin, Progress, StepRecord, TurnReport
from app.providers.base import ChatChunk, ChatMessage, ChatRequest, Usage
from app.settings import SettingsStore
from app.verbas import Verba, VerbaContext, VerbaRegistry, verba
from tests.fakes import Reply, ScriptedModel
from tests.hydra.support import CHAT_PLAN, call, plan


def req(text: str = "What is 6 times 7?", **kw: object) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", text)], **kw)


async def test_chat_path_when_tools_disallowed(agent: HydraAgent,
                                               store: SettingsStore, origin: Origin) -> None:
    store.update(hydra_tools_allowed=False)
    model = ScriptedModel(["Hello there, friend."])
    result, report = await agent.complete(model, req("Hi!", temperature=0.3, max_tokens=50), origin)
    assert result.text == "Hello there, friend."
    assert result.finish_reason == "stop" and report.steps == []
    assert len(model.calls) == 1
    sent = model.calls[0]
    assert sent.tools is None and sent.tool_choice is None and sent.response_format is None
    assert sent.temperature == 0.3 and sent.max_tokens == 50  # client sampling -> composer
    assert "You are Hydra" in model.system(0) and "cannot use tools" in model.system(0)
    assert [m.role for m in sent.messages] == ["system", "user"]
    assert result.usage == Usage(10, 2) and report.llm_calls == 1


async def test_no_enabled_verba_means_one_plain_call(agent: HydraAgent,
                                                     store: SettingsStore, origin: Origin) -> None:
    store.update(verbas={"clock": {"enabled": False}, "calculator": {"enabled": False}})
    model = ScriptedModel(["Just talking."])
    result, _ = await agent.complete(model, req(), origin)
    assert result.text == "Just talking." and len(model.calls) == 1
    assert model.calls[0].response_format is None


async def test_planner_chooses_chat(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([CHAT_PLAN, "Nice to meet you."])
    result, report = await agent.complete(model, req("My name is Bo."), origin)
    assert result.text == "Nice to meet you." and report.steps == []
    planner = model.calls[0]
    assert planner.response_format["type"] == "json_schema"
    schema = planner.response_format["json_schema"]["schema"]
    assert schema["properties"]["steps"]["items"]["properties"]["verba"]["enum"] == [
        "clock", "calculator"]
    assert planner.response_format["json_schema"]["strict"] is True
    assert planner.temperature == 0.0
    assert "No tool was used" in model.system(1)
    assert result.usage == Usage(20, 4)


async def test_one_tool(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([plan(("calculator", "multiply 6 by 7")),
                           call("calculator", expression="6*7"),
                           "6 times 7 is 42."])
    result, report = await agent.complete(model, req(), origin)
    assert result.text == "6 times 7 is 42."
    assert report.steps == [StepRecord("calculator", True, "6*7 = 42")]
    assert len(model.calls) == 3
    doer = model.calls[1]
    assert "calculator" in model.system(1) and "Clock" not in model.system(1)  # one contract
    fmt = doer.response_format["json_schema"]
    assert fmt["schema"]["properties"]["verba"]["enum"] == ["calculator"]
    assert fmt["schema"]["properties"]["arguments"]["required"] == ["expression"]
    assert "multiply 6 by 7" in doer.messages[-1].content
    assert "Calculator (ok): 6*7 = 42" in model.system(2)
    assert result.usage == Usage(30, 6) and report.usage == result.usage


async def test_two_steps_result_feeds_next(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([plan(("calculator", "add"), ("calculator", "double it")),
                           call("calculator", expression="2+3"),
                           call("calculator", expression="5*2"),
                           "The answer is 10."])
    result, report = await agent.complete(model, req("Add 2 and 3 then double"), origin)
    assert [s.summary for s in report.steps] == ["2+3 = 5", "5*2 = 10"]
    assert "2+3 = 5" in model.calls[2].messages[-1].content  # step 1's result seen by step 2
    assert "1. Calculator (ok): 2+3 = 5" in model.system(3)
    assert "2. Calculator (ok): 5*2 = 10" in model.system(3)
    assert result.text == "The answer is 10." and len(model.calls) == 4


async def test_invalid_call_repaired(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([plan(("calculator", "compute")),
                           call("calculator", expr="6*7"),
                           call("calculator", expression="6*7"),
                           "42."])
    result, report = await agent.complete(model, req(), origin)
    assert report.steps == [StepRecord("calculator", True, "6*7 = 42")]
    repair = model.calls[2].messages
    assert repair[-2].role == "assistant" and '"expr"' in repair[-2].content
    assert "invalid" in repair[-1].content and "expression" in repair[-1].content
    assert result.text == "42." and len(model.calls) == 4


async def test_repair_fails_answers_honestly(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([plan(("calculator", "compute")), "I think 42", "{\"verba\": \"clock\"}"])
    result, report = await agent.complete(model, req(), origin)
    assert len(model.calls) == 3  # plan, call, repair; no composer call
    assert result.text.startswith("I couldn't do that: the model could not produce a valid call "
                                  "to Calculator")
    assert "nothing was done" in result.text
    assert report.steps[0].verba == "calculator" and not report.steps[0].ok
    assert result.finish_reason == "stop" and result.usage == Usage(30, 6)


def _extra(registry: VerbaRegistry, *verbas: Verba) -> None:
    for v in verbas:
        v.default_enabled = True
        registry.add(v, source="test")


async def test_verba_raises(agent: HydraAgent, registry: VerbaRegistry, origin: Origin) -> None:
    @verba(id="boom", name="Boom", description="Always fails.")
    def boom(what: str) -> str:
        raise RuntimeError(f"kaput {what}")

    _extra(registry, boom)
    model = ScriptedModel([plan(("boom", "x"), ("calculator", "y")), call("boom", what="now"),
                           "Sorry, that failed."])
    result, report = await agent.complete(model, req(), origin)
    assert report.steps == [StepRecord("boom", False, "Boom failed: RuntimeError: kaput now")]
    assert "Boom (FAILED): Boom failed: RuntimeError: kaput now" in model.system(2)
    assert "remaining 1 step(s) were not run" in model.system(2)
    assert len(model.calls) == 3 and result.text == "Sorry, that failed."


async def test_verba_times_out(agent: HydraAgent, store: SettingsStore, registry: VerbaRegistry,
                               origin: Origin) -> None:
    store.update(hydra={"tool_timeout_seconds": 0.2})

    @verba(id="slow", name="Slow", description="Takes forever.")
    async def slow() -> str:
        await asyncio.sleep(5)
        return "never"

    _extra(registry, slow)
    model = ScriptedModel([plan(("slow", "wait")), call("slow"), "It took too long."])
    started = asyncio.get_running_loop().time()
    _, report = await agent.complete(model, req(), origin)
    assert asyncio.get_running_loop().time() - started < 2
    assert report.steps == [StepRecord("slow", False, "Slow did not finish within 0.2 s "
                                                      "(the per-tool time limit)")]
    assert "per-tool time limit" in model.system(2)


async def test_max_steps(agent: HydraAgent, store: SettingsStore, origin: Origin) -> None:
    store.update(hydra={"max_steps": 2})
    model = ScriptedModel([plan(("calculator", "a"), ("calculator", "b"), ("calculator", "c")),
                           call("calculator", expression="1+1"), call("calculator", expression="2+2"),
                           "Done two."])
    result, report = await agent.complete(model, req(), origin)
    assert len(report.steps) == 2 and len(model.calls) == 4
    assert report.notes == ["The plan had 3 steps; only the first 2 ran (the step limit is 2)."]
    assert "only the first 2 ran" in model.system(3) and result.text == "Done two."
    assert model.calls[0].response_format["json_schema"]["schema"]["properties"]["steps"][
        "maxItems"] == 2


async def test_max_llm_calls(agent: HydraAgent, store: SettingsStore, origin: Origin) -> None:
    store.update(hydra={"max_llm_calls": 3})
    model = ScriptedModel([plan(("calculator", "a"), ("calculator", "b")),
                           call("calculator", expression="1+1"), "Only one done."])
    result, report = await agent.complete(model, req(), origin)
    assert len(model.calls) == 3 and report.llm_calls == 3
    assert [s.summary for s in report.steps] == ["1+1 = 2"]
    assert "limit of 3 model calls per turn was reached" in report.notes[0]
    assert result.text == "Only one done."


async def test_turn_timeout(agent: HydraAgent, store: SettingsStore, origin: Origin) -> None:
    store.update(hydra={"turn_timeout_seconds": 0.3})
    model = ScriptedModel([Reply(plan(("calculator", "a")), delay=3)])
    result, report = await agent.complete(model, req(), origin)
    assert result.text == ("I ran out of time before I could finish: this turn is limited to "
                           "0.3 seconds.")
    assert report.notes == ["The turn time limit (0.3 s) was reached."]
    assert result.finish_reason == "stop"


async def test_composer_cut_by_turn_timeout(agent: HydraAgent, store: SettingsStore, origin: Origin) -> None:
    store.update(hydra_tools_allowed=False, hydra={"turn_timeout_seconds": 0.3})
    model = ScriptedModel([Reply("slow words", delay=3)])
    result, report = await agent.complete(model, req(), origin)
    assert result.finish_reason == "length" and "cut short by the turn time limit" in result.text
    assert report.finish_reason == "length" and "cut the answer short" in report.notes[0]


async def test_tools_disallowed_refuses_attempted_call(agent: HydraAgent,
                                                       store: SettingsStore, origin: Origin) -> None:
    store.update(hydra_tools_allowed=False)
    model = ScriptedModel([Reply("Let me check.", tool_calls=[("clock", "{}")])])
    result, report = await agent.complete(model, req("What time is it?"), origin)
    assert len(model.calls) == 1 and model.calls[0].tools is None
    assert report.steps == [StepRecord("clock", False, "refused: the answer may not call tools")]
    assert result.text.startswith("Let me check.") and "did not run clock" in result.text
    assert result.finish_reason == "stop"


async def test_origin_cannot_be_overridden(agent: HydraAgent, registry: VerbaRegistry,
                                           origin: Origin) -> None:
    got: list[tuple[dict, Origin]] = []

    @verba(id="whoami", name="Who am I", description="Says who asked.")
    def whoami(ctx: VerbaContext, note: str = "") -> str:
        got.append(({"note": note}, ctx.origin))
        return f"asked by {ctx.origin.user}"

    _extra(registry, whoami)
    evil = {"note": "hi", "origin": {"session_id": "evil", "user": "root"}, "user": "root",
            "session_id": "evil", "api_key_id": "stolen", "platform": "admin"}
    model = ScriptedModel([plan(("whoami", "who")), json.dumps({"verba": "whoami",
                                                                "arguments": evil}), "You are alice."])
    _, report = await agent.complete(model, req(), origin)
    assert got == [({"note": "hi"}, origin)]
    assert report.notes == ["Ignored api_key_id, origin, platform, session_id, user in the call to "
                            "Who am I: who is asking comes from the request, never from the model."]
    assert report.steps == [StepRecord("whoami", True, "asked by alice")]
    assert "ctx" not in whoami.parameters["properties"]


async def test_native_tool_calling(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([plan(("calculator", "c")),
                           Reply(tool_calls=[("calculator", '{"expression": "2**10"}')]),
                           "1024."], native_tool_calls=True)
    result, report = await agent.complete(model, req(), origin)
    doer = model.calls[1]
    assert doer.tool_choice == {"type": "function", "function": {"name": "calculator"}}
    assert [t["function"]["name"] for t in doer.tools] == ["calculator"]
    assert doer.response_format is None
    assert report.steps == [StepRecord("calculator", True, "2**10 = 1024")]
    assert result.text == "1024." and model.system(2).count("2**10 = 1024") == 1


async def test_history_cut_system_kept_tail_ignored(agent: HydraAgent,
                                                    store: SettingsStore, origin: Origin) -> None:
    store.update(hydra_tools_allowed=False, hydra={"history_messages": 2})
    msgs = [ChatMessage("system", "Answer in French."), ChatMessage("user", "u1"),
            ChatMessage("assistant", "a1"), ChatMessage("user", "u2"),
            ChatMessage("assistant", "a2"), ChatMessage("user", "latest"),
            ChatMessage("assistant", "ignored trailing")]
    model = ScriptedModel(["Bonjour."])
    await agent.complete(model, ChatRequest(messages=msgs), origin)
    sent = model.calls[0].messages
    assert [(m.role, m.content) for m in sent[1:]] == [("user", "u2"), ("assistant", "a2"),
                                                       ("user", "latest")]
    assert "Answer in French." in sent[0].content


async def test_no_user_message_is_an_error(agent: HydraAgent, origin: Origin) -> None:
    with pytest.raises(HydraRequestError, match="user message"):
        await agent.complete(ScriptedModel([]), ChatRequest([ChatMessage("system", "x")]), origin)


async def test_stream_events(store: SettingsStore, registry: VerbaRegistry, origin: Origin) -> None:
    @verba(id="nap", name="Nap", description="Sleeps a little.")
    async def nap() -> str:
        await asyncio.sleep(0.3)
        return "rested"

    _extra(registry, nap)
    agent = HydraAgent(store, registry, None, heartbeat_seconds=0.05)
    model = ScriptedModel([plan(("nap", "rest")), call("nap"), "I had a good nap today."])
    events = [e async for e in agent.run(model, req(), origin)]
    assert isinstance(events[0], Progress) and events[0].text == "Hydra is planning…"
    assert Progress("Hydra is still working…") in events  # keep-alive while the tool runs
    chunks = [e for e in events if isinstance(e, ChatChunk)]
    assert [c.text for c in chunks[:-1]] == ["I ", "had ", "a ", "good ", "nap ", "today."]
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(30, 6)
    assert isinstance(events[-1], TurnReport) and events[-1].steps[0].summary == "rested"
    first_text = events.index(chunks[0])
    assert all(not isinstance(e, Progress) or e.text == "Hydra is still working…"
               for e in events[first_text:])


NAMED = {"type": "function", "function": {"name": "calculator"}}


async def test_tool_choice_named_skips_the_planner(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([call("calculator", expression="3*3"), "Nine."])
    result, report = await agent.complete(model, req("3 times 3?", tool_choice=NAMED), origin)
    assert len(model.calls) == 2 and "exactly one call to the tool calculator" in model.system(0)
    assert "This step: 3 times 3?" in model.calls[0].messages[-1].content
    assert report.steps == [StepRecord("calculator", True, "3*3 = 9")] and result.text == "Nine."
    assert model.calls[1].tool_choice is None  # the composer is never offered tools


async def test_tool_choice_required_forces_a_plan(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel([CHAT_PLAN, CHAT_PLAN])
    result, report = await agent.complete(model, req(tool_choice="required"), origin)
    schema = model.calls[0].response_format["json_schema"]["schema"]
    assert schema["properties"]["action"]["enum"] == ["use_tools"]
    assert schema["properties"]["steps"]["minItems"] == 1
    assert "must be handled with tools" in model.system(0)
    assert "a tool must be used" in model.calls[1].messages[-1].content  # the repair prompt
    assert len(model.calls) == 2 and report.steps == []
    assert result.text == ("I couldn't do that: the model did not make a usable plan (a tool must "
                           "be used for this request), so nothing was done.")


async def test_tool_choice_none_means_no_tools(agent: HydraAgent, origin: Origin) -> None:
    model = ScriptedModel(["Words only."])
    result, _ = await agent.complete(model, req(tool_choice="none"), origin)
    assert len(model.calls) == 1 and "cannot use tools" in model.system(0)
    assert result.text == "Words only."


@pytest.mark.parametrize(("choice", "tools_on", "message"), [
    ({"type": "function", "function": {"name": "web_fetch"}}, True,
     "names 'web_fetch', which is not an enabled Verba \\(enabled: clock, calculator\\)"),
    ("required", False, "Hydra tools are turned off"),
    ("sometimes", True, "tool_choice must be"),
])
async def test_tool_choice_that_cannot_be_honoured(agent: HydraAgent, store: SettingsStore, origin: Origin,
                                                   choice: object, tools_on: bool,
                                                   message: str) -> None:
    store.update(hydra_tools_allowed=tools_on)
    model = ScriptedModel([])
    with pytest.raises(HydraRequestError, match=message) as info:
        await agent.complete(model, req(tool_choice=choice), origin)
    assert info.value.status == 400 and info.value.param == "tool_choice" and model.calls == []
