"""`makima-tts make-tiny-model`: a small random checkpoint in the official on-disk layout.

Written entirely by our own modules (random weights, every real id and vocabulary size kept, widths
shrunk), so the server, the tests and an offline demo can run the real engine without downloads. The
official package loads these directories too. Layout:

    config.json  generation_config.json  tokenizer.json vocab.json merges.txt tokenizer_config.json ...
    model.safetensors                      talker, code predictor, speaker encoder (Base)
    speech_tokenizer/{config.json, model.safetensors, preprocessor_config.json}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .config import parse_model_config
from .weights import CODEC_RULES, MAIN_RULES, unroute

LANGUAGES = {"chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071,
             "spanish": 2054, "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069}
SPEAKERS = {"serena": 3066, "vivian": 3065, "uncle_fu": 3010, "dylan": 2878}
DIALECTS = {"beijing_dialect": 2074, "sichuan_dialect": 2062}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]
CORPUS = [
    "Hello world. This is a tiny test of speech.", "The quick brown fox jumps over the lazy dog.",
    "assistant user system", "reference transcript for voice cloning", "0123456789 , . ! ? ' \" - :",
    "Makima speaks: streaming text to speech, one frame at a time.",
]
GENERATION = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0, "top_k": 50,
              "subtalker_dosample": True, "subtalker_temperature": 0.9, "subtalker_top_p": 1.0,
              "subtalker_top_k": 50, "max_new_tokens": 8192}
TRANSFORMERS_VERSION = "4.57.3"


def _write_tokenizer(out: Path) -> dict[str, int]:
    """A byte-level BPE trained on a few sentences, saved the way transformers saves Qwen2's."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    from .text import QWEN2_REGEX

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 8, trainer=trainer)
    hf = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token="<|im_end|>",  # nosec B106: a tokenizer token
                            pad_token="<|endoftext|>")
    hf.add_special_tokens({"additional_special_tokens": SPECIALS})
    hf.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["processor_class"] = "Qwen3TTSProcessor"
    config_path.write_text(json.dumps(config, indent=2))
    ids = {name: hf.convert_tokens_to_ids(name) for name in SPECIALS}
    ids["assistant"] = hf.convert_tokens_to_ids("assistant") or 0
    ids["vocab"] = len(hf)
    return ids


# Widths and depths per size; every id, vocabulary size and rate is the real one in both.
SIZES = {
    "tiny": dict(talker=(32, 64, 2, 4, 2, 8, 16, [2, 1, 1]), predictor=(24, 48, 2, 2, 1, 12),
                 speaker=([16, 16, 16, 16, 48], 8, 8),
                 mimi=dict(num_filters=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=8, intermediate_size=32, codebook_dim=8,
                           vector_quantization_hidden_dimension=8, upsample_groups=16),
                 decoder=dict(codebook_dim=8, hidden_size=16, latent_dim=16, num_attention_heads=2,
                              num_key_value_heads=2, head_dim=8, intermediate_size=32, num_hidden_layers=1,
                              decoder_dim=32, vector_quantization_hidden_dimension=8)),
    "0.6b": dict(talker=(1024, 3072, 28, 16, 8, 128, 2048, [24, 20, 20]), predictor=(1024, 3072, 5, 16, 8, 128),
                 speaker=([512, 512, 512, 512, 1536], 128, 128),
                 mimi=dict(num_filters=64, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                           num_key_value_heads=8, head_dim=64, intermediate_size=2048, codebook_dim=256,
                           vector_quantization_hidden_dimension=256, upsample_groups=512),
                 decoder=dict(codebook_dim=512, hidden_size=512, latent_dim=1024, num_attention_heads=16,
                              num_key_value_heads=16, head_dim=64, intermediate_size=1024, num_hidden_layers=8,
                              decoder_dim=1536, vector_quantization_hidden_dimension=512)),
}


