"""HTTP errors: one JSON shape for every 4xx/5xx (`{"error": {"code", "message"}}`), documented in OpenAPI.

On the OpenAI-compatible paths (`/v1/...`) the same object also carries OpenAI's `type` and `param`, and
`code` uses OpenAI's names for a bad key and a rate limit, so OpenAI SDKs read our errors as their own.
A `VoiceError` carries only its code; `VOICE_STATUS` gives the HTTP status.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..voices import VoiceError
from .limits import RateLimited

OPENAI_PREFIX = "/v1/"
_OPENAI_CODES = {"UNAUTHORIZED": "invalid_api_key", "RATE_LIMITED": "rate_limit_exceeded"}
VOICE_STATUS = {  # `VoiceError.code` → HTTP status
    "VOICE_NOT_FOUND": 404,
    "VOICE_EXISTS": 409,
    "VOICE_READ_ONLY": 403,
    "INVALID_VOICE_ID": 422,
    "BAD_AUDIO": 422,
    "UNSUPPORTED_AUDIO": 415,
    "AUDIO_TOO_LARGE": 413,
    "VOICE_STORE_UNAVAILABLE": 503,
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


_DESCRIPTIONS = {
    401: "A valid access token is required (only when the server has TTS_AUTH_TOKENS)",
    400: "Bad request: the body cannot be parsed (or, OpenAI route, an unsupported response_format)",
    403: "Forbidden: the request's Origin is not allowed (or, voices, built-in voices are read-only)",
    404: "Voice (or page) not found",
    409: "Conflict (the voice id is taken, or the loaded model cannot clone voices)",
    413: "The upload is too large",
    415: "The upload is not audio in a format we can read",
    429: "Too many requests from this client (see Retry-After)",
    422: "Invalid input: the message says which field and what to fix",
    503: "The model is loading or failed to load, the replica is shutting down (see Retry-After and GET /ready),"
    " or the shared voice store cannot be reached",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


def error_body(path: str, status: int, code: str, message: str) -> dict:
    if not path.startswith(OPENAI_PREFIX):
        return {"error": {"code": code, "message": message}}
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": _OPENAI_CODES.get(code, code)}}


def _reply(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return JSONResponse(error_body(request.url.path, status, code, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _reply(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(VoiceError)
    async def _voice_error(request: Request, exc: VoiceError) -> JSONResponse:
        return _reply(request, VOICE_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        return _reply(request, 429, "RATE_LIMITED", exc.message, {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return _reply(request, 422, "INVALID_REQUEST", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return _reply(request, exc.status_code, code, str(exc.detail), exc.headers)
