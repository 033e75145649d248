"""Messages of the `/api/v1/speak` WebSocket protocol v1 (see shared/protocol.md).

Client messages are parsed with `parse_client_message`; field values are checked by the session, which
knows which error code each problem deserves. Server messages are pydantic models turned into plain dicts
by `dump` (serialised once, straight to JSON). `CloseCode` is every WebSocket close code the server uses
(mirrored once in static/wire.js, same names); `ERROR_CLOSE_CODES` says which error codes end the session, and how.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL = "tts.v1"
DEFAULT_SAMPLE_RATE = 24000  # a session's audio until `start` or the URL says otherwise
TOKEN_SUBPROTOCOL_PREFIX = "tts.token."  # nosec B105: the prefix of a subprotocol entry, not a secret


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    MESSAGE_TOO_LARGE = 1009
    INTERNAL_ERROR = 1011
    SERVER_BUSY = 1013  # also RATE_LIMITED
    UNAUTHORIZED = 4001
    IDLE_TIMEOUT = 4008
    SLOW_CONSUMER = 4009


ERROR_CLOSE_CODES = {
    "UNAUTHORIZED": CloseCode.UNAUTHORIZED,
    "TIMEOUT": CloseCode.IDLE_TIMEOUT,
    "SERVER_BUSY": CloseCode.SERVER_BUSY,
    "SLOW_CONSUMER": CloseCode.SLOW_CONSUMER,
    "MESSAGE_TOO_LARGE": CloseCode.MESSAGE_TOO_LARGE,
    "INTERNAL_ERROR": CloseCode.INTERNAL_ERROR,
}


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Start(_Msg):
    type: Literal["start"]
    sampleRate: int | None = None
    encoding: str | None = None
    voice: str | None = None
    language: str | None = None
    authToken: str | None = None
    contractId: str | None = None
    audioTransport: str | None = None


class Speak(_Msg):
    type: Literal["speak"]
    text: str = ""
    utteranceId: str | None = None
    # `continue` is a Python keyword: the alias keeps the wire name.
    continue_: bool = Field(False, alias="continue")
    priority: Literal["normal", "high", "interrupt"] = "normal"
    voice: str | None = None
    language: str | None = None


class Flush(_Msg):
    type: Literal["flush"]
    utteranceId: str | None = None


class Cancel(_Msg):
    type: Literal["cancel"]
    utteranceId: str | None = None
    playedMs: float | None = None


class Stop(_Msg):
    type: Literal["stop"]
    reason: str | None = None
    mode: Literal["immediate", "drain"] = "immediate"


class Ping(_Msg):
    type: Literal["ping"]
    id: str | int | None = None


ClientMessage = Annotated[Start | Speak | Flush | Cancel | Stop | Ping, Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class ProtocolError(Exception):
    """A client message that cannot be understood; answered with a recoverable `INVALID_MESSAGE`."""


def parse_client_message(text: str) -> Start | Speak | Flush | Cancel | Stop | Ping:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError('message must be a JSON object with a string "type"')
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "type"
        raise ProtocolError(f"bad {raw['type']!r} message: {where}: {first['msg']}") from None


# --- server -> client ---------------------------------------------------------------------------------


class Capabilities(_Msg):
    streaming: bool = True
    streamingInput: bool = True
    # continue:true text: True = one utterance that speaks from the first stable token on (the talker
    # takes the text as it comes); False = cut into sentences, each spoken alone (the voice's text
    # layout takes whole texts, or the server is set to TTS_TEXT_INPUT=segment)
    streamingTextInput: bool = False
    languages: list[str]
    encodings: list[str]
    sampleRates: list[int]
    audioTransports: list[str]
    maxTextChars: int
    protocol: str = PROTOCOL


class AudioFormat(_Msg):
    encoding: str
    sampleRate: int
    channels: int = 1


class Limits(_Msg):
    maxMessageBytes: int
    idleTimeoutS: float


class Ready(_Msg):
    type: Literal["ready"] = "ready"
    sessionId: str
    replicaId: str  # which server process (TTS_REPLICA_ID): tells replicas behind a balancer apart
    voiceLoaded: bool
    modelState: Literal["loaded", "loading", "not_loaded"]
    capabilities: Capabilities
    audioFormat: AudioFormat
    limits: Limits


class Started(_Msg):
    type: Literal["started"] = "started"
    sampleRate: int
    encoding: str
    voice: str
    language: str
    audioTransport: str


class Speaking(_Msg):
    type: Literal["speaking"] = "speaking"
    utteranceId: str
    sampleRate: int
    encoding: str


class AudioChunk(_Msg):
    type: Literal["audioChunk"] = "audioChunk"
    utteranceId: str
    data: str
    sequenceNumber: int
    isFinal: bool
    timestampMs: float


class Complete(_Msg):
    type: Literal["complete"] = "complete"
    utteranceId: str
    durationMs: float
    charactersProcessed: int
    audioLengthMs: float
    frames: int
    ttfaMs: float | None = None
    truncated: bool
    # [ms, text]: audio from `ms` on had read `text` too (the heard text at playedMs joins the earlier ones)
    textMarks: list[tuple[float, str]] = []


class Cancelled(_Msg):
    type: Literal["cancelled"] = "cancelled"
    utteranceId: str
    reason: Literal["cancel", "interrupt", "disconnect"]
    audioSentMs: float
    heardText: str = ""  # the text up to what its played audio had read (server/text_marks.py)


class Flushed(_Msg):
    type: Literal["flushed"] = "flushed"
    utteranceId: str | None = None
    audioMs: float


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str
    recoverable: bool
    utteranceId: str | None = None
    retryAfterMs: int | None = None


class Pong(_Msg):
    type: Literal["pong"] = "pong"
    id: str | int | None = None


class Stopped(_Msg):
    type: Literal["stopped"] = "stopped"
    reason: str


ServerMessage = Annotated[
    Ready | Started | Speaking | AudioChunk | Complete | Cancelled | Flushed | Error | Pong | Stopped,
    Field(discriminator="type"),
]
server_message_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
TERMINAL_TYPES = ("complete", "cancelled", "error")


def error_message(code: str, message: str, utterance_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """An `error`; it is recoverable unless its code closes the session."""
    return dump(Error(code=code, message=message, recoverable=code not in ERROR_CLOSE_CODES,
                      utteranceId=utterance_id, **extra))


def dump(message: _Msg) -> dict[str, Any]:
    """Wire form of a server message: optional fields that are unset are left out."""
    return message.model_dump(exclude_none=True)
