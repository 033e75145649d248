"""Speaker encoder: Slaney filterbank, log-mel front end, ECAPA-TDNN names and forward, embed()."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from makima_tts.config import SpeakerEncoderConfig
from makima_tts.model.speaker import SpeakerEncoder, mel_spectrogram, slaney_mel_filterbank
from makima_tts.weights import load_strict

CFG = SpeakerEncoderConfig(mel_dim=128, enc_dim=32, enc_channels=(16, 16, 16, 16, 48), enc_attention_channels=8,
                           enc_se_channels=8)


def make_encoder(seed=0) -> SpeakerEncoder:
    g = torch.Generator().manual_seed(seed)
    enc = SpeakerEncoder(CFG).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel() if p.dim() > 1 else 10))
    return enc


def tone(freq, seconds=1.0, sr=24000, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_filterbank_is_area_normalised_slaney():
    fb = slaney_mel_filterbank(24000, 1024, 128, 0.0, 12000.0)
    assert fb.shape == (128, 513) and fb.dtype == np.float32 and (fb >= 0).all()
    bin_hz = 24000 / 1024
    wide = (fb > 0).sum(1) > 8  # triangles sampled finely enough to integrate
    assert wide.sum() > 40
    np.testing.assert_allclose(fb[wide].sum(1) * bin_hz, 1.0, atol=0.015)  # Slaney: unit area
    peaks = fb.argmax(1) * bin_hz
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 10000
    # Slaney scale: 3 mel per 200 Hz up to 1 kHz (15 mel), then 27 mel per factor 6.4; centres are equally
    # spaced in mel, so below 1 kHz they are equally spaced in Hz
    step_hz = (15 + 27 * np.log(12) / np.log(6.4)) / 129 * 200 / 3
    low = peaks[peaks < 1000]
    assert abs((low[-1] - low[0]) / (len(low) - 1) - step_hz) < 1.0


def test_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmax in [(24000, 1024, 128, 12000.0), (16000, 512, 80, 7600.0)]:
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax)
        np.testing.assert_array_equal(slaney_mel_filterbank(sr, n_fft, n_mels, 0.0, fmax), ref)


def test_mel_matches_a_direct_numpy_stft():
    rng = np.random.default_rng(0)
    wav = (0.3 * rng.standard_normal(24000 + 123)).astype(np.float32)
    mel = mel_spectrogram(wav)
    frames = (len(wav) - 256) // 256 + 1
    assert mel.shape == (1, frames, 128) and mel.dtype == torch.float32
    padded = np.pad(wav.astype(np.float64), 384, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    idx = np.arange(frames)[:, None] * 256 + np.arange(1024)
    mag = np.sqrt(np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2 + 1e-9)  # [T, 513]
    ref = np.log(np.maximum(mag @ slaney_mel_filterbank(24000, 1024, 128, 0.0, 12000.0).T, 1e-5))
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=2e-4)


def test_mel_of_a_tone_peaks_at_its_frequency():
    mel = mel_spectrogram(tone(1000.0))[0].mean(0)
    fb = slaney_mel_filterbank(24000, 1024, 128, 0.0, 12000.0)
    centre_hz = fb.argmax(1)[int(mel.argmax())] * 24000 / 1024
    assert abs(centre_hz - 1000.0) < 60


def test_short_audio_is_rejected():
    with pytest.raises(ValueError, match="too short"):
        mel_spectrogram(np.zeros(1000, np.float32))


def test_parameter_names_are_the_checkpoint_keys():
    conv = lambda p: {f"{p}.weight", f"{p}.bias"}  # noqa: E731
    expected = conv("blocks.0.conv") | conv("mfa.conv") | conv("asp.tdnn.conv") | conv("asp.conv") | conv("fc")
    for b in (1, 2, 3):
        for part in ("tdnn1.conv", "tdnn2.conv", "se_block.conv1", "se_block.conv2"):
            expected |= conv(f"blocks.{b}.{part}")
        for i in range(CFG.enc_res2net_scale - 1):
            expected |= conv(f"blocks.{b}.res2net_block.blocks.{i}.conv")
    sd = make_encoder().state_dict()
    assert set(sd) == expected
    assert sd["blocks.2.res2net_block.blocks.0.conv.weight"].shape == (2, 2, 3)
    assert sd["asp.tdnn.conv.weight"].shape == (8, 144, 1) and sd["fc.weight"].shape == (32, 96, 1)
    loaded = SpeakerEncoder(CFG)
    load_strict(loaded, sd, "speaker encoder", torch.bfloat16)
    assert loaded.fc.weight.dtype == torch.bfloat16


def _tdnn(conv, x):
    k, d = conv.kernel_size[0], conv.dilation[0]
    pad = d * (k - 1) // 2
    return F.relu(F.conv1d(F.pad(x, (pad, pad), mode="reflect"), conv.weight, conv.bias, dilation=d))


def reference_ecapa(enc, mel):
    """The official ECAPA-TDNN forward written with functional ops (explicit reflect padding)."""
    h = _tdnn(enc.blocks[0].conv, mel.transpose(1, 2))
    feats = []
    for blk in enc.blocks[1:]:
        x = _tdnn(blk.tdnn1.conv, h)
        parts, outs = x.chunk(CFG.enc_res2net_scale, 1), []
        for i, part in enumerate(parts):
            outs.append(part if i == 0 else _tdnn(blk.res2net_block.blocks[i - 1].conv, part if i == 1 else part + outs[-1]))
        x = _tdnn(blk.tdnn2.conv, torch.cat(outs, 1))
        s = torch.sigmoid(F.conv1d(F.relu(F.conv1d(x.mean(2, keepdim=True), blk.se_block.conv1.weight,
                                                   blk.se_block.conv1.bias)), blk.se_block.conv2.weight,
                                   blk.se_block.conv2.bias))
        h = x * s + h
        feats.append(h)
    h = _tdnn(enc.mfa.conv, torch.cat(feats, 1))
    mean, std = h.mean(2, keepdim=True), h.var(2, unbiased=False, keepdim=True).clamp(1e-12).sqrt()
    ctx = torch.cat([h, mean.expand_as(h), std.expand_as(h)], 1)
    w = torch.softmax(F.conv1d(torch.tanh(_tdnn(enc.asp.tdnn.conv, ctx)), enc.asp.conv.weight, enc.asp.conv.bias), 2)
    m = (w * h).sum(2)
    sd = ((w * (h - m[..., None]) ** 2).sum(2)).clamp(1e-12).sqrt()
    return F.conv1d(torch.cat([m, sd], 1)[..., None], enc.fc.weight, enc.fc.bias)[..., 0]


def test_forward_matches_reference_ecapa():
    enc = make_encoder(1)
    mel = mel_spectrogram(tone(300.0, 1.5) + tone(2100.0, 1.5, amp=0.2))
    mel = torch.cat([mel, mel.flip(1)])  # batch of 2 different inputs
    with torch.no_grad():
        out, ref = enc(mel), reference_ecapa(enc, mel)
    assert out.shape == (2, CFG.enc_dim)
    assert ref.abs().max() > 0.1 and (ref[0] - ref[1]).abs().max() > 1e-3
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_embed_is_float32_and_depends_on_the_voice():
    enc = make_encoder(2)
    a, b = enc.embed(tone(220.0)), enc.embed(tone(440.0))
    assert a.shape == (CFG.enc_dim,) and a.dtype == torch.float32
    torch.testing.assert_close(enc.embed(torch.from_numpy(tone(220.0))), a, atol=0, rtol=0)
    assert (a - b).abs().max() > 1e-3
    half = SpeakerEncoder(CFG).eval()
    load_strict(half, enc.state_dict(), "speaker encoder", torch.bfloat16)
    ah = half.embed(tone(220.0))
    assert ah.dtype == torch.float32 and (ah - a).abs().max() < 0.05 * a.abs().max()
