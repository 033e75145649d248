"""A stand-in for a user's LLM: an OpenAI-compatible streaming chat-completions endpoint on 127.0.0.1.

`LlmPeer(reply_tokens, hold_after=k)` answers every `POST /v1/chat/completions` with `stream: true` as
server-sent events (`data: {choices: [{delta: {content}}]}` … `data: [DONE]`), one event per token. After
`hold_after` tokens it waits until the test calls `release()`, so a test can observe what the client does
while the reply is still being written. It records each request body, sets `aborted` when a client goes
away before the answer is complete, and answers CORS preflights for any origin (as Ollama does with
OLLAMA_ORIGINS=*), so a page can call it straight from the browser.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Allow-Methods": "POST, OPTIONS"}
WAIT_S = 60.0  # the longest a held reply waits for release() (a hang guard)


class LlmPeer:
    def __init__(self, reply_tokens: list[str], hold_after: int | None = None, key: str | None = None):
        self.reply_tokens, self.hold_after, self.key = reply_tokens, hold_after, key
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.held = threading.Event()  # the reply reached hold_after and waits
        self.aborted = threading.Event()  # a client left before the end of its reply
        self._release = threading.Event()
        self._asked = threading.Condition()  # notified with each recorded request
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST", "OPTIONS"])])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlmPeer:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the LLM stand-in did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.server.should_exit = True
        self.thread.join(10)

    def release(self) -> None:
        self._release.set()

    def wait_requests(self, n: int, timeout: float = WAIT_S) -> bool:
        """Whether `n` requests have been recorded within `timeout` seconds."""
        with self._asked:
            return self._asked.wait_for(lambda: len(self.requests) >= n, timeout)

    async def _chat(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        self.headers.append(dict(request.headers))
        if self.key and request.headers.get("authorization") != f"Bearer {self.key}":
            return JSONResponse({"error": {"message": "bad key", "type": "invalid_request_error"}}, 401, headers=CORS)
        body = await request.json()
        with self._asked:
            self.requests.append(body)
            self._asked.notify_all()
        return StreamingResponse(self._events(body.get("model", "")), media_type="text/event-stream", headers=CORS)

    async def _events(self, model: str):
        done = False
        try:
            for i, token in enumerate(self.reply_tokens):
                if i == self.hold_after:
                    self.held.set()
                    await asyncio.to_thread(self._release.wait, WAIT_S)
                chunk = {"object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0.005)
            yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
            yield "data: [DONE]\n\n"
            done = True
        finally:
            if not done:
                self.aborted.set()
