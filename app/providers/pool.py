"""Pool rows: one model id served by several other rows (local runtimes or remote servers).

A pool row's ``options`` name its ``members`` (ids of other rows: llama.cpp, MLX, Transformers or
remote servers such as vLLM or Ollama on other machines) and ``retry_seconds`` (the back-off after a
member fails, default 30).  Each request goes to the least busy healthy member: fewest requests in
flight through this pool for its capacity (the member's ``parallelism``), the one used least
recently on a tie.  A member that fails before the reply's first chunk (refused or timed-out
connection, an upstream 5xx/401/403/404/429, a load failure) is marked unhealthy for
``retry_seconds`` and the request goes to the next member; once the client has seen a chunk, an
error is passed through (and still marks the member).  When every member is backing off, the one
that comes back first is tried anyway; when all of them fail the client gets a 503 naming each
failure.  A request the member refuses as bad (a 4xx of the request's own making) is passed
through without failing over or marking anyone.

The members are loaded (and for local ones evicted) by the model hub like any row; the pool only
routes.  Its health (:meth:`PoolChatModel.health`) is kept while the pool is loaded.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.providers import UnknownProvider, provider_class
from app.providers.base import (
    ChatChunk,
    ChatModel,
    ChatRequest,
    ModelLoadError,
    ModelSource,
    Provider,
    ProviderError,
    TextRequest,
    UnsupportedError,
)
from app.providers.upstream import UpstreamError

if TYPE_CHECKING:
    from app.settings import ModelRow

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 30.0
MEMBER_FAULT_STATUSES = frozenset({401, 403, 404, 429})
"""Upstream answers below 500 that are the member's fault (its key, its model, its load), not the
request's: another member may well answer."""
MEMBER_FAULT_CODES = frozenset({"model_not_found"})
"""Errors of our own that mean the member row itself is gone."""

HealthState = Literal["healthy", "unhealthy", "untried"]


class PoolOptions(BaseModel):
    """A pool row's ``options``."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(min_length=1, description="Ids of the rows that serve this pool.")
    retry_seconds: float = Field(default=DEFAULT_RETRY_SECONDS, gt=0, le=3600, description=(
        "How long a member that failed is skipped before it is tried again."))

    @field_validator("members")
    @classmethod
    def _distinct_ids(cls, members: list[str]) -> list[str]:
        cleaned = [m.strip() for m in members]
        if any(not m for m in cleaned):
            raise ValueError("a member id must not be empty")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("a member is listed twice")
        return cleaned


def parse_options(row: ModelRow) -> PoolOptions:
    """The row's pool options; ModelLoadError naming each bad field."""
    try:
        return PoolOptions.model_validate(row.options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
                             for e in exc.errors())
        raise ModelLoadError(f"pool row {row.id!r}: {problems} (a pool row's options are "
                             '{"members": ["row id", ...], "retry_seconds": 30})') from None


@dataclass(frozen=True)
class MemberHealth:
    """One member as the pool sees it (the tray and ``GET /v1/pools/{id}`` show this)."""

    member_id: str
    state: HealthState
    in_flight: int
    served: int
    failures: int
    last_error: str
    retry_in_seconds: float
    """Seconds left before an unhealthy member is tried again (0: it may be tried now)."""


class _Member:
    """A member's mutable routing state (guarded by the pool's lock)."""

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.in_flight = 0
        self.served = 0
        self.failures = 0
        self.last_error = ""
        self.last_ok: bool | None = None
        self.retry_at = 0.0
        self.last_picked = 0


