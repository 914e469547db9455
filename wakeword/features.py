"""Log-mel features (SPEC 4.1): 16 kHz, 25 ms Hann window zero-padded to n_fft, 10 ms hop, power
spectrum, HTK-mel triangular filters, natural log with a floor. No centring or padding: frame ``i`` covers
samples ``[i*hop, i*hop + win)``, so features of a slice of audio are the same rows of the features of the
whole recording. That is what lets the pipeline slide the model window over precomputed stream features.

The numpy implementation is what the torch-free runtime uses; :func:`log_mel_torch` is the batched
pipeline version, checked against it in the tests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from wakeword.params import FeatureParams

if TYPE_CHECKING:
    import torch

SAMPLE_RATE_HZ = 16000


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(fp: FeatureParams, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Triangular filters on the HTK mel scale, shape ``(n_mels, n_fft // 2 + 1)``, peak 1."""
    n_bins = fp.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, sample_rate_hz / 2.0, n_bins)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fp.f_min_hz), hz_to_mel(fp.f_max_hz), fp.n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@lru_cache(maxsize=8)
def _filterbank_t(fp: FeatureParams) -> np.ndarray:
    """Contiguous transposed filterbank, cached: rebuilding it per call dominated short inputs."""
    return np.ascontiguousarray(mel_filterbank(fp).T)


@lru_cache(maxsize=8)
def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (as ``torch.hann_window`` and ``scipy.signal.get_window('hann', n)``)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def num_frames(n_samples: int, fp: FeatureParams) -> int:
    if n_samples < fp.win_samples:
        return 0
    return 1 + (n_samples - fp.win_samples) // fp.hop_samples


def log_mel(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """``(frames, n_mels)`` float32 log-mel of a mono 16 kHz float signal (numpy, no torch)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel expects mono audio (1-D), got shape {audio.shape}")
    n = num_frames(audio.shape[0], fp)
    if n == 0:
        return np.zeros((0, fp.n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, fp.win_samples)[:: fp.hop_samples][:n]
    spec = np.fft.rfft(frames * hann_window(fp.win_samples), n=fp.n_fft, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    mel = power @ _filterbank_t(fp)
    return np.log(np.maximum(mel, fp.log_floor)).astype(np.float32)


def log_mel_torch(audio: torch.Tensor, fp: FeatureParams) -> torch.Tensor:
    """Batched log-mel in torch: ``(batch, samples)`` -> ``(batch, frames, n_mels)`` float32."""
    import torch

    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.shape[1] < fp.win_samples:
        return torch.zeros(audio.shape[0], 0, fp.n_mels)
    frames = audio.float().unfold(1, fp.win_samples, fp.hop_samples)
    window = torch.hann_window(fp.win_samples, periodic=True, dtype=torch.float32)
    spec = torch.fft.rfft(frames * window, n=fp.n_fft, dim=-1)
    power = spec.real.square() + spec.imag.square()
    mel = power @ torch.from_numpy(mel_filterbank(fp)).T
    return torch.log(torch.clamp(mel, min=fp.log_floor))


def log_mel_stream(blocks: np.ndarray | list[np.ndarray], fp: FeatureParams) -> np.ndarray:
    """Features of a long recording given as consecutive blocks, without holding the audio whole.

    Each block is processed with the tail of the previous one carried over, so the result equals
    ``log_mel(np.concatenate(blocks))``.
    """
    out: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    for block in blocks:
        buf = np.concatenate([carry, np.asarray(block, dtype=np.float32)])
        n = num_frames(buf.shape[0], fp)
        if n:
            out.append(log_mel(buf[: (n - 1) * fp.hop_samples + fp.win_samples], fp))
        carry = buf[n * fp.hop_samples :]
    return np.concatenate(out) if out else np.zeros((0, fp.n_mels), dtype=np.float32)
