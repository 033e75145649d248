"""Prepared projections and convolutions (`model/linear.py`) against the plain torch ops."""

import pytest
import torch
import torch.nn.functional as F

from makima_tts.model.linear import InferenceConv1d, InferenceLinear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_linear_is_bit_identical(dtype, rows):
    torch.manual_seed(0)
    weight = torch.randn(96, 64, dtype=dtype)
    x = torch.randn(rows, 1, 64, dtype=dtype)
    prepared = InferenceLinear(weight)
    assert (prepared.packed is not None) == (dtype == torch.bfloat16 and torch.backends.mkldnn.is_available())
    assert torch.equal(prepared(x), F.linear(x, weight))


# (c_in, c_out, kernel, dilation, groups, time): the codec's kinds of stride-1 conv
CONVS = [(64, 96, 7, 1, 1, 9), (48, 48, 7, 3, 1, 25), (32, 32, 7, 9, 1, 60), (40, 40, 7, 1, 40, 10),
         (48, 48, 1, 1, 1, 30), (24, 1, 7, 1, 1, 200), (64, 64, 3, 1, 1, 4)]


@pytest.mark.parametrize("c_in, c_out, kernel, dilation, groups, time", CONVS)
def test_conv1d(c_in, c_out, kernel, dilation, groups, time):
    torch.manual_seed(1)
    conv = torch.nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
    for batch in (1, 5):
        x = torch.randn(batch, c_in, (kernel - 1) * dilation + time)
        # float32: the plain conv, exactly
        assert torch.equal(InferenceConv1d(conv)(x), conv(x))
        # bfloat16 (packed on CPU): the same conv up to bf16 rounding, for any batch and length
        half = conv.to(torch.bfloat16)
        got = InferenceConv1d(half)(x.bfloat16()).float()
        want = F.conv1d(x.bfloat16().float(), half.weight.float(), half.bias.float(), dilation=dilation, groups=groups)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
        conv = conv.float()
