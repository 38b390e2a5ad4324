"""Parallel slots on llama.cpp, proven through the real server, real llama.cpp and the openai SDK.

Concurrent streams decode in one batch and return what the same requests return one at a
time; a client hanging up ends only its own member; a constrained member and a free one
share the batch; a shared prompt prefix is reused and reported as cached tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import LiveServer


def _ask(i: int, words: int = 6) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"client {i} says " + " ".join(["hello"] * words) + f" {i}"}]


def _stream(live: LiveServer, messages: list[dict[str, str]], max_tokens: int) -> tuple[str, Any, str]:
    """Text, usage and finish reason of one streamed reply."""
    stream = live.client().chat.completions.create(
        model="tater/direct", messages=messages, max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    text, usage, finish = [], None, ""
    for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    return "".join(text), usage, finish


class BatchWatch:
    """Samples the engine's member count while a test runs: the most members seen at once."""

    def __init__(self, model: Any) -> None:
        self.engine = model.engine
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.engine.active())
            time.sleep(0.0005)

    def __enter__(self) -> BatchWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _tokens(live: LiveServer, messages: list[dict[str, str]]) -> list[int]:
    from app.providers.base import ChatMessage

    return _model(live).prompt_tokens([ChatMessage(**m) for m in messages])


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _model(live: LiveServer) -> Any:
    row_id = live.settings.current.active_model
    return live.services.hub.load(row_id).result(timeout=60)  # type: ignore[attr-defined]


@pytest.fixture
def slots_server(llama_server: LiveServer) -> Iterator[LiveServer]:
    model = _model(llama_server)
    assert model.parallelism == 4 and model.engine is not None
    yield llama_server


def test_concurrent_streams_equal_sequential_ones(slots_server: LiveServer) -> None:
    prompts = [_ask(i) for i in range(4)]
    sequential = [_stream(slots_server, p, 48) for p in prompts]
    with BatchWatch(_model(slots_server)) as watch, ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda p: _stream(slots_server, p, 48), prompts))
    assert watch.most >= 2, "the requests never shared a batch"
    for (text, usage, finish), (ctext, cusage, cfinish) in zip(sequential, concurrent, strict=True):
        assert text and ctext == text
        assert finish == cfinish == "length"
        assert usage.completion_tokens == cusage.completion_tokens == 48
        assert usage.prompt_tokens == cusage.prompt_tokens


def test_batched_output_equals_the_single_sequence_runtime(slots_server: LiveServer, tiny_gguf) -> None:
    """The slots (batched context, numpy sampler) against stock llama-cpp-python at temperature 0."""
    import llama_cpp

    raw = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, verbose=False, seed=0)
    try:
        for i in range(3):
            ref = raw.create_chat_completion(messages=_ask(i), max_tokens=32, temperature=0)
            text, usage, _ = _stream(slots_server, _ask(i), 32)
            assert text == ref["choices"][0]["message"]["content"]
            assert usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    finally:
        raw.close()


def test_cancelling_one_member_stops_only_that_one(slots_server: LiveServer) -> None:
    model = _model(slots_server)
    expected = [_stream(slots_server, _ask(i), 120) for i in (1, 2)]
    prompt = _tokens(slots_server, _ask(9))
    room = model.engine.slot_ctx - len(prompt) - 1  # the longest reply a slot holds
    stream = slots_server.client().chat.completions.create(
        model="tater/direct", messages=_ask(9), max_tokens=room, temperature=0, stream=True)
    next(iter(stream))  # it is decoding
    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(_stream, slots_server, _ask(i), 120) for i in (1, 2)]
        deadline = time.monotonic() + 10
        while model.engine.active() < 3 and time.monotonic() < deadline:
            time.sleep(0.0005)
        assert model.engine.active() == 3, "the three requests never shared a batch"
        stream.close()  # the client hangs up mid-reply
        results = [f.result(timeout=120) for f in others]
    for (text, usage, finish), (want, want_usage, _) in zip(results, expected, strict=True):
        assert text == want and finish == "length"  # the two others ran on, untouched
        assert usage.completion_tokens == want_usage.completion_tokens == 120
    deadline = time.monotonic() + 10
    while model.engine.active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.engine.active() == 0
    left = [s for s in model.engine.slots if s.tokens[:len(prompt)] == prompt]
    assert left and len(left[0].tokens) < len(prompt) + room - 1, \
        "the hung-up member decoded on to its max_tokens"


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                           "word": {"enum": ["yes", "no", "maybe"]}},
          "required": ["ok", "word"], "additionalProperties": False}


