"""Speaker x-vector for voice cloning: the official log-mel front end and ECAPA-TDNN (`speaker_encoder.*`).

- `mel_spectrogram(wav [N] float32 at 24 kHz) -> [1, T, n_mels]`: reflect pad 384, periodic Hann 1024,
  hop 256, no centering, magnitude sqrt(re^2 + im^2 + 1e-9), Slaney mel filterbank 0..12 kHz (our own
  `slaney_mel_filterbank`, bit-equal to the librosa one the official uses), log(max(x, 1e-5)).
  T = (N - 256) // 256 + 1.
- `SpeakerEncoder(cfg)`: ECAPA-TDNN without BatchNorm, every conv with reflect "same" padding.
  `forward(mel [B, T, n_mels]) -> [B, enc_dim]`; `embed(wav) -> [enc_dim]` float32.
  Parameter names equal the checkpoint's `speaker_encoder.*` keys with that prefix stripped.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SpeakerEncoderConfig

SAMPLE_RATE = 24000
N_FFT = 1024
HOP = 256
F_MIN = 0.0
F_MAX = 12000.0
MIN_SAMPLES = 5 * HOP  # enough frames for the widest reflect padding of the network


_MEL_STEP_HZ = 200.0 / 3  # Slaney: linear below 1 kHz ...
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _MEL_STEP_HZ
_LOG_STEP = np.log(6.4) / 27.0  # ... logarithmic above


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    above = _LOG_START_MEL + np.log(np.maximum(f, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(f >= _LOG_START_HZ, above, f / _MEL_STEP_HZ)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    above = _LOG_START_HZ * np.exp(_LOG_STEP * (m - _LOG_START_MEL))
    return np.where(m >= _LOG_START_MEL, above, _MEL_STEP_HZ * m)


def slaney_mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the Slaney mel scale, area-normalised; [n_mels, n_fft // 2 + 1] float32."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))  # [n_mels + 2]
    widths = np.diff(edges)
    dist = edges[:, None] - fft_hz[None, :]  # [n_mels + 2, bins]
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    norm = 2.0 / (edges[2:] - edges[:-2])  # float64, applied to the float32 triangles as librosa does
    return (weights * norm[:, None]).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _mel_basis(n_mels: int) -> torch.Tensor:
    return torch.from_numpy(slaney_mel_filterbank(SAMPLE_RATE, N_FFT, n_mels, F_MIN, F_MAX))


def mel_spectrogram(wav, n_mels: int = 128) -> torch.Tensor:
    """wav [N] float32 at 24 kHz (numpy or torch) -> log-mel [1, T, n_mels] float32."""
    y = torch.as_tensor(wav, dtype=torch.float32).reshape(1, 1, -1)
    if y.shape[-1] < MIN_SAMPLES:
        raise ValueError(f"reference audio too short for the speaker encoder: {y.shape[-1]} samples")
    pad = (N_FFT - HOP) // 2
    y = F.pad(y, (pad, pad), mode="reflect")[:, 0]  # [1, N + 768]
    window = torch.hann_window(N_FFT, device=y.device)
    spec = torch.stft(y, N_FFT, hop_length=HOP, win_length=N_FFT, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)  # [1, bins, T]
    mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    mel = torch.matmul(_mel_basis(n_mels).to(y.device), mag)  # [1, n_mels, T]
    return torch.log(torch.clamp(mel, min=1e-5)).transpose(1, 2)


def _conv(c_in: int, c_out: int, kernel: int = 1, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding="same", padding_mode="reflect")


class TDNNBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = _conv(c_in, c_out, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Res2NetBlock(nn.Module):
    """Channel groups: group 0 passes through, group i >= 1 is TDNN(x_i + y_{i-1}) (no add for i = 1)."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList([TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.scale, dim=1)
        outs = [parts[0]]
        for i in range(1, self.scale):
            inp = parts[i] if i == 1 else parts[i] + outs[-1]
            outs.append(self.blocks[i - 1](inp))
        return torch.cat(outs, dim=1)


class SEBlock(nn.Module):
    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = _conv(channels, se_channels)
        self.conv2 = _conv(se_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=2, keepdim=True)  # [B, C, 1]
        return x * torch.sigmoid(self.conv2(F.relu(self.conv1(s))))


class SERes2NetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, scale: int, se_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNNBlock(c_in, c_out, 1, 1)
        self.res2net_block = Res2NetBlock(c_out, scale, kernel, dilation)
        self.tdnn2 = TDNNBlock(c_out, c_out, 1, 1)
        self.se_block = SEBlock(c_out, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def _weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # x [B, C, T], w [B, C or 1, T] summing to 1 over T -> mean, std [B, C]
    mean = (w * x).sum(2)
    std = torch.sqrt((w * (x - mean[..., None]).pow(2)).sum(2).clamp(1e-12))
    return mean, std


class AttentiveStatsPooling(nn.Module):
    """Attention over time conditioned on [x, global mean, global std]; returns [B, 2C, 1]."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNNBlock(channels * 3, attention_channels, 1, 1)
        self.conv = _conv(attention_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        uniform = torch.full((x.shape[0], 1, t), 1.0 / t, dtype=x.dtype, device=x.device)
        mean, std = _weighted_stats(x, uniform)
        context = torch.cat([x, mean[..., None].expand(-1, -1, t), std[..., None].expand(-1, -1, t)], dim=1)
        attn = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)  # [B, C, T]
        mean, std = _weighted_stats(x, attn)
        return torch.cat([mean, std], dim=1)[..., None]


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN: TDNN, SE-Res2Net blocks, multi-layer aggregation, attentive pooling, 1x1 projection."""

    def __init__(self, cfg: SpeakerEncoderConfig):
        super().__init__()
        ch, ks, dil = cfg.enc_channels, cfg.enc_kernel_sizes, cfg.enc_dilations
        if not len(ch) == len(ks) == len(dil):
            raise ValueError("enc_channels, enc_kernel_sizes and enc_dilations must have the same length")
        self.n_mels = cfg.mel_dim
        self.blocks = nn.ModuleList([TDNNBlock(cfg.mel_dim, ch[0], ks[0], dil[0])])
        for i in range(1, len(ch) - 1):
            self.blocks.append(
                SERes2NetBlock(ch[i - 1], ch[i], cfg.enc_res2net_scale, cfg.enc_se_channels, ks[i], dil[i])
            )
        self.mfa = TDNNBlock(ch[-1], ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatsPooling(ch[-1], cfg.enc_attention_channels)
        self.fc = _conv(ch[-1] * 2, cfg.enc_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # mel [B, T, n_mels] -> [B, enc_dim]
        h = mel.transpose(1, 2)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        h = self.mfa(torch.cat(feats[1:], dim=1))  # [B, C_last, T]
        return self.fc(self.asp(h))[..., 0]

    @torch.inference_mode()
    def embed(self, wav_24k) -> torch.Tensor:
        """wav [N] float32 at 24 kHz -> x-vector [enc_dim] float32 (mel in fp32, network in its dtype)."""
        p = self.fc.weight
        mel = mel_spectrogram(wav_24k, self.n_mels).to(device=p.device, dtype=p.dtype)
        return self(mel)[0].float()
