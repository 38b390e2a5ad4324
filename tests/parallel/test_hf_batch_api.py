"""Transformers continuous batching, proven through the real server, real Transformers and the openai SDK.

Concurrent streams decode in one batch (Transformers' own ``ContinuousBatchingManager``) and
return what the same requests return one at a time, and what the one-sequence loop returns
(a ``parallel: 1`` row of the same model); a client hanging up ends only its own member; a
grammar-constrained member and a free one in the same batch both stay correct, and seeded,
penalised and logprobs members reply as the one-sequence loop does; a shared prompt prefix is
found in the paged cache and reported as cached tokens; a prompt over a slot runs alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.providers.hf_batching import PAGE_SIZE
from tests.conftest import LiveServer, start_live_server
from tests.parallel.batch_client import (
    LONG_A,
    LONG_B,
    BatchWatch,
    Reply,
    ask,
    assert_fits_schema,
    assert_same_replies,
    cached,
    constrained,
    loaded_model,
    stream,
    wait_until,
)

BATCHED = "hf-batched"
SINGLE = "hf-single"


def _stream(live: LiveServer, messages: list[dict[str, str]], max_tokens: int, *,
            model: str = BATCHED, **extra: Any) -> Reply:
    return stream(live, messages, max_tokens, model=model, **extra)


def _model(live: LiveServer, row_id: str = BATCHED) -> Any:
    return loaded_model(live, row_id)


@pytest.fixture
def hf_batch_server(clean_env: Path, tiny_hf_folder: Path) -> Iterator[LiveServer]:
    """The real server with the tiny HF Llama twice: batched (4 members) and one at a time."""
    from app.providers.hf_transformers import TransformersProvider

    base = TransformersProvider.row_for(str(tiny_hf_folder))
    batched = base.model_copy(update={"id": BATCHED, "options": {"parallel": 4, "threads": 1}})
    single = base.model_copy(update={"id": SINGLE, "options": {"parallel": 1, "threads": 1}})
    live = start_live_server(clean_env, [batched, single], BATCHED, max_loaded_models=2)
    model = _model(live)
    assert model.parallelism == 4 and model.engine is not None
    assert _model(live, SINGLE).engine is None
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_concurrent_streams_equal_sequential_and_unbatched_ones(hf_batch_server: LiveServer) -> None:
    live = hf_batch_server
    prompts = [ask(i) for i in range(4)]
    sequential = [_stream(live, p, 64) for p in prompts]
    unbatched = [_stream(live, p, 64, model=SINGLE) for p in prompts]  # the one-sequence loop

    def sampled() -> str:  # a member with its own sampler in the same batch
        return _stream(live, ask(7), 64, temperature=1.0, top_p=0.9)[0]

    with BatchWatch(_model(live)) as watch, ThreadPoolExecutor(5) as pool:
        free = pool.submit(sampled)
        concurrent = list(pool.map(lambda p: _stream(live, p, 64), prompts))
        free_text = free.result(timeout=120)
    assert watch.most >= 3, f"the requests never shared a batch (at most {watch.most} at once)"
    assert_same_replies(sequential, concurrent, 64)
    assert [text for text, _, _ in unbatched] == [text for text, _, _ in sequential]
    assert free_text and free_text != _stream(live, ask(7), 64)[0]  # sampled, not greedy


def test_cancelling_one_member_stops_only_that_one(hf_batch_server: LiveServer) -> None:
    live = hf_batch_server
    engine = _model(live).engine
    expected = [_stream(live, ask(i), 150) for i in (1, 2)]
    hanging = live.client().chat.completions.create(
        model=BATCHED, messages=ask(9), max_tokens=900, temperature=0, stream=True)
    next(iter(hanging))  # it is decoding
    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(_stream, live, ask(i), 150) for i in (1, 2)]
        assert wait_until(lambda: engine.active() == 3), "the three requests never shared a batch"
        hanging.close()  # the client hangs up mid-reply
        assert wait_until(lambda: engine.held() <= 2), "the hung-up member went on decoding"
        left_while_others_ran = any(not f.done() for f in others)
        results = [f.result(timeout=120) for f in others]
    assert left_while_others_ran, "the others had finished before the member left"
    for (text, usage, finish), (want, want_usage, _) in zip(results, expected, strict=True):
        assert text == want and finish == "length"  # the two others ran on, untouched
        assert usage.completion_tokens == want_usage.completion_tokens == 150
    assert wait_until(lambda: engine.held() == 0 and engine.active() == 0)


def test_a_constrained_member_and_a_free_one_both_stay_correct(hf_batch_server: LiveServer) -> None:
    """The grammar member joins the batch (our sampler picks its tokens inside the manager's step)."""
    live = hf_batch_server
    unbatched = constrained(live, ask(4), model=SINGLE)  # the one-sequence loop's reply
    free_alone = _stream(live, ask(3), 300)
    constrained_alone = constrained(live, ask(4), model=BATCHED)
    assert constrained_alone == unbatched
    engine = _model(live).engine  # (the hub may have reloaded it after the single row's turn)
    with ThreadPoolExecutor(2) as pool:
        free = pool.submit(_stream, live, ask(3), 300)
        assert wait_until(lambda: engine.active() >= 1)
        with BatchWatch(_model(live)) as watch:  # the free one is decoding when the constrained one comes
            reply = pool.submit(constrained, live, ask(4), model=BATCHED).result(timeout=120)
        text, usage, finish = free.result(timeout=120)
    assert watch.most == 2, "the constrained member did not join the batch"
    assert (text, usage.completion_tokens, finish) == (free_alone[0], 300, "length")
    assert reply == constrained_alone
    assert_fits_schema(reply)


def test_seeded_penalised_and_logprobs_members_equal_the_one_sequence_loop(
        hf_batch_server: LiveServer) -> None:
    """Features the manager has no per-request form of, batched: the same replies as unbatched."""
    live = hf_batch_server
    client = live.client()

    def seeded(model: str, i: int) -> str:
        return client.chat.completions.create(
            model=model, messages=ask(i), max_tokens=40, temperature=1.0, top_p=0.9, seed=11 + i,
            presence_penalty=0.5 * (i % 2)).choices[0].message.content or ""

    def with_logprobs(model: str) -> list[tuple[str, float, list[str]]]:
        resp = client.chat.completions.create(model=model, messages=ask(6), max_tokens=20,
                                              temperature=0, logprobs=True, top_logprobs=2)
        return [(e.token, round(e.logprob, 4), [t.token for t in e.top_logprobs])
                for e in resp.choices[0].logprobs.content]

    unbatched = ([seeded(SINGLE, i) for i in (1, 2)], with_logprobs(SINGLE))
    with BatchWatch(_model(live)) as watch, ThreadPoolExecutor(4) as pool:
        free = pool.submit(_stream, live, ask(3), 200)
        runs = [pool.submit(seeded, BATCHED, i) for i in (1, 2)]
        probs = pool.submit(with_logprobs, BATCHED)
        batched = ([f.result(timeout=120) for f in runs], probs.result(timeout=120))
        free.result(timeout=120)
    assert watch.most >= 3, f"they never shared a batch (at most {watch.most} at once)"
    assert batched == unbatched
    assert len(set(unbatched[0])) == 2 and all(unbatched[0])


def test_a_shared_prefix_is_found_in_the_paged_cache_and_reported(hf_batch_server: LiveServer) -> None:
    live = hf_batch_server
    first = [cached(live, LONG_A, model=BATCHED), cached(live, LONG_B, model=BATCHED)]
    assert all(prompt > 150 and reused == 0 for prompt, reused in first)
    for _ in range(2):  # two clients alternating both keep their prefix
        for messages in (LONG_A, LONG_B):
            prompt, reused = cached(live, messages, model=BATCHED)
            # whole pages, and never the last token (decoded again for its logits)
            assert reused % PAGE_SIZE == 0 and prompt - PAGE_SIZE <= reused < prompt
    follow_up = [LONG_A[0], {"role": "user", "content": "another question entirely"}]
    prompt, reused = cached(live, follow_up, model=BATCHED)
    assert 150 - PAGE_SIZE < reused < prompt and reused % PAGE_SIZE == 0  # the system message's pages


async def test_a_prompt_longer_than_a_slot_runs_alone_and_a_reply_ends_at_the_slot(
        tiny_hf_folder: Path) -> None:
    """``parallel_ctx`` bounds a member's KV: a longer prompt takes the one-sequence loop (its reply
    equal to an unbatched model's), a batched reply without ``max_tokens`` ends at its slot's end."""
    from app.providers.base import ChatMessage, ChatRequest
    from app.providers.hf_transformers import TransformersProvider

    base = TransformersProvider.row_for(str(tiny_hf_folder))
    small = TransformersProvider().load(base.model_copy(update={"options": {"parallel_ctx": 48}}))
    single = TransformersProvider().load(base.model_copy(update={"options": {"parallel": 1}}))
    try:
        assert small.engine is not None and small.engine.slot_ctx == 48
        long = ChatRequest(messages=[ChatMessage("user", "hello " * 40)], max_tokens=12, temperature=0)
        assert len(small.prompt_ids(long.messages)) > 48
        result = await small.complete(long)
        assert small.engine.submitted == 0, "the long prompt did not take the one-sequence loop"
        assert result.text == (await single.complete(long)).text
        short = ChatRequest(messages=[ChatMessage("user", "hi")], temperature=0)
        prompt = len(small.prompt_ids(short.messages))
        ended = await small.complete(short)
        assert small.engine.submitted == 1 and ended.finish_reason == "length"
        assert ended.usage.completion_tokens == 48 - prompt  # the slot's end, not the context's
    finally:
        small.close()
        single.close()


def test_unloading_ends_every_member_and_a_request_running_alone_with_503(tiny_hf_folder: Path) -> None:
    """Three members in the batch, and one prompt too long for a slot (it runs alone)."""
    from app.providers.base import ChatMessage, ChatRequest, ProviderError
    from app.providers.hf_transformers import TransformersProvider

    row = TransformersProvider.row_for(str(tiny_hf_folder), parallel_ctx=512)
    model = TransformersProvider().load(row)
    engine = model.engine
    outcome: dict[int, tuple[int, str]] = {}

    def run(i: int) -> None:
        words = 600 if i == 3 else 1
        request = ChatRequest(messages=[ChatMessage("user", f"hi {i} " + "hello " * words)],
                              max_tokens=400, temperature=0)
        chunks = 0
        try:
            for _ in model.generate(request, threading.Event()):
                chunks += 1
            outcome[i] = (chunks, "finished")
        except ProviderError as exc:
            outcome[i] = (chunks, f"{exc.status} {exc.code}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: engine.active() == 3 and engine.solo_count == 1 and len(outcome) == 0)
    time.sleep(0.2)  # all four are generating
    model.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert {i: status for i, (_, status) in outcome.items()} == dict.fromkeys(range(4), "503 model_unloaded")
    assert all(chunks > 0 for chunks, _ in outcome.values())
    assert engine.active() == 0 and not engine.manager.is_running()
