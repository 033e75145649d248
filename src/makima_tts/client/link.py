"""Opening one protocol session: the server's URLs, the WebSocket handshake (subprotocol `tts.v1`, the
token as `Authorization: Bearer`), `ready`, `start`, `started`; and the client messages it builds. Every
failure is a `SpeakError`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from ..server.protocol import PROTOCOL, Error, Ready, Started, server_message_adapter
from .errors import ErrorCode, SpeakError

SPEAK_PATH = "/api/v1/speak"
MAX_MESSAGE_BYTES = 2**22  # the server's messages are one 80 ms frame or a small JSON object
_SCHEMES = {"ws": ("ws", "http"), "wss": ("wss", "https"), "http": ("ws", "http"), "https": ("wss", "https")}


@dataclass(frozen=True)
class Endpoints:
    speak: str  # ws(s)://host:port/api/v1/speak
    http: str  # http(s)://host:port (the voices API lives under it)

    @classmethod
    def from_url(cls, url: str) -> Endpoints:
        """From `ws://host:port[/api/v1/speak]` or `http://host:port` (the server's base URL)."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.netloc:
            raise ValueError(f"server URL {url!r} must look like ws://HOST:PORT/api/v1/speak or http://HOST:PORT")
        if parts.path not in ("", "/", SPEAK_PATH):
            raise ValueError(f"server URL {url!r}: the only WebSocket path is {SPEAK_PATH}")
        ws_scheme, http_scheme = _SCHEMES[parts.scheme]
        return cls(speak=urlunsplit((ws_scheme, parts.netloc, SPEAK_PATH, "", "")),
                   http=urlunsplit((http_scheme, parts.netloc, "", "", "")))


@dataclass(frozen=True)
class SessionConfig:
    """What `start` asks for; None leaves the server's default."""

    sample_rate: int
    encoding: str
    voice: str | None = None
    language: str | None = None

    def start_message(self) -> dict[str, Any]:
        message = {"type": "start", "sampleRate": self.sample_rate, "encoding": self.encoding,
                   "audioTransport": "binary", "voice": self.voice, "language": self.language}
        return {k: v for k, v in message.items() if v is not None}


def speak_message(utterance_id: str, text: str, more: bool, voice: str | None = None,
                  language: str | None = None, priority: str = "normal") -> dict[str, Any]:
    """A `speak`; `more`: the text goes on (`continue: true`)."""
    message = {"type": "speak", "utteranceId": utterance_id, "text": text, "continue": more, "voice": voice,
               "language": language, "priority": None if priority == "normal" else priority}
    return {k: v for k, v in message.items() if v is not None}


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def open_session(endpoints: Endpoints, token: str | None, config: SessionConfig,
                       timeout: float) -> tuple[ClientConnection, Ready, Started]:
    """Connect and configure a session; raises `SpeakError` (the server's code, or CONNECTION_FAILED)."""
    try:
        ws = await connect(endpoints.speak, subprotocols=[Subprotocol(PROTOCOL)], additional_headers=auth_headers(token),
                           open_timeout=timeout, max_size=MAX_MESSAGE_BYTES)
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise SpeakError(ErrorCode.HANDSHAKE_REFUSED, f"{endpoints.speak} refused the WebSocket handshake with "
                         f"HTTP {status} (403: a browser Origin that is not allowed)", status=status) from None
    except InvalidHandshake as exc:
        raise SpeakError(ErrorCode.HANDSHAKE_REFUSED, f"{endpoints.speak}: bad WebSocket handshake: {exc}") from None
    except (OSError, asyncio.TimeoutError) as exc:
        raise SpeakError(ErrorCode.CONNECTION_FAILED, f"cannot reach {endpoints.speak}: {exc or 'timed out'}") from None
    try:
        ready = await _expect(ws, Ready, timeout)
        await ws.send(json.dumps(config.start_message()))
        started = await _expect(ws, Started, timeout)
    except BaseException:
        await ws.close()
        raise
    return ws, ready, started


async def _expect(ws: ClientConnection, kind: type, timeout: float):
    """The next message, which must be of `kind`; an `error` (or a close) instead becomes a `SpeakError`."""
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise SpeakError(ErrorCode.CONNECTION_FAILED, f"the server closed the connection ({code})",
                         close_code=code) from None
    except asyncio.TimeoutError:
        raise SpeakError(ErrorCode.CONNECTION_FAILED, f"no {kind.__name__.lower()} message within {timeout} s") from None
    message = parse_message(raw) if isinstance(raw, str) else None
    if isinstance(message, Error):
        close_code = None
        if not message.recoverable:  # the server closes right after it: report the close code too
            await asyncio.wait_for(ws.wait_closed(), timeout)
            close_code = ws.close_code
        raise SpeakError.from_message(message, close_code)
    if not isinstance(message, kind):
        raise SpeakError(ErrorCode.INVALID_MESSAGE, f"expected {kind.__name__.lower()}, the server sent {raw!r:.80}")
    return message


def parse_message(raw: str):
    """A server JSON message as its protocol model; one that is not of protocol v1 is a `SpeakError`."""
    try:
        return server_message_adapter.validate_json(raw)
    except ValidationError:
        raise SpeakError(ErrorCode.INVALID_MESSAGE, f"not a protocol v1 message from the server: {raw!r:.80}") from None
