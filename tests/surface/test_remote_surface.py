"""Remote rows pass tools, structured output, completions and embeddings through to a real
peer (``python -m llama_cpp.server``), streamed, and back out in OpenAI's shape."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import LiveServer
from tests.surface.cases import HISTORY, check_calls, json_schema_runs, named_call, streamed_equals_whole
from tests.surface.conftest import WEATHER_TOOL, SurfacePeer


def _rows(live: LiveServer) -> tuple[str, str]:
    chat, emb = (r.id for r in live.settings.current.models)
    return chat, emb


def test_named_tool_call_round_trip(remote_server: LiveServer) -> None:
    chat, _ = _rows(remote_server)
    for seed in range(3):
        named_call(remote_server.client(), chat, seed)


def test_required_with_one_tool_round_trip(remote_server: LiveServer) -> None:
    chat, _ = _rows(remote_server)
    resp = remote_server.client().chat.completions.create(
        model=chat, messages=HISTORY[:1], tools=[WEATHER_TOOL], tool_choice="required",
        temperature=1, seed=4, max_tokens=200)
    assert resp.choices[0].finish_reason == "tool_calls"
    check_calls(resp.choices[0].message.tool_calls, {"get_weather"})


def test_streamed_tool_call_accumulates_like_the_whole_one(remote_server: LiveServer) -> None:
    chat, _ = _rows(remote_server)
    # The peer repeats id and name on every fragment; the SDK would concatenate them.
    assert streamed_equals_whole(remote_server.client(), chat) > 3


def test_tool_history_round_trip(remote_server: LiveServer) -> None:
    chat, _ = _rows(remote_server)
    resp = remote_server.client().chat.completions.create(
        model=chat, messages=HISTORY, temperature=0, max_tokens=4)
    assert resp.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_strict_round_trip(remote_server: LiveServer, stream: bool) -> None:
    chat, _ = _rows(remote_server)
    json_schema_runs(remote_server.client(), chat, 20 if not stream else 5, stream=stream)


def test_completions_round_trip(remote_server: LiveServer, surface_peer: SurfacePeer) -> None:
    chat, _ = _rows(remote_server)
    direct = openai.OpenAI(base_url=surface_peer.base_url, api_key="x", max_retries=0)
    ref = direct.completions.create(model="tiny", prompt="the cat", max_tokens=6, temperature=0)
    client = remote_server.client()
    resp = client.completions.create(model=chat, prompt="the cat", max_tokens=6, temperature=0)
    assert resp.choices[0].text == ref.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=chat, prompt="the cat", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == ref.choices[0].text


def test_embeddings_round_trip(remote_server: LiveServer, surface_peer: SurfacePeer) -> None:
    _, emb = _rows(remote_server)
    resp = remote_server.client().embeddings.create(model=emb, input=["the cat", "a dog", "the cat"])
    vecs = [d.embedding for d in resp.data]
    assert all(len(v) == 64 for v in vecs)
    # The peer embeds a list as one batch: equal inputs agree to float32 rounding.
    assert vecs[0] == pytest.approx(vecs[2], rel=1e-5, abs=1e-6) and vecs[0] != vecs[1]
    direct = openai.OpenAI(base_url=surface_peer.base_url, api_key="x", max_retries=0)
    ref = direct.embeddings.create(model="tiny-embed", input="a dog")
    assert vecs[1] == pytest.approx(ref.data[0].embedding, rel=1e-5, abs=1e-6)
