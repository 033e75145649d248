"""Talker and code predictor: cached one-token steps == one uncached forward; outputs are causal."""

import torch

from makima_tts.model.kv_cache import KVCache


def _cache(cfg, slots, capacity, dtype=torch.float32, max_capacity=None):
    return KVCache(cfg.num_hidden_layers, slots, cfg.num_key_value_heads, cfg.head_dim, capacity, "cpu", dtype,
                   max_capacity=max_capacity)


def test_talker_cached_steps_equal_full_forward(tiny_tts):
    talker, cfg = tiny_tts.talker, tiny_tts.config.talker
    torch.manual_seed(0)
    x = torch.randn(1, 23, cfg.hidden_size)
    positions = torch.arange(23)[None]
    with torch.inference_mode():
        full = talker(x, positions, _cache(cfg, 1, 32).view(slice(0, 1), 23), 0, None)
        cache = _cache(cfg, 1, 4, max_capacity=64)  # starts small: growth must keep what is stored
        prefix = talker(x[:, :10], positions[:, :10], cache.view(slice(0, 1), 10), 0, None)
        steps = [prefix]
        for t in range(10, 23):
            pos = torch.tensor([t])
            mask = (torch.arange(t + 1)[None] <= pos[:, None])[:, None, None]
            steps.append(talker(x[:, t : t + 1], pos[:, None], cache.view(slice(0, 1), t + 1), pos, mask))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.capacity >= 23


def test_talker_rows_at_different_positions(tiny_tts):
    """Two slots at different lengths step together exactly as each would alone."""
    talker, cfg = tiny_tts.talker, tiny_tts.config.talker
    torch.manual_seed(1)
    a, b = torch.randn(1, 9, cfg.hidden_size), torch.randn(1, 5, cfg.hidden_size)
    with torch.inference_mode():
        alone = [talker(seq, torch.arange(seq.shape[1])[None], _cache(cfg, 1, 16).view(slice(0, 1), seq.shape[1]),
                        0, None)[:, -1] for seq in (a, b)]
        cache = _cache(cfg, 2, 16)
        talker(a[:, :8], torch.arange(8)[None], cache.view(slice(0, 1), 8), 0, None)
        talker(b[:, :4], torch.arange(4)[None], cache.view(slice(1, 2), 4), 0, None)
        pos = torch.tensor([8, 4])
        mask = (torch.arange(9)[None] <= pos[:, None])[:, None, None]
        together = talker(torch.cat([a[:, 8:], b[:, 4:]]), pos[:, None], cache.view(slice(0, 2), 9), pos, mask)
    torch.testing.assert_close(together[:, 0], torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_talker_is_causal(tiny_tts):
    talker, cfg = tiny_tts.talker, tiny_tts.config.talker
    torch.manual_seed(2)
    x = torch.randn(1, 12, cfg.hidden_size)
    y = x.clone()
    y[:, 7:] = torch.randn(1, 5, cfg.hidden_size)
    with torch.inference_mode():
        hx = talker(x, torch.arange(12)[None], _cache(cfg, 1, 12).view(slice(0, 1), 12), 0, None)
        hy = talker(y, torch.arange(12)[None], _cache(cfg, 1, 12).view(slice(0, 1), 12), 0, None)
    torch.testing.assert_close(hx[:, :7], hy[:, :7])
    assert not torch.allclose(hx[:, 7:], hy[:, 7:])


def test_code_predictor_cached_equals_full(tiny_tts):
    cp, cfg = tiny_tts.code_predictor, tiny_tts.config.code_predictor
    torch.manual_seed(3)
    x = torch.randn(2, 16, tiny_tts.config.talker.hidden_size)
    with torch.inference_mode():
        full = cp(x, 0, _cache(cfg, 2, 16).view(slice(0, 2), 16))
        cache = _cache(cfg, 2, 16)
        steps = [cp(x[:, :2], 0, cache.view(slice(0, 2), 2))]
        for t in range(2, 16):
            steps.append(cp(x[:, t : t + 1], t, cache.view(slice(0, 2), t + 1)))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_refuses_past_its_limit(tiny_tts):
    import pytest

    cache = _cache(tiny_tts.config.talker, 1, 8, max_capacity=16)
    with pytest.raises(ValueError, match="limit is 16"):
        cache.view(slice(0, 1), 17)
