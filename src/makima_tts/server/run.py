"""`makima-tts serve`: settings from the environment, CLI flags on top, uvicorn with a graceful shutdown.

uvicorn believes `X-Forwarded-For`/`X-Forwarded-Proto` only from `TTS_TRUSTED_PROXIES` (its own default
trusts 127.0.0.1, which would let any local client pick the address its limits count against).

On SIGTERM/SIGINT `GracefulServer` marks the replica as shutting down at once (`/ready` 503, the agent
`drain`, new WebSocket upgrades and HTTP speech 503 with Retry-After) while it still listens, so the
balancer sees why; it lets every session end properly (the utterance in flight finishes within
`TTS_SHUTDOWN_GRACE_S`, then terminals, `stopped{server_shutdown}`, close 1001); then it stops listening
and uvicorn closes the remaining connections. Log lines carry the replica id (`logs.py`).
"""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app, shutdown_sessions
from .auth import startup_warnings
from .logs import configure_process_logging, log_config, redact_uvicorn_logs
from .settings import Settings

log = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services):
        super().__init__(config)
        self.services = services

    def handle_exit(self, sig, frame) -> None:
        self.services.shutting_down = True  # at once: the main loop notices `should_exit` a tick later
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets=None) -> None:
        await shutdown_sessions(self.services)  # still listening: newcomers get a 503, not a refusal
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
        log_config=log_config(settings.replica_id),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    return uvicorn.Config(app, **{**options, **overrides})


def build_server(settings: Settings, **overrides) -> GracefulServer:
    app = create_app(settings)
    config = uvicorn_config(app, settings, **overrides)  # configures uvicorn's loggers
    redact_uvicorn_logs()
    for warning in startup_warnings(settings):
        log.warning("SECURITY: %s", warning)
    return GracefulServer(config, app.state.services)


def serve(host: str | None = None, port: int | None = None, model: str | None = None) -> None:
    """Run the server until SIGTERM/SIGINT; `host`, `port`, `model` override TTS_HOST, TTS_PORT, TTS_MODEL_ID."""
    overrides = {k: v for k, v in {"host": host, "port": port, "model_id": model}.items() if v is not None}
    settings = Settings(**overrides)
    configure_process_logging(settings.replica_id, settings.log_level)
    build_server(settings).run()
