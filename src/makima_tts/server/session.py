"""One `/api/v1/speak` WebSocket connection (protocol v1, shared/protocol.md).

Four tasks per connection:
- reader: receives and handles client messages in order (control path: answers at once);
- scheduler: plays the queued utterances one after another; each runs as its own task (`_run`) that
  pulls text pieces from the utterance, submits them to the shared engine and turns frames into messages;
- writer: the only sender; drains the bounded outbox (audio of a cancelled utterance is skipped there,
  so nothing of it follows its `cancelled`); a client that does not read fills the outbox and is cut with
  SLOW_CONSUMER instead of growing memory;
- watchdog: the idle timeout.

Invariants: every utterance gets exactly one terminal (`complete`, `cancelled` or `error` with its id),
sent through `_terminal`; utterances never interleave; leaving a `_run` task (cancel, interrupt,
disconnect, shutdown) cancels its engine job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from ..engine.types import AudioFrame, Finished
from ..voices import VoiceError
from . import protocol as p
from .auth import token_valid
from .model_manager import ModelUnavailable
from .segmenter import TextSegmenter, split_text
from .services import AudioOut, Services, engine_stream
from .settings import AUDIO_TRANSPORTS, ENCODINGS, SAMPLE_RATES

log = logging.getLogger(__name__)
_END = object()  # end of an utterance's text
_FLUSH = object()  # answer `flushed` once the audio of the text before it is out
Payload = dict[str, Any] | bytes | Callable[[], dict[str, Any]]


@dataclass(eq=False)
class Utterance:
    id: str
    voice: str
    language: str | None
    sample_rate: int
    encoding: str
    transport: str
    priority: str
    segmenter: TextSegmenter | None  # streaming input only
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)
    text_open: bool = False  # more text may come (`continue: true`)
    ended: bool = False  # the end marker is queued
    chars: int = 0
    late_flushes: int = 0  # flushes asked after the text was closed: answered before the terminal
    dropped: bool = False  # the writer skips whatever of it is still queued
    finished: bool = False  # its terminal has been queued
    task: asyncio.Task | None = None
    messages: int = 0  # audio messages queued
    engine_frames: int = 0
    samples: int = 0  # samples queued (or generated, with audioTransport "none")
    sent_samples: int = 0  # samples the writer has put on the socket
    engine_s: float = 0.0
    started_at: float | None = None
    first_audio_at: float | None = None
    truncated: bool = False

    def ms(self, samples: int) -> float:
        return round(samples * 1000.0 / self.sample_rate, 3)


@dataclass
class _Item:
    utt: Utterance | None  # None: never dropped (terminals, session messages)
    payload: Payload
    samples: int = 0


class Session:
    def __init__(self, ws: WebSocket, services: Services, *, authed: bool, subprotocol: str | None):
        self.ws, self.services, self.settings = ws, services, services.settings
        self.id = secrets.token_hex(8)
        self.authed, self.subprotocol = authed, subprotocol
        self.sample_rate, self.encoding, self.transport = 24000, "pcm16", "binary"
        self.voice: str | None = None
        self.language: str | None = None
        self.pending: deque[Utterance] = deque()
        self.current: Utterance | None = None
        self.by_id: dict[str, Utterance] = {}
        self.outbox: asyncio.Queue[_Item] = asyncio.Queue()
        self.closing = False
        self.draining = False  # no new utterances (stop{mode:"drain"} or server shutdown)
        self._drain_reason: str | None = None  # set by stop{mode:"drain"}: close once the queue is empty
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._ids = itertools.count(1)
        self._last_activity = time.monotonic()
        self._busy = 0  # utterance tasks doing work (not waiting for more text): the idle clock stops
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, query_defaults: dict[str, str]) -> None:
        await self.ws.accept(subprotocol=self.subprotocol)
        metrics = self.services.metrics
        metrics.sessions_total.inc()
        metrics.sessions_active.inc()
        self.services.sessions.add(self)
        try:
            defaults_error = await self._apply_config(query_defaults)
            self._send(None, self._ready())
            if defaults_error:
                self._error(*defaults_error, recoverable=True)
            self._tasks = [
                asyncio.create_task(self._writer(), name=f"ws-writer-{self.id}"),
                asyncio.create_task(self._scheduler(), name=f"ws-scheduler-{self.id}"),
                asyncio.create_task(self._watchdog(), name=f"ws-watchdog-{self.id}"),
                asyncio.create_task(self._reader(), name=f"ws-reader-{self.id}"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._on_task_done)
            await self._done.wait()
        finally:
            for utt in self._utterances():
                utt.dropped = True
                if utt.task is not None:
                    utt.task.cancel()  # its engine job is cancelled as the task unwinds
                if not utt.finished:
                    utt.finished = True
                    self._observe(utt, "disconnect")
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, *(u.task for u in self._utterances() if u.task), return_exceptions=True)
            self.services.sessions.discard(self)
            metrics.sessions_active.dec()

    def _on_task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._done.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("session %s: %s failed", self.id, task.get_name(), exc_info=exc)
            self._close_soon("internal_error", 1011, error=("INTERNAL_ERROR", "internal server error"))

    def _utterances(self) -> list[Utterance]:
        return ([self.current] if self.current else []) + [u for u in self.pending if u is not self.current]

    def _close_soon(self, reason: str, code: int, error: tuple[str, str] | None = None) -> None:
        if not self.closing:
            asyncio.get_running_loop().create_task(self._close(reason, code, error))

    async def _close(self, reason: str, code: int, error: tuple[str, str] | None = None) -> None:
        """End the session: terminals for what is left, optionally an error, `stopped`, then close `code`."""
        if self.closing:
            return
        self.closing = True
        slow = reason == "slow_consumer"
        if slow:  # nothing queued will get through in time: keep only what ends the session
            while not self.outbox.empty():
                self.outbox.get_nowait()
                self.outbox.task_done()
        for utt in self._utterances():
            if slow or reason == "server_shutdown":
                self._fail(utt, "SLOW_CONSUMER" if slow else "SERVER_BUSY", f"session ended: {reason}")
            else:
                self._cancel(utt, "cancel")
        if error is not None:
            self.services.metrics.errors.labels(code=error[0]).inc()
            self._send(None, self._error_msg(error[0], error[1], None), force=True)
        else:
            self._send(None, p.dump(p.Stopped(reason=reason)), force=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.outbox.join(), timeout=1.0 if slow else 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code), timeout=1.0)
        self._done.set()

    async def shutdown(self) -> None:
        """Server shutdown: refuse new work, let the current utterance finish within the grace period,
        give every other one an error terminal, then `stopped{server_shutdown}` and close 1001."""
        self.draining = True
        for utt in list(self.pending):
            self._fail(utt, "SERVER_BUSY", "server is shutting down")
        for utt in self._utterances():
            self._close_text(utt)
        current = self.current
        if current is not None and current.task is not None:
            await asyncio.wait([current.task], timeout=self.settings.shutdown_grace_s)
        await self._close("server_shutdown", 1001)

    # --- writer, watchdog, scheduler ----------------------------------------------------------------

    def _send(self, utt: Utterance | None, payload: Payload, samples: int = 0, force: bool = False) -> None:
        """Queue a message; a full outbox means the client is not reading: cut it."""
        if self.closing and not force:
            return
        if not force and self.outbox.qsize() >= self.settings.outbound_queue_messages:
            log.warning("session %s: client is not reading; closing it (SLOW_CONSUMER)", self.id)
            self._close_soon("slow_consumer", 4009)
            return
        self.outbox.put_nowait(_Item(utt, payload, samples))

    async def _writer(self) -> None:
        while True:
            item = await self.outbox.get()
            try:
                if item.utt is not None and item.utt.dropped:
                    continue
                payload = item.payload() if callable(item.payload) else item.payload
                try:
                    if isinstance(payload, bytes):
                        await self.ws.send_bytes(payload)
                    else:
                        await self.ws.send_text(json.dumps(payload, separators=(",", ":")))
                except Exception:  # the client is gone
                    self._on_disconnect()
                    return
                if item.samples and item.utt is not None:
                    item.utt.sent_samples += item.samples
            finally:
                self.outbox.task_done()

    async def _watchdog(self) -> None:
        timeout = self.settings.idle_timeout_s
        while not self.closing:
            await asyncio.sleep(min(1.0, timeout / 4))
            if self._busy:
                self._last_activity = time.monotonic()
            elif time.monotonic() - self._last_activity >= timeout:
                await self._close("idle_timeout", 4008)
                return

    async def _scheduler(self) -> None:
        while True:
            while not self.pending:
                if self._drain_reason is not None and not self.closing:
                    await self._close(self._drain_reason, 1000)
                    return
                self._wake.clear()
                await self._wake.wait()
            utt = self.pending.popleft()
            self.current = utt
            utt.task = asyncio.create_task(self._run(utt), name=f"utterance-{utt.id}")
            await asyncio.wait([utt.task])
            self.current = None
            self._last_activity = time.monotonic()

    # --- one utterance ------------------------------------------------------------------------------

    async def _run(self, utt: Utterance) -> None:
        utt.started_at = asyncio.get_running_loop().time()
        self._busy += 1
        try:
            await self._synthesize(utt)
        except ModelUnavailable as exc:
            self._terminal(utt, self._error_msg("SYNTHESIS_ERROR", str(exc), utt.id), "error")
        except VoiceError as exc:
            self._terminal(utt, self._error_msg("VOICE_NOT_FOUND", exc.message, utt.id), "error")
        except Exception as exc:  # a bug or an engine refusal: this utterance fails, the session goes on
            log.exception("session %s: utterance %s failed", self.id, utt.id)
            self._terminal(utt, self._error_msg("SYNTHESIS_ERROR", f"synthesis failed: {exc}", utt.id), "error")
        finally:
            self._busy -= 1
            self._last_activity = time.monotonic()

    async def _synthesize(self, utt: Utterance) -> None:
        loop = asyncio.get_running_loop()
        tts, engine = await self.services.models.wait_loaded()
        voice_args = await self.services.voice_args(tts, utt.voice)
        language = utt.language or await self.services.default_language(utt.voice)
        out = AudioOut(utt.sample_rate, utt.encoding)
        held: list[bytes | int] = []  # base64: the latest chunk waits until we know whether it is the last
        while True:
            piece = await self._next_piece(utt)
            if piece is _END:
                break
            if piece is _FLUSH:
                self._flush_chunk(utt, held, final=False)
                self._send(utt, p.dump(p.Flushed(utteranceId=utt.id, audioMs=utt.ms(utt.samples))))
                continue
            request = self.services.speech_request(piece, voice_args, language)
            began = loop.time()
            async with contextlib.aclosing(engine_stream(engine, request)) as events:
                async for event in events:
                    if isinstance(event, AudioFrame):
                        utt.engine_frames += 1
                        self._audio(utt, out, out.convert(event), held)
                    elif isinstance(event, Finished):
                        utt.truncated |= event.truncated
                        if event.error is not None:
                            self._terminal(utt, self._error_msg("SYNTHESIS_ERROR", event.error, utt.id), "error")
                            return
            utt.engine_s += loop.time() - began
        self._audio(utt, out, out.tail(), held)
        self._flush_chunk(utt, held, final=True)
        for _ in range(utt.late_flushes):
            self._send(utt, p.dump(p.Flushed(utteranceId=utt.id, audioMs=utt.ms(utt.samples))))
        now = loop.time()
        complete = p.Complete(
            utteranceId=utt.id,
            durationMs=round((now - utt.started_at) * 1000, 1),
            charactersProcessed=utt.chars,
            audioLengthMs=utt.ms(utt.samples),
            frames=utt.engine_frames if utt.transport == "none" else utt.messages,
            ttfaMs=round((utt.first_audio_at - utt.started_at) * 1000, 1) if utt.first_audio_at else None,
            truncated=utt.truncated,
        )
        self._terminal(utt, p.dump(complete), "complete")

    async def _next_piece(self, utt: Utterance) -> object:
        """The next text piece (or marker); waiting for the client's text does not count as busy."""
        if not utt.pieces.empty():
            return utt.pieces.get_nowait()
        self._busy -= 1
        try:
            return await utt.pieces.get()
        finally:
            self._busy += 1
            self._last_activity = time.monotonic()

    def _audio(self, utt: Utterance, out: AudioOut, samples: np.ndarray, held: list) -> None:
        n = int(samples.shape[0])
        if n == 0:
            return
        if utt.first_audio_at is None:
            utt.first_audio_at = asyncio.get_running_loop().time()
            speaking = p.Speaking(utteranceId=utt.id, sampleRate=utt.sample_rate, encoding=utt.encoding)
            self._send(utt, p.dump(speaking))
        if utt.transport == "none":
            utt.samples += n
            return
        data = out.encode(samples)
        if utt.transport == "binary":
            utt.messages += 1
            utt.samples += n
            self._send(utt, data, samples=n)
            return
        self._flush_chunk(utt, held, final=False)
        held[:] = [data, n]

    def _flush_chunk(self, utt: Utterance, held: list, final: bool) -> None:
        """base64: send the held chunk (marked final when nothing follows it)."""
        if not held:
            return
        data, n = held
        held.clear()
        chunk = p.AudioChunk(
            utteranceId=utt.id,
            data=base64.b64encode(data).decode("ascii"),
            sequenceNumber=utt.messages,
            isFinal=final,
            timestampMs=utt.ms(utt.samples),
        )
        utt.messages += 1
        utt.samples += n
        self._send(utt, p.dump(chunk), samples=n)

    def _terminal(self, utt: Utterance, message: Payload, outcome: str) -> None:
        """The one terminal of `utt` (later calls are ignored)."""
        if utt.finished:
            return
        utt.finished = True
        if self.by_id.get(utt.id) is utt:
            del self.by_id[utt.id]
        if utt in self.pending:
            self.pending.remove(utt)
        utt.text_open = False
        if isinstance(message, dict) and message.get("type") == "error":
            self.services.metrics.errors.labels(code=message["code"]).inc()
        self._send(None, message, force=self.closing)
        self._observe(utt, outcome)

    def _observe(self, utt: Utterance, outcome: str) -> None:
        ttfa = None
        if utt.first_audio_at is not None and utt.started_at is not None:
            ttfa = utt.first_audio_at - utt.started_at
        audio_s = utt.samples / utt.sample_rate
        self.services.metrics.observe_utterance(outcome, utt.transport, ttfa, utt.engine_s, audio_s)

    def _fail(self, utt: Utterance, code: str, message: str) -> None:
        """Stop `utt` (queued audio dropped, engine job cancelled) with an error terminal."""
        if utt.finished:
            return
        utt.dropped = True
        if utt.task is not None:
            utt.task.cancel()
        self._terminal(utt, self._error_msg(code, message, utt.id), "error")

    def _cancel(self, utt: Utterance, reason: str) -> None:
        if utt.finished:
            return
        utt.dropped = True
        if utt.task is not None:
            utt.task.cancel()

        def cancelled() -> dict[str, Any]:  # built when sent, so audioSentMs counts exactly what went out
            msg = p.Cancelled(utteranceId=utt.id, reason=reason, audioSentMs=utt.ms(utt.sent_samples))
            return p.dump(msg)

        self._terminal(utt, cancelled, "cancelled")

    # --- reader -------------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self._on_disconnect()
                return
            self._last_activity = time.monotonic()
            if self.closing:
                continue
            text = message.get("text")
            if text is None:
                self._error("INVALID_MESSAGE", "binary messages are not accepted; send JSON text", recoverable=True)
                continue
            try:
                msg = p.parse_client_message(text)
            except p.ProtocolError as exc:
                self._error("INVALID_MESSAGE", str(exc), recoverable=True)
                continue
            if not self.authed:
                if not (isinstance(msg, p.Start) and token_valid(msg.authToken, self.settings)):
                    await self._close("unauthorized", 4001, error=("UNAUTHORIZED", "a valid token is required"))
                    return
                self.authed = True
            await self._handle(msg)

    def _on_disconnect(self) -> None:
        """The client is gone: `run` cancels whatever is left (and so its engine jobs) right away."""
        self.closing = True
        self._done.set()

    async def _handle(self, msg: Any) -> None:
        if isinstance(msg, p.Speak):
            await self._on_speak(msg)
        elif isinstance(msg, p.Cancel):
            self._on_cancel(msg)
        elif isinstance(msg, p.Flush):
            self._on_flush(msg)
        elif isinstance(msg, p.Ping):
            self._send(None, p.dump(p.Pong(id=msg.id)))
        elif isinstance(msg, p.Start):
            await self._on_start(msg)
        elif isinstance(msg, p.Stop):
            self._on_stop(msg)

    async def _on_start(self, msg: p.Start) -> None:
        if self._utterances():
            self._error("INVALID_STATE", "start is only allowed between utterances", recoverable=True)
            return
        fields = {
            "sampleRate": msg.sampleRate,
            "encoding": msg.encoding,
            "audioTransport": msg.audioTransport,
            "voice": msg.voice,
            "language": msg.language,
        }
        problem = await self._apply_config({k: v for k, v in fields.items() if v is not None})
        if problem is not None:
            self._error(*problem, recoverable=True)
            return
        started = p.Started(
            sampleRate=self.sample_rate,
            encoding=self.encoding,
            voice=self.voice or self.settings.default_voice,
            language=self.language or "auto",
            audioTransport=self.transport,
        )
        self._send(None, p.dump(started))

    async def _apply_config(self, values: dict[str, Any]) -> tuple[str, str] | None:
        """Validate then apply session settings; returns (code, message) of the first problem, if any."""
        sample_rate = values.get("sampleRate", self.sample_rate)
        try:
            sample_rate = int(sample_rate)
        except (TypeError, ValueError):
            sample_rate = -1
        if sample_rate not in SAMPLE_RATES:
            return "UNSUPPORTED_FORMAT", f"sampleRate must be one of {', '.join(map(str, SAMPLE_RATES))}"
        encoding = values.get("encoding", self.encoding)
        if encoding not in ENCODINGS:
            return "UNSUPPORTED_FORMAT", f"encoding must be one of {', '.join(ENCODINGS)}"
        transport = values.get("audioTransport", self.transport)
        if transport not in AUDIO_TRANSPORTS:
            return "UNSUPPORTED_FORMAT", f"audioTransport must be one of {', '.join(AUDIO_TRANSPORTS)}"
        language = self.language
        if "language" in values:
            try:
                language = self.services.canonical_language(values["language"])
            except ValueError as exc:
                return "INVALID_MESSAGE", str(exc)
        voice = values.get("voice", self.voice)
        if voice is not None:
            try:
                await self.services.voice_exists(voice)
            except VoiceError as exc:
                return "VOICE_NOT_FOUND", exc.message
        self.sample_rate, self.encoding, self.transport = sample_rate, encoding, transport
        self.voice, self.language = voice, language
        return None

    def _ready(self) -> dict[str, Any]:
        services, s = self.services, self.settings
        tts = services.models.tts
        voice = self.voice or s.default_voice
        voice_loaded = tts is not None and (
            tts.config.tts_model_type != "base" or services.voices.cached_prompt(voice, tts.fingerprint) is not None
        )
        ready = p.Ready(
            sessionId=self.id,
            voiceLoaded=voice_loaded,
            modelState=services.models.state,
            capabilities=p.Capabilities(
                languages=services.models.languages(),
                encodings=list(ENCODINGS),
                sampleRates=list(SAMPLE_RATES),
                audioTransports=list(AUDIO_TRANSPORTS),
                maxTextChars=s.max_text_chars,
            ),
            audioFormat=p.AudioFormat(encoding=self.encoding, sampleRate=self.sample_rate),
            limits=p.Limits(maxMessageBytes=s.max_message_bytes, idleTimeoutS=s.idle_timeout_s),
        )
        return p.dump(ready)

    async def _on_speak(self, msg: p.Speak) -> None:
        s = self.settings
        uid = msg.utteranceId
        if uid is not None and not 1 <= len(uid) <= 64:
            self._error("INVALID_MESSAGE", "utteranceId must be 1-64 characters", recoverable=True)
            return
        existing = self.by_id.get(uid) if uid is not None else None
        if existing is not None:
            if existing.text_open:
                self._extend(existing, msg.text, close=not msg.continue_)
            else:
                self._error("INVALID_STATE", f"utterance {uid!r} is already queued or playing", recoverable=True)
            return
        uid = uid or f"u{next(self._ids)}-{secrets.token_hex(3)}"

        def reject(code: str, message: str, **extra: Any) -> None:
            self._error(code, message, recoverable=True, utterance_id=uid, **extra)

        if self.draining:
            code = "SERVER_BUSY" if self.services.shutting_down else "INVALID_STATE"
            reject(code, "the session is stopping; no new utterances")
            return
        if not msg.continue_ and not msg.text.strip():
            reject("INVALID_TEXT", "text is empty")
            return
        if len(msg.text) > s.max_text_chars:
            reject("INVALID_TEXT", f"text is {len(msg.text)} characters; the limit is {s.max_text_chars}")
            return
        voice = msg.voice or self.voice or s.default_voice
        try:
            language = self.services.canonical_language(msg.language) if msg.language else self.language
            await self.services.voice_exists(voice)
        except ValueError as exc:
            reject("INVALID_MESSAGE", str(exc))
            return
        except VoiceError as exc:
            reject("VOICE_NOT_FOUND", exc.message)
            return
        models = self.services.models
        if not models.loaded:
            models.start_loading()
            if not s.queue_while_loading:
                reject("MODEL_LOADING", models.message, retry_after_ms=s.loading_retry_after_ms)
                return
        if len(self.pending) >= s.max_queued_utterances and msg.priority != "interrupt":
            reject("QUEUE_FULL", f"{len(self.pending)} utterances are queued; wait for some to finish")
            return
        utt = Utterance(
            id=uid,
            voice=voice,
            language=language,
            sample_rate=self.sample_rate,
            encoding=self.encoding,
            transport=self.transport,
            priority=msg.priority,
            segmenter=TextSegmenter() if msg.continue_ else None,
            text_open=msg.continue_,
        )
        if msg.priority == "interrupt":
            for other in self._utterances():
                self._cancel(other, "interrupt")
        self.by_id[uid] = utt
        if msg.priority == "normal":
            self.pending.append(utt)
        else:  # high (and interrupt, on an emptied queue): after the other high ones
            highs = itertools.takewhile(lambda u: u.priority != "normal", self.pending)
            self.pending.insert(sum(1 for _ in highs), utt)
        self._extend(utt, msg.text, close=not msg.continue_)
        self._wake.set()

    def _extend(self, utt: Utterance, text: str, close: bool) -> None:
        """Add text to `utt`; `close` ends its text."""
        utt.chars += len(text)
        if utt.chars > self.settings.max_text_chars:
            self._fail(utt, "INVALID_TEXT", f"utterance text exceeds {self.settings.max_text_chars} characters")
            return
        pieces = utt.segmenter.feed(text) if utt.segmenter is not None else split_text(text)
        for piece in pieces:
            utt.pieces.put_nowait(piece)
        if close:
            self._close_text(utt)

    def _close_text(self, utt: Utterance) -> None:
        if utt.ended:
            return
        for piece in utt.segmenter.flush() if utt.segmenter is not None else []:
            utt.pieces.put_nowait(piece)
        utt.segmenter = None
        utt.text_open, utt.ended = False, True
        utt.pieces.put_nowait(_END)

    def _on_cancel(self, msg: p.Cancel) -> None:
        if msg.utteranceId is None:
            for utt in self._utterances():
                self._cancel(utt, "cancel")
            return
        utt = self.by_id.get(msg.utteranceId)
        if utt is None:
            self._error("INVALID_STATE", f"no queued or playing utterance {msg.utteranceId!r}", recoverable=True)
            return
        self._cancel(utt, "cancel")

    def _on_flush(self, msg: p.Flush) -> None:
        if msg.utteranceId is not None:
            utt = self.by_id.get(msg.utteranceId)
            if utt is None:
                self._error("INVALID_STATE", f"no queued or playing utterance {msg.utteranceId!r}", recoverable=True)
                return
        else:
            live = self._utterances()
            open_ = [u for u in live if u.text_open]
            utt = open_[-1] if open_ else (live[-1] if live else None)
            if utt is None:
                self._send(None, p.dump(p.Flushed(utteranceId=None, audioMs=0.0)))
                return
        if utt.text_open and utt.segmenter is not None:
            for piece in utt.segmenter.flush():
                utt.pieces.put_nowait(piece)
            utt.pieces.put_nowait(_FLUSH)
        else:
            utt.late_flushes += 1

    def _on_stop(self, msg: p.Stop) -> None:
        reason = msg.reason or "user_requested"
        if msg.mode == "immediate":
            self._close_soon(reason, 1000)
            return
        self.draining, self._drain_reason = True, reason
        for utt in self._utterances():
            self._close_text(utt)
        self._wake.set()

    # --- errors -------------------------------------------------------------------------------------

    def _error_msg(self, code: str, message: str, utterance_id: str | None) -> dict[str, Any]:
        recoverable = code not in p.ERROR_CLOSE_CODES
        return p.dump(p.Error(code=code, message=message, recoverable=recoverable, utteranceId=utterance_id))

    def _error(
        self, code: str, message: str, *, recoverable: bool, utterance_id: str | None = None, **extra: Any
    ) -> None:
        """An error that is not a running utterance's terminal (rejections carry the rejected id)."""
        self.services.metrics.errors.labels(code=code).inc()
        camel = {"retry_after_ms": "retryAfterMs"}
        fields = {camel.get(k, k): v for k, v in extra.items()}
        err = p.Error(code=code, message=message, recoverable=recoverable, utteranceId=utterance_id, **fields)
        self._send(None, p.dump(err))
        if utterance_id is not None:
            self.services.metrics.utterances.labels(outcome="error", transport=self.transport).inc()