def is_member_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the member is down or misconfigured (rather than the request bad)."""
    if isinstance(exc, UpstreamError) and exc.upstream_status is not None:
        return exc.upstream_status >= 500 or exc.upstream_status in MEMBER_FAULT_STATUSES
    if isinstance(exc, ProviderError):
        return exc.status >= 500 or exc.code in MEMBER_FAULT_CODES
    return isinstance(exc, Exception)


def describe(exc: BaseException) -> str:
    """A failure in one line for the health report."""
    return exc.message if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"


class PoolChatModel(ChatModel):
    """Routes each request to one member model (see the module docstring)."""

    provider: ClassVar[str] = "pool"
    supports_logit_bias: ClassVar[bool] = True  # each member is checked when it is picked

    def __init__(self, model_id: str, members: list[str], models: ModelSource, *,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(model_id)
        self.members = list(members)
        self.retry_seconds = retry_seconds
        self._models = models
        self._clock = clock
        self._state = {m: _Member(m) for m in self.members}
        self._lock = threading.Lock()
        self._ticks = itertools.count(1)

    # -- capacity and health -------------------------------------------------------------
    @property  # type: ignore[override]
    def parallelism(self) -> int:
        """The members' parallelism together (a member not loaded yet: what its row says)."""
        return sum(self.capacity(m) for m in self.members)

    def capacity(self, member_id: str) -> int:
        """How many requests at once ``member_id`` takes."""
        model = self._models.loaded_model(member_id)
        if model is not None:
            return max(1, model.parallelism)
        row = self._models.row(member_id)
        if row is None:
            return 1
        try:
            return max(1, provider_class(row.provider).parallelism_hint(row))
        except UnknownProvider:
            return 1

    def health(self) -> list[MemberHealth]:
        """Each member's state, in the row's order."""
        now = self._clock()
        with self._lock:
            return [MemberHealth(
                member_id=s.member_id,
                state="untried" if s.last_ok is None else "healthy" if s.last_ok else "unhealthy",
                in_flight=s.in_flight, served=s.served, failures=s.failures,
                last_error=s.last_error, retry_in_seconds=round(max(0.0, s.retry_at - now), 3),
            ) for s in self._state.values()]

    # -- routing ---------------------------------------------------------------------------
    def _pick(self, tried: dict[str, str]) -> _Member | None:
        """Take the least busy member not tried yet (counted in flight); None when none is left."""
        capacity = {m: self.capacity(m) for m in self.members if m not in tried}
        now = self._clock()
        with self._lock:
            left = [self._state[m] for m in capacity]
            if not left:
                return None
            ready = [s for s in left if s.retry_at <= now]
            if ready:
                best = min(ready, key=lambda s: (s.in_flight / capacity[s.member_id], s.last_picked))
            else:  # every member is backing off: try the one that comes back first
                best = min(left, key=lambda s: s.retry_at)
            best.in_flight += 1
            best.last_picked = next(self._ticks)
            return best

    def _answered(self, member: _Member) -> None:
        with self._lock:
            member.last_ok = True
            member.retry_at = 0.0

    def _failed(self, member: _Member, message: str) -> None:
        with self._lock:
            member.failures += 1
            member.last_ok = False
            member.last_error = message
            member.retry_at = self._clock() + self.retry_seconds
        log.warning("pool %s: member %s failed (skipped for %g s): %s", self.model_id,
                    member.member_id, self.retry_seconds, message)

    def _done(self, member: _Member, served: bool) -> None:
        with self._lock:
            member.in_flight -= 1
            if served:
                member.served += 1

    def _exhausted(self, tried: dict[str, str]) -> ProviderError:
        reasons = "; ".join(f"{m}: {why}" for m, why in tried.items())
        return ProviderError(f"No member of the pool '{self.model_id}' could take the request "
                             f"({reasons}).", status=503, code="pool_unavailable")

    async def _routed(self, open_stream: Callable[[ChatModel], AsyncIterator[ChatChunk]]
                      ) -> AsyncIterator[ChatChunk]:
        """``open_stream`` on the picked member, failing over until its first chunk."""
        tried: dict[str, str] = {}
        while (member := self._pick(tried)) is not None:
            started = served = False
            try:
                model = await self._models.acquire(member.member_id)
                async with contextlib.aclosing(open_stream(model)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        if not started:
                            started = True
                            self._answered(member)
                        yield chunk
                served = True
                return
            except Exception as exc:
                if not is_member_failure(exc):
                    raise
                self._failed(member, describe(exc))
                if started:
                    raise  # the client has part of the reply: it cannot move to another member
                tried[member.member_id] = describe(exc)
            finally:
                self._done(member, served)
        raise self._exhausted(tried)

    def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self._routed(lambda model: member_chat(model, request))

    def stream_text(self, request: TextRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        return self._routed(lambda model: model.stream_text(request))

    async def embed(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        tried: dict[str, str] = {}
        while (member := self._pick(tried)) is not None:
            served = False
            try:
                model = await self._models.acquire(member.member_id)
                result = await model.embed(texts)
                self._answered(member)
                served = True
                return result
            except Exception as exc:
                if not is_member_failure(exc):
                    raise
                self._failed(member, describe(exc))
                tried[member.member_id] = describe(exc)
            finally:
                self._done(member, served)
        raise self._exhausted(tried)


async def member_chat(model: ChatModel, request: ChatRequest) -> AsyncIterator[ChatChunk]:
    """``request`` on one member, refused first as the server would refuse it on that model."""
    if request.logit_bias and not model.supports_logit_bias:
        raise UnsupportedError(f"logit_bias is not supported by the {model.provider} runtime of "
                               f"pool member {model.model_id}", param="logit_bias")
    model.check_request(request)
    async with contextlib.aclosing(model.stream(request)) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            yield chunk


class PoolProvider(Provider):
    """Rows that spread one model id over other rows."""

    name: ClassVar[str] = "pool"
    label: ClassVar[str] = "Pool (one id, several rows)"
    local: ClassVar[bool] = False  # the members count, each as its own row
    options_model = PoolOptions

    @classmethod
    def parse_options(cls, row: ModelRow) -> PoolOptions:
        """The row's pool options, refused with the shape a pool row's options take."""
        return parse_options(row)

    def __init__(self) -> None:
        self._models: ModelSource | None = None

    def attach(self, models: ModelSource) -> None:
        self._models = models

    @classmethod
    def row_for(cls, source: str, **options: Any) -> ModelRow:
        """A row ``pool::<name>`` over ``members`` (row ids); ValueError for bad options."""
        from app.settings import ModelRow

        try:
            opts = PoolOptions.model_validate(options)
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        return ModelRow(id=f"{cls.name}::{source}", provider=cls.name, source=source,
                        options=opts.model_dump(exclude_defaults=True) | {"members": opts.members})

    def load(self, row: ModelRow) -> PoolChatModel:
        if self._models is None:
            raise ModelLoadError(f"pool row {row.id!r}: a pool loads through the model hub")
        opts = parse_options(row)
        for member_id in opts.members:
            if member_id == row.id:
                raise ModelLoadError(f"pool row {row.id!r} lists itself as a member")
            member = self._models.row(member_id)
            if member is None:
                raise ModelLoadError(f"pool row {row.id!r}: member {member_id!r} is not a "
                                     "configured model row")
            if member.provider == self.name:
                raise ModelLoadError(f"pool row {row.id!r}: member {member_id!r} is itself a "
                                     "pool (pools do not nest)")
        return PoolChatModel(row.id, opts.members, self._models, retry_seconds=opts.retry_seconds)


def pool_health(models: ModelSource, pool_id: str) -> list[MemberHealth] | None:
    """The members' health of a loaded pool; None when ``pool_id`` is not a loaded pool."""
    model = models.loaded_model(pool_id)
    return model.health() if isinstance(model, PoolChatModel) else None
