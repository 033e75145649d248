"""Causal convolutions of the codec decoder, written for exact streaming over explicit state.

Layout `[B, C, T]`. Each layer's state is one tensor of the `CodecState` (`codec_state.py`), passed
in by the caller and updated in place; the layers keep only weights. `state_shapes()` lists the
(channels, length) of the tensor a layer needs ([] for none), so chunking the input any way gives
the same samples as one pass.

- `CausalConv` (stride 1, zero left padding of `(k-1)*d`): the state holds the last `(k-1)*d` inputs,
  `[B, C_in, (k-1)*d]`; a chunk is convolved as `cat(history, x)`.
- `CausalTransConv` (ConvTranspose1d, right trim `k-s`): the state holds the overlap tail of the
  previous chunk's bias-free output, `[B, C_out, k-s]`, which is added to the next chunk's first
  samples; the bias is added once, when a sample is emitted.
"""

from __future__ import annotations

import torch
from torch import nn

from .linear import InferenceConv1d


class CausalConv(nn.Module):
    """Stride-1 causal Conv1d; stateless when `context == 0` (kernel 1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
        self.context = (kernel - 1) * dilation
        self.prepared: InferenceConv1d | None = None

    def prepare(self) -> None:
        """Inference-ready convolution (after loading and placing the weights)."""
        self.prepared = InferenceConv1d(self.conv)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.prepared is None else self.prepared(x)

    def state_shapes(self) -> list[tuple[int, int]]:
        return [(self.conv.in_channels, self.context)] if self.context else []

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_out, T]; history [B, C_in, context] (None when context == 0)
        if self.context == 0:
            return self._conv(x)
        x = torch.cat([history, x], dim=-1)  # [B, C_in, context + T]
        history.copy_(x[..., -self.context :])
        return self._conv(x)


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

    def state_shapes(self) -> list[tuple[int, int]]:
        return [(self.conv.out_channels, self.context)] if self.context else []

    def forward(self, x: torch.Tensor, tail: torch.Tensor | None = None) -> torch.Tensor:
        # x [B, C_in, T] -> [B, C_out, T*s]; tail [B, C_out, k - s] from the previous chunk (None if k == s)
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
            y[..., : self.context] += tail
            tail.copy_(y[..., n : n + self.context])
        return y[..., :n] + self.conv.bias[:, None]
