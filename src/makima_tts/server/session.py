"""One `/api/v1/speak` WebSocket connection (protocol v1, shared/protocol.md): its state, the reader that
dispatches client messages, the session configuration and every utterance's terminal.

    socket -> Session.run (reader: parse, dispatch) -> UtteranceQueue -> player task -> utterance task
        (Synthesis: text pieces -> engine -> PCM) -> Outbox -> writer task -> socket

Two tasks besides the reader: the player (takes queued utterances one at a time and runs each as its own
task, so a cancel stops exactly that one) and the outbox's writer. The idle timeout is the reader's
receive timeout: time spent generating audio does not count, waiting for the client's text does.

Invariants: every utterance gets exactly one terminal (`complete`, `cancelled` or `error` with its id),
through `_terminal`; utterances never interleave; nothing of an utterance is sent after its terminal
(`Outbox`); leaving an utterance task (cancel, interrupt, disconnect, shutdown) cancels its engine job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from typing import Any

from starlette.websockets import WebSocket

from . import commands
from . import protocol as p
from .auth import token_valid
from .outbox import Outbox, Outgoing
from .protocol import CloseCode
from .services import Services
from .synthesis import Synthesis, SynthesisFailed
from .utterances import AudioFormat, Stage, TextState, Utterance, UtteranceQueue

log = logging.getLogger(__name__)


class SessionState(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"  # no new utterances (stop{mode:"drain"}, server shutdown); the queue plays out
    CLOSING = "closing"  # terminals and `stopped` are going out; client messages are ignored
    CLOSED = "closed"


class Session:
    def __init__(self, ws: WebSocket, services: Services, *, authed: bool, subprotocol: str | None):
        self.ws, self.services, self.settings = ws, services, services.settings
        self.id = secrets.token_hex(8)
        self.authed, self.subprotocol = authed, subprotocol
        self.state = SessionState.OPEN
        self.drain_reason: str | None = None  # stop{mode:"drain"}: close with it once the queue is empty
        self.format = AudioFormat(p.DEFAULT_SAMPLE_RATE, "pcm16", "binary")
        self.voice: str | None = None
        self.language: str | None = None
        self.queue = UtteranceQueue()
        self.outbox = Outbox(ws, self.settings.outbound_queue_messages, on_gone=self._on_disconnect)
        self._closed = asyncio.Event()
        self._last_activity = time.monotonic()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, query_defaults: dict[str, str]) -> None:
        await self.ws.accept(subprotocol=self.subprotocol)
        metrics = self.services.metrics
        metrics.sessions_total.inc()
        metrics.sessions_active.inc()
        self.services.sessions.add(self)
        tasks = [asyncio.create_task(self.outbox.run(), name=f"ws-writer-{self.id}"),
                 asyncio.create_task(self._play(), name=f"ws-player-{self.id}")]
        for task in tasks:
            task.add_done_callback(self._on_task_done)
        try:
            defaults_error = await commands.configure(self, query_defaults)
            self.send(commands.ready(self))
            if defaults_error:
                self.error(*defaults_error)
            await self._read()
        finally:
            self.state = SessionState.CLOSED
            live = self.queue.live()
            for utt in live:
                self.outbox.drop(utt)
                if utt.task is not None:
                    utt.task.cancel()  # its engine job is cancelled as the task unwinds
                if utt.stage is not Stage.DONE:
                    utt.stage = Stage.DONE
                    self._observe(utt, "disconnect")
            utterance_tasks = [u.task for u in live if u.task]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *utterance_tasks, return_exceptions=True)
            self.services.sessions.discard(self)
            metrics.sessions_active.dec()

    def _on_task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._closed.is_set():
            return
        if (exc := task.exception()) is not None:
            log.error("session %s: %s failed", self.id, task.get_name(), exc_info=exc)
            self.close_soon("internal_error", CloseCode.INTERNAL_ERROR, ("INTERNAL_ERROR", "internal server error"))

    def close_soon(self, reason: str, code: CloseCode, error: tuple[str, str] | None = None) -> None:
        if self.state in (SessionState.OPEN, SessionState.DRAINING):
            asyncio.get_running_loop().create_task(self._close(reason, code, error))

    async def _close(self, reason: str, code: CloseCode, error: tuple[str, str] | None = None) -> None:
        """End the session: terminals for what is left, optionally an error, `stopped`, then close `code`."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self.state = SessionState.CLOSING
        slow = reason == "slow_consumer"
        if slow:  # nothing queued will get through in time: keep only what ends the session
            self.outbox.clear()
        for utt in self.queue.live():
            if slow or reason == "server_shutdown":
                self.fail(utt, "SLOW_CONSUMER" if slow else "SERVER_BUSY", f"session ended: {reason}")
            else:
                self.cancel(utt, "cancel")
        if error is not None:
            self.services.metrics.errors.labels(code=error[0]).inc()
            self.send(p.error_message(error[0], error[1], None), force=True)
        else:
            self.send(p.dump(p.Stopped(reason=reason)), force=True)
        await self.outbox.drained(timeout=1.0 if slow else 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code), timeout=1.0)
        self._closed.set()

    async def shutdown(self) -> None:
        """Server shutdown: refuse new work, let the current utterance finish within the grace period
        (its open text closed: it speaks what it has), give every other one an error terminal, then
        `stopped{server_shutdown}` and close 1001. A grace of 0 cuts the current one too, at once."""
        if self.state is SessionState.OPEN:
            self.state = SessionState.DRAINING
        current, grace = self.queue.current, self.settings.shutdown_grace_s
        for utt in self.queue.live():
            if utt is not current:
                self.fail(utt, "SERVER_BUSY", "server is shutting down")
            utt.close_text()
        if current is not None and current.task is not None and grace > 0:
            await asyncio.wait([current.task], timeout=grace)
        await self._close("server_shutdown", CloseCode.GOING_AWAY)

    def _on_disconnect(self) -> None:
        """The client is gone: `run` cancels whatever is left (and so its engine jobs) right away."""
        self.state = SessionState.CLOSING
        self._closed.set()

    # --- sending and terminals ----------------------------------------------------------------------

    def send(self, data: dict[str, Any], force: bool = False) -> None:
        self.send_out(Outgoing(data), force)

    def send_out(self, item: Outgoing, force: bool = False) -> None:
        """Queue a message; a full outbox means the client is not reading: cut it."""
        if self.state is not SessionState.OPEN and self.state is not SessionState.DRAINING and not force:
            return
        if not self.outbox.put(item, force):
            log.warning("session %s: client is not reading; closing it (SLOW_CONSUMER)", self.id)
            self.close_soon("slow_consumer", CloseCode.SLOW_CONSUMER)

    def _terminal(self, utt: Utterance, message: dict[str, Any], outcome: str) -> None:
        """The one terminal of `utt` (later calls are ignored)."""
        if utt.stage is Stage.DONE:
            return
        utt.stage, utt.text = Stage.DONE, TextState.CLOSED
        self.queue.remove(utt)
        if message.get("type") == "error":
            self.services.metrics.errors.labels(code=message["code"]).inc()
        self.send(message, force=self.state is SessionState.CLOSING)
        self._observe(utt, outcome)

    def _observe(self, utt: Utterance, outcome: str) -> None:
        stats, fmt = utt.stats, utt.format
        self.services.metrics.observe_utterance(outcome, fmt.transport, stats.ttfa_s, stats.engine_s,
                                                stats.samples / fmt.sample_rate)

    def _stop_utterance(self, utt: Utterance) -> None:
        self.outbox.drop(utt)
        if utt.task is not None:
            utt.task.cancel()

    def fail(self, utt: Utterance, code: str, message: str) -> None:
        """Stop `utt` (queued audio dropped, engine job cancelled) with an error terminal."""
        if utt.stage is not Stage.DONE:
            self._stop_utterance(utt)
            self._terminal(utt, p.error_message(code, message, utt.id), "error")

    def cancel(self, utt: Utterance, reason: str, played_ms: float | None = None) -> None:
        """Stop `utt` with a `cancelled` terminal; `played_ms`: the client's `playedMs` (default: all the
        audio sent was played), which bounds its `heardText`."""
        if utt.stage is not Stage.DONE:
            self._stop_utterance(utt)
            sent = self.outbox.sent_samples(utt)
            played = sent if played_ms is None else min(sent, max(0, round(played_ms * utt.format.sample_rate / 1000)))
            cancelled = p.Cancelled(utteranceId=utt.id, reason=reason, audioSentMs=utt.format.ms(sent),
                                    heardText=utt.marks.heard(played))
            self._terminal(utt, p.dump(cancelled), "cancelled")

    def error(self, code: str, message: str, utterance_id: str | None = None, rejected: bool = False,
               **extra: Any) -> None:
        """An error that is not a playing utterance's terminal; `rejected`: it refuses a new utterance
        (counted as a failed one). `utterance_id` without `rejected`: the id a message named."""
        self.services.metrics.errors.labels(code=code).inc()
        self.send(p.error_message(code, message, utterance_id, **extra))
        if rejected:
            self.services.metrics.utterances.labels(outcome="error", transport=self.format.transport).inc()

    # --- the player ---------------------------------------------------------------------------------

    async def _play(self) -> None:
        while True:
            if self.drain_reason is not None and not len(self.queue) and self.state is SessionState.DRAINING:
                await self._close(self.drain_reason, CloseCode.NORMAL)
                return
            utt = await self.queue.next()
            if utt is None:
                continue
            utt.task = asyncio.create_task(self._speak(utt), name=f"utterance-{utt.id}")
            await asyncio.wait([utt.task])
            self._last_activity = time.monotonic()

    async def _speak(self, utt: Utterance) -> None:
        try:
            complete = await Synthesis(utt, self.services, self.send_out).run()
            self._terminal(utt, p.dump(complete), "complete")
        except SynthesisFailed as exc:
            self._terminal(utt, p.error_message(exc.code, exc.message, utt.id), "error")
        except Exception:  # a bug: this utterance fails, the session goes on
            log.exception("session %s: utterance %s failed", self.id, utt.id)
            self._terminal(utt, p.error_message("SYNTHESIS_ERROR", "synthesis failed (internal error)", utt.id),
                           "error")

    # --- the reader ---------------------------------------------------------------------------------

    def _idle_left(self) -> float:
        """Seconds until the idle timeout; generating audio keeps the session busy (not idle), waiting
        for the client's text does not (a streamed text's audio still coming does)."""
        current = self.queue.current
        if current is not None and current.stage is Stage.PLAYING:
            self._last_activity = time.monotonic()
        elif current is not None and current.stage is Stage.WAITING_FOR_TEXT and current.stats.last_audio_at:
            self._last_activity = max(self._last_activity, current.stats.last_audio_at)
        return self._last_activity + self.settings.idle_timeout_s - time.monotonic()

    async def _read(self) -> None:
        receive: asyncio.Future | None = None
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while not closed.done():
                receive = receive or asyncio.ensure_future(self.ws.receive())
                left = self._idle_left()
                if left <= 0 and self.state in (SessionState.OPEN, SessionState.DRAINING):
                    await self._close("idle_timeout", CloseCode.IDLE_TIMEOUT)
                    return
                done, _ = await asyncio.wait({receive, closed}, timeout=max(left, 0.01),
                                             return_when=asyncio.FIRST_COMPLETED)
                if receive in done:
                    message, receive = receive.result(), None
                    if message["type"] == "websocket.disconnect":
                        self._on_disconnect()
                        return
                    await self._on_message(message)
        finally:
            for future in (receive, closed):
                if future is not None:
                    future.cancel()

    async def _on_message(self, message: dict[str, Any]) -> None:
        self._last_activity = time.monotonic()
        if self.state not in (SessionState.OPEN, SessionState.DRAINING):
            return
        text = message.get("text")
        if text is None:
            self.error("INVALID_MESSAGE", "binary messages are not accepted; send JSON text")
            return
        try:
            msg = p.parse_client_message(text)
        except p.ProtocolError as exc:
            self.error("INVALID_MESSAGE", str(exc))
            return
        if not self.authed:
            if not (isinstance(msg, p.Start) and token_valid(msg.authToken, self.settings)):
                await self._close("unauthorized", CloseCode.UNAUTHORIZED, ("UNAUTHORIZED", "a valid token is required"))
                return
            self.authed = True
        await HANDLERS[type(msg)](self, msg)

    # --- used by the command handlers ---------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self.state is not SessionState.OPEN

    def drain(self, reason: str) -> None:
        """stop{mode:"drain"}: no new utterances; close with `reason` once the queued ones have played."""
        if self.state is SessionState.OPEN:
            self.state = SessionState.DRAINING
        self.drain_reason = reason
        for utt in self.queue.live():
            utt.close_text()
        self.queue.wake()


HANDLERS = {p.Speak: commands.speak, p.Cancel: commands.cancel, p.Flush: commands.flush, p.Ping: commands.ping,
            p.Start: commands.start, p.Stop: commands.stop}
