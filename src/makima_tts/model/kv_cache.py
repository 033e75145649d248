"""Key/value caches: the talker's and code predictor's growing cache, the codec's sliding window.

`KVCache` preallocates keys and values for every layer and every engine slot:
`k, v: [layers, slots, kv_heads, capacity, head_dim]`. It starts at `capacity` positions and grows by
doubling (a copy into new tensors, rarely) up to `max_capacity`, so memory follows the longest live
utterance rather than the worst case; made at `max_capacity` from the start it never reallocates (the
engine's static frames rely on that). A forward pass works on a `KVView`: a contiguous range of slots
and the number of positions it may attend (`t_used`), taken after any growth.

`WindowKV` is one codec transformer layer's sliding-window cache, two tensors of the codec's
`CodecState`: the last `window - 1` post-RoPE keys/values `[B, kv_heads, window - 1, head_dim]`,
oldest first, shifted along in place by each write. `window_mask` says which of them (plus the new
ones) each new query sees.

`PackedView` is a batched prefill's view: several prompts (or chunks of prompts) packed one after the
other along the sequence of a single `[1, S, H]` pass, each a `Segment` of its own cache row that it
writes at its own positions and attends alone (`SegmentsKV`, one per layer).

Every layer object gives `Attention` the same interface: `attend(q, k_new, v_new)` stores the new keys
and values `[b, kv_heads, s, D]` and returns the attention output `[b, heads, s, D]` over what is
visible. `LayerKV` and `WindowKV` do it with one `sdpa` call over the keys their `write` returns,
under their `mask` `[b, 1, s, T]` bool (None: plain causal over exactly the s new keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sdpa(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q [b, heads, s, D] over keys/values [b, kv_heads, T, D] (GQA) -> [b, heads, s, D]; mask None: causal."""
    return F.scaled_dot_product_attention(
        q, keys, values, attn_mask=mask, is_causal=mask is None and q.shape[2] > 1, enable_gqa=True
    )


