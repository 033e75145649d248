"""`CodecState`: everything a stream of the codec decoder carries from one `decode_step` to the next.

The decoder's modules hold weights only; `CodecDecoder.new_state(batch)` allocates this (zeros, the
model's dtype and device) and `decode_step` hands each stateful layer its own tensors. Row b is one
stream; rows advance in lockstep. Layout:

- `conv`: one tensor per stateful convolution, in the order `CodecDecoder.decode_step` runs them (the
  shapes are `CodecDecoder.conv_state_shapes()`): a causal conv's last inputs `[B, C_in, (k-1)*d]`, or
  a transposed conv's bias-free overlap tail `[B, C_out, k-s]` (`conv.py`).
- `keys`, `values`: one per transformer layer `[B, kv_heads, window-1, head_dim]`, post-RoPE, oldest
  first (`kv_cache.WindowKV`); slots before frame 0 hold zeros and are masked out by `pos`.
- `pos`: `[B]` int64, frames decoded so far (the next frame's RoPE position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class CodecState:
    conv: list[torch.Tensor]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pos: torch.Tensor  # [B] int64

    @classmethod
    def zeros(
        cls,
        batch: int,
        conv_shapes: Sequence[tuple[int, int]],
        layers: int,
        window_kv_shape: tuple[int, int, int],
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> CodecState:
        """conv_shapes: (channels, length) per conv tensor; window_kv_shape: (kv_heads, window-1, head_dim)."""
        kv_shape = (batch, *window_kv_shape)
        return cls(
            conv=[torch.zeros(batch, c, n, device=device, dtype=dtype) for c, n in conv_shapes],
            keys=[torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(layers)],
            values=[torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(layers)],
            pos=torch.zeros(batch, dtype=torch.long, device=device),
        )

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    def first_rows(self, n: int) -> CodecState:
        """A view of rows [0, n): decoding through it advances those rows of this state in place."""
        return CodecState([t[:n] for t in self.conv], [k[:n] for k in self.keys], [v[:n] for v in self.values],
                          self.pos[:n])

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.conv, *self.keys, *self.values, self.pos]

    @torch.inference_mode()
    def reset_rows(self, rows: Sequence[int] | torch.Tensor) -> None:
        """Zero the given rows: a new stream starts there from silence at position 0."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.pos.device)
        for t in self._tensors():
            t.index_fill_(0, idx, 0)

    @torch.inference_mode()
    def take_rows(self, rows: Sequence[int]) -> CodecState:
        """A copy of the given rows (e.g. streams that sit out a step: `put_rows` restores them)."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.pos.device)
        conv, keys, values = ([t.index_select(0, idx) for t in ts] for ts in (self.conv, self.keys, self.values))
        return CodecState(conv, keys, values, self.pos.index_select(0, idx))

    @torch.inference_mode()
    def put_rows(self, rows: Sequence[int], src: CodecState) -> None:
        """Overwrite the given rows with those of `src` (a `take_rows` of the same rows)."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.pos.device)
        for dst, s in zip(self._tensors(), src._tensors(), strict=True):
            dst.index_copy_(0, idx, s)

    @torch.inference_mode()
    def copy_row_from(self, dst_row: int, src: CodecState, src_row: int = 0) -> None:
        """Overwrite row `dst_row` with row `src_row` of `src` (same model; e.g. a primed one-row state)."""
        for dst, s in zip(self._tensors(), src._tensors(), strict=True):
            dst[dst_row].copy_(s[src_row])
