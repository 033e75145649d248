"""Static key/value caches for the talker and the code predictor.

`KVCache` preallocates keys and values for every layer and every engine slot:
`k, v: [layers, slots, kv_heads, capacity, head_dim]`. A forward pass works on a `KVView`: a
contiguous range of slots and the number of positions it may attend (`t_used`). Capacity grows by
doubling (rarely; a copy) up to `max_capacity`, so memory follows the longest live utterance rather
than the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerKV:
    k: torch.Tensor  # [b, kv_heads, capacity, D] (a view into the cache)
    v: torch.Tensor
    t_used: int  # positions visible to attention after this write

    def write(self, k_new: torch.Tensor, v_new: torch.Tensor, pos: int | torch.Tensor):
        """Store new keys/values ([b, kv_heads, s, D]) and return the visible [b, kv_heads, t_used, D].

        `pos` is either the first position shared by every row (prefill, code predictor) or a
        LongTensor [b] of per-row positions for a one-token step (talker decode).
        """
        if isinstance(pos, int):
            s = k_new.shape[2]
            self.k[:, :, pos : pos + s] = k_new
            self.v[:, :, pos : pos + s] = v_new
        else:
            rows = torch.arange(k_new.shape[0], device=k_new.device)
            self.k[rows, :, pos] = k_new[:, :, 0]
            self.v[rows, :, pos] = v_new[:, :, 0]
        return self.k[:, :, : self.t_used], self.v[:, :, : self.t_used]


@dataclass
class KVView:
    cache: KVCache
    rows: slice
    t_used: int

    def layers(self) -> list[LayerKV]:
        return [
            LayerKV(self.cache.k[i, self.rows], self.cache.v[i, self.rows], self.t_used)
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

    def view(self, rows: slice, t_used: int) -> KVView:
        self.ensure(t_used)
        return KVView(self, rows, t_used)
