"""WebSocket admission: the Origin allowlist and bearer tokens (never logged)."""

from __future__ import annotations

import hmac

from starlette.websockets import WebSocket

from .protocol import TOKEN_SUBPROTOCOL_PREFIX
from .settings import Settings


def origin_allowed(ws: WebSocket, settings: Settings) -> bool:
    """Clients without Origin (curl, wscat, agents) pass; browsers must be on the allowlist (default:
    the server's own origin)."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    allowed = settings.allowed_origins
    if "*" in allowed:
        return True
    if allowed:
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
    host = ws.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def presented_token(ws: WebSocket) -> str | None:
    """Authorization: Bearer, then a `tts.token.<token>` subprotocol entry, then `?token=` (in that order)."""
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for entry in ws.scope.get("subprotocols", []):
        if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return entry[len(TOKEN_SUBPROTOCOL_PREFIX):]
    return ws.query_params.get("token")


def token_valid(token: str | None, settings: Settings) -> bool:
    return token is not None and any(hmac.compare_digest(token.encode(), t.encode()) for t in settings.auth_tokens)
