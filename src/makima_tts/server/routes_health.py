"""Health, readiness (503 while the model loads, for load balancers), the model's load state (200 always, for
the browser pages), Prometheus metrics, the pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from .deps import ServicesDep
from .http_errors import ApiError, error_responses
from .metrics import CONTENT_TYPE

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    modelState: str
    progress: float
    message: str
    error: str | None
    model: str
    device: str
    dtype: str
    sessions: int


@router.get("/health", response_model=Health, tags=["ops"], summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The model is loading, or its last load failed"}},
    tags=["ops"],
    summary="Readiness and model load progress (0..1)",
)
async def ready(services: ServicesDep) -> JSONResponse:
    status = services.models.status()
    # Lazy loading: an idle server that has not loaded yet is ready (the first request loads the model).
    is_ready = status["modelState"] == "loaded" or (status["modelState"] == "not_loaded" and not status["error"])
    body = Readiness(ready=is_ready, sessions=len(services.sessions), **status)
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503)


class ModelStatus(BaseModel):
    modelState: str
    progress: float
    message: str
    error: str | None


@router.get(
    "/api/v1/status",
    response_model=ModelStatus,
    responses=error_responses(401),
    tags=["speech"],
    summary="The model's load state and progress (0..1); 200 whatever the state",
)
async def model_status(services: ServicesDep) -> ModelStatus:
    """What the pages show while the model loads. Unlike `/ready` it answers 200 while loading, so a browser
    does not log a failed request on every poll; it needs a token like the rest of the API."""
    status = services.models.status()
    return ModelStatus(**{k: status[k] for k in ("modelState", "progress", "message", "error")})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    tags=["ops"],
    summary="Prometheus metrics",
)
async def metrics(services: ServicesDep) -> Response:
    services.metrics.model_loaded.set(1 if services.models.loaded else 0)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)


def _page(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise ApiError(404, "NOT_FOUND", f"the page {name} is not installed (expected at {path})")
    return FileResponse(path, media_type="text/html")


@router.get("/", include_in_schema=False, responses=error_responses(404))
async def index() -> FileResponse:
    return _page("index.html")


@router.get("/listen", include_in_schema=False, responses=error_responses(404))
async def listen() -> FileResponse:
    return _page("listen.html")
