"""One-shot HTTP speech: `POST /api/v1/speak` and the OpenAI-compatible `POST /v1/audio/speech`.

Both stream the audio as it is generated (a WAV with an open-ended header, or raw PCM); a client that
hangs up cancels the engine job. Voice and text problems are answered with a 4xx before any audio.
Each synthesis holds one of its client's `TTS_MAX_SYNTHESES_PER_CLIENT` slots until its response ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from ..audio import PcmStream, wav_header
from ..engine.stream import stream_events
from ..engine.types import AudioFrame, Finished
from ..voices import VoiceError
from .auth import client_key
from .deps import ServicesDep, loaded_model
from .http_errors import ApiError, error_responses
from .limits import Held
from .segmenter import split_text
from .services import Services
from .speech_requests import check_voice, resolve_voicing

log = logging.getLogger(__name__)
router = APIRouter(tags=["speech"])
OPENAI_SAMPLE_RATE = 24000
# OpenAI's voice names: clients often send one; they get the default voice.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)
SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]
_AUDIO_RESPONSES = {
    200: {
        "content": {"audio/wav": {}, "audio/pcm": {}},
        "description": "Audio streamed as it is generated (mono; WAV header with open-ended sizes, or raw PCM)",
    }
}


class SpeakBody(BaseModel):
    text: str = Field(..., min_length=1, description="what to say")
    voice: str | None = Field(None, description="voice id (GET /api/v1/voices); default: TTS_DEFAULT_VOICE")
    language: str | None = Field(None, description="a language of the model, or 'auto'")
    format: Literal["wav", "pcm"] = Field("wav", description="wav: a WAV file; pcm: raw little-endian samples")
    encoding: Literal["pcm16", "pcm32f"] = "pcm16"
    sampleRate: SampleRate = 24000


class OpenAISpeechBody(BaseModel):
    model: str = Field("tts-1", description="accepted for compatibility; the server speaks with its loaded model")
    input: str = Field(..., min_length=1)
    voice: str = "default"
    response_format: str = Field("wav", description="wav or pcm (24 kHz 16-bit mono little-endian)")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="accepted for compatibility; only 1.0 is honoured")
    instructions: str | None = Field(None, description="voice instructions (VoiceDesign / CustomVoice 1.7B models)")


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
    encoding: str
    wav: bool  # a WAV header first (else raw PCM)
    instruct: str | None = None


async def _speech(services: Services, request: Request, ask: SpeechAsk) -> StreamingResponse:
    held = services.limits.hold_synthesis(client_key(request, services.settings))
    try:
        return await _start_speech(services, held, ask)
    except BaseException:
        held.release()
        raise


async def _start_speech(services: Services, held: Held, ask: SpeechAsk) -> StreamingResponse:
    text, language, sample_rate, encoding = ask.text, ask.language, ask.sample_rate, ask.encoding
    settings = services.settings
    if not text.strip():
        raise ApiError(422, "INVALID_TEXT", "text is empty")
    if len(text) > settings.max_text_chars:
        raise ApiError(422, "INVALID_TEXT", f"text is {len(text)} characters; the limit is {settings.max_text_chars}")
    try:
        language = services.models.canonical_language(language)
    except ValueError as exc:
        raise ApiError(422, "INVALID_REQUEST", f"language: {exc}") from None
    voice = ask.voice or settings.default_voice
    checked = await check_voice(services, voice)  # VoiceError → 404 before loading anything
    tts, engine = await loaded_model(services)
    voicing = await resolve_voicing(services, tts, voice, language, checked)
    requests = [voicing.request(piece) for piece in split_text(text)]
    if ask.instruct and tts.config.supports_instruct:
        requests = [replace(r, instruct=ask.instruct) for r in requests]
    out = PcmStream(tts.sample_rate, sample_rate, encoding)

    async def body() -> AsyncIterator[bytes]:
        started, first, samples, outcome, engine_s = time.monotonic(), None, 0, "cancelled", 0.0
        try:
            if ask.wav:
                yield wav_header(sample_rate, encoding)
            for request in requests:
                began = time.monotonic()
                async with contextlib.aclosing(stream_events(engine, request)) as events:
                    async for event in events:
                        if isinstance(event, AudioFrame):
                            chunk = out.convert(event.audio)
                            first = first or time.monotonic()
                            samples += chunk.shape[0]
                            yield out.encode(chunk)
                        elif isinstance(event, Finished) and event.error is not None:
                            log.error("HTTP speech failed: %s", event.error)
                            services.metrics.errors.labels(code="SYNTHESIS_ERROR").inc()
                            outcome = "error"
                            return
                engine_s += time.monotonic() - began
            tail = out.finish()
            samples += tail.shape[0]
            yield out.encode(tail)
            outcome = "complete"
        finally:
            ttfa = first - started if first else None
            services.metrics.observe_utterance(outcome, "http", ttfa, engine_s, samples / sample_rate)

    media = "audio/wav" if ask.wav else "audio/pcm"
    headers = {"X-Sample-Rate": str(sample_rate), "X-Encoding": encoding, "Cache-Control": "no-store"}
    return HeldStreamingResponse(body(), media_type=media, headers=headers, held=held)


@router.post(
    "/api/v1/speak",
    response_class=StreamingResponse,
    responses={**_AUDIO_RESPONSES, **error_responses(400, 401, 403, 404, 422, 429, 503)},
    summary="Say a text; the audio streams back as it is generated",
)
async def speak(body: SpeakBody, request: Request, services: ServicesDep) -> StreamingResponse:
    ask = SpeechAsk(body.text, body.voice, body.language, body.sampleRate, body.encoding, body.format == "wav")
    return await _speech(services, request, ask)


@router.post(
    "/v1/audio/speech",
    response_class=StreamingResponse,
    responses={**_AUDIO_RESPONSES, **error_responses(400, 401, 403, 404, 422, 429, 503)},
    summary="OpenAI-compatible speech (response_format wav or pcm)",
)
async def openai_speech(
    body: OpenAISpeechBody, request: Request, services: ServicesDep
) -> StreamingResponse:
    fmt = body.response_format.lower()
    if fmt not in ("wav", "pcm"):
        raise ApiError(400, "UNSUPPORTED_FORMAT", f"response_format {body.response_format!r} is not supported; use wav or pcm")
    voice = body.voice
    if voice.lower() in OPENAI_VOICES:
        try:
            await check_voice(services, voice.lower())
            voice = voice.lower()
        except VoiceError:
            voice = services.settings.default_voice
    # OpenAI's pcm and wav are 24 kHz 16-bit mono
    ask = SpeechAsk(body.input, voice, None, OPENAI_SAMPLE_RATE, "pcm16", fmt == "wav", body.instructions)
    return await _speech(services, request, ask)
