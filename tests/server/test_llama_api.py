"""The foundation's proof: the official openai SDK against the real server and real llama.cpp."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from app.server.protocol import ChatCompletionChunk
from tests.conftest import LiveServer

MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def raw_llama(tiny_gguf: Path):
    """The same GGUF loaded straight into llama-cpp-python: the reference for counts and text."""
    import llama_cpp

    return llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, verbose=False, seed=0)


def test_models_list_shows_aliases_and_the_row(llama_server: LiveServer) -> None:
    ids = [m.id for m in llama_server.client().models.list()]
    row_id = llama_server.settings.current.active_model
    assert ids[:3] == ["tater/base", "tater/direct", "tater/hydra"]
    assert ids[3] == row_id and row_id.startswith("llama_cpp::") and row_id.endswith("::tiny-chat.gguf")


def test_completion_matches_the_runtime_exactly(llama_server: LiveServer, raw_llama) -> None:
    resp = llama_server.client().chat.completions.create(
        model="tater/direct", messages=MSGS, max_tokens=12, temperature=0
    )
    ref = raw_llama.create_chat_completion(messages=MSGS, max_tokens=12, temperature=0)
    choice = resp.choices[0]
    assert choice.message.content == ref["choices"][0]["message"]["content"]
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert resp.usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == ref["usage"]["completion_tokens"] == 12
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 12
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")


def test_stream_is_real_and_equals_the_non_streamed_text(llama_server: LiveServer) -> None:
    client = llama_server.client()
    whole = client.chat.completions.create(messages=MSGS, model="tater/base", max_tokens=20, temperature=0)
    deltas, finish, usage = [], None, None
    stream = client.chat.completions.create(
        messages=MSGS,
        model="tater/base",
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    assert len(deltas) > 1, "content must arrive as several deltas, not one buffered chunk"
    assert "".join(deltas) == whole.choices[0].message.content
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 20
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_sse_framing_over_raw_http(llama_server: LiveServer) -> None:
    body = {
        "messages": MSGS,
        "max_tokens": 5,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        llama_server.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {llama_server.key}"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        raw = b"".join(r.iter_bytes()).decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-2])
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert {p["id"] for p in payloads} == {payloads[0]["id"]}
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    for p in payloads:  # every event keeps the contract the server declares
        ChatCompletionChunk.model_validate(p)
    content = [p for p in payloads[1:-2]]
    assert all(
        p["choices"][0]["finish_reason"] is None and p["choices"][0]["delta"]["content"] for p in content
    )
    assert payloads[-2]["choices"][0]["finish_reason"] == "length"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 5


def test_auth_cases_raise_the_matching_sdk_exceptions(llama_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        llama_server.client(api_key="tater-wrong").models.list()
    llama_server.services.keys.clear()
    with pytest.raises(openai.PermissionDeniedError):
        llama_server.client().models.list()
    llama_server.settings.update(api_enabled=False)
    with pytest.raises(openai.NotFoundError):
        llama_server.client().models.list()


def test_bad_input_raises_bad_request(llama_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        llama_server.client().chat.completions.create(model="tater/direct", messages=MSGS, temperature=5)
    assert info.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        llama_server.client().chat.completions.create(model="no-such-model", messages=MSGS)


def test_each_header_style_through_the_sdk(llama_server: LiveServer) -> None:
    import openai as sdk

    via_header = sdk.OpenAI(
        base_url=llama_server.base_url,
        api_key="unused-placeholder",
        max_retries=0,
        default_headers={"Authorization": "", "X-API-Key": llama_server.key},
    )
    via_query = sdk.OpenAI(
        base_url=llama_server.base_url,
        api_key="unused-placeholder",
        max_retries=0,
        default_headers={"Authorization": ""},
        default_query={"api_key": llama_server.key},
    )
    for client in (llama_server.client(), via_header, via_query):
        assert len(client.models.list().data) == 4


def test_stop_and_seed_are_honoured(llama_server: LiveServer) -> None:
    client = llama_server.client()
    base = (
        client.chat.completions.create(model="tater/direct", messages=MSGS, max_tokens=24, temperature=0)
        .choices[0]
        .message.content
    )
    words = base.split()
    assert len(words) > 2
    stop = words[2]
    cut = client.chat.completions.create(
        model="tater/direct", messages=MSGS, max_tokens=24, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].message.content
    assert base.startswith(cut.choices[0].message.content)
    a = client.chat.completions.create(
        model="tater/direct", messages=MSGS, max_tokens=16, temperature=1.0, seed=7
    )
    b = client.chat.completions.create(
        model="tater/direct", messages=MSGS, max_tokens=16, temperature=1.0, seed=7
    )
    assert a.choices[0].message.content == b.choices[0].message.content


def test_eight_concurrent_requests_each_get_their_own_answer(llama_server: LiveServer) -> None:
    words = ["river", "house", "green", "music", "water", "light", "story", "world"]
    jobs = [(f"Tell me about the {w}.", i) for i, w in enumerate(words)]
    client = llama_server.client()

    def params(p: str, i: int) -> dict:  # distinct lengths make every reference answer distinct
        return {
            "model": "tater/direct",
            "messages": [{"role": "user", "content": p}],
            "max_tokens": 3 + i,
            "temperature": 0,
        }

    reference = {
        p: client.chat.completions.create(**params(p, s)).choices[0].message.content for p, s in jobs
    }
    assert len(set(reference.values())) == len(jobs), "each request needs a distinct reference answer"

    async def run() -> dict[str, str]:
        aclient = openai.AsyncOpenAI(base_url=llama_server.base_url, api_key=llama_server.key, max_retries=0)

        async def one(p: str, seed: int) -> tuple[str, str]:
            if seed % 2:
                parts = []
                async for ch in await aclient.chat.completions.create(**params(p, seed), stream=True):
                    parts += [c.delta.content or "" for c in ch.choices]
                return p, "".join(parts)
            r = await aclient.chat.completions.create(**params(p, seed))
            return p, r.choices[0].message.content

        results = await asyncio.gather(*(one(p, s) for p, s in jobs))
        await aclient.close()
        return dict(results)

    assert asyncio.run(run()) == reference


def test_client_disconnect_frees_the_model_within_a_second(llama_server: LiveServer) -> None:
    hub = llama_server.services.hub
    model_id = llama_server.settings.current.active_model
    body = {"messages": MSGS, "temperature": 0, "stream": True}  # no max_tokens: until the context ends
    with httpx.stream(
        "POST",
        llama_server.base_url + "/chat/completions",
        json=body,
        headers={"X-API-Key": llama_server.key},
        timeout=30,
    ) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(6)]
        assert any("content" in line for line in got)
        model = hub.load(model_id).result()
        assert model.busy
        hung_up = time.perf_counter()
    deadline = hung_up + 1.0
    while model.busy and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not model.busy, "generation must stop when the client goes away"
    freed = time.perf_counter() - hung_up
    t0 = time.perf_counter()
    r = llama_server.client().chat.completions.create(model="tater/direct", messages=MSGS, max_tokens=1)
    assert r.choices[0].finish_reason == "length"
    assert freed + (time.perf_counter() - t0) < 1.5


def test_no_key_in_config_files_or_the_log(llama_server: LiveServer, clean_env: Path, tmp_path: Path) -> None:
    import logging

    from app.logging_setup import setup_logging

    log_file = setup_logging(logging.DEBUG, log_dir=tmp_path / "logs", console=False)
    try:
        key = llama_server.key
        llama_server.client().chat.completions.create(model="tater/direct", messages=MSGS, max_tokens=2)
        httpx.get(llama_server.base_url + "/models", params={"api_key": key})
        httpx.get(llama_server.base_url + "/models", headers={"X-API-Key": key})
        httpx.get(llama_server.base_url + "/models", headers={"Authorization": "Bearer " + key + "x"})
        new = llama_server.services.keys.rotate()
        llama_server.settings.update(mode="hydra")
    finally:
        for h in logging.getLogger().handlers:
            h.flush()
        setup_logging(logging.WARNING, log_dir=tmp_path / "logs2", console=False)
    text = log_file.read_text()
    assert "/v1/models" in text and "/v1/chat/completions" in text  # the requests were logged
    for secret in (key, new):
        assert secret not in text
        for f in clean_env.rglob("*"):
            if f.is_file():
                assert secret not in f.read_text(errors="replace"), f
