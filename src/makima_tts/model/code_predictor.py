"""Code predictor (MTP): from the talker's last hidden state and codebook 0, predicts codebooks 1..15.

Per frame it runs a fresh 16-position sequence: position 0 = the talker's post-norm hidden, position 1 =
the talker embedding of codebook 0 (-> `lm_head[0]` gives codebook 1), position g+1 =
`codec_embedding[g-1](c_g)` (-> `lm_head[g]` gives codebook g+1). Embeddings live in talker width and
are projected (`projection`, the official `small_to_mtp_projection`; Identity when widths match) to the
predictor width.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import CodePredictorConfig, TalkerConfig
from .kv_cache import KVView
from .layers import DecoderStack
from .linear import InferenceLinear


class CodePredictor(nn.Module):
    def __init__(self, cfg: CodePredictorConfig, talker_cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        groups = talker_cfg.num_code_groups - 1
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, talker_cfg.hidden_size) for _ in range(groups)
        )
        self.stack = DecoderStack(cfg)
        self.lm_head = nn.ModuleList(nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(groups))
        if talker_cfg.hidden_size != cfg.hidden_size:
            self.projection: nn.Module = nn.Linear(talker_cfg.hidden_size, cfg.hidden_size, bias=True)
        else:
            self.projection = nn.Identity()

        self.heads: list[InferenceLinear] | None = None

    def prepare(self) -> None:
        """Inference-ready projections (after loading and placing the weights)."""
        self.stack.prepare()
        self.heads = [InferenceLinear(head.weight) for head in self.lm_head]
        del self.lm_head

    def forward(self, embeds: torch.Tensor, start: int, kv: KVView) -> torch.Tensor:
        # embeds [B, S, H_talker] at positions start..start+S-1 -> hidden [B, S, H_cp]
        positions = range(start, start + embeds.shape[1])
        return self.stack(self.projection(embeds), positions, kv, start, None)

    def logits(self, hidden_last: torch.Tensor, group: int) -> torch.Tensor:
        # [B, H_cp] -> [B, 2048] float32 logits for codebook `group` (1..15)
        head = self.lm_head[group - 1] if self.heads is None else self.heads[group - 1]
        return head(hidden_last).float()

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [..., 15] (codebooks 1..15) -> per-codebook talker-width embeddings [..., 15, H_talker]
        return torch.stack([emb(codes[..., g]) for g, emb in enumerate(self.codec_embedding)], dim=-2)
