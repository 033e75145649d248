"""The voices API (`/api/v1/voices`, HTTP) for the client: list, get, upload (clone) and delete, with httpx.

A 4xx/5xx answer becomes a `SpeakError` with the server's code (`VOICE_NOT_FOUND`, `BAD_AUDIO`, ...) and
the HTTP status.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict

from .errors import ErrorCode, SpeakError
from .link import auth_headers

VOICES_PATH = "/api/v1/voices"


class Voice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    language: str | None = None
    description: str = ""
    isDefault: bool = False
    mode: str  # icl | xvector | preset
    builtIn: bool = False
    createdAt: str | None = None


class VoiceList(BaseModel):
    voices: list[Voice]
    default: str


class VoicesClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 120.0):
        self._http = httpx.AsyncClient(base_url=base_url, headers=auth_headers(token), timeout=timeout)

    async def list(self) -> VoiceList:
        return VoiceList.model_validate(await self._call("GET", ""))

    async def get(self, voice_id: str) -> Voice:
        return Voice.model_validate(await self._call("GET", f"/{voice_id}"))

    async def upload(self, audio: bytes | Path, *, transcript: str | None = None, name: str | None = None,
                     language: str | None = None, voice_id: str | None = None) -> Voice:
        """Clone a voice from a reference clip (WAV/FLAC/OGG): ICL with a transcript, else x-vector only."""
        data = audio.read_bytes() if isinstance(audio, Path) else audio
        fields = {"transcript": transcript, "name": name, "language": language, "id": voice_id}
        return Voice.model_validate(await self._call(
            "POST", "", files={"audio": ("reference.wav", data)}, data={k: v for k, v in fields.items() if v is not None}
        ))

    async def delete(self, voice_id: str) -> None:
        await self._call("DELETE", f"/{voice_id}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs) -> dict | None:
        try:
            response = await self._http.request(method, VOICES_PATH + path, **kwargs)
        except httpx.HTTPError as exc:
            raise SpeakError(ErrorCode.CONNECTION_FAILED, f"{method} {self._http.base_url}{VOICES_PATH}{path}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json()["error"]
                code, message = detail["code"], detail["message"]
            except (ValueError, KeyError, TypeError):
                code, message = f"HTTP_{response.status_code}", response.text[:200]
            retry = response.headers.get("Retry-After")
            raise SpeakError(code, message, status=response.status_code,
                             retry_after_ms=int(retry) * 1000 if retry and retry.isdigit() else None)
        return response.json() if response.content else None
