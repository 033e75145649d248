"""What goes into the engine and what comes out of it.

A `SpeechRequest` is one utterance; the engine answers it with a stream of `AudioFrame`s (16 codes +
1920 float samples at 24 kHz each, 80 ms) and exactly one `Finished`. `SamplingParams` is defined
with the official defaults in config.py (the one copy) and re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config import SamplingParams
from ..voice_prompt import VoicePrompt

__all__ = ["AUDIO_RATE", "AudioFrame", "EngineEvent", "Finished", "SamplingParams", "SpeechRequest", "TextMode"]

TextMode = Literal["streaming", "non_streaming"]
AUDIO_RATE = 24000  # Hz of every AudioFrame's samples


@dataclass(frozen=True)
class SpeechRequest:
    """One utterance. Exactly one of `voice` (Base), `speaker` (CustomVoice) or `instruct`
    (VoiceDesign; optional extra for CustomVoice 1.7B) selects the voice."""

    text: str
    language: str = "auto"
    voice: VoicePrompt | None = None
    speaker: str | None = None
    instruct: str | None = None
    text_mode: TextMode | None = None  # None: the official default (streaming for clones, else non-streaming)
    sampling: SamplingParams | None = None  # None: the checkpoint's generation_config.json
    seed: int | None = None  # None: a fresh random seed
    max_frames: int | None = None  # None: the budget derived from the text (see engine.budget)
    stop_on_eos: bool = True  # False: exactly max_frames frames (the official eos_token_id=-1)
    text_open: bool = False  # True: `text` is only the start, more comes through Job.append_text (streaming layouts)


@dataclass(frozen=True)
class AudioFrame:
    index: int  # 0-based frame number within the utterance
    codes: np.ndarray  # [16] int64
    audio: np.ndarray  # [1920] float32 in [-1, 1], 24 kHz mono
    last: bool = False  # the job's final frame: its Finished (ended by the end token or the budget) follows
    text_read: int = 0  # the request's text tokens the talker had taken in when it made this frame


@dataclass(frozen=True)
class Finished:
    frames: int
    truncated: bool = False  # the frame budget ended it, not an end-of-speech token
    cancelled: bool = False
    error: str | None = None  # a message safe to show a client; None on success


EngineEvent = AudioFrame | Finished
