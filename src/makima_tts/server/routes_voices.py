"""`/api/v1/voices`: list, show, fetch the reference clip, upload (clone) and delete voices.

Each upload counts against its client's `TTS_VOICE_UPLOADS_PER_HOUR` before it is decoded or cloned.
Uploaded voices live in the shared voice store (`TTS_VOICE_STORE`); when it cannot be reached these routes
answer 503 `VOICE_STORE_UNAVAILABLE`, naming the store and the cause.
"""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, File, Form, Path, Request, Response, UploadFile
from pydantic import BaseModel

from ..voices import Voice, VoiceExists, VoiceNotFound, VoiceReadOnly, check_voice_id
from ..voices.resolve import preset_voice, preset_voices
from .auth import client_key
from .deps import ServicesDep, loaded_model
from .http_errors import ApiError, error_responses
from .services import Services

router = APIRouter(prefix="/api/v1/voices", tags=["voices"])
VoiceId = Path(description="voice id: ^[a-z0-9][a-z0-9_-]{0,63}$", max_length=200)


class VoiceOut(BaseModel):
    id: str
    name: str
    language: str | None
    description: str
    isDefault: bool
    mode: str
    builtIn: bool
    createdAt: str | None
    provisioned: bool
    transcript: str | None


class VoiceList(BaseModel):
    voices: list[VoiceOut]
    default: str


async def _find(services: Services, voice_id: str) -> Voice:
    return preset_voice(voice_id, services.models.tts) or await asyncio.to_thread(services.voices.get, voice_id)


@router.get("", response_model=VoiceList, responses=error_responses(503), summary="List the voices")
async def list_voices(services: ServicesDep) -> VoiceList:
    stored = await asyncio.to_thread(services.voices.list)
    presets = [v for v in preset_voices(services.models.tts) if v.id not in {s.id for s in stored}]
    default = services.settings.default_voice
    return VoiceList(voices=[VoiceOut(**v.to_json(default)) for v in presets + stored], default=default)


@router.get("/{voice_id}", response_model=VoiceOut, responses=error_responses(404, 422, 503),
            summary="One voice")
async def get_voice(services: ServicesDep, voice_id: str = VoiceId) -> VoiceOut:
    return VoiceOut(**(await _find(services, voice_id)).to_json(services.settings.default_voice))


@router.get(
    "/{voice_id}/audio",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}, "description": "The reference clip"},
               **error_responses(404, 422, 503)},
    summary="The voice's reference clip",
)
async def get_voice_audio(services: ServicesDep, voice_id: str = VoiceId) -> Response:
    voice = await _find(services, voice_id)
    if voice.clip is None:
        raise VoiceNotFound(f"voice {voice_id!r} has no reference clip ({voice.setup_hint or 'preset speaker'})")
    clip = await asyncio.to_thread(services.voices.clip, voice)
    return Response(clip, media_type="audio/wav",
                    headers={"Content-Disposition": f'attachment; filename="{voice_id}.wav"'})


@router.post(
    "",
    response_model=VoiceOut,
    status_code=201,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
    summary="Clone a voice from a reference clip",
    description=(
        "Multipart upload: `audio` (WAV, FLAC or OGG; mono or stereo; 1-30 s by default), optional `transcript`"
        " (with it the voice clones in ICL mode, without it in x-vector-only mode), `name`, `language`, `id`."
    ),
)
async def create_voice(
    request: Request,
    services: ServicesDep,
    audio: UploadFile = File(..., description="reference clip"),
    transcript: str | None = Form(None, max_length=2000),
    name: str | None = Form(None, max_length=200),
    language: str | None = Form(None, max_length=64),
    id: str | None = Form(None, max_length=200),
) -> VoiceOut:
    services.limits.count_upload(client_key(request, services.settings))
    store = services.voices
    voice_id = check_voice_id(id) if id else f"voice-{secrets.token_hex(4)}"
    if preset_voice(voice_id, services.models.tts):
        raise VoiceExists(f"voice id {voice_id!r} is a preset speaker; choose another id")
    await asyncio.to_thread(store.check_free, voice_id)
    try:
        language = services.models.canonical_language(language) if language else None
    except ValueError as exc:
        raise ApiError(422, "INVALID_REQUEST", f"language: {exc}") from None
    data = await audio.read(store.max_bytes + 1)
    wav = await asyncio.to_thread(store.decode_upload, data)
    tts, _ = await loaded_model(services)
    if tts.config.tts_model_type != "base":
        raise ApiError(
            409, "CANNOT_CLONE", f"the loaded model ({tts.config.tts_model_type}) cannot clone voices; load a Base model"
        )
    voice = await services.models.run_blocking(
        lambda: store.add(voice_id, wav, model=tts, transcript=transcript, name=name, language=language)
    )
    return VoiceOut(**voice.to_json(services.settings.default_voice))


@router.delete(
    "/{voice_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(403, 404, 422, 503),
    summary="Delete an uploaded voice",
)
async def delete_voice(services: ServicesDep, voice_id: str = VoiceId) -> Response:
    if preset_voice(voice_id, services.models.tts):
        raise VoiceReadOnly(f"voice {voice_id!r} is a preset speaker of the model and cannot be deleted")
    await asyncio.to_thread(services.voices.delete, voice_id)
    return Response(status_code=204)
