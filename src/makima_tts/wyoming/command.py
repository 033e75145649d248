"""`makima-tts wyoming --uri tcp://0.0.0.0:10200 (--url http://tts:8000 | --model M)`.

`--url`: bridge to a running makima-tts server (its token with `--token` or $MAKIMA_TTS_TOKEN). `--model`:
start our server in this process on a free loopback port (TTS_* settings from the environment, the model
from the flag) and bridge to it, so one command serves Home Assistant on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from functools import partial

from ..client.command import TOKEN_ENV

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", default="tcp://0.0.0.0:10200", help="where to listen: tcp://HOST:PORT or unix://PATH")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a running makima-tts server: http://HOST:PORT (or ws://...)")
    source.add_argument("--model", help="start the server in this process with this model (hub id or directory)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"the server's token (default: ${TOKEN_ENV})")
    p.add_argument("--sample-rate", type=int, default=24000,
                   help="audio rate sent to Wyoming clients (Wyoming's synthesize does not ask for one)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per voices request
    try:
        asyncio.run(serve(args.uri, url=args.url, model=args.model, token=args.token, sample_rate=args.sample_rate))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(uri: str, *, url: str | None = None, model: str | None = None, token: str | None = None,
                sample_rate: int = 24000) -> None:
    """Serve Wyoming on `uri` until SIGTERM (or the in-process server stops)."""
    from wyoming.server import AsyncServer

    from ..client.link import Endpoints
    from .handler import Backend, SynthesisHandler

    wyoming_server = AsyncServer.from_uri(uri)  # ValueError for a bad URI
    async with _backend_url(url, model, token) as (backend_url, backend_token):
        Endpoints.from_url(backend_url)  # ValueError for a bad URL, before any client connects
        backend = Backend(backend_url, backend_token, sample_rate)
        log.info("Wyoming TTS on %s, speaking through %s", uri, backend_url)
        await wyoming_server.run(partial(SynthesisHandler, backend=backend))


@contextlib.asynccontextmanager
async def _backend_url(url: str | None, model: str | None, token: str | None):
    if url is not None:
        yield url, token
        return
    from ..server.run import build_server
    from ..server.settings import Settings

    settings = Settings(model_id=model, host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = build_server(settings, port=sock.getsockname()[1])
    task = asyncio.create_task(server.serve(sockets=[sock]), name="makima-tts-server")
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the in-process server stopped while starting")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", token or next(iter(settings.auth_tokens), None)
    finally:
        server.should_exit = True
        await task
