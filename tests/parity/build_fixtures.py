"""Build the parity fixtures: tiny random Qwen3-TTS checkpoints made with the OFFICIAL `qwen-tts`
package, and the official outputs for a fixed list of cases.

Runs only in the official virtual environment (CI never runs it; it reads the committed files):
    /work/venv-official/bin/python tests/parity/build_fixtures.py --out tests/fixtures/parity

Writes, under --out (README.md there describes every file and key):
    base/, custom_voice/, voice_design/
                 official on-disk layout: config.json, generation_config.json, vocab.json, merges.txt,
                 tokenizer_config.json, model.safetensors (bf16, as the official files),
                 speech_tokenizer/{config.json, model.safetensors (fp32), preprocessor_config.json};
                 stored once: speech_tokenizer/ of the others and voice_design's weights are symlinks
    cases.json   {"checkpoints": {...sha256...}, "references": {...}, "cases": [...]}
    outputs.npz  official outputs and intermediates
base_eos (base with one codec_head row replaced) is run from a temporary directory and not written:
tests rebuild it with fixtures.checkpoint_dir("base_eos").

Deterministic: fixed seeds, one CPU thread, fixed zip timestamps, so a rerun rewrites identical bytes.
"""

import argparse
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fixtures import derive_checkpoint, file_sha256  # noqa: E402  (our loader beside this file)

