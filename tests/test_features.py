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


# ------------------------------------------------------------------------------------------------ frequency warp


def _reference_warp(logmel: np.ndarray, fp: FeatureParams, factor: float) -> np.ndarray:
    """Per-bin np.interp on the mel axis: output bin i reads the input at mel(centre_hz[i] / factor)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)
    centres = np.linspace(mel(fp.f_min_hz), mel(fp.f_max_hz), fp.n_mels + 2)[1:-1]
    src = mel(hz(centres) / factor)
    return np.stack([np.interp(src, centres, row) for row in logmel])  # np.interp holds the edge values


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.0, 1.07, 1.25])
def test_frequency_warp_map_matches_a_per_bin_interpolation(factor: float) -> None:
    from wakeword.features import frequency_warp_maps

    fp = FeatureParams()
    x = np.random.default_rng(3).standard_normal((7, fp.n_mels))
    m = frequency_warp_maps(fp, np.array([factor]))[0]
    np.testing.assert_allclose(x @ m, _reference_warp(x, fp, factor), atol=1e-5)
    if factor == 1.0:
        np.testing.assert_array_equal(m, np.eye(fp.n_mels, dtype=np.float32))


@pytest.mark.parametrize("factor", [0.84, 1.19])
def test_frequency_warp_moves_a_tone_where_a_tone_at_factor_times_its_frequency_lies(factor: float) -> None:
    """The log-mel of a 600 / 1500 / 3000 Hz tone, warped by ``factor``, peaks in the bin where the log-mel of a
    tone at ``factor`` times the frequency peaks."""
    from wakeword.features import frequency_warp_maps

    fp = FeatureParams()
    t = np.arange(16000) / 16000.0
    m = frequency_warp_maps(fp, np.array([factor]))[0]
    for hz in (600.0, 1500.0, 3000.0):
        warped = (log_mel(np.sin(2 * np.pi * hz * t).astype(np.float32), fp) @ m).mean(axis=0)
        moved = log_mel(np.sin(2 * np.pi * hz * factor * t).astype(np.float32), fp).mean(axis=0)
        assert int(np.argmax(warped)) == int(np.argmax(moved)), (hz, factor)
        assert int(np.argmax(warped)) != int(np.argmax(log_mel(np.sin(2 * np.pi * hz * t).astype(np.float32),
                                                                  fp).mean(axis=0)))


def test_frequency_warp_of_mfcc_is_the_dct_of_the_warped_smoothed_log_mel() -> None:
    from scipy.fft import dct, idct

    from wakeword.features import frequency_warp_maps

    fp = FeatureParams(type="mfcc", n_mels=32, n_mfcc=12)
    c = np.random.default_rng(4).standard_normal((5, fp.n_mfcc))
    smoothed = idct(np.pad(c, ((0, 0), (0, fp.n_mels - fp.n_mfcc))), norm="ortho", axis=1)
    want = dct(_reference_warp(smoothed, fp, 1.15), norm="ortho", axis=1)[:, :fp.n_mfcc]
    got = c @ frequency_warp_maps(fp, np.array([1.15]))[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_frequency_warp_refuses_micro_features_and_bad_factors() -> None:
    from wakeword.features import frequency_warp_maps

    with pytest.raises(ValueError, match="features.type 'micro' takes no frequency warp"):
        frequency_warp_maps(FeatureParams(type="micro", win_ms=30.0), np.array([1.1]))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="factors must be finite and > 0"):
            frequency_warp_maps(FeatureParams(), np.array([1.0, bad]))
    assert frequency_warp_maps(FeatureParams(), np.array([])).shape == (0, 40, 40)
