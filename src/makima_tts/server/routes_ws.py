"""`/api/v1/speak` WebSocket endpoint: token, per-client and capacity checks, then a `Session`.

While the replica shuts down the upgrade itself is refused with HTTP 503 and `Retry-After` (a balancer
or client retries elsewhere); a full replica accepts, sends `SERVER_BUSY` and closes 1013.

`auth.OriginGuard` has refused foreign origins (403) before this runs. A session that brings no token at
the handshake opens and must send one in `start.authToken` (the session closes it with 4001 otherwise);
it counts against its address, one with a token against that token.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket

from .auth import client_key, presented_token, token_valid
from .http_errors import error_body
from .limits import RateLimited
from .protocol import PROTOCOL, CloseCode, dump
from .protocol import Error as ErrorMsg
from .services import Services
from .session import Session

router = APIRouter()
QUERY_DEFAULTS = ("voice", "language", "sampleRate", "encoding", "audioTransport")


async def _refuse(
    ws: WebSocket, subprotocol: str | None, code: str, message: str, close_code: int, retry_after_ms: int | None = None
) -> None:
    await ws.accept(subprotocol=subprotocol)
    await ws.send_json(dump(ErrorMsg(code=code, message=message, recoverable=False, retryAfterMs=retry_after_ms)))
    await ws.close(close_code)


@router.websocket("/api/v1/speak")
async def speak_ws(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    settings = services.settings
    if services.shutting_down:
        services.metrics.errors.labels(code="SHUTTING_DOWN").inc()
        message = f"replica {settings.replica_id} is shutting down; connect again (another replica answers)"
        body = error_body(ws.url.path, 503, "SHUTTING_DOWN", message)
        await ws.send_denial_response(JSONResponse(body, status_code=503, headers={"Retry-After": "1"}))
        return
    subprotocol = PROTOCOL if PROTOCOL in ws.scope.get("subprotocols", []) else None
    authed = not settings.auth_tokens
    if not authed:
        token = presented_token(ws)
        if token is not None:
            if not token_valid(token, settings):
                services.metrics.errors.labels(code="UNAUTHORIZED").inc()
                await _refuse(ws, subprotocol, "UNAUTHORIZED", "invalid token", CloseCode.UNAUTHORIZED)
                return
            authed = True
    if services.shutting_down or len(services.sessions) >= settings.max_sessions:
        services.metrics.errors.labels(code="SERVER_BUSY").inc()
        await _refuse(ws, subprotocol, "SERVER_BUSY", "too many sessions (or shutting down); retry later", CloseCode.SERVER_BUSY)
        return
    try:
        held = services.limits.hold_session(client_key(ws, settings))
    except RateLimited as exc:
        services.metrics.errors.labels(code="RATE_LIMITED").inc()
        await _refuse(ws, subprotocol, "RATE_LIMITED", exc.message, CloseCode.SERVER_BUSY, exc.retry_after_s * 1000)
        return
    defaults = {k: ws.query_params[k] for k in QUERY_DEFAULTS if k in ws.query_params}
    try:
        await Session(ws, services, authed=authed, subprotocol=subprotocol).run(defaults)
    finally:
        held.release()
