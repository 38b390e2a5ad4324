"""Thinking blocks and a natural end of turn, on every local runtime (scripted tiny models)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.tinymodels.scripted import ScriptedFiles, write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.messages.conftest import RUNTIMES, anthropic_client, prompt_size
from tests.reasoning import family_templates as fam

TURN = "<|im_start|>assistant\n"
THOUGHT = "The user wants the time. Check the clock."
ANSWER = "It is noon."
QUESTION = [{"role": "user", "content": "What time is it?"}]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> ScriptedFiles:
    return write_scripted(tmp_path_factory.mktemp("qwen3"), {TURN: f"<think>{THOUGHT}</think>\n\n{ANSWER}"},
                          chat_template=fam.QWEN3)


@pytest.fixture(params=RUNTIMES)
def thinking_server(request: pytest.FixtureRequest, clean_env: Path, qwen3: ScriptedFiles
                    ) -> Iterator[LiveServer]:
    from app.providers import provider_class

    source = qwen3.gguf if request.param == "llama_cpp" else qwen3.hf
    row = provider_class(request.param).row_for(str(source))
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_thinking_blocks_created_streamed_and_round_tripped(thinking_server: LiveServer) -> None:
    client = anthropic_client(thinking_server)
    msg = client.messages.create(model="claude-sonnet-4-5", messages=QUESTION, max_tokens=100)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == THOUGHT and msg.content[1].text.strip() == ANSWER
    assert msg.stop_reason == "end_turn"

    kinds = []
    with client.messages.stream(model="claude-sonnet-4-5", messages=QUESTION, max_tokens=100) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = stream.get_final_message()
    assert "thinking_delta" in kinds and "text_delta" in kinds
    assert kinds.index("thinking_delta") < kinds.index("text_delta")
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == THOUGHT and final.content[1].text == msg.content[1].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == msg.usage.output_tokens

    history = [*QUESTION, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
               {"role": "user", "content": "And now?"}]
    again = client.messages.create(model="claude-sonnet-4-5", messages=history, max_tokens=100)
    assert again.stop_reason == "end_turn"
    counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=history)
    assert counted.input_tokens == prompt_size(again.usage)
