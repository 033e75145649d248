"""Route dependencies: the app's `Services` (`ServicesDep`), and the loaded model (or a 503 that says when to
retry: while it loads, when its load failed, while the replica shuts down)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .http_errors import ApiError
from .model_manager import ModelUnavailable
from .services import Services

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..model.tts import TTSModel


def get_services(conn: HTTPConnection) -> Services:
    return conn.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def loaded_model(services: Services) -> tuple[TTSModel, Engine]:
    """The loaded model; waits for it while it loads (TTS_QUEUE_WHILE_LOADING) or answers 503."""
    models, settings = services.models, services.settings
    if services.shutting_down:
        raise ApiError(503, "SHUTTING_DOWN", f"replica {settings.replica_id} is shutting down; retry (another"
                       " replica answers)", {"Retry-After": "1"})
    retry = {"Retry-After": str(max(1, round(settings.loading_retry_after_ms / 1000)))}
    if not models.loaded and not settings.queue_while_loading:
        models.start_loading()
        raise ApiError(503, "MODEL_LOADING", f"{models.message}; retry shortly", retry)
    try:
        return await models.wait_loaded()
    except ModelUnavailable as exc:
        raise ApiError(503, "MODEL_UNAVAILABLE", str(exc), retry) from None
