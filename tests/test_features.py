"""Log-mel against a direct per-frame numpy reference, torch against numpy, streaming against whole-file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wakeword.features import log_mel, log_mel_stream, log_mel_torch, mel_filterbank, num_frames
from wakeword.params import FeatureParams


def reference_log_mel(x: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """Textbook loop: window each frame, |DFT|^2 by explicit sum over samples, triangular mel filters."""
    win, hop, n_fft, sr = fp.win_samples, fp.hop_samples, fp.n_fft, 16000
    hann = np.array([0.5 - 0.5 * np.cos(2 * np.pi * n / win) for n in range(win)])
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    inv = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)
    edges = [inv(m) for m in np.linspace(mel(fp.f_min_hz), mel(fp.f_max_hz), fp.n_mels + 2)]
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(win)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)  # zero padding to n_fft = summing only over the window
    rows = []
    for start in range(0, len(x) - win + 1, hop):
        power = np.abs(dft @ (x[start : start + win] * hann)) ** 2
        energies = []
        for m in range(fp.n_mels):
            lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
            w = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
            energies.append(np.log(max(float(w @ power), fp.log_floor)))
        rows.append(energies)
    return np.array(rows)


@pytest.mark.parametrize("fp", [FeatureParams(), FeatureParams(n_mels=64, win_ms=32.0, f_max_hz=8000.0)])
def test_numpy_matches_reference(fp: FeatureParams) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    got = log_mel(x, fp)
    want = reference_log_mel(x.astype(np.float64), fp)
    assert got.shape == want.shape == (num_frames(x.size, fp), fp.n_mels)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_torch_matches_numpy_batched() -> None:
    fp = FeatureParams()
    x = np.random.default_rng(1).standard_normal((3, 24000)).astype(np.float32) * 0.1
    got = log_mel_torch(torch.from_numpy(x), fp).numpy()
    want = np.stack([log_mel(row, fp) for row in x])
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_stream_blocks_equal_whole_signal() -> None:
    fp = FeatureParams()
    x = np.random.default_rng(2).standard_normal(50_000).astype(np.float32) * 0.1
    whole = log_mel(x, fp)
    for block in (400, 1000, 7777, 60_000):
        parts = [x[i : i + block] for i in range(0, x.size, block)]
        np.testing.assert_allclose(log_mel_stream(parts, fp), whole, atol=1e-5)


def test_slice_of_audio_gives_rows_of_features() -> None:
    """What lets the pipeline slide windows over precomputed features."""
    fp = FeatureParams()
    x = np.random.default_rng(3).standard_normal(32_000).astype(np.float32) * 0.1
    whole = log_mel(x, fp)
    start = 37 * fp.hop_samples
    np.testing.assert_allclose(log_mel(x[start : start + 16_000], fp), whole[37 : 37 + num_frames(16_000, fp)], atol=1e-5)


def test_filterbank_shape_and_peaks() -> None:
    fb = mel_filterbank(FeatureParams())
    assert fb.shape == (40, 257)
    assert np.all(fb >= 0) and np.all(fb.max(axis=1) > 0.5) and np.all(fb.max(axis=1) <= 1.0)


def test_short_and_bad_input() -> None:
    fp = FeatureParams()
    assert log_mel(np.zeros(100, dtype=np.float32), fp).shape == (0, 40)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000), dtype=np.float32), fp)
    assert log_mel(np.zeros(400, dtype=np.float32), fp).min() == pytest.approx(np.log(fp.log_floor))
