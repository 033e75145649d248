"""`POST /api/v1/speak`: say a text over HTTP; the audio streams back as it is generated (a WAV with an
open-ended header, or raw PCM, at the asked rate and encoding). See http_speech for the shared work and
routes_openai for OpenAI's `POST /v1/audio/speech`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..encoders import PcmEncoder
from .deps import ServicesDep
from .http_errors import error_responses
from .http_speech import SpeechAsk, speech_response, start_speech

router = APIRouter(tags=["speech"])
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


@router.post(
    "/api/v1/speak",
    response_class=StreamingResponse,
    responses={**_AUDIO_RESPONSES, **error_responses(400, 401, 403, 404, 422, 429, 503)},
    summary="Say a text; the audio streams back as it is generated",
)
async def speak(body: SpeakBody, request: Request, services: ServicesDep) -> StreamingResponse:
    wav, encoding = body.format == "wav", body.encoding
    ask = SpeechAsk(body.text, body.voice, body.language, body.sampleRate,
                    lambda rate: PcmEncoder(rate, header=wav, encoding=encoding))
    speech = await start_speech(services, request, ask)
    headers = {"X-Sample-Rate": str(body.sampleRate), "X-Encoding": encoding}
    return speech_response(speech, "audio/wav" if wav else "audio/pcm", headers)
