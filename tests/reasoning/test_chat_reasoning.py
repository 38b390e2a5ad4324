"""Reasoning through the real server, the real runtimes and the official openai SDK.

Scripted tiny models (``app.tinymodels.scripted``) play exact replies: ``<think>…</think>``
answers (with ``enable_thinking`` switching the template's generation prompt), a
DeepSeek-R1-style template that opens the block in the prompt, and a gpt-oss harmony reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.tinymodels.scripted import ScriptedFiles, write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.reasoning import family_templates as fam

QWEN_TURN = "<|im_start|>assistant\n"
QWEN_NO_THINK = QWEN_TURN + "<think>\n\n</think>\n\n"
R1_TURN = "<｜Assistant｜><think>\n"
HARMONY_TURN = "?<|end|><|start|>assistant"  # the user's question ends with "?"

CASES: dict[str, dict[str, Any]] = {
    "qwen3": {"template": fam.QWEN3,
              "scripts": {QWEN_TURN: "<think>The user wants the time. Check the clock.</think>\n\n"
                                     "It is noon.",
                          QWEN_NO_THINK: "Noon."},
              "reasoning": "The user wants the time. Check the clock.", "content": "It is noon."},
    "budget": {"template": fam.QWEN3,
               "scripts": {QWEN_TURN: "<think>one two three four five six</think>Long answer.",
                           "": "Short answer."},  # "": any other last token (the continuation)
               "reasoning": "one two three four five six", "content": "Long answer."},
    "r1": {"template": fam.DEEPSEEK_R1,
           "scripts": {R1_TURN: "First, the clock. Then answer.\n</think>\n\nIt is twelve."},
           "reasoning": "First, the clock. Then answer.\n", "content": "It is twelve."},
    "harmony": {"template": fam.GPT_OSS,
                "scripts": {HARMONY_TURN: "<|channel|>analysis<|message|>Time asked; say noon."
                                          "<|end|><|start|>assistant<|channel|>final<|message|>"
                                          "Noon, friend."},
                "reasoning": "Time asked; say noon.", "content": "Noon, friend."},
}
RUNTIMES = ("llama_cpp", "mlx_lm", "transformers")
QUESTION = [{"role": "user", "content": "What time is it?"}]


def _row(runtime: str, files: ScriptedFiles) -> Any:
    from app.providers.hf_transformers import TransformersProvider
    from app.providers.llama_cpp import LlamaCppProvider
    from app.providers.mlx_lm import MlxProvider

    if runtime == "llama_cpp":
        return LlamaCppProvider.row_for(str(files.gguf))
    provider = MlxProvider if runtime == "mlx_lm" else TransformersProvider
    return provider.row_for(str(files.hf))


@pytest.fixture(scope="module")
def scripted_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScriptedFiles]:
    root = tmp_path_factory.mktemp("reasoning-models")
    return {name: write_scripted(root / name, case["scripts"], chat_template=case["template"])
            for name, case in CASES.items()}


@pytest.fixture
def server(clean_env: Path, scripted_files: dict[str, ScriptedFiles]) -> Iterator[tuple[LiveServer, dict]]:
    rows = {(rt, name): _row(rt, files) for name, files in scripted_files.items() for rt in RUNTIMES}
    live = start_live_server(clean_env, list(rows.values()), None)
    yield live, rows
    live.services.shutdown()  # type: ignore[attr-defined]


def _reasoning(obj: Any, field: str = "reasoning_content") -> str | None:
    return (obj.model_extra or {}).get(field)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_reasoning_is_split_on_every_runtime(server: tuple[LiveServer, dict], runtime: str) -> None:
    live, rows = server
    client = live.client()
    for name, case in CASES.items():
        model = rows[(runtime, name)].id
        whole = client.chat.completions.create(model=model, messages=QUESTION, temperature=0)
        msg = whole.choices[0].message
        assert (_reasoning(msg), msg.content) == (case["reasoning"], case["content"]), name
        assert whole.choices[0].finish_reason == "stop"

        deltas = [c.choices[0].delta for c in client.chat.completions.create(
            model=model, messages=QUESTION, temperature=0, stream=True) if c.choices]
        thoughts = [i for i, d in enumerate(deltas) if _reasoning(d)]
        answers = [i for i, d in enumerate(deltas) if d.content]
        assert len(thoughts) >= 2 and answers and max(thoughts) < min(answers), name
        assert "".join(_reasoning(d) or "" for d in deltas) == case["reasoning"]
        assert "".join(d.content or "" for d in deltas) == case["content"]

        with client.chat.completions.stream(model=model, messages=QUESTION, temperature=0) as s:
            final = s.get_final_completion()
        helper = final.choices[0].message
        assert (_reasoning(helper), helper.content) == (_reasoning(msg), msg.content), name
        assert final.choices[0].finish_reason == whole.choices[0].finish_reason


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_reasoning_effort_reaches_the_template(server: tuple[LiveServer, dict], runtime: str) -> None:
    live, rows = server
    out = live.client().chat.completions.create(model=rows[(runtime, "qwen3")].id, messages=QUESTION,
                                                temperature=0, reasoning_effort="none")
    msg = out.choices[0].message
    assert (msg.content, _reasoning(msg)) == ("Noon.", None)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_thinking_budget_ends_the_block(server: tuple[LiveServer, dict], runtime: str,
                                        scripted_files: dict[str, ScriptedFiles]) -> None:
    from tokenizers import Tokenizer

    live, rows = server
    client = live.client()
    kw = {"model": rows[(runtime, "budget")].id, "messages": QUESTION, "temperature": 0}
    free = client.chat.completions.create(**kw)
    cut = client.chat.completions.create(**kw, extra_body={"thinking_budget": 2})
    msg = cut.choices[0].message
    assert (_reasoning(msg), msg.content) == ("one two", "Short answer.")
    assert cut.choices[0].finish_reason == "stop"
    assert cut.usage.prompt_tokens == free.usage.prompt_tokens
    # Counted by the runtime: <think> one two, the closing text it was given, Short answer .
    files = scripted_files["budget"]
    if runtime == "llama_cpp":
        from llama_cpp import Llama

        vocab = Llama(model_path=str(files.gguf), vocab_only=True, verbose=False)
        close = vocab.tokenize(b"</think>\n\n", add_bos=False, special=True)
        vocab.close()
    else:
        close = Tokenizer.from_file(str(files.hf / "tokenizer.json")).encode("</think>\n\n").ids
    answer = len(files.model.chunks[""])  # the script's tokens for "Short answer."
    eos = free.usage.completion_tokens - len(files.model.chunks[QWEN_TURN])  # 1 where EOS counts
    assert cut.usage.completion_tokens == 3 + len(close) + answer + eos
    deltas = [c.choices[0].delta for c in client.chat.completions.create(
        **kw, stream=True, extra_body={"thinking_budget": 2}) if c.choices]
    assert "".join(_reasoning(d) or "" for d in deltas) == "one two"
    assert "".join(d.content or "" for d in deltas) == "Short answer."
    none = client.chat.completions.create(**kw, extra_body={"thinking_budget": 0}).choices[0].message
    assert (_reasoning(none), none.content) == (None, "Short answer.")


def test_reasoning_field_setting_and_remote_passthrough(server: tuple[LiveServer, dict]) -> None:
    from app.providers.remote import RemoteProvider
    from app.settings import ServerSettings

    live, rows = server
    upstream = rows[("llama_cpp", "qwen3")].id
    remote = RemoteProvider.row_for(upstream, base_url=live.base_url)
    RemoteProvider().set_api_key(remote.id, live.key)
    live.settings.update(models=[*live.settings.current.models, remote],
                         server=ServerSettings(reasoning_field="reasoning"))
    client = live.client()
    for model in (upstream, remote.id):
        msg = client.chat.completions.create(model=model, messages=QUESTION,
                                             temperature=0).choices[0].message
        assert _reasoning(msg, "reasoning") == CASES["qwen3"]["reasoning"], model
        assert _reasoning(msg) is None and msg.content == "It is noon."
        deltas = [c.choices[0].delta for c in client.chat.completions.create(
            model=model, messages=QUESTION, temperature=0, stream=True) if c.choices]
        assert "".join(_reasoning(d, "reasoning") or "" for d in deltas) == CASES["qwen3"]["reasoning"]
