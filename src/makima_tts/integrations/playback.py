"""What the listener heard of an utterance when it was interrupted, and what the server reported.

A framework plugin does not see the speaker: it hands audio to the framework's output, which plays it in
real time. `PlaybackClock` estimates the audio played as the smaller of the audio handed over and the wall
time since the first of it was handed over. The estimate errs high by the output's own buffering (the
audio handed over but still queued in the transport), never beyond what was handed over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..server.protocol import Cancelled


class PlaybackClock:
    """Audio handed to the framework for one utterance (or one Pipecat context), in milliseconds."""

    def __init__(self) -> None:
        self.handed_ms = 0.0
        self._first_at: float | None = None  # time.monotonic() of the first audio handed over

    def handed(self, ms: float) -> None:
        if self._first_at is None:
            self._first_at = time.monotonic()
        self.handed_ms += ms

    def played_ms(self) -> float:
        if self._first_at is None:
            return 0.0
        return min(self.handed_ms, (time.monotonic() - self._first_at) * 1000.0)


@dataclass(frozen=True)
class Interruption:
    """One utterance cut short: what the plugin told the server and what the server answered."""

    utterance_id: str
    played_ms: float  # sent as `cancel.playedMs`: the `PlaybackClock` estimate
    audio_sent_ms: float  # `cancelled.audioSentMs`: the audio the server had sent when it stopped
    reason: str  # `cancelled.reason`

    @classmethod
    def from_cancelled(cls, played_ms: float, cancelled: Cancelled) -> Interruption:
        return cls(cancelled.utteranceId, played_ms, cancelled.audioSentMs, cancelled.reason)
