"""LiveKit Agents TTS for a makima-tts server: `MakimaTTS` (extra `makima-tts[livekit]`).

    session = AgentSession(stt=..., llm=..., tts=MakimaTTS(url="ws://127.0.0.1:8000/api/v1/speak"))

`synthesize(text)` speaks one whole text (a `ChunkedStream`); `stream()` is a `SynthesizeStream` whose pushed
text is one streamed utterance: the first text opens it, `flush()` or `end_input()` ends its text. Both
check out a `SpeakClient` (one protocol v1 session) from a LiveKit `ConnectionPool`, so consecutive
requests share one connection, and push the server's PCM through the `AudioEmitter` at the session's
negotiated sample rate. Closing a stream before its audio ends cancels the utterance on the server with
`playedMs` (see `playback.py`) and emits `"interrupted"` with the server's answer, including the text the
listener heard. Failures are `APIError`s:
`APIStatusError` with an HTTP-like status for the server's refusals, `APIConnectionError` for a lost or
unreachable server, `retryable` as the client judges it (busy, loading, shutting down, unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Literal

from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APIStatusError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from ..client import Backoff, ClientState, ErrorCode, SpeakClient, SpeakError, Utterance
from ..server.protocol import DEFAULT_SAMPLE_RATE
from .playback import Interruption, PlaybackClock

log = logging.getLogger(__name__)

# HTTP-like statuses for the server's refusals (LiveKit treats 4xx other than 408/429 as not retryable).
_STATUS = {
    ErrorCode.INVALID_TEXT: 400, ErrorCode.INVALID_MESSAGE: 400, ErrorCode.UNSUPPORTED_FORMAT: 400,
    ErrorCode.UNAUTHORIZED: 401, ErrorCode.VOICE_NOT_FOUND: 404, ErrorCode.TIMEOUT: 408,
    ErrorCode.MESSAGE_TOO_LARGE: 413, ErrorCode.RATE_LIMITED: 429, ErrorCode.QUEUE_FULL: 429,
    ErrorCode.SYNTHESIS_ERROR: 500, ErrorCode.INTERNAL_ERROR: 500, ErrorCode.MODEL_LOADING: 503,
    ErrorCode.SERVER_BUSY: 503,
}


def api_error(err: SpeakError) -> APIError:
    """LiveKit's error for a client error, flagged retryable as the client judges it."""
    body = {"code": err.code_name, "message": err.message, "closeCode": err.close_code}
    status = err.status if err.code is ErrorCode.HANDSHAKE_REFUSED else _STATUS.get(err.code)  # type: ignore[call-overload]
    if status is not None:
        return APIStatusError(str(err), status_code=status, body=body, retryable=err.retryable)
    return APIConnectionError(str(err), retryable=err.retryable)


