"""HTTP errors: one JSON shape for every 4xx/5xx (`{"error": {"code", "message"}}`), documented in OpenAPI.

On the OpenAI-compatible paths (`/v1/...`) the same object also carries OpenAI's `type` and `param` (the
request field at fault, else null), `code` uses OpenAI's names for a bad key and a rate limit, and a body
that does not validate is a 400 (as OpenAI answers it, never FastAPI's 422 list), so OpenAI SDKs read our
errors as their own.
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


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str  # invalid_request_error | rate_limit_error | server_error
    param: str | None  # the request field at fault
    code: str


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.param = status, code, message, headers, param


_DESCRIPTIONS = {
    401: "A valid access token is required (only when the server has TTS_AUTH_TOKENS)",
    400: "Bad request: the body cannot be parsed (on /v1/: any invalid field, named in `param`; or instructions "
         "the loaded model cannot follow)",
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


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict]:
    model = OpenAIErrorBody if openai else ErrorBody
    return {s: {"model": model, "description": _DESCRIPTIONS[s]} for s in statuses}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def error_body(path: str, status: int, code: str, message: str, param: str | None = None) -> dict:
    if not is_openai_path(path):
        return {"error": {"code": code, "message": message}}
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": _OPENAI_CODES.get(code, code)}}


def _reply(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None,
           param: str | None = None):
    path = request.url.path
    if status == 422 and is_openai_path(path):
        status = 400  # OpenAI answers every invalid parameter with 400
    return JSONResponse(error_body(path, status, code, message, param), status_code=status, headers=headers)


def document_openai_errors(app: FastAPI) -> None:
    """The API description of the `/v1/` routes lists their 400s, not FastAPI's 422 (never answered there)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            for path, operations in generate()["paths"].items():
                for operation in operations.values() if is_openai_path(path) else ():
                    operation.get("responses", {}).pop("422", None)
        return app.openapi_schema

    app.openapi = openapi


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _reply(request, exc.status, exc.code, exc.message, exc.headers, exc.param)

    @app.exception_handler(VoiceError)
    async def _voice_error(request: Request, exc: VoiceError) -> JSONResponse:
        return _reply(request, VOICE_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        return _reply(request, 429, "RATE_LIMITED", exc.message, {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems, fields = [], []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
            fields.append(where or None)
        return _reply(request, 422, "INVALID_REQUEST", "; ".join(problems), param=fields[0] if fields else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return _reply(request, exc.status_code, code, str(exc.detail), exc.headers)
