"""`SpeakClient`: one protocol v1 session (shared/protocol.md) over `websockets`, reconnected when the
server was busy or went away.

    async with SpeakClient("ws://127.0.0.1:8000/api/v1/speak", voice="default") as tts:
        async for chunk in tts.speak("Hello."):      # raw PCM at tts.sample_rate
            ...

Three tasks' worth of work: the caller (speak/append/end queue messages, cancel/flush wait for answers),
the writer (sends queued messages in order; after a lost session it reconnects first, with `Backoff`) and
the reader of the current connection (routes audio and terminals to their `Utterance`). A session lost
with a retryable code (1001 shutdown, 1013 busy, idle timeout, a dropped connection) fails the utterances
it carried and leaves the client `DISCONNECTED`: the next message reconnects. Any other loss is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..server.protocol import (
    DEFAULT_SAMPLE_RATE,
    Cancelled,
    CloseCode,
    Complete,
    Error,
    Ready,
    Started,
    Stopped,
)
from .backoff import Backoff
from .errors import ErrorCode, SpeakError
from .link import Endpoints, SessionConfig, open_session, parse_message, speak_message
from .routes import Routes
from .utterance import TextInput, Utterance
from .voices import VoicesClient

log = logging.getLogger(__name__)
RetryHook = Callable[[int, SpeakError, float], None]  # (failed attempt, its error, seconds until the next)
_ids = itertools.count(1)


class ClientState(enum.Enum):
    IDLE = "idle"  # not connected yet
    OPEN = "open"
    DISCONNECTED = "disconnected"  # lost for a retryable reason: the next message reconnects
    CLOSED = "closed"


class Priority(str, enum.Enum):
    NORMAL = "normal"
    HIGH = "high"  # ahead of the queued ones
    INTERRUPT = "interrupt"  # cancels everything current and queued, then plays


class StopMode(str, enum.Enum):
    IMMEDIATE = "immediate"  # cancel what is playing or queued
    DRAIN = "drain"  # let queued utterances finish first


@dataclass
class _Outgoing:
    message: dict[str, Any]
    utterance: Utterance | None  # the utterance it belongs to (skipped once that one has ended)
    sent: asyncio.Future[None] | None = None


class SpeakClient:
    def __init__(self, url: str, *, token: str | None = None, voice: str | None = None, language: str | None = None,
                 sample_rate: int = DEFAULT_SAMPLE_RATE, encoding: str = "pcm16", backoff: Backoff = Backoff(),
                 open_timeout: float = 30.0, on_retry: RetryHook | None = None):
        self.endpoints = Endpoints.from_url(url)
        self.config = SessionConfig(sample_rate=sample_rate, encoding=encoding, voice=voice, language=language)
        self.token, self.backoff, self.open_timeout, self.on_retry = token, backoff, open_timeout, on_retry
        self.state = ClientState.IDLE
        self.ready: Ready | None = None  # the current session's greeting (capabilities, languages, limits)
        self.started: Started | None = None  # what the server configured: rate, encoding, voice, language
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._routes = Routes()  # the live utterances, and which one a server message is for
        self._open_text: Utterance | None = None  # streamed text not ended yet
        self._final: SpeakError | None = None  # why the client is CLOSED
        self._voices: VoicesClient | None = None

    async def __aenter__(self) -> SpeakClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def sample_rate(self) -> int:
        return self.started.sampleRate if self.started else self.config.sample_rate

    @property
    def stopped(self) -> Stopped | None:
        """How the last session ended, when the server said (`stopped`)."""
        return self._routes.stopped

    @property
    def voices(self) -> VoicesClient:
        """The server's voices API (HTTP) with this client's token."""
        self._voices = self._voices or VoicesClient(self.endpoints.http, self.token)
        return self._voices

    # --- connecting ---------------------------------------------------------------------------------

    async def connect(self) -> Ready:
        """Open a session (retrying busy or unreachable servers per `backoff`); raises `SpeakError`."""
        if self.state is ClientState.CLOSED:
            raise self._final or SpeakError(ErrorCode.CLIENT_CLOSED, "the client is closed")
        if self.state is ClientState.OPEN and self.ready is not None:
            return self.ready
        for attempt in itertools.count(1):
            try:
                ws, ready, started = await open_session(self.endpoints, self.token, self.config, self.open_timeout)
                break
            except SpeakError as err:
                delay = self.backoff.delay(attempt, err)
                if delay is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(attempt, err, delay)
                await asyncio.sleep(delay)
        if self.state is ClientState.DISCONNECTED:
            self.reconnects += 1
        self._ws, self.ready, self.started, self.state = ws, ready, started, ClientState.OPEN
        self._reader = asyncio.create_task(self._read(ws), name="speak-client-reader")
        self._writer = self._writer or asyncio.create_task(self._write(), name="speak-client-writer")
        return ready

    async def close(self, mode: StopMode = StopMode.IMMEDIATE, timeout: float = 10.0) -> None:
        """End the session (`stop`), wait for the server's close (bounded by `timeout`), then stop."""
        if self.state is ClientState.OPEN:
            with contextlib.suppress(asyncio.TimeoutError, SpeakError):
                await asyncio.wait_for(self._send_and_wait({"type": "stop", "mode": mode.value}), timeout)
                if self._reader is not None:
                    await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        self._final = self._final or SpeakError(ErrorCode.CLIENT_CLOSED, "the client is closed")
        self.state = ClientState.CLOSED
        if self._ws is not None:
            await self._ws.close()
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._routes.fail_all(self._final)
        if self._voices is not None:
            await self._voices.aclose()

    # --- speaking -----------------------------------------------------------------------------------

    def speak(self, text: str, *, utterance_id: str | None = None, voice: str | None = None,
              language: str | None = None, priority: Priority | str = Priority.NORMAL) -> Utterance:
        """Speak one whole text; iterate the result for its audio."""
        utt = self._new(utterance_id, TextInput.WHOLE, priority)
        self._queue(speak_message(utt.id, text, False, voice, language, Priority(priority).value), utt)
        return utt

    def append(self, text: str, *, utterance_id: str | None = None, voice: str | None = None,
               language: str | None = None, priority: Priority | str = Priority.NORMAL) -> Utterance:
        """Stream text in: the first call opens an utterance (with these options), later ones extend it."""
        utt = self._open_text
        if utt is None or utt.done:
            utt = self._open_text = self._new(utterance_id, TextInput.OPEN, priority)
            self._queue(speak_message(utt.id, text, True, voice, language, Priority(priority).value), utt)
        else:
            self._queue(speak_message(utt.id, text, True), utt)
        return utt

    def end(self, text: str = "") -> Utterance | None:
        """Close the streamed utterance (with a last piece of `text`); None when none is open."""
        utt, self._open_text = self._open_text, None
        if utt is None or utt.done:
            return None
        utt.text = TextInput.CLOSED
        self._queue(speak_message(utt.id, text, False), utt)
        return utt

    async def flush(self) -> float | None:
        """Speak the streamed text so far without waiting for more. Returns the `flushed` audioMs, or
        None when the utterance ended first."""
        utt = self._open_text if self._open_text is not None and not self._open_text.done else None
        waiter = self._routes.wait_flush(utt)
        await self._send_and_wait({"type": "flush", **({"utteranceId": utt.id} if utt else {})}, utt)
        return await waiter

    async def cancel(self, utterance_id: str | None = None, *, played_ms: float | None = None,
                     ) -> list[Complete | Cancelled | SpeakError]:
        """Stop one utterance (or, without an id, the current one and all queued); audio already received
        stays readable. `played_ms`: how much of it the listener heard. Returns their terminals."""
        return await self._cancel(utterance_id, played_ms, mute=False)

    async def interrupt(self, *, played_ms: float | None = None) -> list[Complete | Cancelled | SpeakError]:
        """Barge-in: cancel everything and drop the audio not read yet (iterators end at once)."""
        return await self._cancel(None, played_ms, mute=True)

    # --- internals ----------------------------------------------------------------------------------

    def _new(self, utterance_id: str | None, text: TextInput, priority: Priority | str) -> Utterance:
        if self.state in (ClientState.IDLE, ClientState.CLOSED):
            raise self._final or SpeakError(ErrorCode.INVALID_STATE, "not connected: use `async with` or connect()")
        utterance_id = utterance_id or f"u{next(_ids)}-{secrets.token_hex(3)}"
        if utterance_id in self._routes.live:
            raise SpeakError(ErrorCode.INVALID_STATE, f"utterance {utterance_id!r} is still playing")
        if Priority(priority) is Priority.INTERRUPT:
            for other in self._routes.live.values():
                other._mute()  # the server cancels them: none of their audio is wanted now
        utt = Utterance(utterance_id, text, self.sample_rate, self.config.encoding)
        self._routes.live[utterance_id] = utt
        return utt

    async def _cancel(self, utterance_id: str | None, played_ms: float | None, mute: bool):
        if utterance_id is not None and utterance_id not in self._routes.live:
            raise SpeakError(ErrorCode.INVALID_STATE, f"no utterance {utterance_id!r} is playing or queued")
        targets = [self._routes.live[utterance_id]] if utterance_id else list(self._routes.live.values())
        if not targets:
            return []
        if mute:
            for utt in targets:
                utt._mute()
        message = {"type": "cancel", "utteranceId": utterance_id, "playedMs": played_ms}
        await self._send_and_wait({k: v for k, v in message.items() if v is not None})
        await asyncio.gather(*(utt._done.wait() for utt in targets))
        return [utt.terminal for utt in targets]

    def _queue(self, message: dict[str, Any], utt: Utterance | None = None) -> asyncio.Future[None]:
        sent = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait(_Outgoing(message, utt, sent))
        return sent

    async def _send_and_wait(self, message: dict[str, Any], utt: Utterance | None = None) -> None:
        if self.state in (ClientState.IDLE, ClientState.CLOSED):
            raise self._final or SpeakError(ErrorCode.INVALID_STATE, "not connected: use `async with` or connect()")
        await self._queue(message, utt)

    async def _write(self) -> None:
        while True:
            item = await self._outbox.get()
            try:
                if item.utterance is not None and item.utterance.done:
                    continue  # it ended (cancelled, or its session was lost): the rest of it is moot
                if self.state is ClientState.DISCONNECTED:
                    await self.connect()
                if self._ws is None:
                    raise RuntimeError("connect() returned without a connection")
                await self._ws.send(json.dumps(item.message))
            except SpeakError as err:  # reconnecting failed for good
                self._close_for_good(err)
            except ConnectionClosed:
                pass  # the reader sees it too and fails what that session carried
            finally:
                if item.sent is not None and not item.sent.done():
                    item.sent.set_result(None)

    async def _read(self, ws: ClientConnection) -> None:
        lost: SpeakError | None = None
        stopped_before = self._routes.stopped
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    self._routes.audio(raw)
                    continue
                message = parse_message(raw)
                if isinstance(message, Error) and not message.recoverable and message.utteranceId is None:
                    lost = SpeakError.from_message(message)
                self._routes.dispatch(message)
        except ConnectionClosed:
            pass
        except SpeakError as err:  # not a protocol v1 server
            lost = err
            await ws.close(CloseCode.NORMAL)
        code = ws.close_code
        if lost is not None:
            lost.close_code = code
        else:
            said = self._routes.stopped
            reason = f"; {said.reason}" if said is not None and said is not stopped_before else ""
            lost = SpeakError(ErrorCode.CONNECTION_FAILED, f"the session ended (close {code}{reason})", close_code=code)
        self._routes.fail_all(lost)
        if self.state is ClientState.OPEN:
            if lost.retryable or code == CloseCode.IDLE_TIMEOUT:
                self.state = ClientState.DISCONNECTED
            else:
                self._close_for_good(lost)

    def _close_for_good(self, err: SpeakError) -> None:
        self.state, self._final = ClientState.CLOSED, err
        self._routes.fail_all(err)

