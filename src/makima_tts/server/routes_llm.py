"""`POST /api/v1/llm/chat/completions`: the listen page's optional way to its LLM through this server.

The listen page streams replies from an OpenAI-compatible chat-completions endpoint straight from the
browser; the endpoint's URL, model and key stay in the browser's storage. Where the browser cannot reach
the endpoint itself (no CORS headers, a private network), the operator sets `TTS_LLM_PROXY_URL` (and
`TTS_LLM_PROXY_KEY`, `TTS_LLM_PROXY_MODEL`) and the user picks "through the speech server": this route then
sends the page's body to `<TTS_LLM_PROXY_URL>/chat/completions` with the operator's key and streams the
answer back as it arrives. The upstream is always the operator's (a request cannot name another address),
and the route sits behind the same token and Origin rules as every API route. When the page aborts (the
user talked over the reply), the upstream request is closed with it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .deps import ServicesDep
from .http_errors import ApiError, error_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/llm", tags=["llm"])
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0  # between two pieces of the answer (a model may think a while before its first token)
MAX_ERROR_CHARS = 300


def chat_url(base: str) -> str:
    """An OpenAI-compatible base URL (`http://host:11434/v1`) or the full chat-completions URL."""
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


async def _body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON chat-completions request") from None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ApiError(422, "INVALID_REQUEST", "messages: a non-empty list of {role, content} is required")
    return body


@router.post(
    "/chat/completions",
    summary="Chat completions through the operator's LLM (TTS_LLM_PROXY_URL), streamed",
    responses=error_responses(400, 404, 422),
)
async def chat_completions(request: Request, services: ServicesDep) -> StreamingResponse:
    settings = services.settings
    if not settings.llm_proxy_url:
        raise ApiError(404, "LLM_PROXY_OFF", "this server has no LLM route: its operator can set TTS_LLM_PROXY_URL "
                       "to an OpenAI-compatible base URL (e.g. http://localhost:11434/v1); or let the page reach "
                       "the LLM directly")
    body = await _body(request)
    if settings.llm_proxy_model:
        body["model"] = settings.llm_proxy_model
    headers = {"Authorization": f"Bearer {settings.llm_proxy_key}"} if settings.llm_proxy_key else {}
    client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
    url = chat_url(settings.llm_proxy_url)
    try:
        upstream = await client.send(client.build_request("POST", url, json=body, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ApiError(502, "LLM_UNREACHABLE", f"cannot reach the LLM at {url}: {type(exc).__name__}") from None
    if upstream.status_code >= 400:
        text = (await upstream.aread()).decode("utf-8", "replace")[:MAX_ERROR_CHARS]
        await upstream.aclose()
        await client.aclose()
        raise ApiError(502, "LLM_ERROR", f"the LLM answered {upstream.status_code}: {text}")

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:  # the page sees its stream end early; the reason is logged here
            log.warning("the LLM at %s broke off its answer: %s", url, type(exc).__name__)
        finally:  # also when the page went away: the upstream request ends with it
            await upstream.aclose()
            await client.aclose()

    media = upstream.headers.get("content-type", "text/event-stream")
    return StreamingResponse(relay(), media_type=media, headers={"Cache-Control": "no-store"})
