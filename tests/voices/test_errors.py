"""The voice error tree: stable codes, no HTTP in it, and every code has its HTTP status in the server."""

from __future__ import annotations

import makima_tts.voices.errors as errors
from makima_tts.server.http_errors import VOICE_STATUS

CODES = {
    "VoiceNotFound": "VOICE_NOT_FOUND",
    "VoiceExists": "VOICE_EXISTS",
    "VoiceReadOnly": "VOICE_READ_ONLY",
    "InvalidVoiceId": "INVALID_VOICE_ID",
    "BadAudio": "BAD_AUDIO",
    "UnsupportedAudio": "UNSUPPORTED_AUDIO",
    "AudioTooLarge": "AUDIO_TOO_LARGE",
    "VoiceStoreUnavailable": "VOICE_STORE_UNAVAILABLE",
}


def test_codes_are_stable_and_mapped_by_the_server():
    for name, code in CODES.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.VoiceError) and cls.code == code
        assert not hasattr(cls, "status")  # the status is the server's business
        assert VOICE_STATUS[code] >= 400
    assert set(VOICE_STATUS) == set(CODES.values())
    assert issubclass(errors.UnsupportedAudio, errors.BadAudio) and issubclass(errors.AudioTooLarge, errors.BadAudio)


def test_the_message_is_kept():
    exc = errors.VoiceNotFound("voice 'x' not found (GET /api/v1/voices lists the voices)")
    assert exc.message == str(exc) and "GET /api/v1/voices" in exc.message
