"""Reference audio -> 12Hz codes, with transformers' Mimi encoder as the official tokenizer uses it.

`CodecEncoder.mimi` is a `transformers.MimiModel` built from `speech_tokenizer/config.json`'s
`encoder_config`, with its decoder halves (`upsample`, `decoder_transformer`, `decoder`) removed; it
loads the checkpoint's `encoder.*` tensors (prefix stripped) with strict=True.

`encode(wav [N] float32 at 24 kHz) -> [T, Q] int64`, T = ceil(N / 1920), Q = encoder_valid_num_quantizers
(16 of Mimi's 32). The official pipeline first runs `EncodecFeatureExtractor` on the clip; for one mono
clip that only makes it a float32 `[1, N]` batch with an all-ones padding mask (used only for T), so
it needs no counterpart here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import MimiConfig, MimiModel
from transformers.modeling_utils import no_init_weights

from ..config import CodecConfig


class CodecEncoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        with no_init_weights():  # every tensor is overwritten by the checkpoint
            mimi = MimiModel(MimiConfig(**cfg.encoder))
        mimi.upsample = mimi.decoder_transformer = mimi.decoder = None
        self.mimi = mimi.eval()
        self.num_quantizers = cfg.encoder_valid_num_quantizers
        self.frame_samples = cfg.encode_downsample_rate

    @torch.inference_mode()
    def encode(self, wav_24k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """wav [N] float32 at 24 kHz -> codes [ceil(N / 1920), Q] int64 on the model's device."""
        p = next(self.mimi.parameters())
        x = torch.as_tensor(wav_24k, dtype=torch.float32).reshape(-1)
        if x.numel() == 0:
            raise ValueError("cannot encode empty audio")
        frames = math.ceil(x.numel() / self.frame_samples)
        x = x.to(device=p.device, dtype=p.dtype)[None, None]  # [1, 1, N]
        codes = self.mimi.encode(x, return_dict=True).audio_codes  # [1, n_q, T_all]
        return codes[0, : self.num_quantizers, :frames].T.contiguous()  # [T, Q]
