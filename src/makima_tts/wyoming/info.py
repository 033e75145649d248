"""The answer to `describe`: one TTS program with the server's voices, each with every language the
checkpoint speaks (a cloned voice speaks all of them), and streaming synthesis supported."""

from __future__ import annotations

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice

from .. import __version__
from ..client import VoiceList
from .languages import wyoming_languages

PROGRAM = "makima-tts"
MODEL_ATTRIBUTION = Attribution(name="Qwen3-TTS (Alibaba Qwen team), served by makima-tts",
                                url="https://github.com/QwenLM/Qwen3-TTS")


def build_info(voices: VoiceList, model_languages: list[str]) -> Info:
    languages = wyoming_languages(model_languages)
    tts_voices = [
        TtsVoice(name=v.id, attribution=MODEL_ATTRIBUTION, installed=True, version=None, languages=languages,
                 description=f"{v.name} ({v.mode}{', default' if v.id == voices.default else ''})")
        for v in voices.voices
    ]
    program = TtsProgram(name=PROGRAM, attribution=MODEL_ATTRIBUTION, installed=True, version=__version__,
                         description="Streaming Qwen3-TTS 12Hz speech (makima-tts)", voices=tts_voices,
                         supports_synthesize_streaming=True)
    return Info(tts=[program])
