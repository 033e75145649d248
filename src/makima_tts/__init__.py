"""makima-tts: a streaming text-to-speech server on our own PyTorch Qwen3-TTS 12Hz."""

__version__ = "0.1.0"
