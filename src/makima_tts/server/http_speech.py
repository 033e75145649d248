"""One-shot HTTP speech, shared by `POST /api/v1/speak` and OpenAI's `POST /v1/audio/speech`.

`start_speech` checks everything a client can get wrong (text, language, voice, instructions) and answers
it with a 4xx before any audio; then `Speech.chunks` yields the encoded file as it is generated:

    text -> pieces (segmenter) -> one engine job each -> AudioFrame (24 kHz float32, 80 ms)
        -> PcmStream (resampled to the asked rate) -> StreamEncoder -> bytes

A client that hangs up cancels the engine job. Each synthesis holds one of its client's
`TTS_MAX_SYNTHESES_PER_CLIENT` slots until its response ends (`HeldStreamingResponse`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..audio import PcmStream
from ..encoders import StreamEncoder
from ..engine.stream import stream_events
from ..engine.types import AudioFrame, Finished
from .auth import client_key
from .deps import loaded_model
from .http_errors import ApiError
from .limits import Held
from .segmenter import split_text
from .services import Services
from .speech_requests import check_voice, resolve_voicing

log = logging.getLogger(__name__)


class HeldStreamingResponse(StreamingResponse):
    """A streaming response that gives its client's synthesis slot back once it has ended, however it ends."""

    def __init__(self, *args, held: Held, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.held.release()


@dataclass(frozen=True)
class SpeechAsk:
    """One HTTP speech request, whichever route it came by."""

    text: str
    voice: str | None
    language: str | None
    sample_rate: int
    make_encoder: Callable[[int], StreamEncoder]  # sample rate -> a fresh encoder for this response
    instruct: str | None = None
    alias: Callable[[Services, str], Awaitable[str]] | None = None  # the route's voice names -> our voice ids
    text_param: str = "text"  # the request fields that carried the text and the instruct (named in errors)
    instruct_param: str = "instruct"


class Outcome(enum.Enum):
    CANCELLED = "cancelled"  # the client left (or the body was never read to the end)
    ERROR = "error"
    COMPLETE = "complete"


@dataclass
class SpeechStats:
    """What one response produced; final once `Speech.chunks` is exhausted."""

    text_tokens: int = 0
    frames: int = 0
    samples: int = 0  # at the response's sample rate
    outcome: Outcome = Outcome.CANCELLED
    error: str | None = None  # the engine's message (safe for clients) when outcome is ERROR


@dataclass
class Speech:
    chunks: AsyncIterator[bytes]
    held: Held
    stats: SpeechStats = field(default_factory=SpeechStats)


def _check_text(text: str, limit: int, param: str) -> None:
    if not text.strip():
        raise ApiError(422, "INVALID_TEXT", f"{param} is empty", param=param)
    if len(text) > limit:
        raise ApiError(422, "INVALID_TEXT", f"{param} is {len(text)} characters; the limit is {limit}", param=param)


async def start_speech(services: Services, request: Request, ask: SpeechAsk) -> Speech:
    """Validate `ask` (4xx on anything wrong), hold a synthesis slot, and return the audio to stream."""
    held = services.limits.hold_synthesis(client_key(request, services.settings))
    try:
        return await _start(services, held, ask)
    except BaseException:
        held.release()
        raise


async def _start(services: Services, held: Held, ask: SpeechAsk) -> Speech:
    settings = services.settings
    _check_text(ask.text, settings.max_text_chars, ask.text_param)
    try:
        language = services.models.canonical_language(ask.language)
    except ValueError as exc:
        raise ApiError(422, "INVALID_REQUEST", f"language: {exc}") from None
    voice = ask.voice or settings.default_voice
    if ask.alias is not None:
        voice = await ask.alias(services, voice)
    checked = await check_voice(services, voice)  # VoiceError → 4xx before loading anything
    tts, engine = await loaded_model(services)
    if ask.instruct and not tts.config.supports_instruct:
        model = f"{tts.config.tts_model_type} {tts.config.tts_model_size}"
        raise ApiError(400, "INSTRUCT_UNSUPPORTED",
                       f"the loaded model ({model}) takes no {ask.instruct_param}: only VoiceDesign and CustomVoice "
                       f"1.7B models do; leave {ask.instruct_param} out", param=ask.instruct_param)
    voicing = await resolve_voicing(services, tts, voice, language, checked)
    requests = [voicing.request(piece) for piece in split_text(ask.text)]
    if ask.instruct:
        requests = [replace(r, instruct=ask.instruct) for r in requests]
    stats = SpeechStats(text_tokens=sum(len(tts.tokenizer.encode(r.text)) for r in requests))
    resampler = PcmStream(tts.sample_rate, ask.sample_rate, "pcm16")
    encoder = ask.make_encoder(ask.sample_rate)

    async def chunks() -> AsyncIterator[bytes]:
        started, first, engine_s = time.monotonic(), None, 0.0
        try:
            for request in requests:
                began = time.monotonic()
                async with contextlib.aclosing(stream_events(engine, request)) as events:
                    async for event in events:
                        if isinstance(event, AudioFrame):
                            samples = resampler.convert(event.audio)
                            first = first or time.monotonic()
                            stats.frames += 1
                            stats.samples += samples.shape[0]
                            if data := encoder.encode(samples):
                                yield data
                        elif isinstance(event, Finished) and event.error is not None:
                            log.error("HTTP speech failed: %s", event.error)
                            services.metrics.errors.labels(code="SYNTHESIS_ERROR").inc()
                            stats.outcome, stats.error = Outcome.ERROR, event.error
                            return
                engine_s += time.monotonic() - began
            tail = resampler.finish()
            stats.samples += tail.shape[0]
            if data := encoder.encode(tail) + encoder.finish():
                yield data
            stats.outcome = Outcome.COMPLETE
        finally:
            ttfa = first - started if first else None
            services.metrics.observe_utterance(stats.outcome.value, "http", ttfa, engine_s,
                                               stats.samples / ask.sample_rate)

    return Speech(chunks(), held, stats)


def speech_response(speech: Speech, media_type: str, headers: dict[str, str]) -> HeldStreamingResponse:
    return HeldStreamingResponse(speech.chunks, media_type=media_type, held=speech.held,
                                 headers={"Cache-Control": "no-store", **headers})