class _WriteThenAttend:
    def attend(self, q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
        keys, values = self.write(k_new, v_new)
        return sdpa(q, keys, values, self.mask)


@dataclass
class LayerKV(_WriteThenAttend):
    k: torch.Tensor  # [b, kv_heads, capacity, D] (a view into the cache)
    v: torch.Tensor
    t_used: int  # positions visible to attention after this write
    pos: int | torch.Tensor  # first position written: int shared by every row, or LongTensor [b]
    mask: torch.Tensor | None

    def write(self, k_new: torch.Tensor, v_new: torch.Tensor):
        """Store new keys/values ([b, kv_heads, s, D]) and return the visible [b, kv_heads, t_used, D].

        `pos` is either the first position shared by every row (prefill, code predictor) or a
        LongTensor [b] of per-row positions for a one-token step (talker decode).
        """
        if isinstance(self.pos, int):
            s = k_new.shape[2]
            self.k[:, :, self.pos : self.pos + s] = k_new
            self.v[:, :, self.pos : self.pos + s] = v_new
        else:
            rows = torch.arange(k_new.shape[0], device=k_new.device)
            self.k[rows, :, self.pos] = k_new[:, :, 0]
            self.v[rows, :, self.pos] = v_new[:, :, 0]
        return self.k[:, :, : self.t_used], self.v[:, :, : self.t_used]


@dataclass
class KVView:
    cache: KVCache
    rows: slice
    t_used: int

    def layers(self, write_pos: int | torch.Tensor, mask: torch.Tensor | None) -> list[LayerKV]:
        """One `LayerKV` per layer. write_pos: cache position of the first new token (int, shared) or
        LongTensor [b] (one-token step); mask [b, 1, S, t_used] bool or None (plain causal over a cache
        holding exactly the S new tokens)."""
        return [
            LayerKV(self.cache.k[i, self.rows], self.cache.v[i, self.rows], self.t_used, write_pos, mask)
            for i in range(self.cache.k.shape[0])
        ]


class KVCache:
    def __init__(
        self,
        n_layers: int,
        slots: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype,
        max_capacity: int | None = None,
    ):
        self.max_capacity = max_capacity or capacity
        shape = (n_layers, slots, kv_heads, min(capacity, self.max_capacity), head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def ensure(self, needed: int) -> None:
        """Grow (doubling) so that `needed` positions fit; raises past `max_capacity`."""
        if needed <= self.capacity:
            return
        if needed > self.max_capacity:
            raise ValueError(f"needs {needed} cache positions but the limit is {self.max_capacity}")
        new_cap = self.capacity
        while new_cap < needed:
            new_cap *= 2
        new_cap = min(new_cap, self.max_capacity)
        for name in ("k", "v"):
            old = getattr(self, name)
            grown = old.new_zeros(*old.shape[:3], new_cap, old.shape[4])
            grown[:, :, :, : old.shape[3]] = old
            setattr(self, name, grown)

    def copy_row(self, row: int, src: KVCache, length: int, src_row: int = 0) -> None:
        """Positions [0, length) of row `src_row` of `src` (same layers and heads) into row `row`."""
        self.ensure(length)
        self.k[:, row, :, :length] = src.k[:, src_row, :, :length]
        self.v[:, row, :, :length] = src.v[:, src_row, :, :length]

    def view(self, rows: slice, t_used: int) -> KVView:
        self.ensure(t_used)
        return KVView(self, rows, t_used)


@dataclass(frozen=True)
class Segment:
    """One prompt's part of a packed prefill: `length` rows written at positions `start`.. of row `row`
    of `cache`; they attend positions 0..start+length-1 of that row alone."""

    cache: KVCache
    row: int
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class SegmentsKV:
    """One layer of a `PackedView`: the packed sequence cut back into its segments for attention."""

    layer: int
    segments: list[Segment]

    def attend(self, q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
        # q [1, heads, S, D], k_new/v_new [1, kv_heads, S, D] with S = sum of the segment lengths
        outs, offset = [], 0
        for seg in self.segments:
            rows, new = slice(seg.row, seg.row + 1), slice(offset, offset + seg.length)
            k, v = seg.cache.k[self.layer, rows], seg.cache.v[self.layer, rows]  # [1, kv_heads, capacity, D]
            k[:, :, seg.start : seg.end] = k_new[:, :, new]
            v[:, :, seg.start : seg.end] = v_new[:, :, new]
            # a prompt's first rows: plain causal, the very call a prefill alone makes; a later chunk
            # sees every earlier position and its own rows causally
            mask = None if seg.start == 0 else (
                torch.arange(seg.end, device=q.device)[None] <= torch.arange(seg.start, seg.end, device=q.device)[:, None]
            )[None, None]  # [1, 1, length, end]
            outs.append(sdpa(q[:, :, new], k[:, :, : seg.end], v[:, :, : seg.end], mask))
            offset += seg.length
        return torch.cat(outs, dim=2)


@dataclass
class PackedView:
    """Segments of several cache rows (different caches allowed) prefilled in one `[1, S, H]` pass."""

    segments: list[Segment]

    def __post_init__(self) -> None:
        for seg in self.segments:
            seg.cache.ensure(seg.end)

    @property
    def t_used(self) -> int:
        return max(seg.end for seg in self.segments)

    def positions(self, device: torch.device) -> torch.Tensor:
        """[1, S] the rope position of every packed row."""
        return torch.cat([torch.arange(seg.start, seg.end, device=device) for seg in self.segments])[None]

    def layers(self, write_pos=None, mask=None) -> list[SegmentsKV]:
        """One `SegmentsKV` per layer (the segments carry their own positions and masks)."""
        assert write_pos is None and mask is None, "a packed view takes no shared write position or mask"  # nosec B101
        return [SegmentsKV(i, self.segments) for i in range(self.segments[0].cache.k.shape[0])]


@dataclass
class WindowKV(_WriteThenAttend):
    k: torch.Tensor  # [B, kv_heads, window - 1, D], updated in place
    v: torch.Tensor
    mask: torch.Tensor  # [B, 1, s, window - 1 + s] from `window_mask`

    def write(self, k_new: torch.Tensor, v_new: torch.Tensor):
        """Append s new keys/values; return all window - 1 + s of them and keep the last window - 1."""
        keys = torch.cat([self.k, k_new], dim=2)  # [B, kv_heads, window - 1 + s, D]
        values = torch.cat([self.v, v_new], dim=2)
        keep = self.k.shape[2]
        self.k.copy_(keys[:, :, -keep:])
        self.v.copy_(values[:, :, -keep:])
        return keys, values


def window_mask(pos: torch.Tensor, s: int, window: int) -> torch.Tensor:
    """pos [B] frames already seen, s new frames -> [B, 1, s, window - 1 + s] bool.

    Cached slot j (of window - 1) holds absolute position pos - (window - 1) + j and new frame i sits
    at slot window - 1 + i; query i sees the slots j with i <= j <= i + window - 1 whose absolute
    position is >= 0, i.e. the `window` frames ending at itself.
    """
    past = window - 1
    steps = torch.arange(s, device=pos.device)
    slots = torch.arange(past + s, device=pos.device)
    mask = (slots >= steps[:, None]) & (slots <= steps[:, None] + past)  # [s, window - 1 + s]
    mask = mask & (slots >= past - pos[:, None, None])  # [B, s, window - 1 + s]
    return mask[:, None]
