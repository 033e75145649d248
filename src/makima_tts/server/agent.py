"""The HAProxy agent-check endpoint (`TTS_AGENT_PORT`): a TCP port that answers each connection with one
line, the replica's `Capacity.agent_reply()` ("up ready 73%", "drain", "down"), then closes. HAProxy's
`agent-check` turns the percentage into the server's weight, so `balance leastconn` prefers the replica
with the most room; `drain` (SIGTERM) stops new sessions reaching it at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .capacity import capacity
from .services import Services

log = logging.getLogger(__name__)


class CapacityAgent:
    def __init__(self, services: Services):
        self.services = services
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._answer, host, port)
        log.info("HAProxy agent-check on %s:%d", host, port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # HAProxy may send a line (agent-send); nothing in it matters
            writer.write(capacity(self.services).agent_reply().encode("ascii"))
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
