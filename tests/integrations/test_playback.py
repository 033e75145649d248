"""The played-audio estimate sent as `cancel.playedMs`: the audio handed over, bounded by the wall time
since its first frame was handed over (a fake clock stands in for time)."""

from __future__ import annotations

import pytest

from makima_tts.client.errors import SpeakError
from makima_tts.client.utterance import TextInput, Utterance
from makima_tts.integrations import playback
from makima_tts.integrations.playback import Interruption, PlaybackClock
from makima_tts.server.protocol import Cancelled, Complete


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


def test_an_interruption_keeps_what_was_sent_what_the_server_answered_and_what_was_heard():
    cancelled = Utterance("u7", TextInput.OPEN, 24000, "pcm16")
    cancelled._finish(Cancelled(utteranceId="u7", reason="cancel", audioSentMs=480.0, heardText="Hello"))
    assert Interruption.of(cancelled, 120.0) == Interruption(utterance_id="u7", played_ms=120.0, audio_sent_ms=480.0,
                                                             reason="cancel", heard_text="Hello")
    # the server had finished it: its playback was cut; the heard text comes from its marks
    complete = Utterance("u8", TextInput.WHOLE, 24000, "pcm16")
    complete._finish(Complete(utteranceId="u8", durationMs=9.0, charactersProcessed=11, audioLengthMs=400.0,
                              frames=5, truncated=False, textMarks=[(0.0, "Hello"), (80.0, " world")]))
    assert Interruption.of(complete, 80.0) == Interruption(utterance_id="u8", played_ms=80.0, audio_sent_ms=400.0,
                                                           reason="complete", heard_text="Hello")
    assert Interruption.of(complete, 80.5).heard_text == "Hello world"
    failed = Utterance("u9", TextInput.WHOLE, 24000, "pcm16")
    failed._finish(SpeakError("SYNTHESIS_ERROR", "boom"))
    assert Interruption.of(failed, 10.0) is None
