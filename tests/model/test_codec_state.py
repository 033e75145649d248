"""CodecState (`model/codec_state.py`): layout, reset_rows, copy_row_from, first_rows; the decoder's layout of it."""

import torch
from test_codec import make_codec, random_codes

from makima_tts.model.codec_state import CodecState


def _state(batch=3, fill=True):
    state = CodecState.zeros(batch, [(4, 2), (3, 6)], 2, (1, 5, 8), "cpu", torch.float32)
    if fill:
        g = torch.Generator().manual_seed(0)
        for t in [*state.conv, *state.keys, *state.values]:
            t.copy_(torch.randn(t.shape, generator=g))
        state.pos.copy_(torch.tensor([10, 20, 30][:batch]))
    return state


def test_zeros_layout():
    state = _state(fill=False)
    assert [tuple(t.shape) for t in state.conv] == [(3, 4, 2), (3, 3, 6)]
    assert [tuple(t.shape) for t in state.keys] == [(3, 1, 5, 8)] * 2 == [tuple(t.shape) for t in state.values]
    assert state.pos.dtype == torch.long and state.batch == 3
    assert all(not t.any() for t in [*state.conv, *state.keys, *state.values, state.pos])


def test_reset_rows_zeroes_only_those_rows():
    state = _state()
    before = [t.clone() for t in state._tensors()]
    state.reset_rows([0, 2])
    for t, old in zip(state._tensors(), before, strict=True):
        assert not t[[0, 2]].any()
        assert torch.equal(t[1], old[1])
    assert state.pos.tolist() == [0, 20, 0]


def test_first_rows_is_a_view_of_those_rows():
    state = _state()
    view = state.first_rows(2)
    assert view.batch == 2 and [tuple(t.shape) for t in view.conv] == [(2, 4, 2), (2, 3, 6)]
    for t in view._tensors():
        t.add_(1)  # what a decode through the view writes lands in the state
    assert state.pos.tolist() == [11, 21, 30]
    assert all(torch.equal(v, t[:2]) for v, t in zip(view._tensors(), state._tensors(), strict=True))


def test_copy_row_from_copies_every_tensor():
    state, src = _state(), _state(batch=1, fill=False)
    for i, t in enumerate(src._tensors()):
        t.fill_(i + 1)
    before = [t.clone() for t in state._tensors()]
    state.copy_row_from(1, src, 0)
    for i, (t, old) in enumerate(zip(state._tensors(), before, strict=True)):
        assert (t[1] == i + 1).all()
        assert torch.equal(t[[0, 2]], old[[0, 2]])


def test_decoder_state_matches_its_layout_and_every_tensor_is_used():
    codec = make_codec(seed=1)
    state = codec.new_state(2)
    assert [tuple(t.shape[1:]) for t in state.conv] == codec.conv_state_shapes()
    cfg = codec.cfg
    assert len(state.keys) == cfg.num_hidden_layers
    assert tuple(state.keys[0].shape) == (2, cfg.num_key_value_heads, cfg.sliding_window - 1, cfg.head_dim)
    codec.decode_step(random_codes(2, 3, seed=2), state)
    assert all(t.abs().amax() > 0 for t in [*state.conv, *state.keys, *state.values])
    assert state.pos.tolist() == [3, 3]
