"""Issue 12's small gaps, through the real server and the official openai SDK: token-id inputs to
embeddings, legacy ``functions`` / ``function_call`` on chat completions, and ``tater/hydra`` with
client tools (a defined 400, never silently dropped)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from app.tinymodels.scripted import USER_TURN, write_scripted
from tests.conftest import LiveServer, start_live_server

WEATHER_FN = {"name": "get_weather", "description": "Weather for a city.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(params=["llama_cpp", "hf_transformers"])
def embedding_server(request: pytest.FixtureRequest, clean_env: Path, tiny_gguf: Path,
                     tiny_hf_folder: Path) -> Iterator[tuple[LiveServer, list[int]]]:
    """A server on a runtime that embeds, and the model's own token ids for "the cat sat"."""
    from app.providers import provider_class

    if request.param == "llama_cpp":
        import llama_cpp

        vocab = llama_cpp.Llama(model_path=str(tiny_gguf), vocab_only=True, verbose=False)
        ids = vocab.tokenize(b"the cat sat", add_bos=False)
        row = provider_class("llama_cpp").row_for(str(tiny_gguf))
    else:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(str(tiny_hf_folder))("the cat sat")["input_ids"]
        row = provider_class("hf_transformers").row_for(str(tiny_hf_folder))
    live = start_live_server(clean_env, [row], row.id)
    yield live, list(ids)
    live.services.shutdown()  # type: ignore[attr-defined]


def test_embeddings_accept_the_models_token_ids(embedding_server: tuple[LiveServer, list[int]]) -> None:
    live, ids = embedding_server
    client = live.client()
    by_text = client.embeddings.create(model="tater/direct", input="the cat sat").data[0].embedding
    one = client.embeddings.create(model="tater/direct", input=ids)  # one input of token ids
    assert len(one.data) == 1 and one.data[0].embedding == by_text
    many = client.embeddings.create(model="tater/direct", input=[ids, ids[:1]])  # as LangChain sends
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding == by_text and many.data[1].embedding != by_text
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="tater/direct", input=[[10**9]])
    assert err.value.body["param"] == "input" and "vocabulary" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="tater/direct", input=[[1, -2]])
    assert err.value.body["param"] == "input"


@pytest.fixture
def caller_server(clean_env: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """llama.cpp on a scripted model that answers every user turn with a get_weather call."""
    from app.providers.llama_cpp import LlamaCppProvider

    files = write_scripted(tmp_path / "caller", {USER_TURN: CALL}, hf=False)
    row = LlamaCppProvider.row_for(str(files.gguf))
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_legacy_functions_map_to_tools_and_answer_in_kind(caller_server: LiveServer) -> None:
    client = caller_server.client()
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="tater/direct", messages=ask, functions=[WEATHER_FN],
                                       function_call="auto", temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Paris"}

    # without functions the same model's call is not offered as a call at all
    plain = client.chat.completions.create(model="tater/direct", messages=ask, temperature=0)
    assert plain.choices[0].message.function_call is None

    streamed = list(client.chat.completions.create(
        model="tater/direct", messages=ask, functions=[WEATHER_FN],
        function_call={"name": "get_weather"}, temperature=0, stream=True))
    parts = [c.choices[0].delta.function_call for c in streamed if c.choices and
             c.choices[0].delta.function_call]
    assert parts[0].name == "get_weather"
    assert json.loads("".join(p.arguments or "" for p in parts)) == {"city": "Paris"}
    assert streamed[-1].choices[0].finish_reason == "function_call"

    # the legacy history (assistant function_call, then a "function" message) is understood
    follow = client.chat.completions.create(model="tater/direct", temperature=0, max_tokens=4,
                                            functions=[WEATHER_FN], messages=[
        *ask, {"role": "assistant", "content": None, "function_call": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "Sunny"}])
    assert follow.usage.prompt_tokens > r.usage.prompt_tokens
    log = caller_server.services.request_log.records()  # type: ignore[attr-defined]
    assert [x.status for x in log if x.path == "/v1/chat/completions"] == [200] * 4

    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tater/direct", messages=ask, functions=[WEATHER_FN],
                                       tools=[{"type": "function", "function": WEATHER_FN}])
    assert "not both" in err.value.body["message"]


def test_hydra_refuses_client_tools_with_a_clear_400(caller_server: LiveServer) -> None:
    client = caller_server.client()
    for call in (
        lambda: client.chat.completions.create(model="tater/hydra", messages=[
            {"role": "user", "content": "hi"}], tools=[{"type": "function", "function": WEATHER_FN}]),
        lambda: client.chat.completions.create(model="tater/hydra", messages=[
            {"role": "user", "content": "hi"}], functions=[WEATHER_FN]),
        lambda: client.responses.create(model="tater/hydra", input="hi",
                                        tools=[{"type": "function", **WEATHER_FN}]),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            call()
        body = err.value.body
        assert body["code"] == "tools_not_supported_in_hydra" and body["param"] == "tools"
        assert "tater/direct" in body["message"]
