"""The per-model queue's logic on its own: FIFO, bounded depth, cancellation, stream ownership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.providers.base import ChatChunk, ProviderError
from app.server.errors import ApiError
from app.server.queueing import ModelQueue, ModelQueues


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_served_in_arrival_order() -> None:
    q = ModelQueue("m", slots=1)
    first = await q.acquire(depth=10)
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with await q.acquire(depth=10):
            order.append(i)
            await asyncio.sleep(0)

    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(waiter(i)))
        await _settle()
    assert q.stats().waiting == 6 and q.stats().running == 1
    first.release()
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert q.stats().running == 0 and q.stats().waiting == 0 and q.stats().served == 7


async def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    q = ModelQueue("m", slots=1)
    held = await q.acquire(depth=2)
    waiting = [asyncio.create_task(q.acquire(depth=2)) for _ in range(2)]
    await _settle()
    with pytest.raises(ApiError) as info:
        await asyncio.wait_for(q.acquire(depth=2), timeout=0.1)  # refused, never a hang
    err = info.value
    assert err.status == 503 and err.code == "queue_full"
    assert int(err.headers["Retry-After"]) >= 1
    assert "1 request(s) are running and 2 waiting" in err.message
    held.release()
    (await waiting[0]).release()
    (await waiting[1]).release()
    assert q.stats().rejected == 1 and q.stats().running == 0


async def test_a_cancelled_waiter_never_gets_the_slot() -> None:
    q = ModelQueue("m", slots=1)
    held = await q.acquire(depth=5)
    gone = asyncio.create_task(q.acquire(depth=5))
    stays = asyncio.create_task(q.acquire(depth=5))
    await _settle()
    gone.cancel()
    await _settle()
    assert q.stats().waiting == 1
    held.release()
    ticket = await asyncio.wait_for(stays, 1)
    assert gone.cancelled()
    ticket.release()
    assert q.stats().running == 0


async def test_a_slot_handed_over_while_cancelling_passes_on() -> None:
    q = ModelQueue("m", slots=1)
    held = await q.acquire(depth=5)
    racer = asyncio.create_task(q.acquire(depth=5))
    nxt = asyncio.create_task(q.acquire(depth=5))
    await _settle()
    held.release()  # hands the slot to ``racer``'s future ...
    racer.cancel()  # ... which is cancelled before it resumes
    await _settle()
    ticket = await asyncio.wait_for(nxt, 1)
    ticket.release()
    assert q.stats().running == 0 and q.stats().waiting == 0


async def test_remote_style_queue_runs_several_at_once() -> None:
    q = ModelQueue("m", slots=3)
    tickets = [await asyncio.wait_for(q.acquire(depth=1), 0.1) for _ in range(3)]
    fourth = asyncio.create_task(q.acquire(depth=1))
    await _settle()
    assert q.stats().running == 3 and q.stats().waiting == 1
    tickets[0].release()
    (await asyncio.wait_for(fourth, 1)).release()
    for t in tickets:
        t.release()  # idempotent for the one already released
    assert q.stats().running == 0


async def _chunks(n: int, fail: BaseException | None = None) -> AsyncIterator[ChatChunk]:
    for i in range(n):
        yield ChatChunk(text=str(i))
    if fail is not None:
        raise fail


async def test_held_stream_releases_on_end_close_and_failure() -> None:
    queues = ModelQueues(lambda: 4)
    q = queues.queue("m", 1)

    held = (await q.acquire(4)).hold(_chunks(3))
    assert [c.text async for c in held] == ["0", "1", "2"]
    assert q.running == 0

    held = (await q.acquire(4)).hold(_chunks(100))
    assert (await anext(held)).text == "0"
    await held.aclose()  # the SSE writer closes it when the client goes away
    assert q.running == 0

    held = (await q.acquire(4)).hold(_chunks(1, KeyError("bug")))
    await anext(held)
    with pytest.raises(ProviderError) as info:
        await anext(held)
    assert info.value.status == 500 and "KeyError" in info.value.message
    assert q.running == 0 and queues.idle()


async def test_a_stream_never_iterated_still_frees_its_slot() -> None:
    q = ModelQueue("m", slots=1)
    held = (await q.acquire(4)).hold(_chunks(3))
    del held
    await _settle()
    assert q.running == 0
