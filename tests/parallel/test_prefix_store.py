"""Saved prompt prefixes beyond the slots: the store on its own, then through the real server.

The live test runs real llama.cpp with two slots and three conversations, each with a long
prompt: the third overwrites the first's slot, whose cache the store saved, so the first's next
request reuses it (reported as cached tokens) and replies exactly as it did without the cache.
"""

from __future__ import annotations

from pathlib import Path

from app.providers.prefix_store import MIN_SAVED_TOKENS, PrefixStore
from tests.conftest import LiveServer, start_live_server

LONG = list(range(1000, 1000 + 2 * MIN_SAVED_TOKENS))


def test_short_or_already_saved_caches_are_not_worth_a_copy() -> None:
    store = PrefixStore(budget=10_000)
    assert not store.worth_saving(LONG[:MIN_SAVED_TOKENS - 1])
    assert store.worth_saving(LONG)
    store.put(LONG, b"x" * 100)
    assert not store.worth_saving(LONG) and not store.worth_saving(LONG[:-1])
    assert store.worth_saving([*LONG, 7])
    assert not PrefixStore(budget=0).worth_saving(LONG)


def test_a_longer_state_replaces_its_prefixes_and_the_least_recently_used_go_first() -> None:
    store = PrefixStore(budget=300)
    a, b, c = LONG, [1, *LONG], [2, *LONG]
    store.put(a[:100], b"1" * 100)
    store.put(a, b"2" * 100)  # covers the first one: it goes
    assert [len(e.tokens) for e in store.entries] == [len(a)]
    store.put(b, b"3" * 100)
    assert store.best([*a, 5]) is not None  # a is used: b is now the least recently used
    store.put(c, b"4" * 150)
    assert {e.state[:1] for e in store.entries} == {b"2", b"4"} and store.nbytes <= 300
    assert not store.put(c, b"5" * 301)  # larger than the whole budget


def test_the_longest_shared_prefix_is_found() -> None:
    store = PrefixStore(budget=1000)
    store.put(LONG[:80], b"s")
    store.put([*LONG[:40], 5, 6, 7], b"t")
    entry, shared = store.best([*LONG[:90], 9]) or (None, 0)
    assert entry is not None and entry.state == b"s" and shared == 80
    assert store.best([3, 2, 1]) is None


def _conversation(tag: str) -> list[dict[str, str]]:
    facts = " ".join(f"{tag}{i}" for i in range(60))
    return [{"role": "system", "content": f"You keep the {tag} notes: {facts}."},
            {"role": "user", "content": f"What is in the {tag} notes?"}]


def _ask(live: LiveServer, tag: str) -> tuple[str, int]:
    reply = live.client().chat.completions.create(
        model="tater/direct", messages=_conversation(tag), max_tokens=12, temperature=0)
    details = reply.usage.prompt_tokens_details if reply.usage else None
    return reply.choices[0].message.content or "", int(details.cached_tokens or 0) if details else 0


def _run_conversations(config: Path, gguf: Path, **options: object) -> tuple[tuple[str, int, str, int], int]:
    """alpha, bravo, charlie, alpha again on two slots: alpha's first and second reply with their
    cached tokens, and the bytes the engine saved."""
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(gguf), parallel=2, **options)
    live = start_live_server(config, [row], row.id)
    try:
        first, cached_first = _ask(live, "alpha")
        _ask(live, "bravo")
        _ask(live, "charlie")  # two slots: alpha's slot (the least recently used) is reused
        again, cached_again = _ask(live, "alpha")
        model = live.services.hub.load(row.id).result(timeout=60)  # type: ignore[attr-defined]
        return (first, cached_first, again, cached_again), model.engine.saved.nbytes
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]


def test_a_conversation_keeps_its_cache_after_its_slot_is_reused(clean_env: Path,
                                                                  tiny_gguf: Path) -> None:
    (first, cached_first, again, cached_again), saved = _run_conversations(
        clean_env / "saving", tiny_gguf)
    assert cached_first == 0 and again == first
    assert cached_again >= 60, f"alpha's cache was not restored: {cached_again} cached tokens"
    assert 0 < saved <= 1024 * 2**20
    (off_first, _, off_again, off_cached), off_saved = _run_conversations(
        clean_env / "off", tiny_gguf, prefix_cache_mb=0)
    assert off_again == off_first == first
    assert off_cached < 20 and off_saved == 0  # at most the chat template's common header