# ---------------------------------------------------------------------------------------------------
# Text tokenizer: small byte-level BPE with the Qwen2 split regex and the Qwen3(-TTS) special tokens.
# ---------------------------------------------------------------------------------------------------
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
]
BPE_CORPUS = [
    "assistant",
    "user",
    "Hello world. This is a tiny test of speech.",
    "The quick brown fox jumps over the lazy dog.",
    "reference transcript for voice cloning",
    "Speak slowly and warmly, like telling a story to a friend.",
    "A calm young female voice with a clear and bright tone.",
    "Numbers like 0123456789 and punctuation , . ! ? : ; keep the tokenizer honest.",
    "Streaming speech synthesis produces one frame every eighty milliseconds.",
    "Good morning, good evening, thank you very much, see you tomorrow.",
]
# Files the official checkpoints ship for the text tokenizer (no tokenizer.json there).
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def build_text_tokenizer():
    """Train the BPE and wrap it as Qwen2TokenizerFast; returns (tokenizer, special ids)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # "assistant" / "user" frequent enough to become single tokens, as in the real vocabulary: the official
    # prompt code slices the ids by position (role = first 3 tokens, suffix = last 5).
    bpe.train_from_iterator(BPE_CORPUS * 10 + ["assistant", "user"] * 200, trainer=trainer)
    tok = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    ids = {
        name: tok.convert_tokens_to_ids(t)
        for name, t in [
            ("im_start", "<|im_start|>"),
            ("im_end", "<|im_end|>"),
            ("tts_pad", "<tts_pad>"),
            ("tts_bos", "<tts_text_bos>"),
            ("tts_eos", "<tts_text_eod>"),
            ("assistant", "assistant"),
        ]
    }
    role = tok("<|im_start|>assistant\n")["input_ids"]
    assert role == [ids["im_start"], ids["assistant"], tok.convert_tokens_to_ids("Ċ")], role
    assert len(tok("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]) == 5
    assert len(tok("<|im_start|>user\n")["input_ids"]) == 3
    return tok, ids


# ---------------------------------------------------------------------------------------------------
# Configs (every id and vocabulary size is the real one; widths and depths are tiny)
# ---------------------------------------------------------------------------------------------------
LANGUAGES = {
    "chinese": 2055,
    "english": 2050,
    "german": 2053,
    "italian": 2070,
    "portuguese": 2071,
    "spanish": 2054,
    "japanese": 2058,
    "korean": 2064,
    "french": 2061,
    "russian": 2069,
}
DIALECTS = {"beijing_dialect": 2074, "sichuan_dialect": 2062}
CV_SPEAKERS = {"serena": 3066, "vivian": 3065, "uncle_fu": 3010, "dylan": 2878}
CV_DIALECT = {"serena": False, "vivian": False, "uncle_fu": False, "dylan": "beijing_dialect"}
TALKER_HIDDEN = 32


def talker_config(kind, text_vocab_size):
    """kind "base": talker 32 wide, code predictor 24 wide (small_to_mtp_projection is a Linear);
    "custom_voice" / "voice_design": both 32 wide (the projection is Identity)."""
    cp_hidden, cp_inter, cp_heads, cp_kv, cp_head_dim = (
        (24, 48, 2, 1, 12) if kind == "base" else (32, 64, 2, 1, 16)
    )
    languages = dict(LANGUAGES, **DIALECTS) if kind == "custom_voice" else dict(LANGUAGES)
    return dict(
        vocab_size=3072,
        text_vocab_size=text_vocab_size,
        num_code_groups=16,
        hidden_size=TALKER_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        text_hidden_size=16,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
        rope_theta=1000000,
        rope_scaling={"interleaved": True, "mrope_section": [2, 1, 1], "rope_type": "default"},
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        position_id_per_seconds=13,
        codec_bos_id=2149,
        codec_eos_token_id=2150,
        codec_pad_id=2148,
        codec_think_id=2154,
        codec_nothink_id=2155,
        codec_think_bos_id=2156,
        codec_think_eos_id=2157,
        codec_language_id=languages,
        spk_id=dict(CV_SPEAKERS) if kind == "custom_voice" else {},
        spk_is_dialect=dict(CV_DIALECT) if kind == "custom_voice" else {},
        code_predictor_config=dict(
            vocab_size=2048,
            hidden_size=cp_hidden,
            intermediate_size=cp_inter,
            num_hidden_layers=2,
            num_attention_heads=cp_heads,
            num_key_value_heads=cp_kv,
            head_dim=cp_head_dim,
            hidden_act="silu",
            max_position_embeddings=65536,
            rms_norm_eps=1e-6,
            rope_theta=1000000,
            rope_scaling=None,
            attention_bias=False,
            use_sliding_window=False,
            num_code_groups=16,
        ),
    )


SPEAKER_ENCODER = dict(
    mel_dim=128,
    enc_dim=32,
    enc_channels=[16, 16, 16, 16, 48],
    enc_kernel_sizes=[5, 3, 3, 3, 1],
    enc_dilations=[1, 2, 3, 4, 1],
    enc_attention_channels=8,
    enc_res2net_scale=8,
    enc_se_channels=8,
    sample_rate=24000,
)

CODEC_ENCODER = dict(
    audio_channels=1,
    num_filters=4,
    kernel_size=7,
    residual_kernel_size=3,
    last_kernel_size=3,
    num_residual_layers=1,
    compress=2,
    dilation_growth_rate=2,
    upsampling_ratios=[8, 6, 5, 4],
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=32,
    hidden_act="gelu",
    norm_eps=1e-5,
    layer_scale_initial_scale=0.01,
    rope_theta=10000.0,
    max_position_embeddings=8000,
    sliding_window=250,
    num_quantizers=32,
    num_semantic_quantizers=1,
    codebook_size=2048,
    codebook_dim=8,
    vector_quantization_hidden_dimension=8,
    pad_mode="constant",
    use_causal_conv=True,
    frame_rate=12.5,
    sampling_rate=24000,
    upsample_groups=16,
    trim_right_ratio=1.0,
    use_cache=False,
    use_streaming=False,
)
CODEC_DECODER = dict(
    codebook_size=2048,
    codebook_dim=8,
    hidden_size=16,
    latent_dim=16,
    max_position_embeddings=8000,
    rope_theta=10000,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=8,
    attention_bias=False,
    sliding_window=72,
    intermediate_size=32,
    hidden_act="silu",
    layer_scale_initial_scale=0.01,
    rms_norm_eps=1e-5,
    num_hidden_layers=1,
    num_quantizers=16,
    upsample_rates=[8, 5, 4, 3],
    upsampling_ratios=[2, 2],
    decoder_dim=32,
    attention_dropout=0.0,
)
CODEC = dict(
    encoder_config=CODEC_ENCODER,
    decoder_config=CODEC_DECODER,
    encoder_valid_num_quantizers=16,
    input_sample_rate=24000,
    output_sample_rate=24000,
    decode_upsample_rate=1920,
    encode_downsample_rate=1920,
)

# Official Base generation_config.json values.
GENERATION_CONFIG = dict(
    do_sample=True,
    repetition_penalty=1.05,
    temperature=0.9,
    top_p=1.0,
    top_k=50,
    subtalker_dosample=True,
    subtalker_temperature=0.9,
    subtalker_top_p=1.0,
    subtalker_top_k=50,
    max_new_tokens=8192,
)

# Checkpoint name -> (tts_model_type, tts_model_size, talker kind, weight seed). voice_design uses the
# custom_voice seed and shapes, so its model.safetensors is byte-identical and committed as a symlink.
CHECKPOINTS = {
    "base": ("base", "0b6", "base", 16),
    "custom_voice": ("custom_voice", "1b7", "custom_voice", 21),
    "voice_design": ("voice_design", "1b7", "voice_design", 21),
}
SHARED_WEIGHTS = {"voice_design": "custom_voice"}
CODEC_SEED = 40
# base_eos = base with talker.codec_head.weight[2150] (the EOS row) replaced by
# bf16(EOS_ROW_GAIN * randn(32, generator seeded EOS_ROW_SEED)); nothing else differs. It is not committed:
# fixtures.checkpoint_dir("base_eos") rebuilds it from base + the row bytes in outputs.npz. The values were
# searched so that EOS is the raw argmax at the prefill position (blocked there by min_new_tokens=2) and
# then wins after a few frames: greedy x-vector 4 frames, seeded x-vector 15, greedy ICL 8.
EOS_ROW_GAIN, EOS_ROW_SEED, EOS_ID = 1.5, 13, 2150


# ---------------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------------
def init_random_(model, seed):
    """Re-draw every weight so that signals keep an O(1) scale through the tiny networks (the
    official N(0, 0.02) init makes biases dominate and text rows nearly identical), and give random
    values to everything the official init leaves constant: norm weights, biases, codebooks
    (including the Mimi encoder's codebook *buffers*), SnakeBeta alpha/beta, LayerScale, ConvNeXt gamma.
    Linear / Conv weights ~ N(0, 1/fan_in); embeddings ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g)

    with torch.no_grad():
        for mod in model.modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, torch.nn.Embedding):
                w.copy_(randn(w.shape))
            elif isinstance(mod, torch.nn.ConvTranspose1d):
                w.copy_(randn(w.shape) * (mod.stride[0] / (w.shape[0] * w.shape[2])) ** 0.5)
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)):
                w.copy_(randn(w.shape) / w[0].numel() ** 0.5)
            else:
                continue
            if getattr(mod, "bias", None) is not None:
                mod.bias.copy_(0.1 * randn(mod.bias.shape))
        for name, t in model.state_dict(keep_vars=True).items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("embedding_sum", "embed_sum"):
                t.copy_(randn(t.shape))
            elif leaf == "cluster_usage":
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif leaf in ("alpha", "beta"):
                t.copy_(0.1 * randn(t.shape))
            elif leaf in ("gamma", "scale"):
                t.copy_(0.1 + 0.05 * randn(t.shape))
            elif (
                t.is_floating_point()
                and t.dim() == 1
                and leaf in ("weight", "bias")
                and bool((t == t[0]).all())
            ):
                t.copy_(float(t[0]) + 0.1 * randn(t.shape))  # norms: 1 + noise, their biases: noise


