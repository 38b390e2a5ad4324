"""Limits and responsiveness with the real llama.cpp runtime and the tiny GGUF."""

from __future__ import annotations

import importlib
import statistics
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.hardening.conftest import auth

importlib.import_module("llama_cpp")

MSG = [{"role": "user", "content": "Tell me a story."}]


def test_prompt_longer_than_the_context_is_400_with_both_lengths(llama_server: LiveServer) -> None:
    long_text = "the river and the stone " * 200  # ~800+ tokens, the tiny model has 512
    with pytest.raises(openai.BadRequestError) as info:
        llama_server.client().chat.completions.create(
            model="tater/direct", messages=[{"role": "user", "content": long_text}], max_tokens=4)
    err = info.value.body
    assert err["code"] == "context_length_exceeded" and err["param"] == "messages"
    assert "context window is 512 tokens" in err["message"]
    prompt_len = int(err["message"].split("The prompt is ")[1].split(" ")[0])
    assert prompt_len > 512


def test_max_tokens_beyond_the_context_is_clamped(llama_server: LiveServer) -> None:
    r = llama_server.client().chat.completions.create(model="tater/direct", messages=MSG,
                                                  max_tokens=100_000, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens + r.usage.completion_tokens == 512


def test_models_list_answers_within_50ms_while_a_generation_runs(llama_server: LiveServer) -> None:
    body = {"messages": MSG, "stream": True, "temperature": 0}  # no max_tokens: until the context ends
    model_id = llama_server.settings.current.active_model
    started = threading.Event()
    done = threading.Event()

    def generate() -> None:
        with httpx.stream("POST", llama_server.base_url + "/chat/completions", json=body,
                          headers=auth(llama_server), timeout=60) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    started.set()
        done.set()

    with httpx.Client(headers=auth(llama_server), timeout=5) as c:
        c.get(llama_server.base_url + "/models")  # warm the connection
        worker = threading.Thread(target=generate)
        worker.start()
        assert started.wait(30)
        model = llama_server.services.hub.load(model_id).result()
        times = []
        while len(times) < 20 and model.busy:
            t0 = time.perf_counter()
            assert c.get(llama_server.base_url + "/models").status_code == 200
            times.append(time.perf_counter() - t0)
        busy_at_end = model.busy
        worker.join(60)
    assert done.is_set() and len(times) >= 5 and busy_at_end, "the generation ended too early to measure"
    # a blocked event loop is slow on every call; one slow call is this shared machine's scheduler
    # (seen once in ~20 full runs: one call of 489 ms, the median 4.9 ms)
    slow = sorted(times)[-2]
    assert slow < 0.05, f"/v1/models took {slow * 1000:.1f} ms twice or more (median " \
        f"{statistics.median(times) * 1000:.1f} ms, slowest {max(times) * 1000:.1f} ms) during a generation"
    assert max(times) < 1.0


def test_llama_generation_stops_right_after_the_client_hangs_up(llama_server: LiveServer) -> None:
    model_id = llama_server.settings.current.active_model
    body = {"messages": MSG, "stream": True, "temperature": 0}
    with httpx.stream("POST", llama_server.base_url + "/chat/completions", json=body,
                      headers=auth(llama_server), timeout=30) as r:
        lines = r.iter_lines()
        for _ in range(8):
            next(lines)
        model = llama_server.services.hub.load(model_id).result()
        assert model.busy
        hung_up = time.perf_counter()
    while model.busy:
        assert time.perf_counter() - hung_up < 1.0, "generation must stop when the client goes away"
        time.sleep(0.002)
    stopped_after = time.perf_counter() - hung_up
    if model.engine is None:
        generated = len(model.llm.last_tokens)
    else:  # parallel slots: a slot keeps the prompt and every token it decoded
        generated = max(len(slot.tokens) for slot in model.engine.slots)
    assert generated < 500, "the generation ran to the end of the context"
    assert stopped_after < 0.25
