"""The single long-lived thread that owns a runtime's thread-bound state (MLX)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.providers.local import run_in_thread, run_to_end
from app.providers.owner_thread import OwnerThread


def test_call_runs_on_the_owner_thread_and_returns_or_raises() -> None:
    owner = OwnerThread("test-owner")
    names = {owner.call(lambda: threading.current_thread().name) for _ in range(3)}
    assert names == {"test-owner"}
    with pytest.raises(ZeroDivisionError):
        owner.call(lambda: 1 / 0)
    assert owner.call(lambda x: x * 2, 21) == 42  # the thread survived the failing call


def test_call_from_the_owner_thread_runs_inline() -> None:
    owner = OwnerThread("test-owner")
    assert owner.call(lambda: owner.call(lambda: owner.is_current())) is True
    assert not owner.is_current()


def test_a_failing_spawned_job_does_not_end_the_thread(caplog: pytest.LogCaptureFixture) -> None:
    owner = OwnerThread("test-owner")
    first = owner.call(threading.get_ident)
    owner.spawn(lambda: 1 / 0)
    assert owner.call(threading.get_ident) == first
    assert "a job on the test-owner thread failed" in caplog.text


def test_call_with_a_timeout_gives_up_waiting_but_the_job_still_runs() -> None:
    owner = OwnerThread("test-owner")
    assert not owner.started()
    release, ran = threading.Event(), threading.Event()
    owner.spawn(lambda: release.wait(10))
    assert owner.started()
    with pytest.raises(TimeoutError):
        owner.call(ran.set, timeout=0.05)
    release.set()
    assert ran.wait(5)  # still queued in order, run once the thread is free


async def test_generations_share_the_thread_in_arrival_order() -> None:
    owner = OwnerThread("test-owner")
    lock = threading.Lock()
    seen: list[tuple[str, int]] = []

    def tokens(tag: str):
        def make(cancelled: threading.Event):
            for i in range(3):
                seen.append((threading.current_thread().name, i))
                yield f"{tag}{i}"
        return make

    async def collect(tag: str) -> list[str]:
        return [t async for t in run_in_thread(lock, tokens(tag), spawn=owner.spawn)]

    a, b = await asyncio.gather(collect("a"), collect("b"))
    assert a == ["a0", "a1", "a2"] and b == ["b0", "b1", "b2"]
    assert {name for name, _ in seen} == {"test-owner"}
    ran = await run_to_end(lock, lambda cancelled: threading.current_thread().name, spawn=owner.spawn)
    assert ran == "test-owner"


def test_stop_ends_the_thread_after_queued_jobs_and_a_new_job_restarts_it() -> None:
    owner = OwnerThread("test-owner")
    first = owner.call(threading.current_thread)
    done = threading.Event()
    owner.spawn(done.set)
    owner.stop()
    first.join(5)
    assert done.is_set() and not first.is_alive()
    second = owner.call(threading.current_thread)
    assert second is not first and second.is_alive()
    owner.stop()
    second.join(5)
    assert not second.is_alive()


def test_an_idle_thread_ends_and_the_next_job_starts_another() -> None:
    owner = OwnerThread("test-owner", idle_exit=0.05)
    first = owner.call(threading.current_thread)
    first.join(5)
    assert not first.is_alive() and owner.idle()
    second = owner.call(threading.current_thread)
    assert second is not first
    assert owner.call(lambda: 7) == 7
