"""The client's errors: every failure the server reports keeps the server's code (`ErrorCode`).

`SpeakError` is what the protocol's `error` messages, the HTTP API's `{"error": {code, message}}` bodies and
a lost connection all become. `retryable` says whether trying again later can help (the reconnect policy
uses it); `close_code` is the WebSocket close code when the session ended.
"""

from __future__ import annotations

import enum

from ..server.protocol import CloseCode


class ErrorCode(str, enum.Enum):
    """The protocol's error codes (shared/protocol.md), plus the client's own two."""

    MODEL_LOADING = "MODEL_LOADING"
    SYNTHESIS_ERROR = "SYNTHESIS_ERROR"
    INVALID_TEXT = "INVALID_TEXT"
    VOICE_NOT_FOUND = "VOICE_NOT_FOUND"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    INVALID_STATE = "INVALID_STATE"
    QUEUE_FULL = "QUEUE_FULL"
    SERVER_BUSY = "SERVER_BUSY"
    SLOW_CONSUMER = "SLOW_CONSUMER"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # the client's own
    CONNECTION_FAILED = "CONNECTION_FAILED"  # the server cannot be reached, or the connection was lost
    HANDSHAKE_REFUSED = "HANDSHAKE_REFUSED"  # an HTTP answer instead of a WebSocket (403 Origin, 404 path)
    CLIENT_CLOSED = "CLIENT_CLOSED"  # used after close()


RETRYABLE_CODES = frozenset({ErrorCode.SERVER_BUSY, ErrorCode.RATE_LIMITED, ErrorCode.MODEL_LOADING,
                             ErrorCode.CONNECTION_FAILED})
RETRYABLE_CLOSE_CODES = frozenset({CloseCode.GOING_AWAY, CloseCode.SERVER_BUSY})


class SpeakError(Exception):
    """An error from the server (or about reaching it). `code` is an `ErrorCode` when the server's code is
    one we know, else the server's string as it came."""

    def __init__(self, code: str, message: str, *, utterance_id: str | None = None,
                 retry_after_ms: int | None = None, close_code: int | None = None, status: int | None = None):
        try:
            self.code: ErrorCode | str = ErrorCode(code)
        except ValueError:
            self.code = code
        self.message, self.utterance_id = message, utterance_id
        self.retry_after_ms, self.close_code, self.status = retry_after_ms, close_code, status
        super().__init__(f"{self.code_name}: {message}")

    @property
    def code_name(self) -> str:
        return self.code.value if isinstance(self.code, ErrorCode) else self.code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or self.close_code in RETRYABLE_CLOSE_CODES

    @classmethod
    def from_message(cls, msg, close_code: int | None = None) -> SpeakError:
        """From a protocol `error` message (server.protocol.Error)."""
        return cls(msg.code, msg.message, utterance_id=msg.utteranceId, retry_after_ms=msg.retryAfterMs,
                   close_code=close_code)
