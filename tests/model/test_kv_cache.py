"""Caches (`model/kv_cache.py`): KVCache growth and writes, the codec's sliding-window cache and mask."""

import pytest
import torch

from makima_tts.model.kv_cache import KVCache, WindowKV, window_mask


def test_growth_doubles_keeps_contents_and_stops_at_the_limit():
    cache = KVCache(2, 3, 1, 4, 4, "cpu", torch.float32, max_capacity=20)
    cache.k.copy_(torch.randn(cache.k.shape))
    stored = cache.k.clone()
    view = cache.view(slice(0, 3), 9)
    assert cache.capacity == 16 and view.t_used == 9  # 4 -> 8 -> 16
    assert torch.equal(cache.k[:, :, :, :4], stored) and not cache.k[:, :, :, 4:].any()
    cache.view(slice(0, 3), 17)
    assert cache.capacity == 20
    with pytest.raises(ValueError, match="limit is 20"):
        cache.view(slice(0, 3), 21)


def test_fixed_capacity_never_reallocates():
    cache = KVCache(1, 2, 1, 4, 32, "cpu", torch.float32, max_capacity=32)
    k = cache.k
    cache.view(slice(0, 2), 32)
    assert cache.k is k


def test_layer_writes_shared_and_per_row_positions():
    cache = KVCache(1, 2, 1, 2, 8, "cpu", torch.float32)
    new = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
    keys, _ = cache.view(slice(0, 2), 5).layers(2, None)[0].write(new, new)
    assert keys.shape == (2, 1, 5, 2) and torch.equal(keys[:, :, 2:5], new)
    step = torch.ones(2, 1, 1, 2)
    layer = cache.view(slice(0, 2), 8).layers(torch.tensor([5, 7]), None)[0]
    layer.write(step, step)
    assert cache.k[0, 0, 0, 5].eq(1).all() and cache.k[0, 1, 0, 7].eq(1).all()
    assert not cache.k[0, 0, 0, 7].any() and not cache.k[0, 1, 0, 5].any()


def test_window_cache_keeps_the_last_window_minus_one():
    k, v = torch.zeros(1, 1, 3, 1), torch.zeros(1, 1, 3, 1)
    frames = torch.arange(1.0, 6.0).view(1, 1, 5, 1)
    keys, _ = WindowKV(k, v, window_mask(torch.tensor([0]), 5, 4)).write(frames, frames)
    assert keys.flatten().tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert k.flatten().tolist() == [3, 4, 5]


def test_window_mask_sees_window_frames_ending_at_each_query_and_none_before_frame_0():
    mask = window_mask(torch.tensor([0, 1]), 2, 3)  # window 3: two cached slots, then the 2 new frames
    assert mask.shape == (2, 1, 2, 4)
    assert mask[0, 0].int().tolist() == [[0, 0, 1, 0], [0, 0, 1, 1]]  # fresh stream: only its own frames
    assert mask[1, 0].int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]  # one frame seen before: slot 1 valid
