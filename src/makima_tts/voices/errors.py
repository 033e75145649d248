"""Why a request about voices cannot be served: one exception per stable `code` (the server maps codes to
HTTP statuses in `server/http_errors.py`), each with a `message` that says what to fix. No files, no HTTP."""

from __future__ import annotations


class VoiceError(Exception):
    """A voice request that cannot be served; `code` is stable, `message` says what to do."""

    code = "INVALID_VOICE"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class VoiceNotFound(VoiceError):
    """No such voice (the message points to the list of voices), a voice whose clip is not provisioned
    yet (the message is its setup hint), or not a speaker of the loaded model (the message lists the
    speakers)."""

    code = "VOICE_NOT_FOUND"


class VoiceExists(VoiceError):
    code = "VOICE_EXISTS"  # the id of a new voice is taken


class VoiceReadOnly(VoiceError):
    """Built-in voices and the preset speakers of the model cannot be deleted; uploaded voices
    can."""

    code = "VOICE_READ_ONLY"


class InvalidVoiceId(VoiceError):
    code = "INVALID_VOICE_ID"  # the message gives the allowed pattern


class BadAudio(VoiceError):
    """An upload that is audio but not a usable reference clip: empty, too short or too long, silent or
    more than two channels."""

    code = "BAD_AUDIO"


class UnsupportedAudio(BadAudio):
    """Not audio in a format we read (WAV, FLAC, OGG)."""

    code = "UNSUPPORTED_AUDIO"


class AudioTooLarge(BadAudio):
    code = "AUDIO_TOO_LARGE"  # over `TTS_MAX_UPLOAD_BYTES`


class VoiceStoreUnavailable(VoiceError):
    """The shared voice store cannot be reached or answered with an error (HTTP 503); built-in voices and
    preset speakers keep working. The message names the store and the cause."""

    code = "VOICE_STORE_UNAVAILABLE"
