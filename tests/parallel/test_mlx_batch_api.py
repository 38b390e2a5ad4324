"""Continuous batching on MLX, proven through the real server, real mlx-lm and the openai SDK.

Concurrent streams decode in one ``BatchGenerator`` batch and return what the same requests
return one at a time; a client hanging up ends only its own member; a grammar-constrained
member and a free one share the batch; a shared prompt prefix is reused and reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, start_live_server
from tests.parallel.batch_client import (
    SCHEMA,
    BatchWatch,
    ask,
    assert_fits_schema,
    assert_same_replies,
    constrained,
    loaded_model,
    stream,
    wait_until,
)


@pytest.fixture
def mlx_server(clean_env: Path, tiny_hf_folder: Path) -> Iterator[LiveServer]:
    """The real server with the tiny HF Llama as the active MLX row (default: 4 batched)."""
    from app.providers.mlx_lm import MlxProvider

    row = MlxProvider.row_for(str(tiny_hf_folder))
    live = start_live_server(clean_env, [row], row.id)
    model = loaded_model(live)
    assert model.parallelism == 4 and model.engine is not None
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_concurrent_streams_equal_sequential_ones(mlx_server: LiveServer) -> None:
    prompts = [ask(i) for i in range(4)]
    sequential = [stream(mlx_server, p, 160) for p in prompts]
    with BatchWatch(loaded_model(mlx_server)) as watch, ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda p: stream(mlx_server, p, 160), prompts))
    assert watch.most >= 3, "the requests never shared a batch"
    assert_same_replies(sequential, concurrent, 160)


def test_batched_output_equals_mlx_lms_own_loop(mlx_server: LiveServer) -> None:
    """The engine's batch against mlx-lm's one-sequence ``stream_generate`` at temperature 0."""
    import mlx_lm

    from app.providers.base import ChatMessage
    from app.providers.mlx_lm import MLX_THREAD

    model = loaded_model(mlx_server)
    for i in range(2):
        ids = model.prompt_ids([ChatMessage(**m) for m in ask(i)])
        ref = MLX_THREAD.call(lambda ids=ids: [r.token for r in mlx_lm.stream_generate(
            model.model, model.tokenizer, ids, max_tokens=64)])
        text, usage, _ = stream(mlx_server, ask(i), 64)
        assert text == model.hf_tokenizer.decode(ref, skip_special_tokens=True)
        assert usage.prompt_tokens == len(ids)


def test_cancelling_one_member_stops_only_that_one(mlx_server: LiveServer) -> None:
    model = loaded_model(mlx_server)
    expected = [stream(mlx_server, ask(i), 200) for i in (1, 2)]
    hanging = mlx_server.client().chat.completions.create(
        model="tater/direct", messages=ask(9), max_tokens=900, temperature=0, stream=True)
    next(iter(hanging))  # it is decoding
    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(stream, mlx_server, ask(i), 200) for i in (1, 2)]
        assert wait_until(lambda: model.engine.active() == 3), "the three requests never shared a batch"
        hanging.close()  # the client hangs up mid-reply
        assert wait_until(lambda: model.engine.active() <= 2)
        assert not all(f.done() for f in others), "the hung-up member was not dropped mid-batch"
        results = [f.result(timeout=120) for f in others]
    for (text, usage, finish), (want, want_usage, _) in zip(results, expected, strict=True):
        assert text == want and finish == "length"  # the two others ran on, untouched
        assert usage.completion_tokens == want_usage.completion_tokens == 200
    assert wait_until(lambda: model.engine.active() == 0)


def test_a_constrained_member_and_a_free_one_both_stay_correct(mlx_server: LiveServer) -> None:
    free_alone = stream(mlx_server, ask(3), 400)
    client = mlx_server.client()

    def tool_call() -> Any:
        resp = client.chat.completions.create(
            model="tater/direct", messages=ask(5), max_tokens=80, temperature=0,
            tools=[{"type": "function", "function": {
                "name": "flag", "description": "Raise a flag", "parameters": SCHEMA}}],
            tool_choice="required")
        return resp.choices[0]

    model = loaded_model(mlx_server)
    call_alone = tool_call()
    with ThreadPoolExecutor(3) as pool:
        free = pool.submit(stream, mlx_server, ask(3), 400)
        assert wait_until(lambda: model.engine.active() >= 1)
        with BatchWatch(model) as watch:  # the free one is decoding when the constrained ones come
            replies = pool.submit(constrained, mlx_server, ask(4)), pool.submit(tool_call)
            reply, choice = replies[0].result(timeout=120), replies[1].result(timeout=120)
        text, usage, finish = free.result(timeout=120)
    assert watch.most >= 2, "the constrained members did not join the batch"
    assert (text, usage.completion_tokens, finish) == (free_alone[0], 400, "length")
    for arguments in (reply, choice.message.tool_calls[0].function.arguments):
        assert_fits_schema(arguments)
    assert choice.message.tool_calls[0].function.name == "flag"
    assert [(c.function.name, c.function.arguments) for c in choice.message.tool_calls] == \
        [(c.function.name, c.function.arguments) for c in call_alone.message.tool_calls]
    assert choice.finish_reason == call_alone.finish_reason


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(mlx_server: LiveServer) -> None:
    client = mlx_server.client()

    def sample(i: int) -> str:
        resp = client.chat.completions.create(model="tater/direct", messages=ask(i), max_tokens=80,
                                              temperature=0.9, top_p=0.95, seed=1234 + i)
        return resp.choices[0].message.content or ""

    alone = [sample(i) for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(sample, range(3)))
    assert together == alone and len(set(alone)) == 3


def test_logprobs_are_batched_too(mlx_server: LiveServer) -> None:
    client = mlx_server.client()

    def with_logprobs(i: int) -> Any:
        return client.chat.completions.create(model="tater/direct", messages=ask(i), max_tokens=40,
                                              temperature=0, logprobs=True, top_logprobs=2)

    alone = with_logprobs(0)
    with BatchWatch(loaded_model(mlx_server)) as watch, ThreadPoolExecutor(3) as pool:
        batched = list(pool.map(with_logprobs, range(3)))
    assert watch.most >= 2
    first, entries = batched[0].choices[0], alone.choices[0].logprobs.content
    assert first.message.content == alone.choices[0].message.content
    assert [e.token for e in first.logprobs.content] == [e.token for e in entries]
    assert all(abs(a.logprob - b.logprob) < 1e-3
               for a, b in zip(first.logprobs.content, entries, strict=True))


LONG = [{"role": "system", "content": "Project notes: " + " ".join(f"alpha{i}" for i in range(60))},
        {"role": "user", "content": "first question"}]


def test_a_shared_prefix_is_reused_and_reported(mlx_server: LiveServer) -> None:
    from app.providers.base import ChatMessage

    client = mlx_server.client()
    model = loaded_model(mlx_server)

    def usage(messages: list[dict[str, str]]) -> Any:
        return client.chat.completions.create(model="tater/direct", messages=messages,
                                              max_tokens=4, temperature=0).usage

    first = usage(LONG)
    follow_up = [LONG[0], {"role": "user", "content": "another question entirely"}]
    second = usage(follow_up)
    a, b = (model.prompt_ids([ChatMessage(**m) for m in x]) for x in (LONG, follow_up))
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert first.prompt_tokens == len(a) and first.prompt_tokens_details.cached_tokens < 20
    assert second.prompt_tokens_details.cached_tokens == shared > 150
    again = usage(follow_up)  # the same prompt: all but its last token
    assert again.prompt_tokens_details.cached_tokens == again.prompt_tokens - 1
