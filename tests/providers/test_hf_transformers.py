"""The Transformers provider on a tiny self-built Llama (real torch + transformers, CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.providers import get_provider
from app.providers.hf_transformers import TransformersModel, TransformersProvider
from tests.providers.hf_fixtures import (
    MESSAGES,
    LocalContract,
)


def _load(folder: Path, **options: object) -> Iterator[TransformersModel]:
    provider = TransformersProvider()
    model = provider.load(provider.row_for(str(folder), **options))
    yield model
    model.close()


@pytest.fixture(scope="module")
def provider() -> TransformersProvider:
    return TransformersProvider()


@pytest.fixture(scope="module")
def model(tiny_hf_folder: Path) -> Iterator[TransformersModel]:
    yield from _load(tiny_hf_folder)


@pytest.fixture(scope="module")
def eos_model(tiny_hf_eos_folder: Path) -> Iterator[TransformersModel]:
    yield from _load(tiny_hf_eos_folder)


@pytest.fixture(scope="module")
def small_ctx_model(tiny_hf_folder: Path) -> Iterator[TransformersModel]:
    yield from _load(tiny_hf_folder, context_size=64)


class TestTransformersContract(LocalContract):
    def reference_greedy(self, model: TransformersModel, n: int) -> str:  # type: ignore[override]
        import torch

        ids = torch.tensor([model.prompt_ids(list(MESSAGES))])
        out = model.model.generate(ids, max_new_tokens=n, do_sample=False)
        return model.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def expected_prompt_tokens(self, model: TransformersModel) -> int:  # type: ignore[override]
        tok = model.tokenizer
        text = tok.apply_chat_template([m.to_dict() for m in MESSAGES], add_generation_prompt=True,
                                       tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])


def test_registry_and_row_ids(tiny_hf_folder: Path) -> None:
    provider = get_provider("hf_transformers")
    assert isinstance(provider, TransformersProvider)
    assert provider.label == "Transformers" and provider.local
    assert provider.available() is None
    assert provider.row_for("org/model").id == "hf_transformers::org/model"


def test_device_is_chosen_automatically(model: TransformersModel) -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert model.device == expected
    assert next(model.model.parameters()).device.type == expected


def test_template_override_and_missing_template(tiny_hf_folder: Path, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_hf_folder, folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["chat_template"]
    cfg_path.write_text(json.dumps(cfg))
    provider = TransformersProvider()
    from app.providers.base import ModelLoadError

    with pytest.raises(ModelLoadError, match="no chat template"):
        provider.load(provider.row_for(str(folder)))
    loaded = provider.load(provider.row_for(
        str(folder), chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}"))
    assert loaded.prompt_ids(list(MESSAGES)) == loaded.tokenizer(
        "You are tiny.\nSay something, please.\n", add_special_tokens=False)["input_ids"]