def strip_speaker_encoder_config(ckpt):
    """Package bug: save_pretrained writes speaker_encoder_config keys (e.g. model_type) that
    Qwen3TTSSpeakerEncoderConfig.__init__ (no **kwargs) rejects on reload. Keep only its parameters."""
    import inspect

    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig

    allowed = set(inspect.signature(Qwen3TTSSpeakerEncoderConfig.__init__).parameters) - {"self"}
    path = ckpt / "config.json"
    cfg = json.loads(path.read_text())
    cfg["speaker_encoder_config"] = {k: v for k, v in cfg["speaker_encoder_config"].items() if k in allowed}
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_text_tokenizer(ckpt, tok):
    from qwen_tts.core.models import Qwen3TTSProcessor

    Qwen3TTSProcessor(tokenizer=tok).save_pretrained(str(ckpt))
    for p in ckpt.iterdir():  # keep only what the official checkpoints ship
        if (
            p.is_file()
            and p.name.startswith(
                (
                    "tokenizer",
                    "special_tokens",
                    "added_tokens",
                    "vocab",
                    "merges",
                    "processor",
                    "chat_template",
                )
            )
            and p.name not in TOKENIZER_FILES
        ):
            p.unlink()


def build_codec(out):
    """speech_tokenizer/ shared by every checkpoint (fp32, as the official file)."""
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model
    from transformers import EncodecFeatureExtractor

    torch.manual_seed(CODEC_SEED)
    cfg = Qwen3TTSTokenizerV2Config(**CODEC)
    cfg.architectures = ["Qwen3TTSTokenizerV2Model"]
    codec = Qwen3TTSTokenizerV2Model(cfg).eval()
    init_random_(codec, CODEC_SEED + 1)
    with torch.no_grad():  # keep the waveform inside (-1, 1): damp residual units and the output conv
        for name, p in codec.decoder.decoder.named_parameters():
            if name.endswith("conv2.conv.weight"):
                p.mul_(0.25)
        codec.decoder.decoder[-1].conv.weight.mul_(0.1)
    codec.save_pretrained(str(out), safe_serialization=True)
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, chunk_length_s=None, overlap=None
    ).save_pretrained(str(out))


