"""Talker: the 28-layer (0.6B/1.7B) transformer that predicts codebook 0 of each 80 ms frame.

Every input row is the sum of a text-track vector (`text_embed`: text embedding 2048 -> SiLU MLP ->
hidden) and a codec-track vector (`codec_embedding`, 3072 ids: 2048 codes + control/language/speaker
ids). Outputs are post-norm hidden states [B, S, H]; `logits` maps the last one to the 3072 codec ids.
The official "MRoPE" feeds the same position to all three axes, which is exactly 1-D RoPE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TalkerConfig
from .kv_cache import KVView
from .layers import DecoderStack
from .linear import InferenceLinear


class TextProjection(nn.Module):
    def __init__(self, text_hidden: int, hidden: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.linear_fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class Talker(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)
        self.text_projection = TextProjection(cfg.text_hidden_size, cfg.hidden_size)
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.stack = DecoderStack(cfg)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.head: InferenceLinear | None = None

    def prepare(self) -> None:
        """Inference-ready projections (after loading and placing the weights)."""
        self.stack.prepare()
        self.head = InferenceLinear(self.codec_head.weight)
        del self.codec_head

    def text_embed(self, ids: torch.Tensor) -> torch.Tensor:
        # ids [..., n] -> [..., n, H]
        return self.text_projection(self.text_embedding(ids))

    def forward(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor | range,
        kv: KVView,
        write_pos: int | torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # embeds [B, S, H] -> post-norm hidden [B, S, H]
        return self.stack(embeds, positions, kv, write_pos, mask)

    def logits(self, hidden_last: torch.Tensor) -> torch.Tensor:
        # [B, H] -> [B, 3072] in float32 (sampling is always fp32, as HF casts it)
        head = self.codec_head if self.head is None else self.head
        return head(hidden_last).float()
