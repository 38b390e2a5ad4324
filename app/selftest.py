"""``tater --selftest``: start the real server on a free port and check it end to end.

Uses a throw-away config dir and an in-memory key (the user's settings and keyring are not
touched), runs one chat completion on the given model or on a tiny generated one, prints a
short report and returns 0 only when every check passed.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from app import __version__
from app.keystore import KeyStore, MemorySecretStore


def _runtimes() -> dict[str, bool]:
    names = {"llama_cpp": "llama_cpp", "mlx_lm": "mlx_lm", "hf_transformers": "transformers"}
    return {k: importlib.util.find_spec(mod) is not None for k, mod in names.items()}


def _ok(r: httpx.Response) -> dict:
    """The JSON body of a 2xx response, else an error carrying the API's own message."""
    if r.is_success:
        return r.json()
    try:
        message = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = r.text[:200]
    raise RuntimeError(f"HTTP {r.status_code}: {message}")


def run_selftest(model: str | None = None, *, out: Callable[[str], None] = print) -> int:
    """Run the checks; returns the process exit code."""
    from app.model_sources import resolve_model_arg
    from app.services import build_services

    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], str]) -> bool:
        t0 = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except Exception as exc:  # report every failure, keep going
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results.append((name, ok, f"{detail} ({(time.perf_counter() - t0) * 1000:.0f} ms)"))
        return ok

    runtimes = _runtimes()
    out(f"tater {__version__} selftest; runtimes: "
        + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in runtimes.items()))
    with tempfile.TemporaryDirectory(prefix="tater-selftest-") as tmp:
        tmpdir = Path(tmp)
        keys = KeyStore(env={}, secrets_store=MemorySecretStore())
        services = build_services(tmpdir / "config", env={}, keys=keys)
        try:
            if model is None:
                if not runtimes["llama_cpp"]:
                    out("FAIL model: no --selftest-model given and the llama.cpp runtime is not installed")
                    return 1
                from app.tinymodels.gguf_model import write_tiny_gguf

                model = str(write_tiny_gguf(tmpdir / "selftest-tiny.gguf"))
            row = resolve_model_arg(model, services.settings.current)
            services.settings.update(models=[row], active_model=row.id, api_enabled=True)
            key = keys.rotate()
            services.start_server(host="127.0.0.1", port=0)
            base = services.server.base_url
            auth = {"Authorization": f"Bearer {key}"}
            with httpx.Client(timeout=120) as http:
                def models() -> str:
                    ids = [m["id"] for m in _ok(http.get(f"{base}/models", headers=auth))["data"]]
                    assert ids[:3] == ["tater/base", "tater/direct", "tater/hydra"], ids
                    assert row.id in ids, ids
                    return f"{len(ids)} models"

                def chat() -> str:
                    r = http.post(f"{base}/chat/completions", headers=auth, json={
                        "model": row.id, "max_tokens": 8, "temperature": 0,
                        "messages": [{"role": "user", "content": "Say hello."}]})
                    body = _ok(r)
                    text = body["choices"][0]["message"]["content"]
                    assert text and body["usage"]["completion_tokens"] > 0, body
                    n = body["usage"]["completion_tokens"]
                    return f"{row.provider}: {text.strip()[:40]!r}, {n} tokens"

                def auth_rejects() -> str:
                    bad = http.get(f"{base}/models", headers={"Authorization": "Bearer tater-wrong"})
                    none = http.get(f"{base}/models")
                    codes = (bad.status_code, none.status_code)
                    assert codes == (401, 401), codes
                    return "401 for a wrong and a missing key"

                check("models", models)
                check("chat", chat)
                check("auth", auth_rejects)
        except Exception as exc:
            results.append(("setup", False, f"{type(exc).__name__}: {exc}"))
        finally:
            services.shutdown()
    for name, ok, detail in results:
        out(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    passed = sum(ok for _, ok, _ in results)
    out(f"selftest: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1
