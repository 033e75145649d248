"""Health, readiness (for load balancers: 200 only while the model is loaded and the replica accepts
sessions; its room in free engine slots and open sessions), the model's load state (200 always, for the
browser pages, which never poll `/ready`), Prometheus metrics (with the same room as gauges), the pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from .capacity import capacity
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
    replicaId: str
    accepting: bool
    shuttingDown: bool
    engineSlots: int
    freeSlots: int
    sessions: int
    maxSessions: int


@router.get("/health", response_model=Health, tags=["ops"], summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The model is not loaded (yet), or the replica is shutting down"}},
    tags=["ops"],
    summary="Readiness, room (free engine slots, open sessions) and model load progress (0..1)",
)
async def ready(services: ServicesDep) -> JSONResponse:
    """200 only when the model is loaded and the replica accepts sessions. With lazy loading
    (`TTS_PRELOAD=false`) that is after the first request has loaded it: behind a balancer, preload."""
    room = capacity(services)
    body = Readiness(
        ready=room.accepting, replicaId=services.settings.replica_id, accepting=room.accepting,
        shuttingDown=room.shutting_down, engineSlots=room.engine_slots, freeSlots=room.free_slots,
        sessions=room.sessions, maxSessions=room.max_sessions, **services.models.status(),
    )
    if room.shutting_down:
        body.message = "shutting down: finishing the utterances in flight"
    return JSONResponse(body.model_dump(), status_code=200 if room.accepting else 503)


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
    services.metrics.observe_capacity(capacity(services))
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
