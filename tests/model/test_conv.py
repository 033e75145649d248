"""Causal convolutions (`model/conv.py`): any chunking over the explicit state == the one-pass conv."""

import pytest
import torch
import torch.nn.functional as F

from makima_tts.model.conv import CausalConv, CausalTransConv


def _chunks(x, sizes, layer):
    (shape,) = layer.state_shapes()
    state = torch.zeros(x.shape[0], *shape)
    outs, start = [], 0
    for n in sizes:
        outs.append(layer(x[..., start : start + n], state))
        start += n
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("kernel,dilation,groups", [(3, 1, 1), (7, 3, 1), (7, 1, 6)])
def test_causal_conv_chunks_equal_left_padded_conv(kernel, dilation, groups):
    torch.manual_seed(kernel + dilation)
    layer = CausalConv(6, 4 if groups == 1 else 6, kernel, dilation, groups)
    x = torch.randn(2, 6, 30)
    with torch.inference_mode():
        whole = layer.conv(F.pad(x, ((kernel - 1) * dilation, 0)))
        for sizes in ([30], [1] * 30, [4, 11, 2, 13]):
            torch.testing.assert_close(_chunks(x, sizes, layer), whole, atol=1e-6, rtol=0)


def test_kernel_one_conv_has_no_state():
    layer = CausalConv(3, 2, 1)
    assert layer.state_shapes() == []
    x = torch.randn(1, 3, 5)
    assert torch.equal(layer(x), layer.conv(x))


@pytest.mark.parametrize("rate", [2, 3, 5])
def test_transposed_conv_chunks_equal_trimmed_one_pass(rate):
    torch.manual_seed(rate)
    layer = CausalTransConv(5, 3, 2 * rate, rate)
    assert layer.state_shapes() == [(3, rate)]
    x = torch.randn(2, 5, 20)
    with torch.inference_mode():
        full = layer.conv(x)
        whole = full[..., : full.shape[-1] - rate]
        for sizes in ([20], [1] * 20, [3, 9, 8]):
            torch.testing.assert_close(_chunks(x, sizes, layer), whole, atol=1e-5, rtol=0)


def test_transposed_conv_with_kernel_equal_to_stride_has_no_state():
    layer = CausalTransConv(4, 4, 2, 2)
    assert layer.state_shapes() == []
    x = torch.randn(1, 4, 6)
    torch.testing.assert_close(layer(x), layer.conv(x), atol=1e-6, rtol=0)
