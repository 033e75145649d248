"""makima_tts.client: an asyncio client of the `/api/v1/speak` protocol v1 and the voices API.

    from makima_tts.client import SpeakClient

    async with SpeakClient("ws://127.0.0.1:8000/api/v1/speak", token=None, voice="default") as tts:
        speech = tts.speak("Hello, I am Makima.")
        async for pcm in speech:       # little-endian PCM16 (or float32) at tts.sample_rate
            ...
        print(speech.complete)         # the server's stats

See README.md "Python client" for streaming text, cancel/interrupt, voices and reconnecting.
"""

from .backoff import NO_RETRY, Backoff
from .errors import ErrorCode, SpeakError
from .session import ClientState, Priority, SpeakClient, StopMode
from .utterance import TextInput, Utterance
from .voices import Voice, VoiceList, VoicesClient

__all__ = ["NO_RETRY", "Backoff", "ClientState", "ErrorCode", "Priority", "SpeakClient", "SpeakError", "StopMode",
           "TextInput", "Utterance", "Voice", "VoiceList", "VoicesClient"]
