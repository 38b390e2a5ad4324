"""``/v1/completions`` on MLX and Transformers and ``/v1/embeddings`` on Transformers, via the SDK."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import LiveServer


def test_completion_stream_equals_whole_and_counts(local_server: LiveServer) -> None:
    client = local_server.client()
    whole = client.completions.create(model="tater/direct", prompt="the cat", max_tokens=8,
                                      temperature=0)
    choice = whole.choices[0]
    assert choice.text and choice.finish_reason == "length"
    assert whole.usage.completion_tokens == 8 and whole.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tater/direct", prompt="the cat", max_tokens=8, temperature=0, stream=True)
        if c.choices)
    assert streamed == choice.text
    seeded = [client.completions.create(model="tater/direct", prompt="the cat", max_tokens=8,
                                        temperature=1, seed=5).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_completion_logprobs_and_no_fim(local_server: LiveServer) -> None:
    client = local_server.client()
    resp = client.completions.create(model="tater/direct", prompt="the cat", max_tokens=4,
                                     temperature=0, logprobs=2)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == 4 and all(v <= 0 for v in lp.token_logprobs)
    assert all(len(t) == 2 for t in lp.top_logprobs)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tater/direct", prompt="a", suffix="b", max_tokens=2)
    assert info.value.body["param"] == "suffix"


def test_embeddings(local_server: LiveServer) -> None:
    client = local_server.client()
    row = local_server.settings.current.models[0]
    if row.provider == "mlx_lm":  # MLX rows are chat models
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="tater/direct", input="hi")
        assert "does not support embeddings" in info.value.body["message"]
        return
    resp = client.embeddings.create(model="tater/direct", input=["the cat", "a dog", "the cat"])
    vecs = [d.embedding for d in resp.data]
    assert all(len(v) == 64 for v in vecs)  # the tiny model's hidden size
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    assert resp.usage.prompt_tokens > 0
