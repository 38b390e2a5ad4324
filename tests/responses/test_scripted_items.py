"""Output items that need an exact reply: reasoning items and freeform (``custom``) tool calls,
on scripted tiny models through every local runtime, the real server and the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.tinymodels.scripted import USER_TURN, ScriptedFiles, write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.reasoning import family_templates as fam

RUNTIMES = ("llama_cpp", "mlx_lm", "hf_transformers")
THOUGHT, ANSWER = "The user wants the time. Check the clock.", "It is noon."
PATCH = "*** Begin Patch"
CODEX_TOOLS: list[dict[str, Any]] = [  # as Codex sends them (plus a custom one and local_shell)
    {"type": "function", "name": "exec_command", "description": "Run a command.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                    "additionalProperties": False}},
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "web_search", "external_web_access": False},
    {"type": "local_shell"},
    {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
     "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]},
]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScriptedFiles]:
    root = tmp_path_factory.mktemp("responses-scripted")
    return {
        "thinker": write_scripted(root / "thinker", {USER_TURN: f"<think>{THOUGHT}</think>\n\n{ANSWER}"},
                                  chat_template=fam.QWEN3),
        "patcher": write_scripted(root / "patcher", {USER_TURN: '<tool_call>\n{"name": "apply_patch", '
                                                     f'"arguments": {{"input": "{PATCH}"}}}}\n</tool_call>'}),
    }


@pytest.fixture(params=RUNTIMES)
def served(request: pytest.FixtureRequest, clean_env: Path, scripted: dict[str, ScriptedFiles]
           ) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    from app.providers import provider_class

    cls = provider_class(request.param)
    rows = {name: cls.row_for(str(f.gguf if request.param == "llama_cpp" else f.hf))
            for name, f in scripted.items()}
    live = start_live_server(clean_env, list(rows.values()), rows["thinker"].id)
    yield live, {name: row.id for name, row in rows.items()}
    live.services.shutdown()  # type: ignore[attr-defined]


def test_reasoning_items_streamed_stored_and_round_tripped(served: tuple[LiveServer, dict[str, str]]
                                                          ) -> None:
    live, models = served
    client = live.client()
    whole = client.responses.create(model=models["thinker"], input="What time is it?", temperature=0)
    assert [o.type for o in whole.output] == ["reasoning", "message"]
    assert whole.output[0].content[0].text == THOUGHT and whole.output_text == ANSWER
    assert whole.output[0].id.startswith("rs_") and whole.status == "completed"

    with client.responses.stream(model=models["thinker"], input="What time is it?",
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_text.delta"]
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == THOUGHT
    done = next(e for e in events if e.type == "response.reasoning_text.done")
    assert done.text == THOUGHT and kinds[-1] == "response.completed"
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output_text == ANSWER

    # a client (Codex does) sends the reasoning item back with the rest of the conversation
    again = client.responses.create(model=models["thinker"], temperature=0, store=True, input=[
        {"role": "user", "content": "What time is it?"},
        whole.output[0].model_dump(exclude_none=True), whole.output[1].model_dump(exclude_none=True),
        {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]}])
    assert again.output_text == ANSWER
    listed = client.responses.input_items.list(again.id, order="asc").data
    assert [i.type for i in listed] == ["message", "reasoning", "message", "message"]


def test_codex_tool_types_are_accepted_and_custom_calls_come_back(
        served: tuple[LiveServer, dict[str, str]]) -> None:
    live, models = served
    client = live.client()
    r = client.responses.create(model=models["patcher"], input="Fix it.", tools=CODEX_TOOLS,
                                temperature=0)
    assert [o.type for o in r.output] == ["custom_tool_call"]
    call = r.output[0]
    assert call.name == "apply_patch" and call.input == PATCH and call.call_id
    assert [t.type for t in r.tools] == [t["type"] for t in CODEX_TOOLS]  # all echoed

    with client.responses.stream(model=models["patcher"], input="Fix it.", tools=CODEX_TOOLS,
                                 temperature=0) as stream:
        events = list(stream)
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, i.input) for i in done] == [("custom_tool_call", PATCH)]

    # the custom call and its output continue the conversation
    follow = client.responses.create(model=models["patcher"], previous_response_id=r.id, input=[
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],
        tools=CODEX_TOOLS, temperature=0)
    assert follow.status == "completed"
