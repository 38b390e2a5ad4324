"""Parallel slots on llama.cpp, proven through the real server, real llama.cpp and the openai SDK.

Concurrent streams decode in one batch and return what the same requests return one at a
time; a client hanging up ends only its own member; a constrained member and a free one
share the batch; a shared prompt prefix is reused and reported as cached tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import LiveServer
from tests.parallel.batch_client import (
    LONG_A,
    LONG_B,
    BatchWatch,
    ask,
    assert_fits_schema,
    assert_same_replies,
    cached,
    constrained,
    loaded_model,
    stream,
    wait_until,
)


def _tokens(live: LiveServer, messages: list[dict[str, str]]) -> list[int]:
    from app.providers.base import ChatMessage

    return loaded_model(live).prompt_tokens([ChatMessage(**m) for m in messages])


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture
def slots_server(llama_server: LiveServer) -> Iterator[LiveServer]:
    model = loaded_model(llama_server)
    assert model.parallelism == 4 and model.engine is not None
    yield llama_server


def test_concurrent_streams_equal_sequential_ones(slots_server: LiveServer) -> None:
    prompts = [ask(i) for i in range(4)]
    sequential = [stream(slots_server, p, 48) for p in prompts]
    with BatchWatch(loaded_model(slots_server)) as watch, ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda p: stream(slots_server, p, 48), prompts))
    assert watch.most >= 2, "the requests never shared a batch"
    assert_same_replies(sequential, concurrent, 48)


def test_batched_output_equals_the_single_sequence_runtime(slots_server: LiveServer, tiny_gguf) -> None:
    """The slots (batched context, numpy sampler) against stock llama-cpp-python at temperature 0."""
    import llama_cpp

    raw = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=512, verbose=False, seed=0)
    try:
        for i in range(3):
            ref = raw.create_chat_completion(messages=ask(i), max_tokens=32, temperature=0)
            text, usage, _ = stream(slots_server, ask(i), 32)
            assert text == ref["choices"][0]["message"]["content"]
            assert usage.prompt_tokens == ref["usage"]["prompt_tokens"]
    finally:
        raw.close()


def test_cancelling_one_member_stops_only_that_one(slots_server: LiveServer) -> None:
    model = loaded_model(slots_server)
    expected = [stream(slots_server, ask(i), 120) for i in (1, 2)]
    prompt = _tokens(slots_server, ask(9))
    room = model.engine.slot_ctx - len(prompt) - 1  # the longest reply a slot holds
    hanging = slots_server.client().chat.completions.create(
        model="tater/direct", messages=ask(9), max_tokens=room, temperature=0, stream=True)
    next(iter(hanging))  # it is decoding
    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(stream, slots_server, ask(i), 120) for i in (1, 2)]
        assert wait_until(lambda: model.engine.active() == 3), "the three requests never shared a batch"
        hanging.close()  # the client hangs up mid-reply
        results = [f.result(timeout=120) for f in others]
    for (text, usage, finish), (want, want_usage, _) in zip(results, expected, strict=True):
        assert text == want and finish == "length"  # the two others ran on, untouched
        assert usage.completion_tokens == want_usage.completion_tokens == 120
    assert wait_until(lambda: model.engine.active() == 0)
    left = [s for s in model.engine.slots if s.tokens[:len(prompt)] == prompt]
    assert left and len(left[0].tokens) < len(prompt) + room - 1, \
        "the hung-up member decoded on to its max_tokens"


def test_a_constrained_member_and_a_free_one_both_stay_correct(slots_server: LiveServer) -> None:
    free_alone = stream(slots_server, ask(3), 400)
    model = loaded_model(slots_server)
    with ThreadPoolExecutor(2) as pool:
        free = pool.submit(stream, slots_server, ask(3), 400)
        assert wait_until(lambda: model.engine.active() >= 1)
        with BatchWatch(model) as watch:  # the free one is decoding when the constrained one comes
            reply = pool.submit(constrained, slots_server, ask(4)).result(timeout=120)
        text, usage, finish = free.result(timeout=120)
    assert watch.most == 2, "the constrained member did not join the batch"
    assert (text, usage.completion_tokens, finish) == (free_alone[0], 400, "length")
    assert_fits_schema(reply)


def test_a_shared_prefix_is_reused_and_reported(slots_server: LiveServer) -> None:
    prompt, reused = cached(slots_server, LONG_A)
    assert prompt > 150 and reused < 20  # nothing of it was there before (only a chat header)
    follow_up = [*LONG_A[:1], {"role": "user", "content": "another question entirely"}]
    prompt2, cached2 = cached(slots_server, follow_up)
    shared = _common(_tokens(slots_server, LONG_A), _tokens(slots_server, follow_up))
    assert cached2 == shared > 150  # the system message and the chat header were reused
    assert stream(slots_server, follow_up, 4)[1].prompt_tokens_details.cached_tokens == prompt2 - 1


def test_two_clients_alternating_keep_both_caches(slots_server: LiveServer) -> None:
    first = [cached(slots_server, LONG_A), cached(slots_server, LONG_B)]
    assert all(reused < 20 for _, reused in first)
    for _ in range(2):
        for messages in (LONG_A, LONG_B):
            prompt, reused = cached(slots_server, messages)
            assert reused == prompt - 1  # all but the last token, decoded again for its logits


def test_messages_api_reports_the_cache_as_anthropic_does(slots_server: LiveServer) -> None:
    from tests.messages.conftest import anthropic_client

    client = anthropic_client(slots_server)
    system, question = LONG_A[0]["content"], [{"role": "user", "content": "first question"}]
    first = client.messages.create(model="tater/direct", system=system, messages=question, max_tokens=4)
    again = client.messages.create(model="tater/direct", system=system, messages=question, max_tokens=4)
    counted = client.messages.count_tokens(model="tater/direct", system=system, messages=question)
    assert first.usage.cache_read_input_tokens < 20
    assert again.usage.cache_read_input_tokens == counted.input_tokens - 1
    assert again.usage.input_tokens == 1  # input + cache reads = the prompt, as Anthropic counts
    assert first.usage.input_tokens + first.usage.cache_read_input_tokens == counted.input_tokens


def test_responses_api_reports_the_cache_as_input_tokens_details(slots_server: LiveServer) -> None:
    client = slots_server.client()
    system, question = LONG_A[0]["content"], LONG_A[1]["content"]
    first = client.responses.create(model="tater/direct", instructions=system, input=question,
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
