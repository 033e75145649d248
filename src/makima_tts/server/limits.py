"""Per-client limits: open WebSocket sessions, HTTP syntheses in flight, voice uploads per hour.

A client is what `auth.client_key` names (a token digest when tokens are on, else an address). Everything
here runs on the event loop, so plain counters suffice. Over a limit → `RateLimited` (HTTP 429 with
`Retry-After`; on the WebSocket `RATE_LIMITED` with `retryAfterMs`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable

from .settings import Settings

UPLOAD_WINDOW_S = 3600.0
CONCURRENCY_RETRY_S = 1  # a held slot frees when its session or synthesis ends: retry soon


class RateLimited(Exception):
    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.message, self.retry_after_s = message, retry_after_s


class Held:
    """One slot of a concurrency limit; `release()` gives it back (idempotent)."""

    def __init__(self, counts: dict[str, int], client: str):
        self._counts, self._client, self._held = counts, client, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._counts[self._client] -= 1
            if not self._counts[self._client]:
                del self._counts[self._client]


class ClientLimits:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.settings, self.clock = settings, clock
        self._sessions: dict[str, int] = defaultdict(int)
        self._syntheses: dict[str, int] = defaultdict(int)
        self._uploads: dict[str, deque[float]] = defaultdict(deque)

    @staticmethod
    def _hold(counts: dict[str, int], client: str, limit: int, what: str) -> Held:
        if counts.get(client, 0) >= limit:
            raise RateLimited(f"at most {limit} {what} per client; retry when one ends", CONCURRENCY_RETRY_S)
        counts[client] += 1
        return Held(counts, client)

    def hold_session(self, client: str) -> Held:
        return self._hold(self._sessions, client, self.settings.max_sessions_per_client, "open WebSocket sessions")

    def hold_synthesis(self, client: str) -> Held:
        return self._hold(self._syntheses, client, self.settings.max_syntheses_per_client, "HTTP syntheses at once")

    def count_upload(self, client: str) -> None:
        """Count one voice upload request, or raise when the client made its hourly share already."""
        now, limit = self.clock(), self.settings.voice_uploads_per_hour
        window = self._uploads[client]
        while window and now - window[0] >= UPLOAD_WINDOW_S:
            window.popleft()
        if len(window) >= limit:
            retry = max(1, math.ceil(window[0] + UPLOAD_WINDOW_S - now))
            raise RateLimited(f"at most {limit} voice uploads per hour per client; retry in {retry} s", retry)
        window.append(now)
