"""Pipecat TTS service for a makima-tts server: `MakimaTTSService` (extra `makima-tts[pipecat]`).

    tts = MakimaTTSService(url="ws://127.0.0.1:8000/api/v1/speak", voice="default")
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, transport.output(), ...])

One `SpeakClient` session for the service, opened when the pipeline starts, at the pipeline's output
sample rate (`PipelineParams.audio_out_sample_rate`, which Pipecat 1.x hands to processors at setup in place
of the deprecated `StartFrame` field) unless `sample_rate=` is given. Each Pipecat audio context is one
streamed utterance: `run_tts` appends its text (and, when Pipecat aggregates sentences, flushes it so the
sentence is spoken without waiting for more); `flush_audio` (the end of the turn) ends the text. A reader
task per context turns the utterance's PCM into `TTSAudioRawFrame`s of that context, then closes it with
`TTSStoppedFrame`. An interruption cancels the context's utterance with `playedMs` (see `playback.py`) and
reports it through the `on_tts_interrupted` event with the text the listener heard (the server's
`heardText`, or, if the server had already finished it, its `textMarks` at the played ms). Failures are
`ErrorFrame`s with a Pipecat `ErrorCategory`; a lost session fails what it carried and the client
reconnects on the next text.

It derives from `TTSService`, not `WebsocketTTSService`: that base's reconnect loop drives a raw websocket
of its own (`self._websocket`, ping verification), while here the protocol session, its reader and its
reconnect with backoff live in `makima_tts.client`. It keeps the WebSocket services' conventions otherwise:
connect at start, disconnect at stop/cancel, the `on_connected` / `on_disconnected` / `on_connection_error`
events, audio arriving on its own task into audio contexts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from pipecat.frames.frames import CancelFrame, EndFrame, Frame, StartFrame, TTSAudioRawFrame, TTSStoppedFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory

from ..client import Backoff, ClientState, ErrorCode, SpeakClient, SpeakError, Utterance
from .playback import Interruption, PlaybackClock

# The checkpoint's language names for Pipecat's language codes (the base code: "en-US" → "english").
_LANGUAGES = {"zh": "chinese", "en": "english", "de": "german", "it": "italian", "pt": "portuguese",
              "es": "spanish", "ja": "japanese", "ko": "korean", "fr": "french", "ru": "russian"}

_CATEGORIES = {
    ErrorCode.UNAUTHORIZED: ErrorCategory.AUTHENTICATION,
    ErrorCode.VOICE_NOT_FOUND: ErrorCategory.INVALID_REQUEST,
    ErrorCode.UNSUPPORTED_FORMAT: ErrorCategory.INVALID_REQUEST,
    ErrorCode.INVALID_MESSAGE: ErrorCategory.INVALID_REQUEST,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCategory.INVALID_REQUEST,
    ErrorCode.INVALID_TEXT: ErrorCategory.APPLICATION,  # this text was refused; the next may be fine
    ErrorCode.RATE_LIMITED: ErrorCategory.RATE_LIMIT,
    ErrorCode.SERVER_BUSY: ErrorCategory.RATE_LIMIT,
    ErrorCode.QUEUE_FULL: ErrorCategory.RATE_LIMIT,
    ErrorCode.CONNECTION_FAILED: ErrorCategory.CONNECTIVITY,
    ErrorCode.TIMEOUT: ErrorCategory.CONNECTIVITY,
    ErrorCode.SLOW_CONSUMER: ErrorCategory.CONNECTIVITY,
    ErrorCode.MODEL_LOADING: ErrorCategory.SERVER,
    ErrorCode.SYNTHESIS_ERROR: ErrorCategory.SERVER,
    ErrorCode.INTERNAL_ERROR: ErrorCategory.SERVER,
}


def error_category(err: SpeakError) -> ErrorCategory:
    """Pipecat's category for a client error (permanent ones make the service unusable)."""
    if err.code is ErrorCode.HANDSHAKE_REFUSED:
        return ErrorCategory.AUTHORIZATION if err.status == 403 else ErrorCategory.INVALID_REQUEST
    return _CATEGORIES.get(err.code, ErrorCategory.UNKNOWN)  # type: ignore[call-overload]