def build_checkpoint(ckpt, name, tok, ids, codec_dir):
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    model_type, size, kind, seed = CHECKPOINTS[name]
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = Qwen3TTSConfig(
        talker_config=talker_config(kind, len(tok) + 8),
        speaker_encoder_config=dict(SPEAKER_ENCODER),
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size=size,
        tts_model_type=model_type,
        im_start_token_id=ids["im_start"],
        im_end_token_id=ids["im_end"],
        tts_pad_token_id=ids["tts_pad"],
        tts_bos_token_id=ids["tts_bos"],
        tts_eos_token_id=ids["tts_eos"],
        assistant_token_id=ids["assistant"],
        architectures=["Qwen3TTSForConditionalGeneration"],
    )
    model = Qwen3TTSForConditionalGeneration(cfg).eval()
    init_random_(model, seed + 1)
    model.to(torch.bfloat16).save_pretrained(str(ckpt), safe_serialization=True)
    if name in SHARED_WEIGHTS:
        weights, twin = ckpt / "model.safetensors", ckpt.parent / SHARED_WEIGHTS[name] / "model.safetensors"
        assert weights.read_bytes() == twin.read_bytes(), f"{name} weights differ from {twin}"
        weights.unlink()
        weights.symlink_to(os.path.relpath(twin, ckpt))
    finish_checkpoint(ckpt, tok, codec_dir)


def finish_checkpoint(ckpt, tok, codec_dir):
    strip_speaker_encoder_config(ckpt)
    (ckpt / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    save_text_tokenizer(ckpt, tok)
    link = ckpt / "speech_tokenizer"
    if codec_dir != link:
        link.symlink_to(os.path.relpath(codec_dir, ckpt), target_is_directory=True)


def eos_row_bytes():
    """Raw little-endian bf16 bytes of the replacement EOS row of talker.codec_head.weight."""
    g = torch.Generator().manual_seed(EOS_ROW_SEED)
    row = (EOS_ROW_GAIN * torch.randn(TALKER_HIDDEN, generator=g)).to(torch.bfloat16)
    return row.view(torch.int16).numpy().astype("<i2").tobytes()


# ---------------------------------------------------------------------------------------------------
# Reference audio (deterministic synthetic clips)
# ---------------------------------------------------------------------------------------------------
REF_TEXT = "reference transcript for voice cloning"


def reference_clip(sr, seconds, seed):
    """Two tones, a chirp and noise under a slow amplitude envelope; |x| < 1."""
    t = np.arange(int(round(sr * seconds))) / sr
    rng = np.random.default_rng(seed)
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    chirp = np.sin(2 * np.pi * (300 * t + 400 * t**2))
    x = env * (0.25 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 523 * t) + 0.15 * chirp)
    return (x + 0.03 * rng.standard_normal(t.shape)).astype(np.float32)


