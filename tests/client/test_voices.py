"""The client's voices API against a real server: upload (x-vector and ICL), list, get, delete, and the
server's error codes with their HTTP status."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
from server_helpers import run

from makima_tts.client import SpeakClient, SpeakError


def wav_bytes(wav, sr) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV")
    return buf.getvalue()


def test_voices_crud_and_speaking_with_an_uploaded_voice(start_server, ref_clip):
    srv = start_server()
    clip = wav_bytes(*ref_clip)

    async def main():
        async with SpeakClient(srv.ws) as tts:
            before = await tts.voices.list()
            xvector = await tts.voices.upload(clip, voice_id="mine", name="Mine", language="english")
            icl = await tts.voices.upload(clip, transcript="reference transcript for voice cloning")
            listed = await tts.voices.list()
            fetched = await tts.voices.get("mine")
            spoken = await tts.speak("In my own voice.", voice="mine").wait()
            await tts.voices.delete("mine")
            await tts.voices.delete(icl.id)
            after = await tts.voices.list()
            return before, xvector, icl, listed, fetched, spoken, after

    before, xvector, icl, listed, fetched, spoken, after = run(main())
    assert before.default == "default" and "default" in [v.id for v in before.voices]
    assert (xvector.id, xvector.mode, xvector.language, xvector.builtIn) == ("mine", "xvector", "english", False)
    assert icl.mode == "icl" and icl.id.startswith("voice-")
    assert {"mine", icl.id} <= {v.id for v in listed.voices}
    assert fetched == xvector
    assert spoken.frames > 0
    assert [v.id for v in after.voices] == [v.id for v in before.voices]


def test_voice_errors_carry_the_server_code_and_status(server):
    async def main():
        async with SpeakClient(server.ws) as tts:
            errors = []
            for call in (tts.voices.get("nobody"), tts.voices.delete("default"),
                         tts.voices.upload(b"not audio at all", voice_id="junk"),
                         tts.voices.upload(b"x", voice_id="Bad Id!")):
                with pytest.raises(SpeakError) as err:
                    await call
                errors.append(err.value)
            return errors

    missing, builtin, junk, bad_id = run(main())
    assert (missing.code, missing.status) == ("VOICE_NOT_FOUND", 404)
    assert builtin.status == 403 and builtin.code == "VOICE_READ_ONLY"
    assert junk.status in (415, 422) and junk.code in ("UNSUPPORTED_AUDIO", "BAD_AUDIO")
    assert bad_id.status == 422 and bad_id.code == "INVALID_VOICE_ID"


def test_unreachable_server_is_a_connection_error():
    async def main():
        from makima_tts.client import VoicesClient

        voices = VoicesClient("http://127.0.0.1:9")
        with pytest.raises(SpeakError) as err:
            await voices.list()
        await voices.aclose()
        return err.value

    err = run(main())
    assert err.code == "CONNECTION_FAILED" and "127.0.0.1:9" in err.message