@dataclass(eq=False)
class _Context:
    """One Pipecat audio context: its utterances in play order (more than one only when another context
    opened while its text was still streaming: the client streams one text at a time)."""

    id: str
    utterances: list[Utterance] = field(default_factory=list)
    queue: asyncio.Queue[Utterance | None] = field(default_factory=asyncio.Queue)  # None: no more
    open: Utterance | None = None  # the utterance taking this context's text
    closed: bool = False  # its text ended (or it failed, or was interrupted): no more utterances
    interrupted: bool = False
    appended_ms: float = 0.0  # audio put into the audio context so far
    reading: Utterance | None = None
    reading_from_ms: float = 0.0  # appended_ms when `reading` began
    clock: PlaybackClock = field(default_factory=PlaybackClock)  # audio pushed downstream
    reader: asyncio.Task[None] | None = None

    def played_ms(self, utt: Utterance) -> float:
        if utt is not self.reading:
            return 0.0  # none of its audio has been pushed yet
        return max(0.0, self.clock.played_ms() - self.reading_from_ms)


def _text_setting(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class MakimaTTSService(TTSService):
    """Streaming TTS from a makima-tts server over one protocol v1 session.

    Event handlers (besides TTSService's):
        on_tts_interrupted(service, context_id, interruption: Interruption): an interruption cut an
            utterance short; `interruption` has the `playedMs` sent, the server's `audioSentMs` and
            `heard_text`, what a voice agent keeps of its reply.
    """

    def __init__(self, *, url: str, token: str | None = None, voice: str | None = None,
                 language: Language | str | None = None, sample_rate: int | None = None,
                 backoff: Backoff = Backoff(), cancel_timeout_s: float = 5.0, **kwargs: Any):
        """
        Args:
            url: the server, `ws://HOST:PORT/api/v1/speak` (or `http://HOST:PORT`).
            token: the server's bearer token, when it has tokens configured.
            voice: a voice id (`GET /api/v1/voices`); None: the server's default. `TTSUpdateSettingsFrame`
                changes it from the next utterance on.
            language: a Pipecat `Language` or the checkpoint's name ("english"); None: the voice's.
            sample_rate: output rate; None: the pipeline's `audio_out_sample_rate`.
            backoff: how the client retries a busy or unreachable server.
            cancel_timeout_s: how long an interruption waits for the server's `cancelled`.
            **kwargs: passed to `TTSService` (e.g. `text_aggregation_mode`). `stop_frame_timeout_s`, how
                long a context waits for audio before Pipecat closes it, defaults to 20 s rather than 3 s:
                a local server's first audio can take longer (a model loading on first use, a CPU), and
                the service closes every context itself once its utterances end.
        """
        kwargs.setdefault("stop_frame_timeout_s", 20.0)
        super().__init__(push_start_frame=True, sample_rate=sample_rate,
                         settings=TTSSettings(model=None, voice=voice, language=language), **kwargs)
        self._url, self._token, self._backoff = url, token, backoff
        self._cancel_timeout_s = cancel_timeout_s
        self._client: SpeakClient | None = None
        self._contexts: dict[str, _Context] = {}
        self._open: _Context | None = None  # the context whose utterance the client is streaming text into
        self._closing = False
        self._register_event_handler("on_tts_interrupted")

    @property
    def client(self) -> SpeakClient | None:
        """The protocol client (None before the pipeline starts or after it ends)."""
        return self._client

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        return _LANGUAGES.get(str(language.value).split("-")[0].lower())

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._closing = False
        await self._connect()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)  # lets the queued audio contexts play out first
        await self._disconnect()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._disconnect()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._disconnect()

    async def _connect(self) -> SpeakClient | None:
        """The open (or reconnecting) client; a new one when there is none or the last one gave up."""
        if self._client is not None and self._client.state is not ClientState.CLOSED:
            return self._client
        client = SpeakClient(self._url, token=self._token, sample_rate=self.sample_rate, backoff=self._backoff)
        try:
            await client.connect()
        except SpeakError as err:
            await self._report(err)
            return None
        self._client = client
        await self._call_event_handler("on_connected")
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        await client.close()  # fails what is still live: the readers end
        for ctx in list(self._contexts.values()):
            if ctx.reader is not None:
                await self.cancel_task(ctx.reader)
        self._contexts.clear()
        self._open = None
        await self._call_event_handler("on_disconnected")

    # --- text in ------------------------------------------------------------------------------------

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Stream `text` into the context's utterance; its audio arrives on the context's reader task."""
        client = await self._connect()
        if client is None:
            await self._end_context(context_id)
        else:
            try:
                self._append(client, text, context_id)
                if not self._is_streaming_tokens:  # a whole sentence: speak it now
                    self.create_task(self._flush(client), name="makima-flush")
            except SpeakError as err:
                await self._report(err)
                await self._end_context(context_id)
        yield None

    def _append(self, client: SpeakClient, text: str, context_id: str) -> None:
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closed:
            ctx = self._contexts[context_id] = _Context(context_id)
            ctx.reader = self.create_task(self._read(ctx), name=f"makima-read-{context_id}")
        if ctx.open is not None and not ctx.open.done:
            client.append(text)
            return
        if self._open is not None and self._open is not ctx:
            self._end_text(self._open)
        utt = client.append(text, utterance_id=f"{context_id}-{len(ctx.utterances) + 1}",
                            voice=_text_setting(self._settings.voice), language=_text_setting(self._settings.language))
        ctx.open, self._open = utt, ctx
        ctx.utterances.append(utt)
        ctx.queue.put_nowait(utt)

    def _end_text(self, ctx: _Context) -> None:
        if self._client is not None and ctx.open is not None and not ctx.open.done:
            self._client.end()
        ctx.open = None
        if self._open is ctx:
            self._open = None

    async def _flush(self, client: SpeakClient) -> None:
        try:
            await client.flush()
        except SpeakError:
            pass  # the session went away: the utterance's reader reports it

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The end of the context's text (Pipecat calls it when the turn's text is complete)."""
        ctx = self._contexts.get(context_id or self.get_active_audio_context_id() or "")
        if ctx is None or ctx.closed:
            return
        self._end_text(ctx)
        ctx.closed = True
        ctx.queue.put_nowait(None)

    # --- audio out ----------------------------------------------------------------------------------

    async def _read(self, ctx: _Context) -> None:
        try:
            while (utt := await ctx.queue.get()) is not None and not ctx.interrupted:
                ctx.reading, ctx.reading_from_ms = utt, ctx.appended_ms
                async for chunk in utt:  # pcm16, one 80 ms frame each
                    if ctx.interrupted:
                        break
                    ctx.appended_ms += len(chunk) / 2 / self.sample_rate * 1000
                    await self.append_to_audio_context(
                        ctx.id, TTSAudioRawFrame(chunk, self.sample_rate, 1, context_id=ctx.id))
        except SpeakError as err:
            ctx.closed = True
            if not self._closing:
                await self._report(err)
        finally:
            if self._contexts.get(ctx.id) is ctx:
                del self._contexts[ctx.id]
            if self._open is ctx:
                self._open = None
        if not ctx.interrupted:
            await self._end_context(ctx.id)

    async def _end_context(self, context_id: str) -> None:
        if self.audio_context_available(context_id):
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            await self.remove_audio_context(context_id)

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        if isinstance(frame, TTSAudioRawFrame) and (ctx := self._contexts.get(frame.context_id or "")):
            ctx.clock.handed(len(frame.audio) / 2 / frame.sample_rate * 1000)
        await super().push_frame(frame, direction)

    # --- interruption and errors --------------------------------------------------------------------

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Cancel the context's utterances on the server, telling it how much of the audio was played."""
        ctx = self._contexts.get(context_id)
        client = self._client
        if ctx is not None and client is not None:
            ctx.interrupted = ctx.closed = True
            if self._open is ctx:
                self._open = None  # its utterance is cancelled, not ended
            ctx.queue.put_nowait(None)
            unplayed = ctx.utterances[ctx.utterances.index(ctx.reading):] if ctx.reading else ctx.utterances
            for utt in unplayed:  # the one playing and those after it
                await self._interrupt_utterance(client, context_id, utt, ctx.played_ms(utt))
        await super().on_audio_context_interrupted(context_id)

    async def _interrupt_utterance(self, client: SpeakClient, context_id: str, utt: Utterance,
                                   played_ms: float) -> None:
        """Cancel it on the server unless the server had finished it; then report what was heard of it."""
        if not utt.done:
            try:
                await asyncio.wait_for(client.cancel(utt.id, played_ms=played_ms), self._cancel_timeout_s)
            except (SpeakError, asyncio.TimeoutError) as err:  # it ended meanwhile, or the session went away
                logger.debug(f"{self}: cancel of {utt.id} answered {err!r}")
        if utt.done and (interruption := Interruption.of(utt, played_ms)) is not None:
            await self._call_event_handler("on_tts_interrupted", context_id, interruption)

    async def _report(self, err: SpeakError) -> None:
        if err.code in (ErrorCode.CONNECTION_FAILED, ErrorCode.HANDSHAKE_REFUSED):
            await self._call_event_handler("on_connection_error", str(err))
        await self.push_error(error_msg=f"{self}: {err}", exception=err, category=error_category(err))