REFERENCES = {
    "ref24": (24000, 3.0, 1),
    "ref16": (16000, 2.5, 2),
}  # name -> (sample rate, seconds, noise seed)

# ---------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------
TEXT = "Hello world. This is a tiny test of speech."
TEXT_LONG = (
    "The quick brown fox jumps over the lazy dog, 0123456789 times! Good morning, good evening, "
    "thank you very much, see you tomorrow."
)  # > 38 ICL codec rows -> Lt > Lc
TEXT_SHORT = "Hi."
TEXT_ZH = "你好，世界。今天天气很好。"
INSTRUCT_CV = "Speak slowly and warmly, like telling a story to a friend."
INSTRUCT_VD = "A calm young female voice with a clear and bright tone."
GREEDY = {"do_sample": False, "subtalker_dosample": False}
SHORT = {"max_new_tokens": 13, "eos_token_id": -1}  # exactly 12 frames


def case(
    name,
    checkpoint,
    api,
    text,
    gen,
    *,
    language="English",
    ref_audio=None,
    ref_text=None,
    x_vector_only_mode=False,
    speaker=None,
    instruct=None,
    non_streaming_mode=None,
    seed=None,
):
    if non_streaming_mode is None:  # the official per-API default
        non_streaming_mode = api != "voice_clone"
    ref_sample_rate = REFERENCES[ref_audio][0] if ref_audio else None
    return dict(
        name=name,
        checkpoint=checkpoint,
        api=api,
        text=text,
        language=language,
        ref_audio=ref_audio,
        ref_sample_rate=ref_sample_rate,
        ref_text=ref_text,
        x_vector_only_mode=x_vector_only_mode,
        speaker=speaker,
        instruct=instruct,
        non_streaming_mode=non_streaming_mode,
        gen=gen,
        seed=seed,
    )


def xvec(name, gen, ckpt="base", **kw):
    return case(
        name,
        ckpt,
        "voice_clone",
        kw.pop("text", TEXT),
        gen,
        ref_audio=kw.pop("ref_audio", "ref24"),
        x_vector_only_mode=True,
        **kw,
    )


def icl(name, gen, ckpt="base", **kw):
    return case(
        name,
        ckpt,
        "voice_clone",
        kw.pop("text", TEXT_LONG),
        gen,
        ref_audio=kw.pop("ref_audio", "ref24"),
        ref_text=REF_TEXT,
        **kw,
    )


