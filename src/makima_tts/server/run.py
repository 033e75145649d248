"""`makima-tts serve`: settings from the environment, CLI flags on top, uvicorn with a graceful shutdown.

uvicorn believes `X-Forwarded-For`/`X-Forwarded-Proto` only from `TTS_TRUSTED_PROXIES` (its own default
trusts 127.0.0.1, which would let any local client pick the address its limits count against).

On SIGTERM/SIGINT `GracefulServer` first stops accepting and lets every session end properly (terminals,
`stopped{server_shutdown}`, close 1001) before uvicorn closes the remaining connections.
"""

from __future__ import annotations

import logging
import re

import uvicorn

from .app import create_app, shutdown_sessions
from .auth import startup_warnings
from .settings import Settings

log = logging.getLogger(__name__)


class RedactTokens(logging.Filter):
    """uvicorn logs request paths with their query: never let a `?token=` reach the log."""

    _token = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)

    def _clean(self, value):
        return self._token.sub(r"\1[redacted]", value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        return True


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services):
        super().__init__(config)
        self.services = services

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the sessions wind down
        await shutdown_sessions(self.services)
        await super().shutdown(sockets=sockets)


def uvicorn_config(app, settings: Settings, **overrides) -> uvicorn.Config:
    options = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_interval_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s + 5,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    return uvicorn.Config(app, **{**options, **overrides})


def build_server(settings: Settings, **overrides) -> GracefulServer:
    app = create_app(settings)
    config = uvicorn_config(app, settings, **overrides)  # configures uvicorn's loggers
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    for warning in startup_warnings(settings):
        log.warning("SECURITY: %s", warning)
    return GracefulServer(config, app.state.services)


def serve(host: str | None = None, port: int | None = None, model: str | None = None) -> None:
    """Run the server until SIGTERM/SIGINT; `host`, `port`, `model` override TTS_HOST, TTS_PORT, TTS_MODEL_ID."""
    overrides = {k: v for k, v in {"host": host, "port": port, "model_id": model}.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_server(settings).run()
