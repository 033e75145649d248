"""The one sender of a WebSocket session: a bounded queue of outgoing messages and its writer task.

Everything the session sends is an `Outgoing` (a JSON message or one binary audio frame). Audio and
`speaking` carry their utterance: `drop(utt)` removes what of it is still queued (cancel, interrupt,
failure), and nothing of an utterance is queued once it is DONE, so nothing of it follows its terminal.
The writer counts the samples it has put on the socket per utterance (`cancelled.audioSentMs`).

Bounded: a client that does not read fills the outbox, `put` refuses and the session cuts it with
SLOW_CONSUMER instead of growing memory. Messages that end a session are `force`d past the bound.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from .utterances import Stage, Utterance


@dataclass
class Outgoing:
    data: dict[str, Any] | bytes  # a JSON message, or raw PCM of one frame
    utterance: Utterance | None = None  # set for an utterance's audio and `speaking` (dropped on cancel)
    samples: int = 0  # audio samples in it


class Outbox:
    def __init__(self, ws: WebSocket, limit: int, on_gone: Callable[[], None]):
        self.ws, self.limit, self._on_gone = ws, limit, on_gone
        self._items: deque[Outgoing] = deque()
        self._in_flight: Outgoing | None = None
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def put(self, item: Outgoing, force: bool = False) -> bool:
        """Queue `item`; False when the outbox is full (the client is not reading)."""
        if item.utterance is not None and item.utterance.stage is Stage.DONE:
            return True  # its terminal is queued: nothing more of it goes out
        if not force and len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._empty.clear()
        self._ready.set()
        return True

    def drop(self, utt: Utterance) -> None:
        """Remove what of `utt` is still queued."""
        self._items = deque(i for i in self._items if i.utterance is not utt)

    def clear(self) -> None:
        self._items.clear()

    def sent_samples(self, utt: Utterance) -> int:
        """Samples of `utt` on the socket, counting the frame being written (it goes before anything queued
        now)."""
        in_flight = self._in_flight
        return utt.sent_samples + (in_flight.samples if in_flight is not None and in_flight.utterance is utt else 0)

    async def drained(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until everything queued is written."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        """The writer task: the only caller of the socket's send."""
        while True:
            if not self._items:
                self._empty.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            item = self._in_flight = self._items.popleft()
            try:
                if isinstance(item.data, bytes):
                    await self.ws.send_bytes(item.data)
                else:
                    await self.ws.send_text(json.dumps(item.data, separators=(",", ":")))
            except Exception:  # the client is gone
                self._on_gone()
                return
            finally:
                self._in_flight = None
            if item.utterance is not None:
                item.utterance.sent_samples += item.samples