CASES = [
    xvec("xvec_stream_greedy", {**GREEDY, **SHORT}),
    xvec("xvec_stream_seeded", dict(SHORT), seed=1234),
    xvec("xvec_nonstream_greedy", {**GREEDY, **SHORT}, non_streaming_mode=True),
    xvec("xvec_auto_greedy", {**GREEDY, **SHORT}, language="Auto"),
    xvec("xvec_rp1_greedy", {**GREEDY, **SHORT, "repetition_penalty": 1.0}),
    # 1.05 never changes a greedy choice of these random models; < 1 boosts generated ids, so it decides here
    xvec("xvec_rp05_greedy", {**GREEDY, **SHORT, "repetition_penalty": 0.5}),
    xvec("xvec_max40_greedy", {**GREEDY, "max_new_tokens": 40}),
    icl("icl_stream_greedy", {**GREEDY, **SHORT}),
    icl("icl_stream_seeded", dict(SHORT), seed=4321),
    icl("icl_nonstream_greedy", {**GREEDY, **SHORT}, non_streaming_mode=True),
    icl("icl_short_greedy", {**GREEDY, **SHORT}, text=TEXT_SHORT),
    icl("icl_auto_seeded", dict(SHORT), language="Auto", seed=8),
    icl("icl_ref16_greedy", {**GREEDY, **SHORT}, ref_audio="ref16"),
    icl("icl_long_greedy", {**GREEDY, "max_new_tokens": 121, "eos_token_id": -1}),
    case("cv_serena_greedy", "custom_voice", "custom_voice", TEXT, {**GREEDY, **SHORT}, speaker="serena"),
    case("cv_serena_seeded", "custom_voice", "custom_voice", TEXT, dict(SHORT), speaker="serena", seed=99),
    case(
        "cv_dylan_chinese_greedy",
        "custom_voice",
        "custom_voice",
        TEXT_ZH,
        {**GREEDY, **SHORT},
        speaker="dylan",
        language="Chinese",
    ),
    case(
        "cv_dylan_auto_greedy",
        "custom_voice",
        "custom_voice",
        TEXT_ZH,
        {**GREEDY, **SHORT},
        speaker="dylan",
        language="Auto",
    ),
    case(
        "cv_instruct_greedy",
        "custom_voice",
        "custom_voice",
        TEXT,
        {**GREEDY, **SHORT},
        speaker="vivian",
        instruct=INSTRUCT_CV,
    ),
    case(
        "cv_stream_greedy",
        "custom_voice",
        "custom_voice",
        TEXT,
        {**GREEDY, **SHORT},
        speaker="uncle_fu",
        non_streaming_mode=False,
    ),
    case("vd_greedy", "voice_design", "voice_design", TEXT, {**GREEDY, **SHORT}, instruct=INSTRUCT_VD),
    case("vd_seeded", "voice_design", "voice_design", TEXT, dict(SHORT), instruct=INSTRUCT_VD, seed=2024),
    xvec("eos_xvec_greedy", {**GREEDY, "max_new_tokens": 60}, ckpt="base_eos"),
    xvec("eos_xvec_seeded", {"max_new_tokens": 60}, ckpt="base_eos", seed=5),
    icl("eos_icl_greedy", {**GREEDY, "max_new_tokens": 60}, ckpt="base_eos"),
]
CP_LOGIT_CASES = ("xvec_stream_greedy", "cv_serena_greedy")  # raw code-predictor logits of frame 0


# ---------------------------------------------------------------------------------------------------
# Running the official pipeline
# ---------------------------------------------------------------------------------------------------
class Probe:
    """Records, for one public-API call, what the official model did: the codes returned by
    model.generate, the talker prompt (inputs_embeds, trailing_text_hidden), the raw talker logits at
    the last prefill position, the raw code-predictor logits of frame 0 and the speaker-encoder mels."""

    def __init__(self, tts):
        self.tts = tts

    def __enter__(self):
        m = self.tts.model
        self.codes, self.prompt, self.talker_logits, self.cp_logits, self.mels = None, None, [], [], []
        gen, talker_gen = m.generate, m.talker.generate

        def generate(*a, **k):
            out = gen(*a, **k)
            self.codes = out[0][0].detach().clone()
            return out

        def talker_generate(*a, **k):
            self.prompt = (
                k["inputs_embeds"][0].detach().clone(),
                k["trailing_text_hidden"][0].detach().clone(),
            )
            return talker_gen(*a, **k)

        m.generate, m.talker.generate = generate, talker_generate

        def talker_out(mod, args, out):  # call 0 is the prefill
            self.talker_logits.append(out.logits[0, -1].clone())

        def cp_out(mod, args, out):  # calls 0..14 make the residual codebooks of frame 0
            if len(self.cp_logits) < 15:
                self.cp_logits.append(out.logits[0, -1].clone())

        self.hooks = [
            m.talker.register_forward_hook(talker_out),
            m.talker.code_predictor.register_forward_hook(cp_out),
        ]
        if m.speaker_encoder is not None:
            self.hooks.append(
                m.speaker_encoder.register_forward_pre_hook(lambda mod, a: self.mels.append(a[0][0].clone()))
            )
        return self

    def __exit__(self, *exc):
        m = self.tts.model
        del m.generate, m.talker.generate
        for h in self.hooks:
            h.remove()


