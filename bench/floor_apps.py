"""The web stacks alone: a fixed chat.completion reply, no model, no auth, no validation.

Started by the peer benchmark to show what Quart on Hypercorn (Tater's stack) and FastAPI on
uvicorn (llama_cpp.server's) cost per request before any application code runs.
"""

from typing import Any

REPLY: dict[str, Any] = {
    "id": "chatcmpl-floor", "object": "chat.completion", "created": 0, "model": "floor",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                 "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}


def make_quart_app() -> Any:
    """The Quart app (Hypercorn: ``bench.floor_apps:make_quart_app()``)."""
    from quart import Quart, request

    app = Quart("floor")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, Any]:
        await request.get_json()
        return REPLY

    return app


def make_fastapi_app() -> Any:
    """The FastAPI app (uvicorn: ``--factory bench.floor_apps:make_fastapi_app``)."""
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        await request.json()
        return REPLY

    return app

