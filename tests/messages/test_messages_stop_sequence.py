"""``stop_reason: "stop_sequence"`` and the matched ``stop_sequence``, on every local runtime.

A scripted tiny model writes an exact reply, so the request's ``stop_sequences`` are known to
end it (or not); the high-level llama.cpp path (one slot) and the parallel slots both count.
Chat Completions keeps OpenAI's ``finish_reason: "stop"`` for the same end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.tinymodels.scripted import USER_TURN, ScriptedFiles, write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.messages.conftest import anthropic_client

REPLY = "The sky is blue today, and the grass is green."
ASK = [{"role": "user", "content": "What colour is the sky?"}]
STOPS = ["green", "blue", "purple"]  # "blue" comes first in the reply


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> ScriptedFiles:
    return write_scripted(tmp_path_factory.mktemp("sky"), {USER_TURN: REPLY})


@pytest.fixture(params=["llama_cpp", "llama_cpp_alone", "hf_transformers", "mlx_lm"])
def sky_server(request: pytest.FixtureRequest, clean_env: Path, sky: ScriptedFiles) -> Iterator[LiveServer]:
    from app.providers import provider_class

    if request.param.startswith("llama_cpp"):  # "alone": no slots, the high-level Llama path
        options = {"n_ctx": 512, "parallel": 1 if request.param == "llama_cpp_alone" else 4}
        row = provider_class("llama_cpp").row_for(str(sky.gguf), **options)
    else:
        row = provider_class(request.param).row_for(str(sky.hf))
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_a_stop_sequence_ends_the_message(sky_server: LiveServer) -> None:
    client = anthropic_client(sky_server)
    msg = client.messages.create(model="tater/direct", messages=ASK, max_tokens=100,
                                 stop_sequences=STOPS)
    assert msg.content[0].text == "The sky is "  # the stop string itself is not sent
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "blue"

    deltas = []
    with client.messages.stream(model="tater/direct", messages=ASK, max_tokens=100,
                                stop_sequences=STOPS) as stream:
        for event in stream:
            if event.type == "message_delta":
                deltas.append(event.delta)
        final = stream.get_final_message()
    assert [(d.stop_reason, d.stop_sequence) for d in deltas] == [("stop_sequence", "blue")]
    assert final.content[0].text == "The sky is "
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "blue"


def test_an_unmatched_stop_sequence_is_an_end_turn(sky_server: LiveServer) -> None:
    client = anthropic_client(sky_server)
    for stops in (["purple"], None):
        extra = {"stop_sequences": stops} if stops else {}
        msg = client.messages.create(model="tater/direct", messages=ASK, max_tokens=100, **extra)
        assert msg.content[0].text == REPLY
        assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
        with client.messages.stream(model="tater/direct", messages=ASK, max_tokens=100,
                                    **extra) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn" and final.stop_sequence is None
    cut = client.messages.create(model="tater/direct", messages=ASK, max_tokens=2,
                                 stop_sequences=STOPS)
    assert cut.stop_reason == "max_tokens" and cut.stop_sequence is None


def test_chat_completions_keeps_finish_reason_stop(sky_server: LiveServer) -> None:
    client = sky_server.client()
    resp = client.chat.completions.create(model="tater/direct", messages=ASK, max_tokens=100,
                                          stop=STOPS)
    assert resp.choices[0].message.content == "The sky is "
    assert resp.choices[0].finish_reason == "stop"
    finishes = [c.choices[0].finish_reason for c in client.chat.completions.create(
        model="tater/direct", messages=ASK, max_tokens=100, stop=STOPS, stream=True) if c.choices]
    assert finishes[-1] == "stop"