def _configs(kind: str, ids: dict[str, int], size: str = "tiny") -> tuple[dict, dict]:
    dims = SIZES[size]
    talker_width, talker_mlp, talker_layers, heads, kv_heads, head_dim, text_width, mrope = dims["talker"]
    cp_width, cp_mlp, cp_layers, cp_heads, cp_kv, cp_head_dim = dims["predictor"]
    if size == "tiny" and kind != "base":
        cp_width = talker_width  # so these kinds exercise the Identity projection, Base the Linear one
    code_predictor = {
        "vocab_size": 2048, "hidden_size": cp_width, "intermediate_size": cp_mlp,
        "num_hidden_layers": cp_layers, "num_attention_heads": cp_heads, "num_key_value_heads": cp_kv,
        "head_dim": cp_head_dim,
        "hidden_act": "silu", "max_position_embeddings": 65536, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
        "rope_scaling": None, "attention_bias": False, "use_sliding_window": False, "num_code_groups": 16,
        "layer_types": ["full_attention"] * cp_layers, "model_type": "qwen3_tts_talker_code_predictor",
    }
    languages = dict(LANGUAGES, **(DIALECTS if kind == "custom_voice" else {}))
    speakers = SPEAKERS if kind == "custom_voice" else {}
    talker = {
        "model_type": "qwen3_tts_talker", "vocab_size": 3072,
        "text_vocab_size": 151936 if size == "0.6b" else ids["vocab"] + 8,
        "hidden_size": talker_width, "intermediate_size": talker_mlp, "num_hidden_layers": talker_layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "text_hidden_size": text_width, "num_code_groups": 16,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000, "max_position_embeddings": 32768,
        "rope_scaling": {"interleaved": True, "mrope_section": mrope, "rope_type": "default"},
        "attention_bias": False, "attention_dropout": 0.0, "use_sliding_window": False, "sliding_window": None,
        "position_id_per_seconds": 13, "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150,  # nosec B105: a codec token id
        "codec_think_id": 2154, "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
        "codec_language_id": languages, "spk_id": speakers,
        "spk_is_dialect": {name: ("beijing_dialect" if name == "dylan" else False) for name in speakers},
        "code_predictor_config": code_predictor,
    }
    config = {
        "architectures": ["Qwen3TTSForConditionalGeneration"], "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz", "tts_model_size": "0b6" if kind == "base" else "1b7",
        "tts_model_type": kind, "im_start_token_id": ids["<|im_start|>"], "im_end_token_id": ids["<|im_end|>"],
        "tts_pad_token_id": ids["<tts_pad>"], "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"], "assistant_token_id": ids["assistant"],
        "speaker_encoder_config": {"mel_dim": 128, "enc_dim": talker_width, "enc_channels": dims["speaker"][0],
                                   "enc_kernel_sizes": [5, 3, 3, 3, 1], "enc_dilations": [1, 2, 3, 4, 1],
                                   "enc_attention_channels": dims["speaker"][1], "enc_res2net_scale": 8,
                                   "enc_se_channels": dims["speaker"][2], "sample_rate": 24000},
        "talker_config": talker, "dtype": "float32", "transformers_version": TRANSFORMERS_VERSION,
    }
    encoder = {
        "model_type": "mimi", "audio_channels": 1, "kernel_size": 7, "residual_kernel_size": 3,
        "last_kernel_size": 3, "num_residual_layers": 1, "compress": 2, "dilation_growth_rate": 2,
        "upsampling_ratios": [8, 6, 5, 4], "hidden_act": "gelu", "norm_eps": 1e-5,
        "layer_scale_initial_scale": 0.01, "rope_theta": 10000.0, "max_position_embeddings": 8000,
        "sliding_window": 250, "num_quantizers": 32, "num_semantic_quantizers": 1, "codebook_size": 2048,
        "pad_mode": "constant", "use_causal_conv": True, "frame_rate": 12.5, "sampling_rate": 24000,
        "trim_right_ratio": 1.0, "use_cache": False, "use_streaming": False, **dims["mimi"],
    }
    decoder = {
        "codebook_size": 2048, "max_position_embeddings": 8000, "rope_theta": 10000, "attention_bias": False,
        "sliding_window": 72, "hidden_act": "silu", "layer_scale_initial_scale": 0.01, "rms_norm_eps": 1e-5,
        "num_quantizers": 16, "num_semantic_quantizers": 1, "semantic_codebook_size": 4096,
        "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2], "attention_dropout": 0.0, **dims["decoder"],
    }
    codec = {
        "architectures": ["Qwen3TTSTokenizerV2Model"], "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_config": encoder, "decoder_config": decoder, "encoder_valid_num_quantizers": 16,
        "input_sample_rate": 24000, "output_sample_rate": 24000, "decode_upsample_rate": 1920,
        "encode_downsample_rate": 1920, "dtype": "float32", "transformers_version": TRANSFORMERS_VERSION,
    }
    return config, codec