def run_case(tts, c, refs):
    """One public-API call exactly as recorded in the case; returns (wav, probe)."""
    with Probe(tts) as probe:
        if c["seed"] is not None:
            torch.manual_seed(c["seed"])
        if c["api"] == "voice_clone":
            sr, audio = refs[c["ref_audio"]]
            wavs, fs = tts.generate_voice_clone(
                text=c["text"],
                language=c["language"],
                ref_audio=(audio, sr),
                ref_text=c["ref_text"],
                x_vector_only_mode=c["x_vector_only_mode"],
                non_streaming_mode=c["non_streaming_mode"],
                **c["gen"],
            )
        elif c["api"] == "custom_voice":
            wavs, fs = tts.generate_custom_voice(
                text=c["text"],
                speaker=c["speaker"],
                language=c["language"],
                instruct=c["instruct"],
                non_streaming_mode=c["non_streaming_mode"],
                **c["gen"],
            )
        else:
            wavs, fs = tts.generate_voice_design(
                text=c["text"],
                instruct=c["instruct"],
                language=c["language"],
                non_streaming_mode=c["non_streaming_mode"],
                **c["gen"],
            )
    assert fs == 24000 and len(wavs) == 1
    return wavs[0], probe


def text_ids(tts, text):
    return tts._tokenize_texts([text])[0][0].numpy().astype(np.int64)


def record_case(tts, c, refs, arrays):
    wav, probe = run_case(tts, c, refs)
    name, codes = c["name"], probe.codes.numpy().astype(np.int64)
    arrays[f"{name}/codes"] = codes
    arrays[f"{name}/wav"] = np.asarray(wav, dtype=np.float32)
    arrays[f"{name}/inputs_embeds"] = probe.prompt[0].float().numpy()
    arrays[f"{name}/trailing_text_hidden"] = probe.prompt[1].float().numpy()
    arrays[f"{name}/prefill_logits"] = probe.talker_logits[0].float().numpy()
    arrays[f"{name}/input_ids"] = text_ids(tts, tts._build_assistant_text(c["text"]))
    if c["instruct"]:
        arrays[f"{name}/instruct_ids"] = text_ids(tts, tts._build_instruct_text(c["instruct"]))
    if name in CP_LOGIT_CASES:
        assert len(probe.cp_logits) == 15
        arrays[f"{name}/cp_logits_frame0"] = torch.stack(probe.cp_logits).float().numpy()
    c["resolved_gen"] = tts._merge_generate_kwargs(**c["gen"])
    c["frames"] = int(codes.shape[0])
    c["wav_samples"] = int(wav.shape[0])
    c["prompt_rows"] = int(probe.prompt[0].shape[0])
    c["trailing_rows"] = int(probe.prompt[1].shape[0])
    if c["api"] == "voice_clone" and not c["x_vector_only_mode"]:
        ref_frames = int(arrays[f"{c['ref_audio']}/ref_codes"].shape[0])
        total = (ref_frames + c["frames"]) * 1920
        cut = total - c["wav_samples"]
        assert cut == int(ref_frames / (ref_frames + c["frames"]) * total), (cut, ref_frames, c["frames"])
        c["ref_frames"], c["icl_cut_samples"] = ref_frames, cut
    else:
        assert c["wav_samples"] == c["frames"] * 1920


def record_references(tts, refs, arrays):
    """Reference clips, their x-vectors, mel (24 kHz clip) and reference codes, through the official API."""
    import librosa

    for key, (sr, audio) in refs.items():
        arrays[f"{key}/audio"] = audio
        if sr != 24000:
            arrays[f"{key}/audio_24k"] = librosa.resample(y=audio, orig_sr=sr, target_sr=24000).astype(
                np.float32
            )
        with Probe(tts) as probe:
            item = tts.create_voice_clone_prompt(ref_audio=(audio, sr), ref_text=REF_TEXT)[0]
        arrays[f"{key}/xvector"] = item.ref_spk_embedding.float().numpy()
        arrays[f"{key}/ref_codes"] = item.ref_code.numpy().astype(np.int64)
        if sr == 24000:
            arrays[f"{key}/mel"] = probe.mels[0].float().numpy()
    arrays["ref_text/input_ids"] = text_ids(tts, tts._build_ref_text(REF_TEXT))


