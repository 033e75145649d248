"""TTSModel: every network of one checkpoint, loaded once, plus the text tokenizer.

Holds the loaded networks (talker, code predictor, codec decoder, and for Base models the speaker
encoder and codec encoder used to clone voices), the tokenizer, the config and a weights fingerprint;
nothing per request and no caches (KV caches, slots, codec rows and primed codec states live in the
engine). Voice cloning (`create_voice_prompt`) is model work: call it from a worker thread, never from
the event loop.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..audio import resample
from ..config import ModelConfig, load_model_config
from ..hub import Progress, resolve
from ..text import RegexChoice, TextTokenizer
from ..voice_prompt import VoicePrompt
from ..weights import WeightsError, load_strict, read_checkpoint
from .code_predictor import CodePredictor
from .codec import CodecDecoder
from .codec_encoder import CodecEncoder
from .speaker import SpeakerEncoder, mel_spectrogram
from .talker import Talker

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TTSModel:
    def __init__(self, config: ModelConfig, tokenizer: TextTokenizer, talker: Talker, code_predictor: CodePredictor,
                 codec: CodecDecoder, speaker_encoder: SpeakerEncoder | None, codec_encoder: CodecEncoder | None,
                 device: torch.device, dtype: torch.dtype, source: str = ""):
        self.config, self.tokenizer = config, tokenizer
        self.talker, self.code_predictor, self.codec = talker, code_predictor, codec
        self.speaker_encoder, self.codec_encoder = speaker_encoder, codec_encoder
        self.device, self.dtype, self.source = device, dtype, source
        self.fingerprint = self._fingerprint()

    @property
    def sample_rate(self) -> int:
        """Hz of the audio in and out (the speech tokenizer's `output_sample_rate`, 24000)."""
        return self.config.codec.output_sample_rate

    @property
    def frame_samples(self) -> int:
        """Samples per generated frame (`decode_upsample_rate`, 1920: 80 ms)."""
        return self.config.codec.decode_upsample_rate

    @classmethod
    def load(cls, source: str | Path, *, device: str = "cpu", dtype: str = "float32",
             progress: Progress | None = None, tokenizer_regex: RegexChoice = "official") -> TTSModel:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but this torch build sees no CUDA GPU; use --device cpu")
        report = progress or (lambda stage, fraction: None)
        resolved = resolve(str(source), progress)
        root = resolved.path
        config = load_model_config(root)
        tokenizer = TextTokenizer.from_dir(root, regex=tokenizer_regex, from_local_dir=resolved.from_local_dir,
                                           transformers_version=config.transformers_version)
        report("weights", 0.0)
        parts, unexpected = read_checkpoint(root)
        if unexpected:
            raise WeightsError(f"{root}: unexpected tensors in the checkpoint: {', '.join(unexpected[:20])}")
        torch_dtype, torch_device = DTYPES[dtype], torch.device(device)
        with torch.device("meta"):
            talker = Talker(config.talker)
            code_predictor = CodePredictor(config.code_predictor, config.talker)
        load_strict(talker, parts.pop("talker", {}), "talker", torch_dtype)
        load_strict(code_predictor, parts.pop("code_predictor", {}), "code predictor", torch_dtype)
        report("weights", 0.6)
        codec = CodecDecoder(config.codec.decoder)
        load_strict(codec, parts.pop("codec_decoder", {}), "codec decoder", torch_dtype)
        speaker_encoder = codec_encoder = None
        if config.tts_model_type == "base":
            speaker_encoder = SpeakerEncoder(config.speaker_encoder)
            load_strict(speaker_encoder, parts.pop("speaker_encoder", {}), "speaker encoder", torch_dtype)
            codec_encoder = CodecEncoder(config.codec)
            load_strict(codec_encoder, parts.pop("codec_encoder", {}), "codec encoder", torch.float32)
        parts.pop("codec_encoder", None)  # every speech tokenizer ships its encoder; only Base models clone
        leftover = [name for name, part in parts.items() if part]
        if leftover:
            raise WeightsError(f"{root}: tensors for components this model type does not use: {', '.join(leftover)}")
        report("weights", 0.9)
        modules = [talker, code_predictor, codec, speaker_encoder, codec_encoder]
        for module in modules:
            if module is not None:
                module.to(torch_device).eval().requires_grad_(False)
        talker.prepare()
        code_predictor.prepare()
        codec.prepare()
        report("weights", 1.0)
        return cls(config, tokenizer, talker, code_predictor, codec, speaker_encoder, codec_encoder,
                   torch_device, torch_dtype, str(source))

    # ------------------------------------------------------------------ voices
    @torch.inference_mode()
    def create_voice_prompt(self, wav: np.ndarray, sr: int, ref_text: str | None = None) -> VoicePrompt:
        """Clone a voice from mono float32 audio: ICL when a transcript is given, x-vector only otherwise."""
        if self.speaker_encoder is None or self.codec_encoder is None:
            raise ValueError(f"a {self.config.tts_model_type} model cannot clone voices; use a Base model")
        wav24 = resample(np.asarray(wav, dtype=np.float32), sr, self.sample_rate)
        mel = mel_spectrogram(torch.from_numpy(wav24)).to(self.device, self.dtype)  # [1, T, 128]
        x_vector = self.speaker_encoder(mel)[0].float().cpu()
        if not ref_text:
            return VoicePrompt("xvector", x_vector)
        codes = self.codec_encoder.encode(torch.from_numpy(wav24).to(self.device)).cpu()
        return VoicePrompt("icl", x_vector, codes, ref_text)

    def _fingerprint(self) -> str:
        """Identifies the weights a voice prompt depends on (speaker and codec encoders) plus the config."""
        digest = hashlib.sha256(repr(self.config).encode())
        for module in (self.speaker_encoder, self.codec_encoder, self.talker.codec_embedding):
            if module is None:
                continue
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]