def randomize(module: nn.Module, generator: torch.Generator, fan_in_gain: float | None = None) -> None:
    """N(0, 0.02) weights like the official init (or, with `fan_in_gain`, std = gain / sqrt(fan-in), which
    keeps a deep conv stack such as the codec decoder audible), then random values for parameters that
    start as constants (norm gains, layer scales, SnakeBeta, codebooks) so every path carries signal."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("alpha", "beta"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            elif leaf in ("gamma", "scale"):
                p.copy_(0.1 + 0.05 * torch.randn(p.shape, generator=generator))
            elif leaf == "bias":
                p.copy_(0.01 * torch.randn(p.shape, generator=generator))
            elif p.ndim == 1:  # norm gains
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                std = 0.02 if fan_in_gain is None else fan_in_gain / math.sqrt(p[0].numel())
                p.copy_(std * torch.randn(p.shape, generator=generator))
        for name, b in module.named_buffers():
            if name.endswith("embedding_sum") or name.endswith("embed_sum"):
                b.copy_(torch.randn(b.shape, generator=generator))
            elif name.endswith("cluster_usage"):
                b.copy_(torch.rand(b.shape, generator=generator) + 0.5)


def build_tiny_checkpoint(out_dir: str | Path, seed: int = 0, kind: str = "base", size: str = "tiny") -> Path:
    """Write a random checkpoint. `size="0.6b"` gives the full 0.6B shapes (for speed measurements; the
    main model is stored in bfloat16 like the official files, about 1.8 GB + 0.7 GB)."""
    from .model.code_predictor import CodePredictor
    from .model.codec import CodecDecoder
    from .model.codec_encoder import CodecEncoder
    from .model.speaker import SpeakerEncoder
    from .model.talker import Talker

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    if kind not in ("base", "custom_voice", "voice_design"):
        raise ValueError(f"kind must be base, custom_voice or voice_design, not {kind!r}")
    out = Path(out_dir)
    (out / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    ids = _write_tokenizer(out)
    config, codec_config = _configs(kind, ids, size)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (out / "generation_config.json").write_text(json.dumps(GENERATION, indent=2))
    (out / "speech_tokenizer" / "config.json").write_text(json.dumps(codec_config, indent=2, sort_keys=True))
    (out / "speech_tokenizer" / "preprocessor_config.json").write_text(json.dumps({
        "chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor", "feature_size": 1,
        "overlap": None, "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True,
        "sampling_rate": 24000}, indent=2))

    cfg = parse_model_config(config, GENERATION, codec_config)
    generator = torch.Generator().manual_seed(seed)
    main: dict[str, torch.Tensor] = {}
    parts = [("talker", Talker(cfg.talker)), ("code_predictor", CodePredictor(cfg.code_predictor, cfg.talker))]
    if kind == "base":
        parts.append(("speaker_encoder", SpeakerEncoder(cfg.speaker_encoder)))
    for component, module in parts:
        randomize(module, generator)
        main.update(unroute(component, module.state_dict(), MAIN_RULES))
    codec: dict[str, torch.Tensor] = {}
    for component, module, gain in (("codec_decoder", CodecDecoder(cfg.codec.decoder), 0.75),
                                    ("codec_encoder", CodecEncoder(cfg.codec), None)):
        randomize(module, generator, gain)
        codec.update(unroute(component, module.state_dict(), CODEC_RULES))
    main_dtype = torch.bfloat16 if size == "0.6b" else torch.float32
    if size == "0.6b":
        config["dtype"] = "bfloat16"
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file({k: v.to(main_dtype).contiguous() for k, v in main.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    save_file({k: v.contiguous() for k, v in codec.items()}, str(out / "speech_tokenizer" / "model.safetensors"),
              metadata={"format": "pt"})
    return out