def record_codec(tts, arrays):
    g = torch.Generator().manual_seed(77)
    for n in (40, 150):
        codes = torch.randint(0, 2048, (n, 16), generator=g, dtype=torch.int64)
        wavs, fs = tts.model.speech_tokenizer.decode([{"audio_codes": codes}])
        arrays[f"codec/codes{n}"] = codes.numpy()
        arrays[f"codec/wav{n}"] = np.asarray(wavs[0], dtype=np.float32)


def check_cases(cases):
    by = {c["name"]: c for c in cases}
    for c in cases:  # eos_token_id=-1 does not stop a sampled 2150 from truncating the output: avoid it
        if c["gen"].get("eos_token_id") == -1:
            assert c["frames"] == c["gen"]["max_new_tokens"] - 1, (c["name"], c["frames"])
    assert by["icl_stream_greedy"]["trailing_rows"] > 1, "TEXT_LONG must give Lt > Lc"
    assert by["icl_short_greedy"]["trailing_rows"] == 1, "TEXT_SHORT must give Lt < Lc"
    for n in ("eos_xvec_greedy", "eos_xvec_seeded"):
        assert 3 <= by[n]["frames"] <= 20, (n, by[n]["frames"])
    assert by["eos_icl_greedy"]["frames"] < 59


def write_npz(path, arrays):
    """np.savez_compressed equivalent with fixed member timestamps (byte-reproducible)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "fixtures" / "parity")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from qwen_tts import Qwen3TTSModel

    out = args.out
    for name in CHECKPOINTS:
        if (out / name).exists():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)

    tok, ids = build_text_tokenizer()
    codec_dir = out / "base" / "speech_tokenizer"
    build_codec(codec_dir)
    for name in CHECKPOINTS:
        build_checkpoint(out / name, name, tok, ids, codec_dir)
    tmp = Path(tempfile.mkdtemp(prefix="base_eos-"))
    derive_checkpoint(out / "base", tmp, "talker.codec_head.weight", EOS_ID, eos_row_bytes())
    dirs = {**{name: out / name for name in CHECKPOINTS}, "base_eos": tmp}

    refs = {k: (sr, reference_clip(sr, sec, seed)) for k, (sr, sec, seed) in REFERENCES.items()}
    arrays, cases = {}, [dict(c) for c in CASES]
    models = {
        name: Qwen3TTSModel.from_pretrained(str(d), dtype=torch.float32, device_map="cpu")
        for name, d in dirs.items()
    }
    record_references(models["base"], refs, arrays)
    record_codec(models["base"], arrays)
    for c in cases:
        record_case(models[c["checkpoint"]], c, refs, arrays)
        print(
            f"{c['name']:26s} frames={c['frames']:4d} prompt={c['prompt_rows']} trailing={c['trailing_rows']}"
        )
    check_cases(cases)

    checkpoints = {
        name: dict(
            model_sha256=file_sha256(d / "model.safetensors"),
            speech_tokenizer_sha256=file_sha256(d / "speech_tokenizer" / "model.safetensors"),
        )
        for name, d in dirs.items()
    }
    for name, twin in SHARED_WEIGHTS.items():
        checkpoints[name]["weights_shared_with"] = twin
    arrays["base_eos/codec_head_row_bytes"] = np.frombuffer(eos_row_bytes(), dtype=np.uint8)
    checkpoints["base_eos"].update(
        derived_from="base",
        row_patch=dict(
            tensor="talker.codec_head.weight",
            row=EOS_ID,
            bytes_key="base_eos/codec_head_row_bytes",
            dtype="bf16",
            gain=EOS_ROW_GAIN,
            seed=EOS_ROW_SEED,
        ),
    )
    shutil.rmtree(tmp)
    manifest = dict(
        checkpoints=checkpoints,
        references={
            k: dict(audio=f"{k}/audio", sample_rate=sr, seconds=sec, ref_text=REF_TEXT)
            for k, (sr, sec, _) in REFERENCES.items()
        },
        cases=cases,
    )
    (out / "cases.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    write_npz(out / "outputs.npz", arrays)
    total = sum((Path(root) / f).lstat().st_size for root, _, files in os.walk(out) for f in files)
    print(f"wrote {len(cases)} cases, {len(arrays)} arrays; {total / 1e6:.2f} MB under {out}")


if __name__ == "__main__":
    main()
