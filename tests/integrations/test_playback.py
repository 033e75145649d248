"""The played-audio estimate sent as `cancel.playedMs`: the audio handed over, bounded by the wall time
since its first frame was handed over (a fake clock stands in for time)."""

from __future__ import annotations

import pytest

from makima_tts.integrations import playback
from makima_tts.integrations.playback import Interruption, PlaybackClock
from makima_tts.server.protocol import Cancelled


def test_played_is_the_wall_time_since_the_first_audio_capped_by_the_audio_handed_over(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(playback.time, "monotonic", lambda: now[0])
    clock = PlaybackClock()
    assert clock.played_ms() == 0.0  # nothing handed over: nothing heard
    clock.handed(80)
    clock.handed(80)
    clock.handed(80)
    now[0] += 0.1
    assert clock.played_ms() == pytest.approx(100.0)  # playing in real time: 100 ms of the 240 ms handed over
    now[0] += 5
    assert clock.played_ms() == 240.0  # never more than was handed over


def test_an_interruption_keeps_what_was_sent_and_what_the_server_answered():
    cut = Interruption.from_cancelled(120.0, Cancelled(utteranceId="u7", reason="cancel", audioSentMs=480.0))
    assert cut == Interruption(utterance_id="u7", played_ms=120.0, audio_sent_ms=480.0, reason="cancel")
