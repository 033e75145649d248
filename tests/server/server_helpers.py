"""Helpers for the server tests: real uvicorn servers on 127.0.0.1 in a thread of this process, and a
WebSocket client that checks every server message against the protocol models."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from makima_tts.server.protocol import server_message_adapter
from makima_tts.server.run import build_server
from makima_tts.server.settings import Settings

REPO_VOICES = Path(__file__).resolve().parents[2] / "voices"
TIMEOUT = 60.0  # seconds any single wait in a test may take before it fails (a hang guard, not a timing check)


class ServerThread:
    """A real uvicorn server with our app, in a background thread."""

    def __init__(self, settings: Settings, sndbuf: int | None = None, port: int = 0):
        self.settings = settings
        self.server = build_server(settings, port=0)
        # Our own listening socket: accepted sockets inherit its send buffer size (small = backpressure soon).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if port:  # a fixed port (a restarted server): its predecessor's closed connections may linger
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="test-uvicorn", daemon=True
        )

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    @property
    def services(self):
        return self.server.services

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/speak"

    def wait_loaded(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while httpx.get(f"{self.http}/ready").json()["modelState"] != "loaded":
            assert time.monotonic() < deadline, "model did not load"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "test server did not stop"


def make_settings(model: Path, data_dir: Path, **overrides) -> Settings:
    values = dict(
        model_id=str(model),
        device="cpu",
        dtype="float32",
        data_dir=data_dir,
        voices_dir=REPO_VOICES,
        preload=True,
        warmup=False,
        max_frames=4,
        log_level="warning",
        shutdown_grace_s=0.5,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


def spoken_prefix(model_dir: Path, tokenizer, text: str, tokens: int) -> str:
    """`text` as far as its first `tokens` text tokens (as the talker takes them in), decoded from the ids
    by the checkpoint's tokenizer file: the expected heard text, independent of the server's offsets."""
    from tokenizers import Tokenizer

    decoder = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.assistant_ids(text)
    head = decoder.decode(ids[:3], skip_special_tokens=False)  # "<|im_start|>assistant" (+ "\n" if one id)
    decoded = decoder.decode(ids[: 3 + tokens], skip_special_tokens=False)[len(head):]
    return decoded[1:] if not head.endswith("\n") and decoded.startswith("\n") else decoded


@contextmanager
def server_factory(model: Path, default_data_dir: Path, *, loaded: bool) -> Iterator[Callable[..., ServerThread]]:
    """`start(port=0, data_dir=None, sndbuf=None, **settings)` -> a running `ServerThread` (waited for
    until its model is loaded when `loaded`); every one still running is stopped on leaving."""
    servers: list[ServerThread] = []

    def start(port: int = 0, data_dir: Path | None = None, sndbuf: int | None = None, **overrides) -> ServerThread:
        server = ServerThread(make_settings(model, data_dir or default_data_dir, **overrides), sndbuf=sndbuf, port=port)
        servers.append(server.start())
        if loaded:
            server.wait_loaded()
        return server

    try:
        yield start
    finally:
        for server in servers:
            if server.thread.is_alive():
                server.stop()


def run(coro):
    """Run a test coroutine with an overall hang guard."""
    return asyncio.run(asyncio.wait_for(coro, timeout=4 * TIMEOUT))


class Client:
    """A protocol client: JSON messages are validated against the server message models."""

    def __init__(self, conn):
        self.conn = conn
        self.log: list[dict | bytes] = []

    @classmethod
    async def open(cls, url: str, **kwargs) -> Client:
        kwargs.setdefault("max_size", 2**24)
        return cls(await connect(url, open_timeout=TIMEOUT, **kwargs))

    async def send(self, **message) -> None:
        await self.conn.send(json.dumps(message))

    async def recv(self) -> dict | bytes:
        raw = await asyncio.wait_for(self.conn.recv(), TIMEOUT)
        if isinstance(raw, str):
            msg = json.loads(raw)
            server_message_adapter.validate_python(msg)
            raw = msg
        self.log.append(raw)
        return raw

    async def recv_json(self, *types: str) -> dict:
        """The next JSON message (binary audio in between is kept in `log`); optionally of given types."""
        while True:
            msg = await self.recv()
            if isinstance(msg, dict) and (not types or msg["type"] in types):
                return msg

    async def until_terminal(self, uid: str) -> tuple[dict, list[dict | bytes]]:
        """Messages up to and including the terminal of `uid`."""
        seen = []
        while True:
            msg = await self.recv()
            seen.append(msg)
            if isinstance(msg, dict) and msg.get("utteranceId") == uid and msg["type"] in (
                "complete",
                "cancelled",
                "error",
            ):
                return msg, seen

    async def close(self) -> None:
        await self.conn.close()
