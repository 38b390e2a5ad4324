"""Pool routing logic (least busy, back-off, failover before the first chunk, pass-through after)
on stand-in members; the real thing is proven in test_pool_live.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.providers import get_provider
from app.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatModel,
    ChatRequest,
    ModelLoadError,
    ProviderError,
    UnsupportedError,
    Usage,
)
from app.providers.pool import PoolChatModel, PoolProvider, is_member_failure
from app.providers.upstream import UpstreamError
from app.settings import ModelRow


class Member(ChatModel):
    """Streams ``words`` (waiting on ``gate`` first, if set); ``fail_before``/``fail_after`` raise."""

    provider = "member"

    def __init__(self, model_id: str, *, parallelism: int = 1) -> None:
        super().__init__(model_id)
        self.parallelism = parallelism
        self.words = ["a", "b"]
        self.fail_before: BaseException | None = None
        self.fail_after: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_before is not None:
            raise self.fail_before
        for w in self.words:
            yield ChatChunk(text=w)
            if self.fail_after is not None:
                raise self.fail_after
        yield ChatChunk(finish_reason="stop", usage=Usage(1, len(self.words)))


class Source:
    """A ModelSource over a dict of members (the hub's part, for these unit tests)."""

    def __init__(self, *members: Member) -> None:
        self.models = {m.model_id: m for m in members}
        self.rows = {m.model_id: ModelRow(id=m.model_id, provider="remote", source="x",
                                          options={"base_url": "http://127.0.0.1:1/v1"})
                     for m in members}
        self.loaded: set[str] = set()

    def row(self, model_id: str) -> ModelRow | None:
        return self.rows.get(model_id)

    def loaded_model(self, model_id: str) -> ChatModel | None:
        return self.models[model_id] if model_id in self.loaded else None

    async def acquire(self, model_id: str) -> ChatModel:
        self.loaded.add(model_id)
        return self.models[model_id]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request() -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", "hi")])


def pool(*members: Member, clock: Clock | None = None, retry: float = 10.0) -> PoolChatModel:
    return PoolChatModel("pool::p", [m.model_id for m in members], Source(*members),
                         retry_seconds=retry, clock=clock or Clock())


def states(p: PoolChatModel) -> dict[str, str]:
    return {h.member_id: h.state for h in p.health()}


def unreachable() -> UpstreamError:
    return UpstreamError("cannot reach the upstream server", status=502, code="upstream_unreachable")


async def test_sequential_requests_alternate_and_health_starts_untried() -> None:
    a, b = Member("a"), Member("b")
    p = pool(a, b)
    assert states(p) == {"a": "untried", "b": "untried"}
    for _ in range(4):
        assert (await p.complete(request())).text == "ab"
    assert (a.calls, b.calls) == (2, 2)
    assert states(p) == {"a": "healthy", "b": "healthy"}
    assert [h.served for h in p.health()] == [2, 2]


async def test_concurrent_requests_go_to_the_least_busy_member_for_its_capacity() -> None:
    a, b = Member("a", parallelism=1), Member("b", parallelism=3)
    p = pool(a, b)
    await asyncio.gather(p.complete(request()), p.complete(request()))  # loads both (hint: 4 each)
    gate = asyncio.Event()
    a.gate = b.gate = gate
    tasks = [asyncio.create_task(p.complete(request())) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert {h.member_id: h.in_flight for h in p.health()} == {"a": 1, "b": 2}
    gate.set()
    await asyncio.gather(*tasks)
    assert p.parallelism == 4 and all(h.in_flight == 0 for h in p.health())


async def test_parallelism_before_loading_comes_from_the_member_rows() -> None:
    a, b = Member("a"), Member("b")
    p = pool(a, b)
    assert p.parallelism == 8  # two remote rows, DEFAULT_PARALLELISM each
    await p.complete(request())
    await p.complete(request())
    assert p.parallelism == 2  # loaded now: their own parallelism


async def test_an_unreachable_member_fails_over_backs_off_and_comes_back() -> None:
    clock = Clock()
    a, b = Member("a"), Member("b")
    p = pool(a, b, clock=clock, retry=10)
    a.fail_before = unreachable()
    for _ in range(3):
        assert (await p.complete(request())).text == "ab"
    assert a.calls == 1 and b.calls == 3  # tried once, then skipped while backing off
    health = {h.member_id: h for h in p.health()}
    assert health["a"].state == "unhealthy" and health["a"].failures == 1
    assert "cannot reach" in health["a"].last_error and health["a"].retry_in_seconds == 10
    a.fail_before = None
    clock.now += 10.5
    await p.complete(request())
    assert a.calls == 2 and states(p) == {"a": "healthy", "b": "healthy"}


async def test_when_every_member_fails_the_client_gets_a_503_naming_each() -> None:
    a, b = Member("a"), Member("b")
    a.fail_before = unreachable()
    b.fail_before = ModelLoadError("GGUF file not found: /x.gguf")
    p = pool(a, b)
    with pytest.raises(ProviderError) as err:
        await p.complete(request())
    assert err.value.status == 503 and err.value.code == "pool_unavailable"
    assert "a: cannot reach" in err.value.message and "b: GGUF file not found" in err.value.message
    a.fail_before = None  # both backing off: the one back first is still tried
    assert (await p.complete(request())).text == "ab" and a.calls == 2


async def test_an_error_after_the_first_chunk_is_passed_through() -> None:
    a, b = Member("a"), Member("b")
    a.fail_after = UpstreamError("the connection failed: RemoteProtocolError")
    p = pool(a, b)
    got: list[str] = []
    with pytest.raises(UpstreamError):
        async for chunk in p.stream(request()):
            got.append(chunk.text)
    assert got == ["a"] and b.calls == 0  # no second answer spliced onto the first
    assert states(p)["a"] == "unhealthy"


async def test_a_bad_request_is_not_the_members_fault() -> None:
    a, b = Member("a"), Member("b")
    a.fail_before = UpstreamError("answered HTTP 400", status=502, upstream_status=400)
    b.fail_before = UnsupportedError("no such thing")
    p = pool(a, b)
    with pytest.raises(UpstreamError):
        await p.complete(request())
    with pytest.raises(UnsupportedError):
        await p.complete(request())
    assert (a.calls, b.calls) == (1, 1) and states(p) == {"a": "untried", "b": "untried"}


def test_which_errors_count_against_a_member() -> None:
    assert is_member_failure(unreachable())
    assert is_member_failure(UpstreamError("x", status=504, code="upstream_timeout"))
    assert is_member_failure(UpstreamError("x", status=502, upstream_status=503))
    assert is_member_failure(UpstreamError("x", status=401, upstream_status=401))
    assert is_member_failure(ProviderError("gone", status=404, code="model_not_found"))
    assert is_member_failure(RuntimeError("boom"))
    assert not is_member_failure(UpstreamError("x", status=502, upstream_status=422))
    assert not is_member_failure(UnsupportedError("x"))


async def test_a_client_that_leaves_frees_the_members_slot() -> None:
    a = Member("a")
    a.words = ["x"] * 50
    p = pool(a)
    stream = p.stream(request())
    assert (await anext(stream)).text == "x"
    assert p.health()[0].in_flight == 1
    await stream.aclose()
    assert p.health()[0].in_flight == 0 and p.health()[0].served == 0


def test_rows_and_their_validation() -> None:
    provider = get_provider("pool")
    assert isinstance(provider, PoolProvider) and not provider.local
    row = PoolProvider.row_for("team", members=["a", "b"], retry_seconds=5)
    assert (row.id, row.provider, row.options) == ("pool::team", "pool",
                                                   {"members": ["a", "b"], "retry_seconds": 5.0})
    with pytest.raises(ValueError, match="members"):
        PoolProvider.row_for("team", members=[])
    a, b = Member("a"), Member("b")
    source = Source(a, b)
    source.rows["pool::other"] = PoolProvider.row_for("other", members=["a"])
    provider.attach(source)
    model = provider.load(row)
    assert model.members == ["a", "b"] and model.retry_seconds == 5
    bad = {"members": ["a", "zz"]}, {"members": ["a", "pool::team"]}, \
        {"members": ["pool::other"]}, {"members": ["a"], "retry": 3}, {"members": ["a", "a"]}
    messages = []
    for options in bad:
        with pytest.raises(ModelLoadError) as err:
            provider.load(row.model_copy(update={"options": options}))
        messages.append(err.value.message)
    assert "'zz' is not a configured model row" in messages[0]
    assert "lists itself" in messages[1] and "pools do not nest" in messages[2]
    assert "retry: Extra inputs are not permitted" in messages[3]
    assert "listed twice" in messages[4]
    with pytest.raises(ModelLoadError, match="through the model hub"):
        PoolProvider().load(row)
