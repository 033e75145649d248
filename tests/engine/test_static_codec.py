"""static_codec.py: decoding through a fixed bucket of rows gives the eager decode's audio (float noise:
another batch size may sum in another order), with rows joining, leaving and primed from an ICL reference;
on CUDA, replayed graphs give what the same static decode gives op by op (only where a GPU is present)."""

import numpy as np
import pytest
import torch

from makima_tts.engine.codec_stage import CodecStage
from makima_tts.engine.static_codec import StaticCodec

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
SLOTS = 5


def decode_run(tts, icl_voice, mode: str, device="cpu"):
    """mode: eager | static (op by op) | graphs. Rows in use go 1 -> 3 -> 5 -> 2, with new streams (one
    ICL-primed) starting in reused slots."""
    stage = CodecStage(tts, SLOTS, static=mode != "eager")
    if mode == "static":
        stage.static = StaticCodec(tts.codec, stage.state, cuda_graphs=False)
    elif mode == "graphs":
        assert stage.static.cuda_graphs
        stage.static.capture_all()
    rng = np.random.default_rng(7)
    starts = {0: [0], 2: [1, 2], 4: [3, 4], 6: [1], 8: [0]}  # frame -> slots (re)starting there
    rows_in_use = [1, 1, 3, 3, 5, 5, 2, 2, 2, 2]
    audio = []
    for f, n in enumerate(rows_in_use):
        for slot in starts.get(f, []):
            stage.start(slot, icl_voice.ref_codes.to(device) if slot == 1 else None)
        frame = torch.from_numpy(rng.integers(0, 2048, size=(n, 16))).to(device)
        if f == 5:
            frame[2, 3] = 5000  # a rejected row is silence and reported, beside the others
        out, rejected = stage.decode(frame)
        audio.append((out.copy(), rejected))
    return audio


def test_static_decode_equals_eager_decode(tiny_tts, icl_voice):
    eager, static = decode_run(tiny_tts, icl_voice, "eager"), decode_run(tiny_tts, icl_voice, "static")
    for (a, rejected_a), (b, rejected_b) in zip(eager, static, strict=True):
        assert rejected_a == rejected_b and a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert eager[5][1] == [2] and np.abs(eager[4][0]).max() > 0


def test_buckets_are_powers_of_two_up_to_the_slots(tiny_tts):
    assert CodecStage(tiny_tts, SLOTS, static=True).static.buckets == [1, 2, 4, 5]
    assert CodecStage(tiny_tts, 8, static=True).static.buckets == [1, 2, 4, 8]
    assert CodecStage(tiny_tts, SLOTS).static is None  # CPU default: eager


@pytest.fixture(scope="module")
def cuda_tts(tiny_base_dir):
    from makima_tts.model.tts import TTSModel

    return TTSModel.load(tiny_base_dir, device="cuda")


@needs_cuda
def test_cuda_graph_decode_equals_static_decode_run_directly(cuda_tts, ref_clip):
    voice = cuda_tts.create_voice_prompt(*ref_clip, ref_text="reference transcript for voice cloning")
    direct = decode_run(cuda_tts, voice, "static", device="cuda")
    replayed = decode_run(cuda_tts, voice, "graphs", device="cuda")
    for (a, ra), (b, rb) in zip(direct, replayed, strict=True):
        assert ra == rb
        np.testing.assert_array_equal(a, b)
