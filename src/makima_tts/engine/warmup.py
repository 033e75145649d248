"""The warm-up utterance: a short request every model type accepts, run once before serving."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..voice_prompt import VoicePrompt
from .types import SpeechRequest


def warmup_request(config: ModelConfig, frames: int) -> SpeechRequest:
    """`frames` frames of "Hello." (end token ignored) in a voice this model type takes: a zero x-vector
    (Base), the first speaker (CustomVoice) or an instruct (VoiceDesign)."""
    common = dict(text="Hello.", max_frames=frames, stop_on_eos=False)
    kind = config.tts_model_type
    if kind == "base":
        return SpeechRequest(voice=VoicePrompt("xvector", torch.zeros(config.talker.hidden_size)), **common)
    if kind == "custom_voice":
        return SpeechRequest(speaker=config.speakers[0], **common)
    return SpeechRequest(instruct="A calm voice.", **common)
