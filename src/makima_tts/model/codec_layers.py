"""Blocks of the 12Hz codec decoder around the causal convolutions (`conv.py`), and its quantizer.

Layout everywhere is channels-first `[B, C, T]`. Blocks that contain stateful convs take those convs'
`CodecState` tensors from the caller (in `state_shapes()` order) and hand each conv its own; the
blocks keep only weights. Structure and parameter names follow the official decoder, so `decoder.*`
checkpoint keys load unchanged.

- `SnakeBeta` activation; `ConvNeXtBlock` (one stateful depthwise conv); `ResidualUnit` (one stateful
  dilated conv and a 1x1 conv); `DecoderBlock` (a transposed conv and three residual units).
- `SplitRVQ` dequantizes codes `[B, Q, T]` to `[B, codebook_dim, T]` (no state).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import CausalConv, CausalTransConv


class SnakeBeta(nn.Module):
    """x + 1/(e^beta + 1e-9) * sin(x * e^alpha)^2, alpha and beta stored in log scale, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.exp(self.alpha)[None, :, None]
        beta = torch.exp(self.beta)[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv k7 -> LayerNorm -> Linear 4x -> GELU(erf) -> Linear -> gamma, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def state_shapes(self) -> list[tuple[int, int]]:
        return self.dwconv.state_shapes()

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # x [B, C, T] -> [B, C, T]; history: the depthwise conv's state
        h = self.dwconv(x, history).transpose(1, 2)  # [B, T, C]
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv(dim, dim, 1)

    def state_shapes(self) -> list[tuple[int, int]]:
        return self.conv1.state_shapes()  # conv2 (kernel 1) has none

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # x [B, C, T] -> [B, C, T]; history: conv1's state
        h = self.conv1(self.act1(x), history)
        return x + self.conv2(self.act2(h))


class DecoderBlock(nn.Module):
    """SnakeBeta -> transposed conv (x rate, channels halved) -> residual units with dilation 1, 3, 9."""

    def __init__(self, c_in: int, rate: int):
        super().__init__()
        c_out = c_in // 2
        self.block = nn.ModuleList(
            [SnakeBeta(c_in), CausalTransConv(c_in, c_out, 2 * rate, rate)]
            + [ResidualUnit(c_out, d) for d in (1, 3, 9)]
        )
        self.n_states = len(self.state_shapes())

    def state_shapes(self) -> list[tuple[int, int]]:
        return [shape for layer in self.block[1:] for shape in layer.state_shapes()]

    def forward(self, x: torch.Tensor, states: Sequence[torch.Tensor]) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_in/2, T*rate]; states: the transposed conv's tail, then each unit's history
        tail, *histories = states
        x = self.block[1](self.block[0](x), tail)  # [B, C_in/2, T*rate]
        for unit, history in zip(self.block[2:], histories, strict=True):
            x = unit(x, history)
        return x


class Codebook(nn.Module):
    """EMA codebook: vector k is embedding_sum[k] / max(cluster_usage[k], 1e-5)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(size))
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [B, T] -> [B, T, dim]; divides only the looked-up rows (same values as the full table)
        usage = self.cluster_usage.clamp(min=1e-5)[codes]
        return F.embedding(codes, self.embedding_sum) / usage[..., None]


class CodebookLayer(nn.Module):
    """One residual level (the checkpoint nests the codebook as `layers.{i}._codebook`)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self._codebook = Codebook(size, dim)


class CodebookStack(nn.Module):
    def __init__(self, levels: int, size: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([CodebookLayer(size, dim) for _ in range(levels)])

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [B, levels, T] -> sum of the levels' vectors [B, dim, T]
        out = self.layers[0]._codebook(codes[:, 0])
        for i in range(1, len(self.layers)):
            out = out + self.layers[i]._codebook(codes[:, i])
        return out.transpose(1, 2)


class ProjectedRVQ(nn.Module):
    """Residual codebooks with 1x1 projections; `input_proj` is only used by encoders (kept to load)."""

    def __init__(self, levels: int, size: int, dim: int, outer_dim: int):
        super().__init__()
        self.input_proj = nn.Conv1d(outer_dim, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, outer_dim, 1, bias=False)
        self.vq = CodebookStack(levels, size, dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.output_proj(self.vq(codes))  # [B, outer_dim, T]


class SplitRVQ(nn.Module):
    """Codebook 0 (semantic) and codebooks 1.. (acoustic) with separate projections, summed."""

    def __init__(self, num_quantizers: int, size: int, outer_dim: int):
        super().__init__()
        self.rvq_first = ProjectedRVQ(1, size, outer_dim // 2, outer_dim)
        self.rvq_rest = ProjectedRVQ(num_quantizers - 1, size, outer_dim // 2, outer_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # codes [B, Q, T] int64 (>= 0) -> [B, outer_dim, T]
        return self.rvq_first(codes[:, :1]) + self.rvq_rest(codes[:, 1:])
