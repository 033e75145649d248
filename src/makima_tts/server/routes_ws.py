"""`/api/v1/speak` WebSocket endpoint: Origin, token and capacity checks, then a `Session`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.websockets import WebSocket

from .auth import origin_allowed, presented_token, token_valid
from .protocol import PROTOCOL, dump
from .protocol import Error as ErrorMsg
from .services import Services
from .session import Session

router = APIRouter()
QUERY_DEFAULTS = ("voice", "language", "sampleRate", "encoding", "audioTransport")


async def _refuse(ws: WebSocket, subprotocol: str | None, code: str, message: str, close_code: int) -> None:
    await ws.accept(subprotocol=subprotocol)
    await ws.send_json(dump(ErrorMsg(code=code, message=message, recoverable=False)))
    await ws.close(close_code)


@router.websocket("/api/v1/speak")
async def speak_ws(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    settings = services.settings
    if not origin_allowed(ws, settings):
        await ws.close(1008)  # before accept: the client gets HTTP 403
        return
    subprotocol = PROTOCOL if PROTOCOL in ws.scope.get("subprotocols", []) else None
    authed = not settings.auth_tokens
    if not authed:
        token = presented_token(ws)
        if token is not None:
            if not token_valid(token, settings):
                services.metrics.errors.labels(code="UNAUTHORIZED").inc()
                await _refuse(ws, subprotocol, "UNAUTHORIZED", "invalid token", 4001)
                return
            authed = True
    if services.shutting_down or len(services.sessions) >= settings.max_sessions:
        services.metrics.errors.labels(code="SERVER_BUSY").inc()
        await _refuse(ws, subprotocol, "SERVER_BUSY", "too many sessions (or shutting down); retry later", 1013)
        return
    defaults = {k: ws.query_params[k] for k in QUERY_DEFAULTS if k in ws.query_params}
    await Session(ws, services, authed=authed, subprotocol=subprotocol).run(defaults)
