"""Typed, frozen views of the checkpoint's JSON files.

Parsed once from `config.json`, `generation_config.json` and `speech_tokenizer/config.json` of the
official Qwen3-TTS 12Hz layout. Missing fields fall back to the official configuration classes'
defaults, so nothing else in the package hard-codes a shape or a token id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MODEL_TYPES = ("base", "custom_voice", "voice_design")


def _pick(cls, raw: dict[str, Any], **overrides):
    """Build dataclass `cls` from the keys of `raw` it knows; unknown keys are ignored."""
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)


@dataclass(frozen=True)
class TransformerConfig:
    """A Qwen3-style decoder stack (talker or code predictor)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768
    vocab_size: int = 2048


@dataclass(frozen=True)
class CodePredictorConfig(TransformerConfig):
    num_code_groups: int = 16


@dataclass(frozen=True)
class TalkerConfig(TransformerConfig):
    text_vocab_size: int = 151936
    text_hidden_size: int = 2048
    num_code_groups: int = 16
    codec_pad_id: int = 2148
    codec_bos_id: int = 2149
    codec_eos_token_id: int = 2150
    codec_think_id: int = 2154
    codec_nothink_id: int = 2155
    codec_think_bos_id: int = 2156
    codec_think_eos_id: int = 2157
    codec_language_id: dict[str, int] = field(default_factory=dict)
    spk_id: dict[str, int] = field(default_factory=dict)
    spk_is_dialect: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    mel_dim: int = 128
    enc_dim: int = 1024
    enc_channels: tuple[int, ...] = (512, 512, 512, 512, 1536)
    enc_kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    enc_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128
    sample_rate: int = 24000


@dataclass(frozen=True)
class CodecDecoderConfig:
    codebook_size: int = 2048
    codebook_dim: int = 512
    latent_dim: int = 1024
    hidden_size: int = 512
    intermediate_size: int = 1024
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int = 64
    num_hidden_layers: int = 8
    sliding_window: int = 72
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    upsample_rates: tuple[int, ...] = (8, 5, 4, 3)
    upsampling_ratios: tuple[int, ...] = (2, 2)
    decoder_dim: int = 1536
    num_quantizers: int = 16


@dataclass(frozen=True)
class CodecConfig:
    """`speech_tokenizer/config.json`: our decoder plus transformers' MimiConfig for the encoder."""

    decoder: CodecDecoderConfig
    encoder: dict[str, Any]  # passed verbatim to transformers.MimiConfig
    encoder_valid_num_quantizers: int = 16
    input_sample_rate: int = 24000
    output_sample_rate: int = 24000
    decode_upsample_rate: int = 1920
    encode_downsample_rate: int = 1920


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs in the official names, defaulting to the official values: the one list of them.

    `generation_config.json` fills them per checkpoint (`GenerationDefaults.sampling`); a request may
    carry its own (`engine.types.SpeechRequest.sampling`, the same class)."""

    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 0.9
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    subtalker_temperature: float = 0.9

    def greedy(self) -> SamplingParams:
        """The official do_sample=False, subtalker_dosample=False; everything else as is."""
        return replace(self, do_sample=False, subtalker_dosample=False)

    @classmethod
    def from_defaults(cls, gen: GenerationDefaults, greedy: bool = False) -> SamplingParams:
        """A checkpoint's defaults (`greedy`: with both draws off, as `--greedy`)."""
        return gen.sampling.greedy() if greedy else gen.sampling


@dataclass(frozen=True)
class GenerationDefaults:
    """`generation_config.json` (plain JSON, read as the official wrapper reads it)."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 2048


@dataclass(frozen=True)
class ModelConfig:
    talker: TalkerConfig
    code_predictor: CodePredictorConfig
    speaker_encoder: SpeakerEncoderConfig | None
    codec: CodecConfig
    generation: GenerationDefaults
    tts_model_type: str = "base"
    tts_model_size: str = "0b6"
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    tts_pad_token_id: int = 151671
    tts_bos_token_id: int = 151672
    tts_eos_token_id: int = 151673
    transformers_version: str | None = None

    @property
    def languages(self) -> list[str]:
        """Supported language names (as the official: no dialects, plus "auto")."""
        names = [k for k in self.talker.codec_language_id if "dialect" not in k]
        return sorted(names) + ["auto"]

    @property
    def speakers(self) -> list[str]:
        return sorted(self.talker.spk_id)

    @property
    def supports_instruct(self) -> bool:
        """VoiceDesign always; CustomVoice except the 0.6B size (the official substring test)."""
        if self.tts_model_type == "voice_design":
            return True
        return self.tts_model_type == "custom_voice" and self.tts_model_size not in "0b6"


def _tuples(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def parse_model_config(raw: dict[str, Any], generation: dict[str, Any], codec_raw: dict[str, Any]) -> ModelConfig:
    t = raw.get("talker_config", {})
    cp = t.get("code_predictor_config") or {}
    talker = _pick(
        TalkerConfig,
        {
            "vocab_size": 3072,
            "num_code_groups": 32,
            "intermediate_size": 2048,
            "num_hidden_layers": 20,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            **t,
            "codec_language_id": dict(t.get("codec_language_id") or {}),
            "spk_id": dict(t.get("spk_id") or {}),
            "spk_is_dialect": dict(t.get("spk_is_dialect") or {}),
        },
        hidden_size=t.get("hidden_size", 1024),
        head_dim=t.get("head_dim", t.get("hidden_size", 1024) // t.get("num_attention_heads", 16)),
    )
    code_predictor = _pick(
        CodePredictorConfig,
        {
            "vocab_size": 2048,
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 5,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "num_code_groups": 32,
            **cp,
        },
    )
    model_type = raw.get("tts_model_type", "base")
    speaker = _pick(SpeakerEncoderConfig, _tuples(raw.get("speaker_encoder_config") or {}))
    dec = _pick(CodecDecoderConfig, _tuples(codec_raw.get("decoder_config") or {}))
    codec = _pick(CodecConfig, codec_raw, decoder=dec, encoder=dict(codec_raw.get("encoder_config") or {}))
    gen = _pick(GenerationDefaults, generation, sampling=_pick(SamplingParams, generation))
    top = {k: v for k, v in raw.items() if k not in ("talker_config", "speaker_encoder_config")}
    return _pick(
        ModelConfig,
        top,
        talker=talker,
        code_predictor=code_predictor,
        speaker_encoder=speaker if model_type == "base" else None,
        codec=codec,
        generation=gen,
        tts_model_type=model_type,
    )


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """Read the three JSON files of a checkpoint directory in the official layout."""
    root = Path(model_dir)
    raw = json.loads((root / "config.json").read_text())
    gen_path = root / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    codec_raw = json.loads((root / "speech_tokenizer" / "config.json").read_text())
    return parse_model_config(raw, generation, codec_raw)
