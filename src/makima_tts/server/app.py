"""`create_app(settings)`: the FastAPI app and its lifespan. Nothing is created at import time, so tests
and one process can hold several apps.

Every request passes `auth.OriginGuard` (foreign browser origins: 403), CORS (preflights, only for the
listed origins) and `auth.TokenGuard` (401 without a valid token) before any route; see README "Security".

Start-up: the voice store is checked (`VoiceStore.verify_store`: a store that ignores conditional writes
stops the start unless allowed), the HAProxy agent starts (`TTS_AGENT_PORT`), the model preloads.

Shutdown order (see `run.GracefulServer`): refuse new work (`/ready`, new WebSocket upgrades and HTTP
speech answer 503 with Retry-After, the agent says `drain`), tell every session (`Session.shutdown`: the
current utterance may finish within `TTS_SHUTDOWN_GRACE_S`, every other one gets a terminal, then
`stopped{server_shutdown}` and close 1001), stop listening, then close the agent and the engine.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from .. import __version__
from ..voices import VoiceResolver, VoiceStore, open_objects
from .agent import CapacityAgent
from .auth import OriginGuard, TokenGuard
from .http_errors import document_openai_errors, install_error_handlers
from .limits import ClientLimits
from .metrics import Metrics
from .model_manager import ModelManager
from .routes_health import STATIC_DIR
from .routes_health import router as health_router
from .routes_llm import router as llm_router
from .routes_openai import router as openai_router
from .routes_speech import router as speech_router
from .routes_voices import router as voices_router
from .routes_ws import router as ws_router
from .services import Services
from .settings import Settings

log = logging.getLogger(__name__)


async def shutdown_sessions(services: Services) -> None:
    services.shutting_down = True
    sessions = list(services.sessions)
    log.info("shutting down: no new sessions; ending %d open session(s)", len(sessions))
    if sessions:
        await asyncio.gather(*(s.shutdown() for s in sessions), return_exceptions=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    objects = open_objects(settings.voice_store, settings.data_dir, endpoint_url=settings.s3_endpoint_url,
                           region=settings.s3_region, addressing_style=settings.s3_addressing_style,
                           timeout_s=settings.voice_store_timeout_s)
    voices = VoiceStore(
        settings.voices_dir,
        settings.data_dir,
        objects=objects,
        allow_unconditional=settings.voice_store_allow_unconditional,
        cache_size=settings.voice_cache_size,
        min_seconds=settings.voice_min_seconds,
        max_seconds=settings.voice_max_seconds,
        max_bytes=settings.max_upload_bytes,
    )
    def prepare_default_voice(tts) -> None:
        """Compute the default voice's prompt while loading, so the first request does not pay for it."""
        if tts.config.tts_model_type != "base":
            return
        voice = voices.get(settings.default_voice)  # the manifest, read once
        if voice.provisioned:
            voices.prompt_for(voice, tts)

    metrics = Metrics()
    models = ModelManager(settings, after_load=prepare_default_voice, on_first_audio=metrics.observe_first_audio)
    resolver = VoiceResolver(voices, default_voice=settings.default_voice, default_instruct=settings.default_instruct,
                             default_language=settings.default_language)
    services = Services(settings=settings, models=models, voices=voices, resolver=resolver, metrics=metrics,
                        limits=ClientLimits(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await asyncio.to_thread(voices.verify_store, settings.replica_id)
        agent = CapacityAgent(services)
        if settings.agent_port:
            await agent.start(settings.host, settings.agent_port)
        if settings.preload:
            services.models.start_loading()
        yield
        await shutdown_sessions(services)
        await agent.close()
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
    app.include_router(openai_router)
    app.include_router(ws_router)
    app.include_router(llm_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    install_access_rules(app, settings)
    document_openai_errors(app)
    return app


def install_access_rules(app: FastAPI, settings: Settings) -> None:
    """Outermost first: Origin (403), CORS for the listed origins, tokens (401)."""
    app.add_middleware(TokenGuard, settings=settings)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-Sample-Rate", "X-Encoding"],
            max_age=600,
        )
    app.add_middleware(OriginGuard, settings=settings)