def test_a_constrained_member_and_a_free_one_both_stay_correct(slots_server: LiveServer) -> None:
    free_alone = _stream(slots_server, _ask(3), 400)
    client = slots_server.client()

    def constrained() -> str:
        resp = client.chat.completions.create(
            model="tater/direct", messages=_ask(4), max_tokens=60, temperature=0,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "flag", "schema": SCHEMA, "strict": True}})
        return resp.choices[0].message.content or ""

    model = _model(slots_server)
    with ThreadPoolExecutor(2) as pool:
        free = pool.submit(_stream, slots_server, _ask(3), 400)
        deadline = time.monotonic() + 10
        while model.engine.active() < 1 and time.monotonic() < deadline:
            time.sleep(0.0005)
        with BatchWatch(model) as watch:  # the free one is decoding when the constrained one comes
            reply = pool.submit(constrained).result(timeout=120)
        text, usage, finish = free.result(timeout=120)
    assert watch.most == 2, "the constrained member did not join the batch"
    assert (text, usage.completion_tokens, finish) == (free_alone[0], 400, "length")
    value = json.loads(reply)
    assert set(value) == {"ok", "word"} and isinstance(value["ok"], bool)
    assert value["word"] in ("yes", "no", "maybe")


LONG_A = [{"role": "system", "content": "Project notes: " + " ".join(f"alpha{i}" for i in range(40))},
          {"role": "user", "content": "first question"}]
LONG_B = [{"role": "system", "content": "Other notes: " + " ".join(f"beta{i}" for i in range(40))},
          {"role": "user", "content": "second question"}]


def _cached(live: LiveServer, messages: list[dict[str, str]]) -> tuple[int, int]:
    resp = live.client().chat.completions.create(model="tater/direct", messages=messages,
                                                 max_tokens=4, temperature=0)
    return resp.usage.prompt_tokens, resp.usage.prompt_tokens_details.cached_tokens


def test_a_shared_prefix_is_reused_and_reported(slots_server: LiveServer) -> None:
    prompt, cached = _cached(slots_server, LONG_A)
    assert prompt > 150 and cached < 20  # nothing of it was there before (only a chat header)
    follow_up = [*LONG_A[:1], {"role": "user", "content": "another question entirely"}]
    prompt2, cached2 = _cached(slots_server, follow_up)
    shared = _common(_tokens(slots_server, LONG_A), _tokens(slots_server, follow_up))
    assert cached2 == shared > 150  # the system message and the chat header were reused
    assert _stream(slots_server, follow_up, 4)[1].prompt_tokens_details.cached_tokens == prompt2 - 1


def test_two_clients_alternating_keep_both_caches(slots_server: LiveServer) -> None:
    first = [_cached(slots_server, LONG_A), _cached(slots_server, LONG_B)]
    assert all(cached < 20 for _, cached in first)
    for _ in range(2):
        for messages in (LONG_A, LONG_B):
            prompt, cached = _cached(slots_server, messages)
            assert cached == prompt - 1  # all but the last token, decoded again for its logits


def test_messages_api_reports_the_cache_as_anthropic_does(slots_server: LiveServer) -> None:
    from tests.messages.conftest import anthropic_client

    client = anthropic_client(slots_server)
    system, ask = LONG_A[0]["content"], [{"role": "user", "content": "first question"}]
    first = client.messages.create(model="tater/direct", system=system, messages=ask, max_tokens=4)
    again = client.messages.create(model="tater/direct", system=system, messages=ask, max_tokens=4)
    counted = client.messages.count_tokens(model="tater/direct", system=system, messages=ask)
    assert first.usage.cache_read_input_tokens < 20
    assert again.usage.cache_read_input_tokens == counted.input_tokens - 1
    assert again.usage.input_tokens == 1  # input + cache reads = the prompt, as Anthropic counts
    assert first.usage.input_tokens + first.usage.cache_read_input_tokens == counted.input_tokens


def test_responses_api_reports_the_cache_as_input_tokens_details(slots_server: LiveServer) -> None:
    client = slots_server.client()
    system, ask = LONG_A[0]["content"], LONG_A[1]["content"]
    first = client.responses.create(model="tater/direct", instructions=system, input=ask,
                                    max_output_tokens=4, temperature=0)
    again = client.responses.create(model="tater/direct", instructions=system,
                                    input="another question entirely", max_output_tokens=4,
                                    temperature=0)
    assert first.usage.input_tokens_details.cached_tokens < 20  # only a chat header was there
    follow_up = [LONG_A[0], {"role": "user", "content": "another question entirely"}]
    shared = _common(_tokens(slots_server, LONG_A), _tokens(slots_server, follow_up))
    assert again.usage.input_tokens == len(_tokens(slots_server, follow_up))
    assert again.usage.input_tokens_details.cached_tokens == shared > 150
    events = list(client.responses.create(model="tater/direct", instructions=system,
                                          input="another question entirely", max_output_tokens=4,
                                          temperature=0, stream=True))
    final = events[-1].response  # response.incomplete: max_output_tokens ended it
    assert events[-1].type == "response.incomplete"  # the same prompt again: all but its last token
    assert final.usage.input_tokens_details.cached_tokens == final.usage.input_tokens - 1
