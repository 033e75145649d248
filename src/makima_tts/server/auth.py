"""Who may use the server, decided in one place for HTTP and WebSocket alike.

- Origin: a browser's `Origin` must be in `TTS_ALLOWED_ORIGINS` (default: the server's own origin);
  requests without one (curl, SDKs, agents) pass.
- Tokens (only when `TTS_AUTH_TOKENS` is set): `Authorization: Bearer`, a `tts.token.<token>` WebSocket
  subprotocol entry, or `?token=`, in that order; compared in constant time, never logged.
- Route classes: `OPEN` paths (liveness, the pages and their files, the API description) never need a
  token, `OPS` paths (`/ready`, `/metrics`) only with `TTS_PROTECT_OPS`, every other path does (default
  deny: a route added later is protected without doing anything).
- The client a limit counts against: its token when tokens are on, else its address (`X-Forwarded-For` is
  only believed from `TTS_TRUSTED_PROXIES`, which uvicorn applies before the app sees the request).

`OriginGuard` and `TokenGuard` (ASGI middleware, see `app.create_app`) apply the rules to every request
before any route runs; the WebSocket route checks its token itself with the same functions, because the
protocol also accepts it in `start.authToken`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .http_errors import error_body
from .protocol import TOKEN_SUBPROTOCOL_PREFIX
from .settings import Settings

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/", "/listen", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
OPS_PATHS = frozenset({"/ready", "/metrics"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """Clients without Origin pass; browsers must be on the allowlist (default: the server's own origin)."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    allowed = settings.allowed_origins
    if "*" in allowed:
        return True
    if allowed:
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
    host = conn.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def presented_token(conn: HTTPConnection) -> str | None:
    """Authorization: Bearer, then a `tts.token.<token>` subprotocol entry, then `?token=` (in that order)."""
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for entry in conn.scope.get("subprotocols", []):
        if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return entry[len(TOKEN_SUBPROTOCOL_PREFIX):]
    return conn.query_params.get("token")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def token_valid(token: str | None, settings: Settings) -> bool:
    """Constant time: equal-length digests, every configured token compared (no early exit on a match)."""
    if token is None:
        return False
    presented = _digest(token)
    matches = [hmac.compare_digest(presented, _digest(t)) for t in settings.auth_tokens]
    return any(matches)


def needs_token(path: str, settings: Settings) -> bool:
    if not settings.auth_tokens or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return False
    return path not in OPS_PATHS or settings.protect_ops


def client_key(conn: HTTPConnection, settings: Settings) -> str:
    """What per-client limits count against: a digest of a valid token when tokens are on, else the address."""
    token = presented_token(conn)
    if settings.auth_tokens and token_valid(token, settings):
        return f"token:{_digest(token).hex()[:16]}"
    return f"addr:{conn.client.host if conn.client else 'unknown'}"


def listens_beyond_loopback(settings: Settings) -> bool:
    return settings.host not in LOOPBACK_HOSTS


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator must hear before the server takes requests."""
    warnings = []
    if listens_beyond_loopback(settings) and not settings.auth_tokens:
        warnings.append(
            f"listening on {settings.host} (beyond this machine) with no TTS_AUTH_TOKENS: anyone who can reach "
            "the port can synthesize speech and read, upload and delete voices; set TTS_AUTH_TOKENS (or "
            "TTS_AUTH_TOKENS_FILE) and put TLS in front (README: Security)"
        )
    if "*" in settings.allowed_origins:
        warnings.append("TTS_ALLOWED_ORIGINS=* lets pages on any site use this server from a visitor's browser")
    return warnings


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # before accept: the client gets HTTP 403
        return
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = error_body(scope["path"], status, code, message)
    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


class OriginGuard:
    """Outermost: a request from a foreign browser origin is refused (403) before anything else runs."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not origin_allowed(HTTPConnection(scope), self.settings):
            log.info("refused %s %s: Origin not allowed", scope["type"], scope["path"])
            await _refuse(scope, receive, send, 403, "ORIGIN_NOT_ALLOWED",
                          "this origin may not use the server (TTS_ALLOWED_ORIGINS)")
            return
        await self.app(scope, receive, send)


class TokenGuard:
    """Inside CORS (so preflights, which never carry credentials, are answered): HTTP requests to a
    protected path need a valid token (401 otherwise, naming no token)."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and needs_token(scope["path"], self.settings):
            token = presented_token(HTTPConnection(scope))
            if not token_valid(token, self.settings):
                log.info("refused %s %s: %s token", scope["method"], scope["path"], "no" if token is None else "invalid")
                message = "this server needs a valid access token (Authorization: Bearer <token>)"
                await _refuse(scope, receive, send, 401, "UNAUTHORIZED", message)
                return
        await self.app(scope, receive, send)
