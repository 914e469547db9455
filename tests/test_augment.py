"""Tests for wakeword.augment: each checks a measurable property (frequency, length, envelope, RT60, mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline
from scipy.signal import lfilter

from wakeword import augment as A
from wakeword.params import AugmentParams

SR = 16000


def tone(freq: float, seconds: float = 1.5, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(y: np.ndarray) -> float:
    n = 1 << 18
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n))
    return float(np.argmax(spec) * SR / n)


def vowel(f0: float = 120.0, formants=((700.0, 90.0), (1200.0, 110.0)), seconds: float = 1.0) -> np.ndarray:
    """A pulse train at ``f0`` through two-pole resonators: a crude but exactly known vowel."""
    n = int(seconds * SR)
    src = np.zeros(n)
    src[np.arange(0, n, SR / f0).astype(int)] = 1.0
    y = src
    for f, bw in formants:
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1.0], [1.0, -2.0 * r * np.cos(2 * np.pi * f / SR), r * r], y)
    return (0.1 * y / np.sqrt(np.mean(y * y))).astype(np.float32)


def harmonic_envelope_peaks(y: np.ndarray, f0: float) -> list[tuple[float, float]]:
    """(frequency, dB) of the local maxima of the spline through the harmonic amplitudes, loudest first."""
    n = 1 << 16
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n))
    df = SR / n
    harmonics = np.arange(1, int(5000 / f0)) * f0
    amps = np.array([spec[int((h - f0 / 4) / df) : int((h + f0 / 4) / df)].max() for h in harmonics])
    grid = np.arange(harmonics[0], harmonics[-1], 1.0)
    env = CubicSpline(harmonics, 20 * np.log10(amps))(grid)
    idx = [i for i in range(1, grid.size - 1) if env[i] > env[i - 1] and env[i] >= env[i + 1]]
    return sorted(((float(grid[i]), float(env[i])) for i in idx), key=lambda p: -p[1])


def f0_autocorr(y: np.ndarray) -> float:
    y = y[: SR // 2] - y[: SR // 2].mean()
    ac = np.correlate(y, y, "full")[y.size - 1 :]
    lo, hi = SR // 400, SR // 60
    k = int(np.argmax(ac[lo:hi])) + lo
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    return SR / (k + 0.5 * (a - c) / (a - 2 * b + c))


def db(a: float) -> float:
    return 20 * np.log10(a)


# ----------------------------------------------------------------------------------------------------------
# time stretch / pitch shift
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.5, 0.85, 1.15, 2.0])
def test_time_stretch_length_and_pitch(rate: float) -> None:
    x = tone(440.0)
    y = A.time_stretch(x, rate)
    assert y.dtype == np.float32
    assert abs(y.size - round(x.size / rate)) <= A.HOP
    assert dominant_hz(y) == pytest.approx(440.0, rel=0.02)
    mid = slice(y.size // 4, 3 * y.size // 4)
    assert db(A._rms(y[mid]) / A._rms(x)) == pytest.approx(0.0, abs=1.0)


def test_time_stretch_identity_and_limits() -> None:
    x = tone(300.0, 0.3)
    assert np.array_equal(A.time_stretch(x, 1.0), x)
    with pytest.raises(ValueError, match="rate"):
        A.time_stretch(x, 2.5)
    with pytest.raises(ValueError, match="mono"):
        A.time_stretch(np.zeros((2, 100), dtype=np.float32), 1.1)


def test_time_stretch_keeps_events_in_place() -> None:
    """A burst at 1/3 of the signal lands at 1/3 of the stretched signal (no drift, no offset)."""
    x = np.zeros(24000, dtype=np.float32)
    x[8000:8800] = np.random.default_rng(0).standard_normal(800) * np.hanning(800)
    for rate in (0.85, 1.15):
        y = A.time_stretch(x, rate)
        centre = float((np.arange(y.size) * y**2).sum() / (y**2).sum())
        assert centre == pytest.approx(8400 / rate, abs=0.01 * 8400)


@pytest.mark.parametrize("semitones", [-12.0, -2.0, -0.3, 2.0, 7.0, 12.0])
def test_pitch_shift_scales_frequency(semitones: float) -> None:
    x = tone(440.0)
    y = A.pitch_shift(x, semitones)
    assert y.size == x.size and y.dtype == np.float32
    assert dominant_hz(y) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.02)
    mid = slice(y.size // 4, 3 * y.size // 4)
    assert db(A._rms(y[mid]) / A._rms(x)) == pytest.approx(0.0, abs=1.0)


def test_pitch_shift_small_shifts_are_not_rounded_away() -> None:
    """0.1 semitone is 0.58 %: the resampling ratio must not be rounded to 1."""
    y = A.pitch_shift(tone(1000.0), 0.1)
    assert dominant_hz(y) / 1000.0 == pytest.approx(2 ** (0.1 / 12), abs=0.001)
    assert np.array_equal(A.pitch_shift(tone(1000.0), 0.0), tone(1000.0))


def test_resample_matches_scipy() -> None:
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    x = lfilter(*_lowpass(), x).astype(np.float32)
    for up, down in ((85, 92), (441, 320), (1000, 1001)):
        ours, ref = A._resample(x, up, down), resample_poly(x, up, down)
        assert ours.size == ref.size
        err = ours[200:-200] - ref[200:-200]
        assert np.sqrt(np.mean(err**2)) < 0.01 * np.sqrt(np.mean(ref**2))


def _lowpass() -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import butter

    return butter(6, 3000, fs=SR)


# ----------------------------------------------------------------------------------------------------------
# VTLP
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.7, 0.85, 1.2, 1.4])
def test_vtlp_moves_formants_keeps_f0_length_level(alpha: float) -> None:
    x = vowel()
    y = A.vtlp(x, alpha)
    assert y.size == x.size and y.dtype == np.float32
    f1_in = harmonic_envelope_peaks(x, 120.0)[0][0]
    f1_out = harmonic_envelope_peaks(y, 120.0)[0][0]
    assert f1_out / f1_in == pytest.approx(alpha, rel=0.08)
    # the second formant moves too: some envelope peak near alpha * 1200 Hz
    f2_err = min(abs(f - alpha * 1200.0) for f, _ in harmonic_envelope_peaks(y, 120.0)[:3])
    assert f2_err < 0.08 * alpha * 1200
    assert f0_autocorr(y) == pytest.approx(120.0, rel=0.05)
    assert abs(db(A._rms(y) / A._rms(x))) < 1.5


@pytest.mark.parametrize("semitones, formant", [(9.0, 1.17), (-3.0, 0.95), (5.0, 1.0)])
def test_revoice_moves_pitch_and_formants_independently(semitones: float, formant: float) -> None:
    x = vowel()
    y = A.revoice(x, semitones, formant)
    assert y.size == x.size and y.dtype == np.float32
    f0 = 120.0 * 2 ** (semitones / 12)
    assert f0_autocorr(y) == pytest.approx(f0, rel=0.05)
    # the first formant moved by ``formant``, not by the pitch factor
    f1_out = harmonic_envelope_peaks(y, f0)[0][0]
    assert f1_out / 700.0 == pytest.approx(formant, abs=max(0.1, f0 / 700.0 / 2))
    assert abs(db(A._rms(y) / A._rms(x))) < 2.0
    with pytest.raises(ValueError, match="revoice"):
        A.revoice(x, 12.0, 0.9)  # formants at 0.9 / 2 of the shifted ones: beyond the VTLP limit


def test_vtlp_identity_and_near_identity() -> None:
    x = vowel(seconds=0.5)
    assert np.array_equal(A.vtlp(x, 1.0), x)
    y = A.vtlp(x, 1.0 + 1e-6)
    assert np.max(np.abs(y - x)) < 1e-3 * np.max(np.abs(x))
    with pytest.raises(ValueError, match="alpha"):
        A.vtlp(x, 3.0)


def test_vtlp_leaves_white_noise_white() -> None:
    """A flat envelope has nothing to move: band levels stay within 1.5 dB."""
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    y = A.vtlp(x, 1.25)

    def bands(s: np.ndarray) -> np.ndarray:
        p = (np.abs(A._stft(s)) ** 2).mean(0)[:256].reshape(8, 32).sum(1)
        return 10 * np.log10(p)

    assert np.max(np.abs(bands(y) - bands(x))) < 1.5


# ----------------------------------------------------------------------------------------------------------
# room impulse responses
# ----------------------------------------------------------------------------------------------------------


def test_simulate_rirs_deterministic_and_seed_dependent() -> None:
    a = A.simulate_rirs(3, np.random.default_rng(7), (0.2, 0.6), (3.0, 8.0))
    b = A.simulate_rirs(3, np.random.default_rng(7), (0.2, 0.6), (3.0, 8.0))
    c = A.simulate_rirs(3, np.random.default_rng(8), (0.2, 0.6), (3.0, 8.0))
    assert len(a) == 3
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not any(p.size == q.size and np.array_equal(p, q) for p, q in zip(a, c, strict=True))


@pytest.mark.parametrize("rt60", [0.25, 0.8])
def test_simulate_rirs_rt60_and_shape(rt60: float) -> None:
    from pyroomacoustics.experimental import measure_rt60

    rirs = A.simulate_rirs(6, np.random.default_rng(3), (rt60, rt60), (3.0, 10.0))
    measured = [measure_rt60(h.astype(np.float64), fs=SR, decay_db=30) for h in rirs]
    assert np.mean(measured) == pytest.approx(rt60, rel=0.35)
    for h in rirs:
        assert h.dtype == np.float32 and np.all(np.isfinite(h))
        assert 0.02 * SR < h.size < (1.2 * rt60 + 0.3) * SR
        assert A.direct_path_index(h) == A.RIR_PRE_SAMPLES and h[A.RIR_PRE_SAMPLES] == pytest.approx(1.0)
        # 60 dB trim: the last 10 ms hold a tiny share of the energy
        assert np.sum(h[-160:] ** 2) < 1e-3 * np.sum(h**2)


def test_simulate_rirs_longer_target_gives_longer_decay() -> None:
    from pyroomacoustics.experimental import measure_rt60

    short = A.simulate_rirs(4, np.random.default_rng(1), (0.2, 0.2), (4.0, 6.0))
    long = A.simulate_rirs(4, np.random.default_rng(1), (0.7, 0.7), (4.0, 6.0))
    t_short = np.mean([measure_rt60(h.astype(np.float64), fs=SR, decay_db=30) for h in short])
    t_long = np.mean([measure_rt60(h.astype(np.float64), fs=SR, decay_db=30) for h in long])
    assert t_long > 2.0 * t_short


def test_simulate_rirs_validates() -> None:
    with pytest.raises(ValueError, match="rt60_range"):
        A.simulate_rirs(1, np.random.default_rng(0), (0.5, 0.2))
    assert A.simulate_rirs(0, np.random.default_rng(0)) == []


def speechy(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Noise bursts with silences, so time alignment is unambiguous."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * SR)) * 0.1
    env = (np.sin(2 * np.pi * 3.0 * np.arange(x.size) / SR) > 0.3).astype(float)
    return (x * env).astype(np.float32)


def test_apply_rir_identities() -> None:
    x = speechy()
    rir = A.simulate_rirs(1, np.random.default_rng(0))[0]
    assert np.array_equal(A.apply_rir(x, rir, 0.0), x)
    delta = np.zeros(50, dtype=np.float32)
    delta[17] = 0.4  # any delay, any gain: aligned and level-matched, so the output is the input
    for wet in (0.3, 1.0):
        np.testing.assert_allclose(A.apply_rir(x, delta, wet), x, atol=1e-6)
    with pytest.raises(ValueError, match="wet"):
        A.apply_rir(x, rir, 1.5)


def test_apply_rir_length_level_alignment() -> None:
    x = speechy()
    rir = A.simulate_rirs(1, np.random.default_rng(2), (0.6, 0.6), (5.0, 7.0))[0]
    y = A.apply_rir(x, rir, 1.0)
    assert y.size == x.size and y.dtype == np.float32
    assert db(A._rms(y) / A._rms(x)) == pytest.approx(0.0, abs=0.1)
    assert not np.allclose(y, x, atol=1e-3)
    xc = np.correlate(y.astype(np.float64), x.astype(np.float64), "full")
    assert int(np.argmax(xc)) - (x.size - 1) == 0
    half = A.apply_rir(x, rir, 0.5)
    np.testing.assert_allclose(half, 0.5 * x + 0.5 * y, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# SpecAugment
# ----------------------------------------------------------------------------------------------------------


def feats(b: int = 64, t: int = 100, f: int = 40) -> torch.Tensor:
    return torch.randn(b, t, f, generator=torch.Generator().manual_seed(0)) + 5.0  # no exact zeros


def test_spec_augment_prob_zero_is_identity() -> None:
    x = feats()
    y = A.spec_augment(x, torch.Generator().manual_seed(1), 0.0, 2, 10, 2, 5)
    assert torch.equal(x, y) and y is not x


def test_spec_augment_masks_match_documented_draws() -> None:
    x = feats()
    before = x.clone()
    b, t, f = x.shape
    y = A.spec_augment(x, torch.Generator().manual_seed(3), 1.0, 2, 10, 1, 5)
    assert torch.equal(x, before), "input modified"
    g = torch.Generator().manual_seed(3)
    chosen = torch.rand(b, generator=g) < 1.0
    tw = torch.randint(0, 11, (b, 2), generator=g)
    ts = (torch.rand(b, 2, generator=g) * (t - tw + 1)).floor().long()
    fw = torch.randint(0, 6, (b, 1), generator=g)
    fs = (torch.rand(b, 1, generator=g) * (f - fw + 1)).floor().long()
    assert bool(chosen.all())
    masked = y == 0.0
    for i in range(b):
        cols = torch.zeros(t, dtype=torch.bool)
        for k in range(2):
            cols[ts[i, k] : ts[i, k] + tw[i, k]] = True
        rows = torch.zeros(f, dtype=torch.bool)
        rows[fs[i, 0] : fs[i, 0] + fw[i, 0]] = True
        assert torch.equal(masked[i], cols[:, None] | rows[None, :])
        assert int(cols.sum()) <= 2 * 10 and int(rows.sum()) <= 5
    assert torch.equal(y[~masked], x[~masked])


def test_spec_augment_single_masks_are_contiguous_and_bounded() -> None:
    x = feats(256)
    y = A.spec_augment(x, torch.Generator().manual_seed(5), 1.0, 1, 7, 0, 5, value=-1.5)
    full_cols = (y == -1.5).all(dim=2)  # (b, t)
    assert torch.equal((y == -1.5), full_cols[:, :, None].expand_as(y)), "time masks must cover whole frames"
    widths = full_cols.sum(dim=1)
    assert int(widths.max()) == 7 and int(widths.min()) == 0
    for row in full_cols:
        idx = torch.nonzero(row).flatten()
        if idx.numel():
            assert int(idx[-1] - idx[0]) + 1 == idx.numel()


def test_spec_augment_probability_and_determinism() -> None:
    x = feats(2000, 20, 8)
    y1 = A.spec_augment(x, torch.Generator().manual_seed(9), 0.5, 1, 20, 1, 8)
    y2 = A.spec_augment(x, torch.Generator().manual_seed(9), 0.5, 1, 20, 1, 8)
    y3 = A.spec_augment(x, torch.Generator().manual_seed(10), 0.5, 1, 20, 1, 8)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    touched = (y1 != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.4 < touched < 0.5  # p = 0.5 minus the windows that drew two zero widths (~1/21 * 1/9)


# ----------------------------------------------------------------------------------------------------------
# per-utterance conveniences
# ----------------------------------------------------------------------------------------------------------


def test_augment_utterance_probabilities() -> None:
    x = vowel(seconds=0.8)
    off = AugmentParams(stretch_prob=0.0, pitch_prob=0.0)
    y, info = A.augment_utterance(x, off, np.random.default_rng(0))
    assert np.array_equal(y, x) and info == {"stretch_rate": None, "pitch_semitones": None, "pause_s": None}
    on = AugmentParams(stretch_prob=1.0, stretch_range=(1.2, 1.3), pitch_prob=1.0, pitch_semitones=(1.0, 2.0))
    y, info = A.augment_utterance(x, on, np.random.default_rng(0))
    assert 1.2 <= info["stretch_rate"] <= 1.3 and 1.0 <= info["pitch_semitones"] <= 2.0
    assert y.size == round(x.size / info["stretch_rate"])
    assert f0_autocorr(y) == pytest.approx(120.0 * 2 ** (info["pitch_semitones"] / 12), rel=0.03)
    y2, info2 = A.augment_utterance(x, on, np.random.default_rng(0))
    assert np.array_equal(y, y2) and info == info2


def _two_words(gap_s: float, dip_db: float | None = None) -> np.ndarray:
    """0.3 s and 0.4 s tone bursts ("hey", "jarvis") with ``gap_s`` between them: digital silence, or with
    ``dip_db`` a tone ``dip_db`` below the words (an energy valley, no quiet gap)."""
    a, b = vowel(seconds=0.3), vowel(seconds=0.4)
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    if dip_db is not None:
        gap = vowel(seconds=gap_s) * np.float32(10 ** (-dip_db / 20))
    return np.concatenate([np.zeros(800, np.float32), a, gap, b, np.zeros(800, np.float32)])


def test_pause_goes_into_the_gap_between_words() -> None:
    x = _two_words(0.08)
    at, in_gap = A.pause_point(x)
    gap_start, gap_end = 800 + 4800, 800 + 4800 + 1280
    assert in_gap and gap_start <= at <= gap_end and abs(at - (gap_start + gap_end) / 2) <= 160
    y = A.insert_pause(x, 0.25)
    assert y.size == x.size + 4000
    np.testing.assert_array_equal(y[:at], x[:at])  # the words themselves are untouched
    np.testing.assert_array_equal(y[at + 4000 :], x[at:])
    assert not y[at : at + 4000].any()


def test_pause_goes_into_the_energy_valley_without_a_gap_and_fades() -> None:
    x = _two_words(0.05, dip_db=20.0)  # no 30 ms below -35 dB: no gap, but a valley
    at, in_gap = A.pause_point(x)
    assert not in_gap and 800 + 4800 <= at <= 800 + 4800 + 800
    y = A.insert_pause(x, 0.1)
    assert y.size == x.size + 1600 and not y[at : at + 1600].any()
    assert abs(float(y[at - 1])) < 1e-3 and abs(float(y[at + 1600])) < 1e-3  # faded to silence on both sides


@pytest.mark.parametrize("x", [np.zeros(16000, np.float32), vowel(seconds=0.03)])
def test_no_pause_in_silence_or_a_fragment(x: np.ndarray) -> None:
    assert A.pause_point(x)[0] == -1
    np.testing.assert_array_equal(A.insert_pause(x, 0.3), x)


def test_augment_utterance_pause_probability_and_draws() -> None:
    x = _two_words(0.08)
    on = AugmentParams(stretch_prob=0.0, pitch_prob=0.0, pause_prob=1.0, pause_s=(0.2, 0.3))
    y, info = A.augment_utterance(x, on, np.random.default_rng(0))
    assert 0.2 <= info["pause_s"] <= 0.3 and y.size == x.size + round(info["pause_s"] * 16000)
    # off: the rng advances exactly as before pauses existed (4 draws), so other draws do not move
    rng, ref = np.random.default_rng(1), np.random.default_rng(1)
    A.augment_utterance(x, AugmentParams(pause_prob=0.0, stretch_prob=0.0, pitch_prob=0.0), rng)
    ref.random(2), ref.uniform(size=2)
    assert rng.random() == ref.random()
    never = AugmentParams(stretch_prob=0.0, pitch_prob=0.0, pause_prob=1e-9)
    assert A.augment_utterance(x, never, np.random.default_rng(0))[1]["pause_s"] is None


def test_reverberate_probabilities() -> None:
    x = speechy(0.8)
    rirs = A.simulate_rirs(3, np.random.default_rng(0))
    y, info = A.reverberate(x, rirs, AugmentParams(rir_prob=0.0), np.random.default_rng(0))
    assert np.array_equal(y, x) and info == {"rir_index": None, "wet": None}
    on = AugmentParams(rir_prob=1.0, rir_wet=(0.5, 0.6))
    y, info = A.reverberate(x, rirs, on, np.random.default_rng(0))
    assert info["rir_index"] in (0, 1, 2) and 0.5 <= info["wet"] <= 0.6
    np.testing.assert_allclose(y, A.apply_rir(x, rirs[info["rir_index"]], info["wet"]), atol=1e-7)
    assert not np.allclose(y, x, atol=1e-3)
    y, info = A.reverberate(x, [], AugmentParams(rir_prob=1.0), np.random.default_rng(0))
    assert np.array_equal(y, x) and info["rir_index"] is None


def test_gain() -> None:
    x = tone(100.0, 0.1)
    assert db(A._rms(A.gain(x, -6.0)) / A._rms(x)) == pytest.approx(-6.0, abs=1e-4)


# ---- random channel EQ ------------------------------------------------------------------------------------


def test_eq_curves_match_documented_draws() -> None:
    n, bins, tilt_db, bands, band_db = 6, 40, 8.0, 2, 5.0
    got = A.eq_curves(n, bins, torch.Generator().manual_seed(1), 0.5, tilt_db, bands, band_db).numpy()
    g = torch.Generator().manual_seed(1)  # the same draws, in the documented order, by hand
    chosen = (torch.rand(n, generator=g) < 0.5).numpy()
    t = (torch.rand(n, generator=g, dtype=torch.float64).numpy() * 2 - 1) * tilt_db
    c = torch.rand(n, bands, generator=g, dtype=torch.float64).numpy()
    s = 0.04 + torch.rand(n, bands, generator=g, dtype=torch.float64).numpy() * 0.16
    b = (torch.rand(n, bands, generator=g, dtype=torch.float64).numpy() * 2 - 1) * band_db
    for i in range(n):
        want = np.zeros(bins)
        if chosen[i]:
            for j in range(bins):
                u = j / (bins - 1)
                want[j] = t[i] * (u - 0.5) + sum(b[i, k] * np.exp(-0.5 * ((u - c[i, k]) / s[i, k]) ** 2)
                                                for k in range(bands))
        np.testing.assert_allclose(got[i], want, atol=1e-5)
    assert 0 < chosen.sum() < n


def test_eq_curves_tilt_only_is_a_bounded_line_and_prob_zero_draws_nothing() -> None:
    curves = A.eq_curves(200, 32, torch.Generator().manual_seed(0), 1.0, 12.0, 0, 6.0).numpy()
    span = curves[:, -1] - curves[:, 0]
    assert np.all(np.abs(span) <= 12.0) and span.max() > 9 and span.min() < -9
    np.testing.assert_allclose(np.diff(curves, 2, axis=1), 0.0, atol=1e-5)  # straight lines
    np.testing.assert_allclose(curves.mean(axis=1), 0.0, atol=1e-5)  # a tilt about the middle of the band
    g = torch.Generator().manual_seed(0)
    before = g.get_state().clone()
    assert not A.eq_curves(10, 32, g, 0.0, 12.0, 2, 6.0).any() and torch.equal(g.get_state(), before)
    with pytest.raises(ValueError, match="prob"):
        A.eq_curves(4, 32, g, 1.5, 1.0, 1, 1.0)


@pytest.mark.parametrize(("kw", "features_type", "on"), [
    ({"eq_prob": 0.5, "eq_tilt_db": 30.0, "eq_bands": 2, "eq_band_db": 6.0}, "log_mel", True),
    ({"eq_prob": 0.5, "eq_tilt_db": 30.0, "eq_bands": 2, "eq_band_db": 6.0}, "mfcc", True),
    ({"eq_prob": 0.5, "eq_tilt_db": 30.0, "eq_bands": 2, "eq_band_db": 6.0}, "micro", False),  # PCAN adapts
    ({"eq_prob": 0.0, "eq_tilt_db": 30.0, "eq_bands": 2, "eq_band_db": 6.0}, "log_mel", False),
    ({"eq_prob": 0.5, "eq_tilt_db": 0.0, "eq_bands": 0, "eq_band_db": 6.0}, "log_mel", False),  # no bands
    ({"eq_prob": 0.5, "eq_tilt_db": 0.0, "eq_bands": 2, "eq_band_db": 0.0}, "log_mel", False),  # 0 dB bands
    ({"eq_prob": 0.5, "eq_tilt_db": 0.0, "eq_bands": 1, "eq_band_db": 3.0}, "log_mel", True),  # bands only
    ({"eq_prob": 1.0, "eq_tilt_db": 5.0, "eq_bands": 0, "eq_band_db": 0.0}, "log_mel", True),  # tilt only
])
def test_random_eq_applies_only_with_a_chance_a_gain_and_offset_features(kw: dict, features_type: str,
                                                                           on: bool) -> None:
    assert A.random_eq_applies(AugmentParams(**kw), features_type) is on


def test_apply_eq_adds_the_mapped_offset_to_every_frame() -> None:
    x = torch.randn(3, 7, 4)
    curves = torch.tensor([[10.0, 0, 0, 0], [0, 0, 0, 0], [0, -3, 0, 3]])
    per_db = torch.eye(4) * (np.log(10) / 10)
    y = A.apply_eq(x, curves, per_db)
    torch.testing.assert_close(y[0] - x[0], torch.tensor([np.log(10), 0, 0, 0]).float().expand(7, 4))
    torch.testing.assert_close(y[1], x[1])
    torch.testing.assert_close(y[2, :, 3] - x[2, :, 3], torch.full((7,), 0.3 * np.log(10)))
    with pytest.raises(ValueError, match="shapes"):
        A.apply_eq(x, curves[:, :3], per_db)


# ------------------------------------------------------------------------------------------------ frequency warp


def test_warp_factors_follow_the_documented_draws_and_are_log_uniform() -> None:
    n, lo, hi = 20000, 0.84, 1.19
    f = A.warp_factors(n, torch.Generator().manual_seed(7), 0.5, lo, hi).numpy()
    ref = torch.Generator().manual_seed(7)
    chosen = (torch.rand(n, generator=ref) < 0.5).numpy()
    u = torch.rand(n, generator=ref, dtype=torch.float64).numpy()
    np.testing.assert_allclose(f, np.where(chosen, lo * (hi / lo) ** u, 1.0), rtol=1e-12)
    assert np.all(f[~chosen] == 1.0) and np.all((f[chosen] >= lo) & (f[chosen] <= hi))
    # log-uniform: P(f > 1.1) = ln(1.19 / 1.1) / ln(1.19 / 0.84) = 0.226 and P(f < 1 / 1.1) = 0.227 (a uniform
    # draw would give 0.257 and 0.197); about 10,000 chosen factors: standard error 0.004
    below, above = np.mean(f[chosen] < 1 / 1.1), np.mean(f[chosen] > 1.1)
    assert abs(above - 0.226) < 0.015 and abs(below - 0.227) < 0.015


def test_warp_factors_with_prob_zero_draw_nothing_and_bad_arguments_are_refused() -> None:
    g = torch.Generator().manual_seed(1)
    before = g.get_state()
    assert torch.equal(A.warp_factors(9, g, 0.0, 0.8, 1.2), torch.ones(9, dtype=torch.float64))
    assert torch.equal(g.get_state(), before)
    with pytest.raises(ValueError, match="prob must lie within"):
        A.warp_factors(3, g, 1.5, 0.8, 1.2)
    with pytest.raises(ValueError, match="need 0 < lo <= hi"):
        A.warp_factors(3, g, 0.5, 1.2, 0.8)


def test_apply_frequency_warp_maps_the_chosen_rows_and_leaves_the_others() -> None:
    x = torch.randn(4, 5, 3)
    rows = torch.tensor([1, 3])
    maps = torch.stack([torch.eye(3).flip(0), 2 * torch.eye(3)])
    offsets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    y = A.apply_frequency_warp(x, rows, maps, offsets)
    torch.testing.assert_close(y[1], x[1].flip(1) + torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(y[3], 2 * x[3] - torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    assert torch.equal(A.apply_frequency_warp(x, rows[:0], maps[:0], offsets[:0]), x)
    with pytest.raises(ValueError, match="shapes do not fit"):
        A.apply_frequency_warp(x, rows, maps[:1], offsets)


@pytest.mark.parametrize(("kw", "features_type", "on"), [
    ({"warp_prob": 0.5}, "log_mel", True),
    ({"warp_prob": 0.5}, "mfcc", True),
    ({"warp_prob": 0.5}, "micro", False),  # the front end's state would not follow a warped frame
    ({"warp_prob": 0.0}, "log_mel", False),
    ({"warp_prob": 0.5, "warp_range": [1.0, 1.0]}, "log_mel", False),
    ({"warp_prob": 1.0, "warp_range": [1.0, 1.1]}, "log_mel", True),
])
def test_frequency_warp_applies_only_with_a_chance_a_range_and_linear_features(kw: dict, features_type: str,
                                                                                on: bool) -> None:
    assert A.frequency_warp_applies(AugmentParams(**kw), features_type) is on


def test_warp_range_is_checked() -> None:
    with pytest.raises(ValueError, match=r"warp_range must lie within \[0.7, 1.4\]"):
        AugmentParams(warp_range=[0.5, 1.2])
    with pytest.raises(ValueError, match="warp_range"):
        AugmentParams(warp_range=[1.2, 0.9])
