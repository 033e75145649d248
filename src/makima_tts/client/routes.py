"""Where each server message goes: the client's live utterances (sent, no terminal yet), the one whose
audio is arriving (between its `speaking` and its terminal), and the callers waiting for `flushed`.

Binary audio belongs to the utterance announced by the last `speaking` (utterances never interleave).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

from ..server.protocol import AudioChunk, Cancelled, Complete, Error, Flushed, Speaking, Stopped
from .errors import ErrorCode, SpeakError
from .utterance import Utterance

log = logging.getLogger(__name__)


class Routes:
    def __init__(self) -> None:
        self.live: dict[str, Utterance] = {}
        self.receiving: Utterance | None = None
        self.stopped: Stopped | None = None  # the last `stopped` the server sent
        self._flushes: list[tuple[Utterance | None, asyncio.Future[float | None]]] = []

    def audio(self, chunk: bytes) -> None:
        if self.receiving is not None:
            self.receiving._audio(chunk)

    def dispatch(self, msg: Any) -> None:
        if isinstance(msg, Speaking):
            self.receiving = self.live.get(msg.utteranceId)
        elif isinstance(msg, AudioChunk):
            if (utt := self.live.get(msg.utteranceId)) is not None:
                utt._audio(base64.b64decode(msg.data))
        elif isinstance(msg, Complete | Cancelled):
            self.terminal(msg.utteranceId, msg)
        elif isinstance(msg, Error):
            if msg.utteranceId in self.live:
                self.terminal(msg.utteranceId, SpeakError.from_message(msg))
            elif msg.utteranceId is None or msg.code != ErrorCode.INVALID_STATE:
                # INVALID_STATE for an id no longer live: a cancel or flush that crossed its terminal
                log.warning("server error: %s: %s", msg.code, msg.message)
        elif isinstance(msg, Flushed):
            self._resolve_flush(lambda utt: utt is None or utt.id == msg.utteranceId, msg.audioMs)
        elif isinstance(msg, Stopped):
            self.stopped = msg

    def terminal(self, utterance_id: str, terminal: Complete | Cancelled | SpeakError) -> None:
        utt = self.live.pop(utterance_id, None)
        if utt is None:
            return
        if self.receiving is utt:
            self.receiving = None
        utt._finish(terminal)
        self._resolve_flush(lambda waiting: waiting is utt, None)

    def wait_flush(self, utt: Utterance | None) -> asyncio.Future[float | None]:
        """Resolved by the next `flushed` (its audioMs), or with None when `utt` ends first."""
        waiter: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._flushes.append((utt, waiter))
        return waiter

    def fail_all(self, err: SpeakError) -> None:
        """The session is gone: every live utterance ends with `err`, every flush waiter with None."""
        self.receiving = None
        for utt_id in list(self.live):
            self.terminal(utt_id, err)
        for _, waiter in self._flushes:
            if not waiter.done():
                waiter.set_result(None)
        self._flushes.clear()

    def _resolve_flush(self, matches: Callable[[Utterance | None], bool], audio_ms: float | None) -> None:
        """A `flushed` answers the oldest matching waiter; a terminal (audio_ms None) all of its own."""
        for entry in [e for e in self._flushes if matches(e[0])]:
            self._flushes.remove(entry)
            if not entry[1].done():
                entry[1].set_result(audio_ms)
            if audio_ms is not None:
                return
