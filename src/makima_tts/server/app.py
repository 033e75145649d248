"""`create_app(settings)`: the FastAPI app and its lifespan. Nothing is created at import time, so tests
and one process can hold several apps.

Shutdown order (see `run.GracefulServer`): stop accepting, tell every session (`Session.shutdown`: the
current utterance may finish within `TTS_SHUTDOWN_GRACE_S`, every other one gets a terminal, then
`stopped{server_shutdown}`), then close the engine.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..voices import VoiceStore
from .http_errors import install_error_handlers
from .metrics import Metrics
from .model_manager import ModelManager
from .routes_health import STATIC_DIR
from .routes_health import router as health_router
from .routes_speech import router as speech_router
from .routes_voices import router as voices_router
from .routes_ws import router as ws_router
from .services import Services
from .settings import Settings

log = logging.getLogger(__name__)


async def shutdown_sessions(services: Services) -> None:
    services.shutting_down = True
    sessions = list(services.sessions)
    if sessions:
        log.info("shutting down %d session(s)", len(sessions))
        await asyncio.gather(*(s.shutdown() for s in sessions), return_exceptions=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    voices = VoiceStore(
        settings.voices_dir,
        settings.data_dir,
        cache_size=settings.voice_cache_size,
        min_seconds=settings.voice_min_seconds,
        max_seconds=settings.voice_max_seconds,
        max_bytes=settings.max_upload_bytes,
    )
    def prepare_default_voice(tts) -> None:
        """Compute the default voice's prompt while loading, so the first request does not pay for it."""
        if tts.config.tts_model_type == "base" and voices.get(settings.default_voice).provisioned:
            voices.prompt(settings.default_voice, tts)

    models = ModelManager(settings, after_load=prepare_default_voice)
    services = Services(settings=settings, models=models, voices=voices, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if settings.preload:
            services.models.start_loading()
        yield
        await shutdown_sessions(services)
        await services.models.close()

    app = FastAPI(
        title="makima-tts",
        version=__version__,
        description="Streaming text to speech (Qwen3-TTS 12Hz). WebSocket protocol v1 at /api/v1/speak.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(voices_router)
    app.include_router(speech_router)
    app.include_router(ws_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app
