"""The Responses front-end's documented rules through the real server (llama.cpp, tiny GGUF):
errors in OpenAI's envelope, the store's lifecycle, and the OpenAPI contract."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import LiveServer

GREEDY = {"model": "tater/base", "temperature": 0, "max_output_tokens": 4}


def test_errors_are_openai_envelopes(llama_server: LiveServer) -> None:
    client = llama_server.client()
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(input="hi", previous_response_id="resp_unknown", **GREEDY)
    assert err.value.body["param"] == "previous_response_id"
    assert "resp_unknown" in err.value.body["message"] and "not found" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")
    with pytest.raises(openai.BadRequestError) as err:  # a built-in tool cannot be forced
        client.responses.create(input="hi", tools=[{"type": "web_search"}],
                                tool_choice={"type": "web_search"}, **GREEDY)
    assert err.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(input="hi", tool_choice={"type": "function", "name": "missing"},
                                **GREEDY)
    assert err.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(input=[], **GREEDY)
    assert err.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(input="hi", model="tater/base", max_output_tokens=0)
    assert err.value.body["param"] == "max_output_tokens"
    raw = httpx.post(f"{llama_server.base_url}/responses", json={"input": [{"role": "robot",
                                                                          "content": "x"}]},
                     headers={"Authorization": f"Bearer {llama_server.key}"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    unauth = httpx.post(f"{llama_server.base_url}/responses", json={"input": "hi"})
    assert unauth.status_code == 401 and "error" in unauth.json()


def test_store_lifecycle_and_input_items(llama_server: LiveServer) -> None:
    client = llama_server.client()
    unstored = client.responses.create(input="hi", store=False, **GREEDY)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    first = client.responses.create(input="one", metadata={"k": "v"}, **GREEDY)
    assert first.metadata == {"k": "v"} and first.tool_choice == "auto" and first.text.format.type == "text"
    second = client.responses.create(input="two", previous_response_id=first.id, **GREEDY)
    third = client.responses.create(input="three", previous_response_id=second.id, **GREEDY)
    items = client.responses.input_items.list(third.id, order="asc", limit=2)
    assert [i.role for i in items.data] == ["user", "assistant"] and items.has_more
    rest = client.responses.input_items.list(third.id, order="asc", after=items.last_id)
    assert [i.role for i in rest.data] == ["user", "assistant", "user"] and not rest.has_more
    newest = client.responses.input_items.list(third.id)  # desc by default
    assert newest.data[0].content[0].text == "three"

    deleted = client.responses.delete(second.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(second.id)
    assert client.responses.retrieve(third.id).id == third.id  # the chain's later links stay

    # the store's bounds are settings, applied on the next write
    llama_server.settings.update(responses={"max_responses": 1, "max_bytes": 10**7,
                                            "ttl_minutes": 60})
    newest_only = client.responses.create(input="four", **GREEDY)
    assert client.responses.retrieve(newest_only.id).id == newest_only.id
    for old in (first.id, third.id):
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(old)


def test_openapi_documents_the_responses_contract(llama_server: LiveServer) -> None:
    doc = httpx.get(f"{llama_server.root}/openapi.json").json()
    assert {"/v1/responses", "/v1/responses/{response_id}",
            "/v1/responses/{response_id}/input_items"} <= set(doc["paths"])
    post = doc["paths"]["/v1/responses"]["post"]
    assert "ResponseCreateRequest" in str(post["requestBody"]) and "ResponseObject" in str(post["responses"])
    assert set(doc["paths"]["/v1/responses/{response_id}"]) >= {"get", "delete"}


def test_truncation_auto_drops_the_oldest_turns(llama_server: LiveServer) -> None:
    client = llama_server.client()
    words = " ".join(["potato"] * 60)
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {words}"}
               for i in range(12)]  # far more than the tiny model's 512-token context
    ask = [{"role": "developer", "content": "Be brief."}, *history,
           {"role": "user", "content": "Last question?"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(input=ask, **GREEDY)  # truncation defaults to "disabled"
    assert err.value.body["code"] == "context_length_exceeded"
    r = client.responses.create(input=ask, truncation="auto", **GREEDY)
    assert r.truncation == "auto" and r.status == "incomplete"
    assert 0 < r.usage.input_tokens < 512 - 4
    # what was kept: the developer message, then as many of the newest turns as fit, the question
    for keep in range(len(history), -1, -1):
        try:
            chat = client.chat.completions.create(
                model="tater/base", temperature=0, max_tokens=4,
                messages=[{"role": "system", "content": "Be brief."}, *history[len(history) - keep:],
                          {"role": "user", "content": "Last question?"}])
        except openai.BadRequestError:
            continue
        break
    assert keep < len(history) and r.usage.input_tokens == chat.usage.prompt_tokens
