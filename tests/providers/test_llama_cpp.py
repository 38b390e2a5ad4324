"""The llama.cpp provider driving the real runtime on a tiny self-made GGUF."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.providers.base import ChatChunk, ChatMessage, ChatRequest, ModelLoadError, ProviderError
from app.providers.llama_cpp import LlamaCppModel, LlamaCppProvider

MSGS = [ChatMessage("system", "you are a helpful cat"), ChatMessage("user", "tell me about the river")]
Loader = Callable[..., LlamaCppModel]


def req(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=list(kw.pop("messages", MSGS)), **kw)


def runtime_reference(model: LlamaCppModel, **kw: Any) -> dict[str, Any]:
    """A non-streamed call straight into llama-cpp-python (the ground truth for counts)."""
    return model.llm.create_chat_completion(messages=[m.to_dict() for m in MSGS], **kw)


async def collect(model: LlamaCppModel, request: ChatRequest) -> list[ChatChunk]:
    return [c async for c in model.stream(request)]


# -- row ids, availability, load errors ----------------------------------------------------

def test_row_for_plain_path_uses_the_folder_as_repo() -> None:
    row = LlamaCppProvider.row_for("/x/TheBloke/Mistral-GGUF/m.Q4.gguf", n_ctx=2048)
    assert row.id == "llama_cpp::Mistral-GGUF::m.Q4.gguf"
    assert (row.provider, row.source, row.display_name) == ("llama_cpp", "/x/TheBloke/Mistral-GGUF/m.Q4.gguf",
                                                            "m.Q4.gguf")
    assert row.options == {"n_ctx": 2048}


def test_row_for_hugging_face_cache_path_uses_org_and_name() -> None:
    src = "/home/u/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct-GGUF/snapshots/ab12/q4.gguf"
    row = LlamaCppProvider.row_for(src)
    assert row.id == "llama_cpp::Qwen/Qwen2.5-0.5B-Instruct-GGUF::q4.gguf"
    assert row.display_name == "q4.gguf"


def test_row_for_bare_file_name() -> None:
    assert LlamaCppProvider.row_for("m.gguf").id == "llama_cpp::local::m.gguf"


def test_available_and_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LlamaCppProvider.available() is None
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    hint = LlamaCppProvider.available()
    assert hint is not None and "pip install" in hint and "llama-cpp-python" in hint


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "gone.gguf"
    with pytest.raises(ModelLoadError, match=r"gone\.gguf") as info:
        LlamaCppProvider().load(LlamaCppProvider.row_for(str(missing)))
    assert str(missing) in info.value.message and info.value.status == 503


def test_a_file_that_is_not_gguf_is_a_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        LlamaCppProvider().load(LlamaCppProvider.row_for(str(bad)))


def test_default_context_is_the_trained_one(load_llama: Loader) -> None:
    assert load_llama().context_length == 512  # tiny_gguf is written with context_length=512
    assert load_llama(n_ctx=256).context_length == 256
    assert load_llama(n_ctx=96).context_length == 256  # llama.cpp pads to 256; so does the provider


# -- counts, finish reasons, streaming ------------------------------------------------------

async def test_usage_and_text_equal_the_runtime_non_streamed_call(load_llama: Loader) -> None:
    model = load_llama()
    result = await model.complete(req(temperature=0, max_tokens=12))
    ref = runtime_reference(model, temperature=0, max_tokens=12)
    assert result.text == ref["choices"][0]["message"]["content"]
    assert result.usage.prompt_tokens == ref["usage"]["prompt_tokens"] == model.count_tokens(MSGS)
    assert result.usage.completion_tokens == ref["usage"]["completion_tokens"] == 12
    assert result.finish_reason == ref["choices"][0]["finish_reason"] == "length"


async def test_stream_is_incremental_and_equals_complete(load_llama: Loader) -> None:
    model = load_llama()
    chunks = await collect(model, req(temperature=0, max_tokens=20))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "length" and last.usage is not None
    assert last.usage.completion_tokens == 20
    whole = await model.complete(req(temperature=0, max_tokens=20))
    assert "".join(texts) == whole.text and whole.text.strip()


async def test_max_tokens_none_runs_until_the_context_is_full(load_llama: Loader) -> None:
    model = load_llama(n_ctx=256)
    result = await model.complete(req(temperature=0, max_tokens=None))
    assert result.finish_reason == "length"
    assert result.usage.total_tokens == 256


async def test_stop_sequence_cuts_the_text_and_counts_like_the_runtime(load_llama: Loader) -> None:
    model = load_llama()
    full = (await model.complete(req(temperature=0, max_tokens=30))).text
    words = full.split()
    stop = " " + words[len(words) // 2]
    expected = full[: full.index(stop)]
    result = await model.complete(req(temperature=0, max_tokens=30, stop=[stop]))
    ref = runtime_reference(model, temperature=0, max_tokens=30, stop=[stop])
    assert result.finish_reason == "stop"
    assert result.text == expected == ref["choices"][0]["message"]["content"]
    assert result.usage.completion_tokens == ref["usage"]["completion_tokens"]
    streamed = "".join(c.text for c in await collect(model, req(temperature=0, max_tokens=30, stop=[stop])))
    assert streamed == expected


async def test_seed_reproducible_at_temperature_one(load_llama: Loader) -> None:
    model = load_llama()

    async def text(seed: int | None) -> str:
        return (await model.complete(req(temperature=1.0, max_tokens=24, seed=seed))).text

    first = await text(7)
    assert await text(7) == first
    others = {await text(s) for s in (8, 9, 10)}
    assert others - {first}, "different seeds should give different samples"
    unseeded = {await text(None) for _ in range(3)}
    assert len(unseeded) > 1, "unseeded requests must not repeat"


async def test_template_override_renders_and_counts_with_it(load_llama: Loader) -> None:
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    model = load_llama(chat_template=template)
    prompt, add_bos = model.render_prompt(MSGS)
    assert prompt == "system: you are a helpful cat\nuser: tell me about the river\nassistant:"
    assert add_bos is False
    result = await model.complete(req(temperature=0, max_tokens=5))
    assert result.usage.prompt_tokens == model.count_tokens(MSGS) == len(model.prompt_tokens(MSGS))


# -- errors -----------------------------------------------------------------------------------

async def test_prompt_longer_than_context_is_a_400_with_both_numbers(load_llama: Loader) -> None:
    model = load_llama(n_ctx=256)
    long = [ChatMessage("user", "the river " * 150)]
    n = model.count_tokens(long)
    with pytest.raises(ProviderError) as info:
        await model.complete(req(messages=long, max_tokens=4))
    err = info.value
    assert err.status == 400 and err.code == "context_length_exceeded"
    assert f"{n} tokens" in err.message and "256 tokens" in err.message
    assert not model.lock.locked()


@pytest.mark.parametrize(("kw", "param"), [({"max_tokens": 0}, "max_tokens"),
                                           ({"logprobs": True}, "logprobs")])
async def test_bad_requests_are_400(load_llama: Loader, kw: dict[str, Any], param: str) -> None:
    with pytest.raises(ProviderError) as info:
        await load_llama().complete(req(**kw))
    assert info.value.status == 400 and info.value.param == param


async def test_unloaded_model_says_so(load_llama: Loader) -> None:
    model = load_llama()
    await model.aclose()
    with pytest.raises(ProviderError, match="unloaded"):
        await model.complete(req(max_tokens=2))


# -- concurrency and cancellation ---------------------------------------------------------------

async def test_cancelling_a_stream_frees_the_lock_within_a_second(load_llama: Loader) -> None:
    model = load_llama(n_ctx=4096)
    agen = model.stream(req(temperature=0, max_tokens=None))
    got = [await agen.__anext__() for _ in range(3)]
    assert all(c.text for c in got) and model.lock.locked()
    t0 = time.monotonic()
    await agen.aclose()
    acquired = await asyncio.to_thread(model.lock.acquire, True, 1.0)
    elapsed = time.monotonic() - t0
    assert acquired, "generation kept the lock after the consumer left"
    model.lock.release()
    assert elapsed < 1.0
    after = await model.complete(req(temperature=0, max_tokens=8))  # the model still works
    assert after.usage.completion_tokens == 8


async def test_eight_concurrent_streams_on_one_model_are_serialised(load_llama: Loader) -> None:
    model = load_llama()

    async def one() -> tuple[str, Any]:
        chunks = await collect(model, req(temperature=0, max_tokens=16))
        return "".join(c.text for c in chunks), chunks[-1]

    results = await asyncio.gather(*(one() for _ in range(8)))
    texts = {t for t, _ in results}
    assert len(texts) == 1 and next(iter(texts)).strip()
    assert all(last.finish_reason == "length" and last.usage.completion_tokens == 16 for _, last in results)
    assert not model.busy


async def test_count_tokens_while_generating_is_safe(load_llama: Loader) -> None:
    model = load_llama(n_ctx=2048)
    expected = model.count_tokens(MSGS)
    counts: list[int | None] = []
    done = threading.Event()

    def counter() -> None:
        while not done.is_set():
            counts.append(model.count_tokens(MSGS))

    thread = threading.Thread(target=counter)
    thread.start()
    try:
        result = await model.complete(req(temperature=0, max_tokens=300))
    finally:
        done.set()
        thread.join()
    assert result.usage.completion_tokens == 300
    assert counts and set(counts) == {expected}


# -- structured output ------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                           "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}


async def test_json_schema_response_format_yields_schema_valid_json(load_llama: Loader) -> None:
    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}
    result = await load_llama().complete(req(temperature=0.7, seed=1, max_tokens=200, response_format=fmt))
    jsonschema.validate(json.loads(result.text), SCHEMA)


async def test_forced_tool_call_streams_openai_style_deltas(load_llama: Loader) -> None:
    tool = {"type": "function", "function": {"name": "plan_trip", "parameters": SCHEMA}}
    model = load_llama(n_ctx=1024)  # the tool listing goes into the prompt
    request = req(temperature=0.7, seed=1, max_tokens=200, tools=[tool], tool_choice="required",
                  parallel_tool_calls=False)
    chunks = await collect(model, request)
    deltas = [d for c in chunks for d in (c.tool_calls or [])]
    assert [d.name for d in deltas if d.name] == ["plan_trip"]  # the name is sent once
    assert deltas[0].id and all(d.id is None for d in deltas[1:])
    assert chunks[-1].finish_reason == "tool_calls"
    result = await model.complete(request)
    assert result.tool_calls is not None and result.tool_calls[0]["function"]["name"] == "plan_trip"
    args = json.loads(result.tool_calls[0]["function"]["arguments"])
    assert set(args) == {"city", "days"}