class MakimaTTS(tts.TTS[Literal["interrupted"]]):
    """Streaming TTS from a makima-tts server.

    Events (besides "metrics_collected" and "error"): "interrupted" (an `Interruption`) when closing a stream
    cancelled its utterance: the `playedMs` sent, the server's `audioSentMs` and the `heard_text`.
    """

    def __init__(self, *, url: str, token: str | None = None, voice: str | None = None,
                 language: str | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 backoff: Backoff = Backoff(), cancel_timeout_s: float = 5.0):
        """
        Args:
            url: the server, `ws://HOST:PORT/api/v1/speak` (or `http://HOST:PORT`).
            token: the server's bearer token, when it has tokens configured.
            voice: a voice id (`GET /api/v1/voices`); None: the server's default.
            language: the checkpoint's language name ("english"); None: the voice's.
            sample_rate: 8000, 16000, 22050, 24000, 44100 or 48000 (the server resamples).
            backoff: how a connection retries a busy or unreachable server.
            cancel_timeout_s: how long closing a stream waits for the server's `cancelled`.
        """
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True), sample_rate=sample_rate, num_channels=1)
        self._url, self._token, self._voice, self._language = url, token, voice, language
        self._backoff, self._cancel_timeout_s = backoff, cancel_timeout_s
        self._pool = utils.ConnectionPool[SpeakClient](connect_cb=self._connect, close_cb=self._close)

    @property
    def provider(self) -> str:
        return "makima-tts"

    @property
    def model(self) -> str:
        return "qwen3-tts-12hz"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                   ) -> MakimaChunkedStream:
        return MakimaChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> MakimaSynthesizeStream:
        return MakimaSynthesizeStream(tts=self, conn_options=conn_options)

    def prewarm(self) -> None:
        self._pool.prewarm()

    async def aclose(self) -> None:
        await self._pool.aclose()

    # --- the pooled sessions ------------------------------------------------------------------------

    async def _connect(self, timeout: float) -> SpeakClient:
        client = SpeakClient(self._url, token=self._token, voice=self._voice, language=self._language,
                             sample_rate=self.sample_rate, backoff=self._backoff, open_timeout=timeout)
        try:
            await client.connect()
        except SpeakError as err:
            raise api_error(err) from None
        return client

    async def _close(self, client: SpeakClient) -> None:
        await client.close()

    @contextlib.asynccontextmanager
    async def _session(self, stream: tts.ChunkedStream | tts.SynthesizeStream,
                       timeout: float) -> AsyncIterator[SpeakClient]:
        """A pooled client for one request, back in the pool afterwards unless it closed for good."""
        client = await self._pool.get(timeout=timeout)
        stream._acquire_time = self._pool.last_acquire_time
        stream._connection_reused = self._pool.last_connection_reused
        try:
            yield client
        finally:
            if client.state is ClientState.CLOSED:
                self._pool.remove(client)
            else:
                self._pool.put(client)  # a DISCONNECTED client reconnects on its next message

    async def _play(self, client: SpeakClient, utt: Utterance, emitter: tts.AudioEmitter) -> None:
        """Push the utterance's PCM into the emitter; cancelled (the stream closed): cancel it on the server."""
        clock = PlaybackClock()
        try:
            async for chunk in utt:
                emitter.push(chunk)
                clock.handed(len(chunk) / 2 / client.sample_rate * 1000)
        except SpeakError as err:
            raise api_error(err) from None
        except asyncio.CancelledError:
            await self._cancel(client, utt, clock.played_ms())
            raise

    async def _cancel(self, client: SpeakClient, utt: Utterance, played_ms: float) -> None:
        """Cancel it on the server unless the server had finished it; then report what was heard of it."""
        if not utt.done:
            try:
                await asyncio.wait_for(client.cancel(utt.id, played_ms=played_ms), self._cancel_timeout_s)
            except (SpeakError, asyncio.TimeoutError) as err:  # it ended meanwhile, or the session went away
                log.debug("cancel of %s answered %r", utt.id, err)
        if utt.done and (interruption := Interruption.of(utt, played_ms)) is not None:
            self.emit("interrupted", interruption)


class MakimaChunkedStream(tts.ChunkedStream):
    """One whole text, one utterance."""

    def __init__(self, *, tts: MakimaTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: MakimaTTS = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        async with self._tts._session(self, self._conn_options.timeout) as client:
            output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=client.sample_rate, num_channels=1,
                                      mime_type="audio/pcm")
            try:
                utt = client.speak(self._input_text)
            except SpeakError as err:
                raise api_error(err) from None
            await self._tts._play(client, utt, output_emitter)
        output_emitter.flush()


class MakimaSynthesizeStream(tts.SynthesizeStream):
    """Pushed text, one streamed utterance: it opens with the first text and its text ends at `flush()` or
    `end_input()` (LiveKit streams carry one segment each)."""

    def __init__(self, *, tts: MakimaTTS, conn_options: APIConnectOptions):
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: MakimaTTS = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        async with self._tts._session(self, self._conn_options.timeout) as client:
            output_emitter.initialize(request_id=request_id, sample_rate=client.sample_rate, num_channels=1,
                                      mime_type="audio/pcm", stream=True)
            utt = await self._open(client)
            if utt is None:
                return  # the input ended without text
            output_emitter.start_segment(segment_id=utt.id)
            feeding = asyncio.create_task(self._feed(client, utt), name="makima-tts-feed")
            try:
                await self._tts._play(client, utt, output_emitter)
            finally:
                await utils.aio.cancel_and_wait(feeding)
            output_emitter.end_segment()

    async def _open(self, client: SpeakClient) -> Utterance | None:
        """The utterance, opened with the first text that is not only whitespace."""
        async for item in self._input_ch:
            if isinstance(item, str) and item.strip():
                self._mark_started()
                try:
                    return client.append(item)
                except SpeakError as err:
                    raise api_error(err) from None
        return None

    async def _feed(self, client: SpeakClient, utt: Utterance) -> None:
        """The rest of the text into the utterance, until a flush (or the end of input) ends it."""
        async for item in self._input_ch:
            if utt.done:
                return
            if not isinstance(item, str):  # a flush: the segment's text is complete
                break
            client.append(item)
        if not utt.done:
            client.end()
