"""What the listener heard of an utterance when it was interrupted, and what the server reported.

A framework plugin does not see the speaker: it hands audio to the framework's output, which plays it in
real time. `PlaybackClock` estimates the audio played as the smaller of the audio handed over and the wall
time since the first of it was handed over. The estimate errs high by the output's own buffering (the
audio handed over but still queued in the transport), never beyond what was handed over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..client.utterance import Utterance


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
    """One utterance cut short: what the plugin told the server, what the server answered, and the text
    the listener heard (what a voice agent keeps of its reply in the LLM context)."""

    utterance_id: str
    played_ms: float  # sent as `cancel.playedMs`: the `PlaybackClock` estimate
    audio_sent_ms: float  # the audio the server had sent: `cancelled.audioSentMs` (or all of it, "complete")
    reason: str  # `cancelled.reason`, or "complete": the server had finished it, only its playback was cut
    heard_text: str  # `cancelled.heardText`, or the text of its `complete.textMarks` before `played_ms`

    @classmethod
    def of(cls, utt: Utterance, played_ms: float) -> Interruption | None:
        """The interruption of `utt` once its terminal is in (None if it ended in an error)."""
        if (cancelled := utt.cancelled) is not None:
            return cls(utt.id, played_ms, cancelled.audioSentMs, cancelled.reason, cancelled.heardText)
        if (complete := utt.complete) is not None:
            return cls(utt.id, played_ms, complete.audioLengthMs, "complete", utt.heard_text(played_ms))
        return None
