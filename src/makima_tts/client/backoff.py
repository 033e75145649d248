"""When to try connecting again: exponential backoff, bounded in attempts.

A server that is busy (`SERVER_BUSY`, `RATE_LIMITED`: close 1013), shutting down (close 1001) or not
reachable yet is tried again after `delay(attempt)` seconds, or after the server's `retryAfterMs` when that
is longer; any other failure is final.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SpeakError


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6  # connection attempts in all (1: never retry)
    initial_s: float = 0.25
    factor: float = 2.0
    max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_s < 0 or self.factor < 1 or self.max_s < 0:
            raise ValueError("Backoff needs attempts >= 1, initial_s >= 0, factor >= 1, max_s >= 0")

    def delay(self, attempt: int, error: SpeakError) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based), or None: give up."""
        if not error.retryable or attempt >= self.attempts:
            return None
        wait = min(self.max_s, self.initial_s * self.factor ** (attempt - 1))
        if error.retry_after_ms is not None:
            wait = max(wait, error.retry_after_ms / 1000)
        return wait


NO_RETRY = Backoff(attempts=1)
