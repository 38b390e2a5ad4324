"""``/v1/completions`` and ``/v1/embeddings`` on the tiny llama.cpp model, through the openai SDK."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LiveServer


def test_completion_matches_the_runtime(tools_server: LiveServer, tools_gguf: Path) -> None:
    import llama_cpp

    resp = tools_server.client().completions.create(
        model="tater/direct", prompt="the cat", max_tokens=10, temperature=0)
    ref = llama_cpp.Llama(model_path=str(tools_gguf), n_ctx=512, verbose=False).create_completion(
        "the cat", max_tokens=10, temperature=0)
    choice = resp.choices[0]
    assert resp.object == "text_completion"
    assert choice.text == ref["choices"][0]["text"] and choice.text
    assert choice.finish_reason == "length"
    assert resp.usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == 10


def test_prompt_list_stream_and_stop(tools_server: LiveServer) -> None:
    client = tools_server.client()
    whole = client.completions.create(model="tater/direct", prompt=["the cat", "a dog"],
                                      max_tokens=8, temperature=0)
    assert [c.index for c in whole.choices] == [0, 1]
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in client.completions.create(model="tater/direct", prompt=["the cat", "a dog"],
                                           max_tokens=8, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
        usage = chunk.usage or usage
    assert texts == {0: whole.choices[0].text, 1: whole.choices[1].text}
    assert finishes == {0: "length", 1: "length"}
    assert usage is not None and usage.total_tokens == whole.usage.total_tokens
    word = whole.choices[0].text.split()[1]
    stopped = client.completions.create(model="tater/direct", prompt="the cat", max_tokens=8,
                                        temperature=0, stop=[word])
    assert stopped.choices[0].finish_reason == "stop"
    assert word not in stopped.choices[0].text


def test_fill_in_the_middle_uses_the_fim_tokens(tools_server: LiveServer) -> None:
    resp = tools_server.client().completions.create(
        model="tater/direct", prompt="def add(a, b):\n    ", suffix="\n    return c",
        max_tokens=6, temperature=0)
    assert resp.choices[0].text and resp.choices[0].finish_reason == "length"
    hub = tools_server.services.hub  # type: ignore[attr-defined]
    llm = hub.load(tools_server.settings.current.active_model).result().llm
    seen = llm.detokenize(llm.last_prompt, special=True).decode()
    assert "<|fim_prefix|>" in seen and "<|fim_suffix|>" in seen
    assert seen.rstrip().endswith("<|fim_middle|>")
    assert seen.index("<|fim_prefix|>") < seen.index("<|fim_suffix|>")


def test_logprobs_when_the_row_keeps_logits(tools_server: LiveServer) -> None:
    resp = tools_server.client().completions.create(
        model="tater/direct", prompt="the cat", max_tokens=5, temperature=0, logprobs=2)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == 5 and "".join(lp.tokens) == resp.choices[0].text
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(len(t) >= 1 for t in lp.top_logprobs)


def test_no_fim_and_no_logprobs_on_the_plain_model(llama_server: LiveServer) -> None:
    client = llama_server.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tater/direct", prompt="a", suffix="b", max_tokens=2)
    assert info.value.body["param"] == "suffix"
    assert "fill-in-the-middle" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tater/direct", prompt="a", logprobs=1, max_tokens=2)
    assert info.value.body["param"] == "logprobs" and "logits_all" in info.value.body["message"]
    for kw, param in (({"n": 2}, "n"), ({"echo": True}, "echo")):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="tater/direct", prompt="a", max_tokens=2, **kw)
        assert info.value.body["param"] == param


def test_embeddings_width_determinism_and_base64(tools_server: LiveServer) -> None:
    client = tools_server.client()
    resp = client.embeddings.create(model="tater/direct", input=["the cat", "a dog", "the cat"],
                                    encoding_format="float")
    vecs = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(v) == 64 for v in vecs)  # the tiny model's hidden size
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 0
    again = client.embeddings.create(model="tater/direct", input="the cat")
    assert again.data[0].embedding == vecs[0]
    raw = httpx.post(f"{tools_server.base_url}/embeddings",
                     headers={"Authorization": f"Bearer {tools_server.key}"},
                     json={"input": "the cat", "encoding_format": "base64"}).json()
    b = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(b) // 4}f", b)) == pytest.approx(vecs[0], rel=1e-6)


def test_new_routes_are_gated_and_documented(tools_server: LiveServer) -> None:
    for path in ("/completions", "/embeddings"):
        r = httpx.post(tools_server.base_url + path, json={"prompt": "a", "input": "a"})
        assert r.status_code == 401
    spec = httpx.get(tools_server.root + "/openapi.json").json()
    assert {"/v1/completions", "/v1/embeddings", "/v1/chat/completions"} <= set(spec["paths"])


def test_chat_logprobs_with_logits_all(tools_server: LiveServer, llama_server: LiveServer) -> None:
    client = tools_server.client()
    msgs = [{"role": "user", "content": "hi"}]
    resp = client.chat.completions.create(model="tater/direct", messages=msgs, max_tokens=5,
                                          temperature=0, logprobs=True, top_logprobs=2)
    content = resp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
    streamed = [t for c in client.chat.completions.create(
        model="tater/direct", messages=msgs, max_tokens=5, temperature=0, logprobs=True,
        top_logprobs=2, stream=True) if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    with pytest.raises(openai.BadRequestError) as info:
        llama_server.client().chat.completions.create(model="tater/direct", messages=msgs,
                                                      max_tokens=2, logprobs=True)
    assert info.value.body["param"] == "logprobs" and "logits_all" in info.value.body["message"]
