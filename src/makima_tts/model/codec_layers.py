"""Convolutional and quantizer pieces of the 12Hz codec decoder, written for exact streaming.

Layout everywhere is channels-first `[B, C, T]`. Every layer that looks into the past reads and writes
its own slot of the explicit `CodecState` (`state.conv[self.slot]`); the layers themselves keep only
weights. Slots are numbered by `CodecDecoder` at construction.

- `CausalConv` (stride 1, zero left padding of `(k-1)*d`): the slot holds the last `(k-1)*d` inputs,
  `[B, C_in, (k-1)*d]`; a chunk is convolved as `cat(history, x)`, so any chunking gives the same
  samples as the one-pass left-padded conv.
- `CausalTransConv` (ConvTranspose1d, right trim `k-s`): the slot holds the overlap tail of the
  previous chunk's bias-free output, `[B, C_out, k-s]`, which is added to the next chunk's first
  samples; the bias is added once, when a sample is emitted.
- `SnakeBeta`, the ConvNeXt block and the residual units follow the official structure and parameter
  names, so `decoder.*` checkpoint keys load unchanged.
- `SplitRVQ` dequantizes codes `[B, Q, T]` to `[B, codebook_dim, T]` (no state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .linear import InferenceConv1d

if TYPE_CHECKING:
    from .codec import CodecState


class CausalConv(nn.Module):
    """Stride-1 causal Conv1d; `slot` is assigned by the decoder when `context > 0`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
        self.context = (kernel - 1) * dilation
        self.slot = -1
        self.prepared: InferenceConv1d | None = None

    def prepare(self) -> None:
        """Inference-ready convolution (after loading and placing the weights)."""
        self.prepared = InferenceConv1d(self.conv)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.prepared is None else self.prepared(x)

    def state_shape(self) -> tuple[int, int]:
        return self.conv.in_channels, self.context

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        if self.context == 0:
            return self._conv(x)
        history = state.conv[self.slot]  # [B, C_in, context]
        x = torch.cat([history, x], dim=-1)  # [B, C_in, context + T]
        history.copy_(x[..., -self.context :])
        return self._conv(x)  # [B, C_out, T]


class CausalTransConv(nn.Module):
    """ConvTranspose1d(k, s) with the last `k-s` samples trimmed; the trimmed tail carries over.

    Computed as one matmul (input steps x taps) plus shifted adds: torch's CPU conv_transpose1d falls
    back to a slow unblocked kernel for several of the codec's shapes.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel, stride=stride)
        self.stride = stride
        self.context = kernel - stride
        self.slot = -1

    def state_shape(self) -> tuple[int, int]:
        return self.conv.out_channels, self.context

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        c_in, c_out, k = self.conv.weight.shape
        b, _, t = x.shape
        s = self.stride
        # batch folded into the rows: one mm (a 3-D matmul would expand the weight per batch row)
        rows = x.transpose(1, 2).reshape(b * t, c_in)
        taps = rows @ self.conv.weight.view(c_in, c_out * k)  # [B*T, C_out*k]
        taps = taps.view(b, t, c_out, k).permute(0, 2, 1, 3)  # [B, C_out, T, k]: input i, tap j -> i*s + j
        groups = -(-k // s)
        y = x.new_zeros(b, c_out, t + groups - 1, s)  # output blocks of s samples
        for g in range(groups):
            width = min(s, k - g * s)
            y[:, :, g : g + t, :width] += taps[..., g * s : g * s + width]
        y = y.view(b, c_out, -1)  # [B, C_out, (T + groups - 1) * s], bias-free
        n = t * s
        if self.context:
            tail = state.conv[self.slot]  # [B, C_out, k - s] from the previous chunk
            y[..., : self.context] += tail
            tail.copy_(y[..., n : n + self.context])
        return y[..., :n] + self.conv.bias[:, None]  # [B, C_out, T*s]


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

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        h = self.dwconv(x, state).transpose(1, 2)  # [B, T, C]
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv(dim, dim, 1)

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        h = self.conv1(self.act1(x), state)
        return x + self.conv2(self.act2(h), state)


class DecoderBlock(nn.Module):
    """SnakeBeta -> transposed conv (x rate, channels halved) -> residual units with dilation 1, 3, 9."""

    def __init__(self, c_in: int, rate: int):
        super().__init__()
        c_out = c_in // 2
        self.block = nn.ModuleList(
            [SnakeBeta(c_in), CausalTransConv(c_in, c_out, 2 * rate, rate)]
            + [ResidualUnit(c_out, d) for d in (1, 3, 9)]
        )

    def forward(self, x: torch.Tensor, state: CodecState) -> torch.Tensor:
        x = self.block[1](self.block[0](x), state)  # [B, C_in/2, T*rate]
        for unit in self.block[2:]:
            x = unit(x, state)
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
