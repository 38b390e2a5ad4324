"""Transformers and MLX rows served by this app's real server, driven by the ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server
from tests.providers.hf_fixtures import MESSAGES

RUNTIMES = ["hf_transformers", "mlx_lm"]


@pytest.fixture(params=RUNTIMES)
def served(request: pytest.FixtureRequest, clean_env: Path, tiny_hf_folder: Path
           ) -> Iterator[tuple[LiveServer, str]]:
    from app.providers import provider_class

    row = provider_class(request.param).row_for(str(tiny_hf_folder))
    live = start_live_server(clean_env, [row], row.id)
    yield live, row.id
    live.services.shutdown()  # type: ignore[attr-defined]


def test_contract_through_the_server(served: tuple[LiveServer, str]) -> None:
    live, model_id = served
    client = live.client()
    messages = [m.to_dict() for m in MESSAGES]
    listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed[model_id] == model_id.split("::")[0]

    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=16,
                                           temperature=0)
    assert whole.model == model_id or whole.model.endswith(model_id.split("::")[1])
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 16 and whole.usage.prompt_tokens > 0
    text = whole.choices[0].message.content
    assert text

    deltas = []
    finish = None
    for chunk in client.chat.completions.create(model=model_id, messages=messages, max_tokens=16,
                                                temperature=0, stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(deltas) >= 5 and "".join(deltas) == text and finish == "length"

    stop = next(text[i:i + 3] for i in range(6, len(text) - 3)
                if text[i:i + 3].strip() and text.index(text[i:i + 3]) >= 4)
    stopped = client.chat.completions.create(model=model_id, messages=messages, max_tokens=16,
                                             temperature=0, stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[:text.index(stop)]

    seeded = [client.chat.completions.create(model=model_id, messages=messages, max_tokens=12,
                                             temperature=1.0, seed=s).choices[0].message.content
              for s in (5, 5, 6)]
    assert seeded[0] == seeded[1] != seeded[2]
