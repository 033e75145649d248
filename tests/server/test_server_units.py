"""Unit tests of the server's small pure parts: text segmentation, audio conversion, settings, protocol parsing."""

from __future__ import annotations

import pytest
import torch

from makima_tts.server.protocol import ProtocolError, Speak, parse_client_message
from makima_tts.server.segmenter import TextSegmenter, split_text
from makima_tts.server.settings import Settings


def feed_all(segmenter: TextSegmenter, parts: list[str]) -> list[str]:
    pieces = []
    for part in parts:
        pieces += segmenter.feed(part)
    return pieces + segmenter.flush()


def test_segmenter_cuts_sentences_as_tokens_arrive():
    seg = TextSegmenter()
    assert seg.feed("Sure, the weather in ") == []
    assert seg.feed("Paris is sunny today.") == []  # no space after the period yet: may be "today.5"
    assert seg.feed(" Tomorrow") == ["Sure, the weather in Paris is sunny today."]
    assert seg.feed(" it will rain!\nBring") == ["Tomorrow it will rain!"]
    assert seg.flush() == ["Bring"]
    assert seg.flush() == []


def test_segmenter_keeps_short_sentences_together_and_text_intact():
    parts = ["Hi. ", "Ok. ", "This is a longer sentence. ", "End"]
    pieces = feed_all(TextSegmenter(min_chars=12), parts)
    assert pieces == ["Hi. Ok. This is a longer sentence.", "End"]
    assert " ".join(pieces).split() == "".join(parts).split()


def test_segmenter_cjk_and_long_runs():
    assert feed_all(TextSegmenter(min_chars=2), ["你好。今天天气", "很好！"]) == ["你好。", "今天天气很好！"]
    clause = TextSegmenter(clause_chars=40, max_chars=80)
    pieces = feed_all(clause, ["one two three four five six seven, eight nine ten eleven twelve thirteen"])
    assert pieces[0].endswith("seven,") and len(pieces) == 2
    words = " ".join(["word"] * 100)
    pieces = feed_all(TextSegmenter(max_chars=60), [words])
    assert all(len(p) <= 60 for p in pieces) and " ".join(pieces) == words


def test_split_text_whole_when_short():
    assert split_text("  Hello there. How are you?  ") == ["Hello there. How are you?"]
    long = "This is sentence number one. " * 20
    pieces = split_text(long, max_chars=100)
    assert len(pieces) > 1 and all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces).split() == long.split()


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TTS_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TTS_AUTH_TOKENS", "one,two")
    monkeypatch.setenv("TTS_DEVICE", "cpu")
    monkeypatch.setenv("TTS_PRELOAD", "true")
    monkeypatch.setenv("TTS_IDLE_TIMEOUT_S", "3.5")
    s = Settings(_env_file=None)
    assert s.allowed_origins == ["https://a.example", "https://b.example"]
    assert s.auth_tokens == ["one", "two"] and s.preload and s.idle_timeout_s == 3.5
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert s.resolved_dtype == ("bfloat16" if native_bf16 else "float32")
    assert Settings(_env_file=None, device="cuda:0").resolved_dtype == "bfloat16"
    assert Settings(_env_file=None, device="cpu", dtype="float32").resolved_dtype == "float32"
    with pytest.raises(ValueError):
        Settings(_env_file=None, dtype="int3")
    monkeypatch.setenv("TTS_ADMISSION", "one_per_step")
    assert Settings(_env_file=None).admission == "one_per_step" and Settings(_env_file=None).prefill_chunk == 0
    with pytest.raises(ValueError, match="batched"):
        Settings(_env_file=None, admission="sometimes")
    assert Settings(_env_file=None).first_frames == "apart"
    monkeypatch.setenv("TTS_FIRST_FRAMES", "together")
    assert Settings(_env_file=None).first_frames == "together"
    with pytest.raises(ValueError, match="apart"):
        Settings(_env_file=None, first_frames="first")


def test_env_example_lists_every_setting():
    from pathlib import Path

    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = {line.split("=")[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    assert {f"TTS_{name.upper()}" for name in Settings.model_fields} <= names


def test_parse_client_messages():
    msg = parse_client_message('{"type": "speak", "text": "hi", "continue": true, "extra": 1}')
    assert isinstance(msg, Speak) and msg.continue_ is True and msg.priority == "normal"
    for bad in ("nope", "[]", '{"type": 3}', '{"type": "sing"}', '{"type": "speak", "priority": "urgent"}'):
        with pytest.raises(ProtocolError):
            parse_client_message(bad)
