"""OpenAI's speech API: `POST /v1/audio/speech`, `GET /v1/audio/voices`, `GET /v1/models[/{model}]`.

- `response_format` mp3 (the default), opus (Ogg), aac (ADTS), flac, wav, pcm: all 24 kHz mono, each
  streamed as it is encoded (encoders.py);
- `stream_format` "audio" (the file itself, the default) or "sse": `data: {"type": "speech.audio.delta",
  "audio": <base64 of the next bytes of the file>}` events, then one `speech.audio.done` with `usage`
  (input_tokens: text tokens, output_tokens: codec frames, 12.5 per second), or one `error` event if the
  synthesis fails after the stream began;
- `instructions`: the instruct prompt (VoiceDesign: the voice description; CustomVoice 1.7B: the style),
  a 400 on a model that has none; `speed` 0.25-4.0: the audio is time-stretched at the same pitch
  (tempo.py), still streamed;
- `voice`: a name or `{"id": ...}`, looked up as openai_voices describes; `model`: any name is accepted
  and spoken by the loaded model (`GET /v1/models` lists it and OpenAI's names).
Errors come in OpenAI's shape (http_errors).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..encoders import MEDIA_TYPES, make_encoder
from ..voices import VoiceError
from .deps import ServicesDep
from .http_errors import ApiError, error_body, error_responses
from .http_speech import Outcome, Speech, SpeechAsk, speech_response, start_speech
from .openai_voices import all_voices, unknown_voice_message, voice_for
from .services import Services

router = APIRouter(tags=["openai"])
OPENAI_SAMPLE_RATE = 24000
OPENAI_MODEL_NAMES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
SSE_MEDIA_TYPE = "text/event-stream"
_SPEECH_RESPONSES = {
    200: {
        "content": {**{media: {} for media in MEDIA_TYPES.values()}, SSE_MEDIA_TYPE: {}},
        "description": "The audio file streamed as it is generated, or (stream_format sse) events carrying it",
    },
    **error_responses(400, 401, 403, 429, 503, openai=True),
}


class VoiceRef(BaseModel):
    id: str = Field(..., min_length=1)


class SpeechBody(BaseModel):
    model: str = Field("tts-1", description="any name: the server speaks with its loaded model (GET /v1/models)")
    input: str = Field(..., min_length=1, description="the text to say")
    voice: str | VoiceRef = Field("default", description="our voice id or an OpenAI name (GET /v1/audio/voices)")
    instructions: str | None = Field(None, description="how to speak (VoiceDesign, CustomVoice 1.7B models)")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, description="faster (>1) or slower (<1), at the same pitch")
    stream_format: Literal["audio", "sse"] = "audio"


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _sse_events(speech: Speech, path: str) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(speech.chunks) as chunks:
        async for data in chunks:
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
    stats = speech.stats
    if stats.outcome is Outcome.COMPLETE:
        usage = {"input_tokens": stats.text_tokens, "output_tokens": stats.frames,
                 "total_tokens": stats.text_tokens + stats.frames}
        yield _sse({"type": "speech.audio.done", "usage": usage})
    elif stats.outcome is Outcome.ERROR:
        yield _sse({"type": "error", **error_body(path, 500, "SYNTHESIS_ERROR", stats.error or "synthesis failed")})


@router.post(
    "/v1/audio/speech",
    response_class=StreamingResponse,
    responses=_SPEECH_RESPONSES,
    summary="OpenAI's speech API: mp3, opus, aac, flac, wav or pcm, streamed as generated (or as SSE)",
)
async def create_speech(body: SpeechBody, request: Request, services: ServicesDep) -> StreamingResponse:
    requested = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    fmt, speed = body.response_format, body.speed
    ask = SpeechAsk(body.input, requested, None, OPENAI_SAMPLE_RATE, lambda rate: make_encoder(fmt, rate, speed),
                    body.instructions, alias=voice_for, text_param="input", instruct_param="instructions")
    try:
        speech = await start_speech(services, request, ask)
    except VoiceError as exc:
        message = await unknown_voice_message(services, requested, exc.message)
        raise ApiError(400, exc.code, message, param="voice") from None
    headers = {"X-Sample-Rate": str(OPENAI_SAMPLE_RATE)}
    if body.stream_format == "sse":
        speech = replace(speech, chunks=_sse_events(speech, request.url.path))
        return speech_response(speech, SSE_MEDIA_TYPE, {**headers, "X-Audio-Format": fmt})
    return speech_response(speech, MEDIA_TYPES[fmt], headers)


class VoiceOut(BaseModel):
    id: str
    name: str
    language: str | None
    alias_of: str | None = Field(description="an OpenAI name: the voice it speaks with")


class VoiceList(BaseModel):
    voices: list[VoiceOut]
    default: str


@router.get("/v1/audio/voices", response_model=VoiceList, responses=error_responses(401, 403, openai=True),
            summary="The voices /v1/audio/speech accepts, OpenAI's names with the voice each maps to")
async def list_voices(services: ServicesDep) -> VoiceList:
    voices = [VoiceOut(id=v.id, name=v.name, language=v.language, alias_of=v.alias_of)
              for v in await all_voices(services)]
    return VoiceList(voices=voices, default=services.settings.default_voice)


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0  # unknown
    owned_by: str = "makima-tts"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


def _model_names(services: Services) -> list[str]:
    """The loaded checkpoint (a local directory by its folder name, a hub model by its id), then OpenAI's."""
    model_id = services.settings.model_id
    local = Path(model_id).expanduser()
    return [local.name if local.is_dir() else model_id, *OPENAI_MODEL_NAMES]


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 403, openai=True),
            summary="The model names /v1/audio/speech accepts (all spoken by the loaded model)")
async def list_models(services: ServicesDep) -> ModelList:
    return ModelList(data=[ModelOut(id=name) for name in _model_names(services)])


@router.get("/v1/models/{model:path}", response_model=ModelOut,
            responses=error_responses(401, 403, 404, openai=True), summary="One model name")
async def get_model(model: str, services: ServicesDep) -> ModelOut:
    if model not in _model_names(services):
        raise ApiError(404, "model_not_found", f"no model {model!r}; GET /v1/models lists them", param="model")
    return ModelOut(id=model)
