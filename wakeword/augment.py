"""Waveform and spectrogram augmentation for 16 kHz mono float32 audio.

Pure functions: every result depends only on the arguments (randomness comes in as an explicit
``np.random.Generator`` / ``torch.Generator``), inputs are never modified, outputs are new float32 arrays.

Which library does what, and why. Time stretch, pitch shift and vocal-tract-length perturbation (VTLP) are
small numpy/scipy implementations on one shared float32 STFT (512-point Hann, hop 128): a phase vocoder with
identity phase locking (Laroche & Dolson) for :func:`time_stretch`; the same vocoder plus polyphase
resampling (``scipy.signal.upfirdn``; the pitch ratio is exact to 0.05 %) for :func:`pitch_shift`; and for
:func:`vtlp` a per-frame all-pole (LPC) envelope whose frequency axis is warped with the piecewise-linear
VTLP warp of Jaitly & Hinton while the LPC residual (harmonics, noise) and the phase stay, so formants move
and the fundamental and duration do not. Each costs about 3-5 ms per 1.5 s utterance on one core of a busy
2-core machine (less for a ~0.8 s phrase) and adds no dependency. ``audiomentations`` was not taken: it
pulls librosa, numba and llvmlite, and its stretch and shift delegate to librosa or to ``python-stretch``
(Signalsmith Stretch, C++). That wrapper sounds very good but measured 1.35x our time with its default
preset (about equal with ``cheaper``), is a 0.x single-maintainer package and has no formant control, so
VTLP would need our STFT code anyway; it remains a drop-in alternative for the stretch and shift if a
listening test prefers it. Room impulse responses come from ``pyroomacoustics`` (maintained; a CPython 3.11
wheel; needs only numpy, scipy, Cython): shoebox rooms by the image-source method with the wall absorption
from Sabine's formula (``pra.inverse_sabine``). A full image-source model of a 0.9 s room needs orders
60-160 (seconds per room), and the library's ray-traced hybrid takes 80-250 ms per room and is not
reproducible (it draws from an unseeded generator), so the image sources stop at order 12 (direct path and
early reflections, the first ~60-120 ms) and the late part is Gaussian noise decaying at the target RT60,
energy-matched where the image sources stop being complete and drawn from the caller's generator: ~4-7 ms
per room, reproducible; the measured RT60 (T30) is within 5 % of the target for 0.3-1.5 s and ~25 % short
at 0.15 s (Sabine's formula overstates the reverberation time of very absorbent rooms). Convolution is
``scipy.signal.fftconvolve`` (~1 ms). SpecAugment is a few vectorised torch operations over the whole
batch (no per-window loop).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import fft as sfft
from scipy.signal import fftconvolve, upfirdn

if TYPE_CHECKING:
    import torch

    from wakeword.params import AugmentParams

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 128
STRETCH_LIMITS = (0.5, 2.0)
SEMITONE_LIMITS = (-12.0, 12.0)
VTLP_LIMITS = (0.5, 2.0)
VTLP_F_HI_HZ = 4800.0  # Jaitly & Hinton (2013): above it the warp bends so Nyquist maps to Nyquist
VTLP_LPC_ORDER = 18
VTLP_LAG_WINDOW_HZ = 20.0
VTLP_MAX_GAIN_DB = 40.0
VTLP_OVERSAMPLE = 2
ROOM_HEIGHT_M = (2.4, 3.5)
WALL_MARGIN_M = 0.5
SOURCE_HEIGHT_M = (1.0, 1.9)  # a mouth, sitting or standing
MIC_HEIGHT_M = (0.5, 1.6)  # a device on a table or shelf
MIN_SOURCE_MIC_M = 0.3
ISM_MAX_ORDER = 12
SPEED_OF_SOUND = 343.0
RIR_PRE_SAMPLES = 40  # kept before the direct-path peak (half the fractional-delay filter of pyroomacoustics)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def _as_audio(x: np.ndarray, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected mono audio (1-D), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: holds NaN or infinite samples")
    return a


def _rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad to exactly ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], dtype=y.dtype)])


def _window(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann


def _n_frames(n: int, n_fft: int, hop: int) -> int:
    pad = n_fft // 2
    return max(2, 1 + -(-(n + 2 * pad - n_fft) // hop))


def _stft(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """complex64 (frames, bins); frames centred on multiples of ``hop`` (``n_fft // 2`` zeros padded at each end).

    Everything spectral runs in float32: on these CPUs float64 sin/cos/FFT are 5-20x slower."""
    pad = n_fft // 2
    k = _n_frames(x.shape[0], n_fft, hop)
    xp = np.zeros((k - 1) * hop + n_fft, dtype=np.float32)
    xp[pad : pad + x.shape[0]] = x
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop]
    return sfft.rfft(frames * _window(n_fft), axis=1)


def _istft(spec: np.ndarray, n: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` (Hann synthesis window, divided by the summed w**2)."""
    k = spec.shape[0]
    r = n_fft // hop
    win = _window(n_fft)
    frames = (sfft.irfft(spec, n=n_fft, axis=1) * win).reshape(k, r, hop)
    wsq = (win * win).reshape(r, hop)
    out = np.zeros((k + r - 1, hop), dtype=np.float32)
    norm = np.zeros((k + r - 1, hop), dtype=np.float32)
    for c in range(r):
        out[c : c + k] += frames[:, c]
        norm[c : c + k] += wsq[c]
    out, norm = out.reshape(-1), norm.reshape(-1)
    pad = n_fft // 2
    y = out / np.maximum(norm, 1e-3 * norm.max())
    return _fit(y[pad:], n)


def _polar(mag: np.ndarray, phase: np.ndarray) -> np.ndarray:
    out = np.empty(mag.shape, dtype=np.complex64)
    out.real = mag * np.cos(phase)
    out.imag = mag * np.sin(phase)
    return out


def _peak_owner(mag: np.ndarray) -> np.ndarray:
    """Flat index (into ``mag.ravel()``) of the nearest spectral peak in the same frame, for every
    (frame, bin); a bin's own index when its frame has no peak. Vectorised over the flattened array."""
    k, f = mag.shape
    peak = np.zeros((k, f), dtype=bool)
    peak[:, 1:-1] = (mag[:, 1:-1] > mag[:, :-2]) & (mag[:, 1:-1] >= mag[:, 2:])
    peak = peak.ravel()
    n = k * f
    pos = np.concatenate(([-n], np.flatnonzero(peak), [2 * n]))  # sentinels: no peak to the left / right
    count = np.cumsum(peak, dtype=np.int32)
    pos = pos.astype(np.int32)
    left = pos[count]  # last peak at or before each bin
    right = pos[count + 1 - peak]  # first peak at or after each bin
    flat = np.arange(n, dtype=np.int32)
    row_start = np.repeat(np.arange(0, n, f, dtype=np.int32), f)
    has_left = left >= row_start
    has_right = right < row_start + f
    use_left = has_left & (~has_right | ((flat - left) <= (right - flat)))
    return np.where(use_left, left, np.where(has_right, right, flat))


def _resample(x: np.ndarray, up: int, down: int, zeros: int = 10) -> np.ndarray:
    """Polyphase resampling by ``up / down`` (``ceil(len * up / down)`` samples, no delay), like
    ``scipy.signal.resample_poly`` but with the Hann-windowed-sinc low-pass designed in float32: for the
    large ``up``/``down`` (up to 1000) that exact pitch ratios need, scipy's float64 design costs more
    than the filtering itself."""
    m = max(up, down)
    half = zeros * m
    t = np.arange(-half, half + 1, dtype=np.float32) / np.float32(m)  # in samples of the lower rate
    pt = np.float32(np.pi) * t
    pt[half] = 1.0
    h = np.sin(pt) / pt
    h[half] = 1.0
    h *= (0.5 + 0.5 * np.cos(np.float32(np.pi / zeros) * t)) * np.float32(up / m)
    pre = (-half) % down  # zeros in front so the filter's centre falls on an output sample
    h = np.concatenate([np.zeros(pre, dtype=np.float32), h])
    n_out = -(-x.shape[0] * up // down)
    y = upfirdn(h, x.astype(np.float32), up, down)
    first = (half + pre) // down
    return _fit(y[first:], n_out).astype(np.float32)


def _phase_vocoder(x: np.ndarray, rate: float, n_out: int) -> np.ndarray:
    """Resynthesise ``x`` at ``rate`` x speed into ``n_out`` samples, pitch kept (identity phase locking)."""
    spec = _stft(x)
    k, f = spec.shape
    pad = N_FFT // 2
    ko = _n_frames(n_out, N_FFT, HOP)
    # analysis position (in frames) of each synthesis frame; sample 0 maps onto sample 0
    t = np.clip(((np.arange(ko) * HOP - pad) * rate + pad) / HOP, 0.0, k - 1.0)
    i0 = np.minimum(np.floor(t).astype(np.int64), k - 2)
    frac = (t - i0).astype(np.float32)[:, None]
    mag, ang = np.abs(spec), np.angle(spec)
    a0, a1 = ang[i0], ang[i0 + 1]
    m = mag[i0] + frac * (mag[i0 + 1] - mag[i0])
    two_pi = np.float32(2.0 * np.pi)
    omega = (2.0 * np.pi * np.arange(f) * HOP / N_FFT) % (2.0 * np.pi)  # expected advance per hop, wrapped
    omega = omega.astype(np.float32)
    dev = a1 - a0 - omega
    inc = omega + (dev - two_pi * np.round(dev / two_pi))
    phase = np.empty((ko, f), dtype=np.float32)
    phase[0] = a0[0]
    np.cumsum(inc[:-1], axis=0, out=phase[1:])
    phase[1:] += a0[0]
    ref = np.where(frac < 0.5, a0, a1)
    owner = _peak_owner(m)
    locked = (phase - ref).ravel()[owner].reshape(ko, f) + ref
    return _istft(_polar(m, locked), n_out)


# ----------------------------------------------------------------------------------------------------------
# waveform operations
# ----------------------------------------------------------------------------------------------------------


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` scaled by ``db`` decibels (float32)."""
    return (np.asarray(x, dtype=np.float64) * 10.0 ** (float(db) / 20.0)).astype(np.float32)


def time_stretch(x: np.ndarray, rate: float) -> np.ndarray:
    """Play ``x`` ``rate`` times as fast with the pitch kept: ``round(len(x) / rate)`` samples.

    Phase vocoder (512-point Hann, hop 128) with identity phase locking; ``rate`` in [0.5, 2.0].
    """
    x = _as_audio(x)
    rate = float(rate)
    if not STRETCH_LIMITS[0] <= rate <= STRETCH_LIMITS[1]:
        raise ValueError(f"time_stretch: rate must lie within {list(STRETCH_LIMITS)}, got {rate}")
    if rate == 1.0 or x.size == 0:
        return x.astype(np.float32, copy=True)
    n_out = max(1, round(x.shape[0] / rate))
    return _phase_vocoder(x.astype(np.float32), rate, n_out)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Scale the pitch (and the formants, as a faster/slower tape would) by ``2 ** (semitones / 12)``, keeping
    the duration: a phase-vocoder stretch combined with polyphase resampling. ``semitones`` in [-12, 12]."""
    x = _as_audio(x)
    s = float(semitones)
    if not SEMITONE_LIMITS[0] <= s <= SEMITONE_LIMITS[1]:
        raise ValueError(f"pitch_shift: semitones must lie within {list(SEMITONE_LIMITS)}, got {s}")
    if s == 0.0 or x.size == 0:
        return x.astype(np.float32, copy=True)
    ratio = Fraction(2.0 ** (s / 12.0)).limit_denominator(1000)  # pitch factor p/q, within 0.05 % of 2**(s/12)
    p, q = ratio.numerator, ratio.denominator
    n = x.shape[0]
    xf = x.astype(np.float32)
    # the vocoder's cost follows its output length: run it on the shorter side of the resampling
    if p > q:  # up: shorten by resampling (every frequency * p/q), then stretch back to n samples
        y = _resample(xf, q, p)
        y = _phase_vocoder(y, q / p, n)
    else:  # down: stretch to n * p/q samples, then resample back to n (every frequency * p/q)
        y = _phase_vocoder(xf, q / p, max(1, round(n * p / q)))
        y = _resample(y, q, p)
    return _fit(y, n).astype(np.float32)


def _vtlp_source_freqs(alpha: float, sample_rate: int, n_bins: int, f_hi: float) -> np.ndarray:
    """For each output bin the (fractional) input bin whose envelope value lands there.

    Forward warp (Jaitly & Hinton 2013): f -> alpha f below f_hi * min(alpha, 1) / alpha, then a straight line
    to (Nyquist, Nyquist), so the warp is monotone and covers the whole band."""
    nyq = sample_rate / 2.0
    f = np.linspace(0.0, nyq, n_bins)
    f0 = min(f_hi * min(alpha, 1.0) / alpha, nyq)
    knots_in = np.array([0.0, f0, nyq])
    knots_out = np.array([0.0, alpha * f0, nyq])
    src = np.interp(f, knots_out, knots_in)  # inverse of the piecewise-linear forward warp
    return src / nyq * (n_bins - 1)


def _lpc(power: np.ndarray, order: int, lag_window_hz: float, sample_rate: int) -> np.ndarray:
    """Per-frame LPC coefficients (frames, order + 1), a[:, 0] = 1, from power spectra by Levinson-Durbin
    (vectorised over frames). A Gaussian lag window widens the peaks by ~``lag_window_hz`` and keeps the
    filters stable; silent frames get a flat model."""
    r = sfft.irfft(power, axis=1)[:, : order + 1].astype(np.float64)
    lags = np.arange(order + 1)
    r *= np.exp(-0.5 * (2.0 * np.pi * lag_window_hz * lags / sample_rate) ** 2)
    r[:, 0] *= 1.0 + 1e-6  # white-noise correction (-60 dB)
    k = r.shape[0]
    a = np.zeros((k, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    live = err > 1e-12
    err[~live] = 1.0
    for i in range(1, order + 1):
        acc = np.einsum("kj,kj->k", a[:, :i], r[:, i:0:-1])
        refl = np.where(live, -acc / err, 0.0)
        a[:, 1 : i + 1] += refl[:, None] * a[:, i - 1 :: -1]
        err *= 1.0 - refl * refl
        live &= err > 1e-12
        err[err <= 1e-12] = 1e-12
    return a


def vtlp(x: np.ndarray, alpha: float, sample_rate: int = SAMPLE_RATE, f_hi: float = VTLP_F_HI_HZ) -> np.ndarray:
    """Vocal-tract-length perturbation: move the spectral envelope (formants) by ``alpha`` in frequency while
    the harmonics (the fundamental), the phase and the duration stay; the RMS level is kept.

    Per STFT frame an all-pole (LPC, order 18) envelope E is fitted and the frame is multiplied by
    E(w^-1(f)) / E(f) = |A(f)| / |A(w^-1(f))|, w being the piecewise-linear VTLP warp; the LPC residual
    (harmonics and noise) is untouched. ``alpha`` > 1 raises the formants (a shorter vocal tract), < 1 lowers
    them; sensible values 0.7-1.4.
    """
    x = _as_audio(x)
    alpha = float(alpha)
    if not VTLP_LIMITS[0] <= alpha <= VTLP_LIMITS[1]:
        raise ValueError(f"vtlp: alpha must lie within {list(VTLP_LIMITS)}, got {alpha}")
    if alpha == 1.0 or x.size == 0:
        return x.astype(np.float32, copy=True)
    xd = x.astype(np.float32)
    spec = _stft(xd)
    f = spec.shape[1]
    power = spec.real * spec.real + spec.imag * spec.imag
    a = _lpc(power, VTLP_LPC_ORDER, VTLP_LAG_WINDOW_HZ, sample_rate).astype(np.float32)
    # |A| on a 2x finer grid, interpolated (no BLAS: a matmul here would start threads in every worker)
    fine = np.abs(sfft.rfft(a, n=VTLP_OVERSAMPLE * N_FFT, axis=1))
    a_here = fine[:, ::VTLP_OVERSAMPLE]
    src = _vtlp_source_freqs(alpha, sample_rate, f, f_hi) * VTLP_OVERSAMPLE
    lo = np.minimum(src.astype(np.int64), fine.shape[1] - 2)
    w = (src - lo).astype(np.float32)
    a_src = fine[:, lo] * (1.0 - w) + fine[:, lo + 1] * w
    limit = np.float32(10.0 ** (VTLP_MAX_GAIN_DB / 20.0))
    gain = np.clip(a_here / np.maximum(a_src, np.float32(1e-12)), 1.0 / limit, limit)
    y = _istft(spec * gain, xd.shape[0])
    ry = _rms(y)
    if ry > 0:
        y *= _rms(xd) / ry
    return y.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# room impulse responses
# ----------------------------------------------------------------------------------------------------------


def direct_path_index(rir: np.ndarray) -> int:
    """Index of the direct-path peak: the largest sample within 1 ms of the first one reaching 30 % of the
    maximum (a reflection can outgrow the direct path, but hardly by more than 3x)."""
    a = np.abs(np.asarray(rir, dtype=np.float64))
    if a.size == 0 or a.max() <= 0:
        raise ValueError("direct_path_index: the impulse response is empty or all zeros")
    first = int(np.argmax(a >= 0.3 * a.max()))
    return first + int(np.argmax(a[first : first + 16]))


def _positions(dim: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(3, WALL_MARGIN_M)
    hi = dim - WALL_MARGIN_M
    src = mic = lo
    for _ in range(100):
        src = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), rng.uniform(*SOURCE_HEIGHT_M)])
        mic = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), rng.uniform(*MIC_HEIGHT_M)])
        if np.linalg.norm(src - mic) >= MIN_SOURCE_MIC_M:
            break
    return np.minimum(src, hi), np.minimum(mic, hi)


def _room_rir(
    dim: np.ndarray, rt60: float, src: np.ndarray, mic: np.ndarray, rng: np.random.Generator, sample_rate: int,
) -> np.ndarray:
    import pyroomacoustics as pra

    volume = float(np.prod(dim))
    surface = 2.0 * float(dim[0] * dim[1] + dim[0] * dim[2] + dim[1] * dim[2])
    radius = min(a * b / math.hypot(a, b) for a, b in itertools.combinations(dim.tolist(), 2))
    try:
        e_abs, order = pra.inverse_sabine(rt60, dim, c=SPEED_OF_SOUND)
    except ValueError:  # Sabine asks for more than total absorption (short RT60, large room): Eyring's formula
        e_abs = 1.0 - math.exp(-24.0 * math.log(10.0) * volume / (SPEED_OF_SOUND * surface * rt60))
        order = math.ceil(SPEED_OF_SOUND * rt60 / radius - 1)  # pyroomacoustics' rule: reach c * rt60
    e_abs = min(float(e_abs), 0.99)
    capped = order > ISM_MAX_ORDER
    order = min(int(order), ISM_MAX_ORDER)
    room = pra.ShoeBox(dim, fs=sample_rate, materials=pra.Material(float(e_abs)), max_order=order,
                       air_absorption=False, ray_tracing=False, use_rand_ism=False)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    dist = float(np.linalg.norm(src - mic))
    # pyroomacoustics delays every arrival by half its fractional-delay filter
    expected = round(dist / SPEED_OF_SOUND * sample_rate) + int(pra.constants.get("frac_delay_length")) // 2
    peak = max(0, expected - 2) + int(np.argmax(np.abs(h[max(0, expected - 2) : expected + 3])))
    if capped:
        # image sources are complete up to about order * (smallest radius of the image "diamond") / c
        t_c = max(order * radius / SPEED_OF_SOUND, dist / SPEED_OF_SOUND + 0.03)
        i_c = peak + round((t_c - dist / SPEED_OF_SOUND) * sample_rate)
        win = round(0.02 * sample_rate)
        xfade = round(0.01 * sample_rate)
        decay = 3.0 * math.log(10.0) / rt60  # amplitude: -60 dB after rt60 seconds
        n_total = i_c + round(1.1 * rt60 * sample_rate)
        h = _fit(h, n_total)
        e_ism = float(np.mean(h[i_c - win : i_c] ** 2))
        tail_t = np.maximum(np.arange(n_total) - i_c, 0) / sample_rate
        amp = math.sqrt(e_ism) * math.exp(-decay * win / 2 / sample_rate)  # window centre: win / 2 earlier
        tail = rng.standard_normal(n_total) * amp * np.exp(-decay * tail_t)
        ramp = np.clip((np.arange(n_total) - i_c) / xfade, 0.0, 1.0)
        h = h * (1.0 - ramp) + tail * ramp
    # trim: start just before the direct path, end where the remaining energy is 60 dB down
    h = h[max(0, peak - RIR_PRE_SAMPLES) :]
    peak = min(peak, RIR_PRE_SAMPLES)
    edc = np.cumsum((h * h)[::-1])[::-1]
    end = int(np.argmax(edc < edc[0] * 1e-6)) or h.shape[0]
    h = h[: max(end, peak + 1)]
    return (h / h[peak]).astype(np.float32)


def simulate_rirs(
    n: int, rng: np.random.Generator, rt60_range: Sequence[float] = (0.15, 0.9),
    room_range_m: Sequence[float] = (3.0, 10.0), sample_rate: int = SAMPLE_RATE,
) -> list[np.ndarray]:
    """``n`` room impulse responses of random shoebox rooms, deterministic for a given generator state.

    Length and width are uniform in ``room_range_m``, height in 2.4-3.5 m; source (a mouth, 1.0-1.9 m high) and
    microphone (0.5-1.6 m) lie at least 0.5 m from every wall and 0.3 m apart; the RT60 target is uniform in
    ``rt60_range`` and sets the wall absorption through Sabine's formula (``pra.inverse_sabine``; Eyring's
    where Sabine would need more than total absorption: short RT60 in a large room). Image
    sources up to order 12 (pyroomacoustics) give the direct path and early reflections; where the target
    needs more, a Gaussian tail decaying at the target RT60 continues them (see the module docstring).
    Each response starts 40 samples before the direct-path peak, which is scaled to 1, and ends where the
    remaining energy is 60 dB below the total.
    """
    if n < 0:
        raise ValueError(f"simulate_rirs: n must be >= 0, got {n}")
    lo_t, hi_t = (float(v) for v in rt60_range)
    lo_r, hi_r = (float(v) for v in room_range_m)
    if not 0.0 < lo_t <= hi_t:
        raise ValueError(f"simulate_rirs: rt60_range must be positive and ordered, got {list(rt60_range)}")
    if not 2.0 * WALL_MARGIN_M < lo_r <= hi_r:
        raise ValueError(f"simulate_rirs: room_range_m must be ordered and above 1 m, got {list(room_range_m)}")
    rirs = []
    for _ in range(n):
        dim = np.array([rng.uniform(lo_r, hi_r), rng.uniform(lo_r, hi_r), rng.uniform(*ROOM_HEIGHT_M)])
        rt60 = float(rng.uniform(lo_t, hi_t))
        src, mic = _positions(dim, rng)
        rirs.append(_room_rir(dim, rt60, src, mic, rng, sample_rate))
    return rirs


def apply_rir(x: np.ndarray, rir: np.ndarray, wet: float) -> np.ndarray:
    """``(1 - wet) * x + wet * r``: ``r`` is ``x`` convolved with ``rir``, aligned on the direct-path peak (the
    speech does not move in time), cut to ``len(x)`` and scaled to the RMS of ``x``. ``wet`` = 0 returns ``x``."""
    x = _as_audio(x)
    rir = _as_audio(rir, "rir")
    wet = float(wet)
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"apply_rir: wet must lie within [0, 1], got {wet}")
    if wet == 0.0 or x.size == 0:
        return x.astype(np.float32, copy=True)
    xd = x.astype(np.float64)
    k = direct_path_index(rir)
    r = fftconvolve(xd, rir.astype(np.float64))[k : k + xd.shape[0]]
    rr = _rms(r)
    scale = _rms(xd) / rr if rr > 0 else 0.0
    return ((1.0 - wet) * xd + wet * scale * r).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# per-utterance conveniences
# ----------------------------------------------------------------------------------------------------------


#: :func:`insert_pause`: analysis frame (10 ms), "quiet" = this far below the loudest frame, shortest gap kept
PAUSE_FRAME = 160
PAUSE_QUIET_DB = 35.0
PAUSE_MIN_GAP_FRAMES = 3
PAUSE_FADE = 80  # 5 ms fade out / in where the pause goes into a valley rather than an existing gap


def pause_point(x: np.ndarray) -> tuple[int, bool]:
    """Where a pause goes in an utterance: ``(sample, in_gap)``.

    The middle of the longest quiet run (10 ms frames more than ``PAUSE_QUIET_DB`` below the loudest, at least
    30 ms) strictly between the first and last loud frame: the gap a speaker leaves between words, where
    there is one (``in_gap`` True). Otherwise the quietest frame from 25% to 60% of the loud region: the
    energy valley between two words (for "hey jarvis", the closure before "j" at about 40%; later, the "v" of
    "jarvis" would be the valley) (``in_gap`` False). -1 for an utterance too short or silent to have one."""
    n = x.shape[0] // PAUSE_FRAME
    if n < 5:
        return -1, False
    frames = np.asarray(x[: n * PAUSE_FRAME], dtype=np.float64).reshape(n, PAUSE_FRAME)
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    if db.max() < -100.0:  # digital silence
        return -1, False
    quiet = db <= db.max() - PAUSE_QUIET_DB
    loud = np.flatnonzero(~quiet)
    if loud.size < 2 or loud[-1] - loud[0] < 4:
        return -1, False
    first, last = int(loud[0]), int(loud[-1])
    best, run_start = (0, 0), None
    for i in range(first, last + 1):
        if quiet[i] and run_start is None:
            run_start = i
        elif not quiet[i] and run_start is not None:
            best = max(best, (i - run_start, run_start))
            run_start = None
    if best[0] >= PAUSE_MIN_GAP_FRAMES:
        return (best[1] * 2 + best[0]) * PAUSE_FRAME // 2, True
    lo = first + (last - first) // 4
    hi = max(lo + 1, first + (3 * (last - first)) // 5)
    return int((lo + int(np.argmin(db[lo:hi]))) * PAUSE_FRAME + PAUSE_FRAME // 2), False


def insert_pause(x: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` with ``seconds`` of silence inserted at :func:`pause_point` (a longer pause between words, as a
    slow or deliberate speaker, or a comma, makes). In an existing gap the audio there is already quiet; in an
    energy valley 5 ms fades out and back in keep the cut click-free. ``x`` unchanged when it has no place for
    a pause or ``seconds`` <= 0."""
    x = np.asarray(x, dtype=np.float32)
    at, in_gap = pause_point(x)
    k = round(float(seconds) * sample_rate)
    if at < 0 or k <= 0:
        return x.copy()
    head, tail = x[:at].copy(), x[at:].copy()
    if not in_gap:
        f = min(PAUSE_FADE, head.shape[0], tail.shape[0])
        ramp = np.linspace(1.0, 0.0, f, dtype=np.float32)
        head[head.shape[0] - f :] *= ramp
        tail[:f] *= ramp[::-1]
    return np.concatenate([head, np.zeros(k, dtype=np.float32), tail])


def augment_utterance(
    x: np.ndarray, aug: AugmentParams, rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Time-stretch (p = ``stretch_prob``, rate uniform in ``stretch_range``) and pitch-shift (p = ``pitch_prob``,
    semitones uniform in ``pitch_semitones``) one utterance before it is placed in a window; then, with p =
    ``pause_prob``, a pause uniform in ``pause_s`` inserted between its words (:func:`insert_pause`).

    Always draws four numbers from ``rng``, and two more when ``pause_prob`` > 0 (so the stream does not
    depend on the outcome, and is the one before pauses existed when they are off); returns the audio and
    ``{"stretch_rate": rate or None, "pitch_semitones": semitones or None, "pause_s": seconds or None}``
    (None: not applied)."""
    u_stretch, u_pitch = rng.random(2)
    rate = float(rng.uniform(*aug.stretch_range))
    semis = float(rng.uniform(*aug.pitch_semitones))
    u_pause, pause = (float(rng.random()), float(rng.uniform(*aug.pause_s))) if aug.pause_prob > 0 else (1.0, 0.0)
    info: dict[str, Any] = {"stretch_rate": None, "pitch_semitones": None, "pause_s": None}
    y = np.asarray(x)
    if u_stretch < aug.stretch_prob and rate != 1.0:
        y = time_stretch(y, rate)
        info["stretch_rate"] = rate
    if u_pitch < aug.pitch_prob and semis != 0.0:
        y = pitch_shift(y, semis)
        info["pitch_semitones"] = semis
    if u_pause < aug.pause_prob and pause > 0.0:
        y = insert_pause(y, pause)
        info["pause_s"] = pause
    return np.array(y, dtype=np.float32), info


def reverberate(
    x: np.ndarray, rirs: Sequence[np.ndarray], aug: AugmentParams, rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """With p = ``rir_prob`` convolve ``x`` with a random one of ``rirs`` at a dry/wet mix uniform in ``rir_wet``
    (:func:`apply_rir`; same length, no time shift). Draws three numbers from ``rng`` whenever ``rirs`` is not
    empty; returns the audio and ``{"rir_index": i or None, "wet": wet or None}``."""
    info: dict[str, Any] = {"rir_index": None, "wet": None}
    if len(rirs) == 0:
        return np.asarray(x, dtype=np.float32).copy(), info
    u = float(rng.random())
    idx = int(rng.integers(len(rirs)))
    wet = float(rng.uniform(*aug.rir_wet))
    if u >= aug.rir_prob:
        return np.asarray(x, dtype=np.float32).copy(), info
    info.update(rir_index=idx, wet=wet)
    return apply_rir(x, rirs[idx], wet), info


# ----------------------------------------------------------------------------------------------------------
# SpecAugment
# ----------------------------------------------------------------------------------------------------------


def _band_masks(n: int, size: int, count: int, max_width: int, gen: torch.Generator) -> torch.Tensor:
    """(n, size) bool: ``count`` bands per row of width uniform in 0..max_width at a uniform start."""
    import torch

    width = torch.randint(0, max_width + 1, (n, count), generator=gen, device=gen.device)
    start = (torch.rand(n, count, generator=gen, device=gen.device) * (size - width + 1)).floor().long()
    pos = torch.arange(size, device=gen.device)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return inside.any(dim=1)


def spec_augment(
    x: torch.Tensor, generator: torch.Generator, prob: float, time_masks: int, max_time_width: int,
    freq_masks: int, max_freq_width: int, value: float = 0.0,
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) time and frequency masks on a batch ``x`` of shape (batch, frames, features).

    Each window is masked with probability ``prob``; a masked window gets ``time_masks`` bands of whole frames,
    each 0..``max_time_width`` frames wide, and ``freq_masks`` bands of whole feature bins, each
    0..``max_freq_width`` bins wide, set to ``value`` (0 = the mean after CMVN). Vectorised over the batch;
    returns a new tensor. Draw order from ``generator`` (for reproducing it): ``rand(batch)`` for the
    decision, then for the time masks ``randint(0, W + 1, (batch, time_masks))`` widths and
    ``rand(batch, time_masks)`` starts (start = floor(u * (frames - width + 1))), then the same for the
    frequency masks; widths are capped at the axis length; nothing is drawn when ``prob`` is 0.
    """
    import torch

    if x.dim() != 3:
        raise ValueError(f"spec_augment: expected (batch, frames, features), got shape {tuple(x.shape)}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"spec_augment: prob must lie within [0, 1], got {prob}")
    if min(time_masks, freq_masks, max_time_width, max_freq_width) < 0:
        raise ValueError("spec_augment: mask counts and widths must be >= 0")
    b, t, f = x.shape
    if prob == 0.0 or b == 0 or (time_masks == 0 and freq_masks == 0):
        return x.clone()
    dev = generator.device
    chosen = torch.rand(b, generator=generator, device=dev) < prob
    mask = torch.zeros(b, t, f, dtype=torch.bool, device=dev)
    if time_masks > 0:
        mask |= _band_masks(b, t, time_masks, min(max_time_width, t), generator)[:, :, None]
    if freq_masks > 0:
        mask |= _band_masks(b, f, freq_masks, min(max_freq_width, f), generator)[:, None, :]
    mask &= chosen[:, None, None]
    return x.masked_fill(mask.to(x.device), value)


#: Feature types training warps in frequency (:func:`wakeword.features.frequency_warp_maps`: a linear map of
#: each frame). Not micro: its noise reduction and gain control carry state a warped frame would not have had.
WARP_FEATURE_TYPES = ("log_mel", "mfcc")


def frequency_warp_applies(a: AugmentParams, features_type: str) -> bool:
    """Whether training warps windows in frequency: some are chosen (``warp_prob`` > 0), the factor range is not
    [1, 1], and the features take it (:data:`WARP_FEATURE_TYPES`). The train stage and the model card ask this."""
    return a.warp_prob > 0 and tuple(a.warp_range) != (1.0, 1.0) and features_type in WARP_FEATURE_TYPES


def warp_factors(n: int, generator: torch.Generator, prob: float, lo: float, hi: float) -> torch.Tensor:
    """``(n,)`` float64 frequency-warp factors for a batch: 1 where a window is not chosen (probability ``prob``),
    else log-uniform in ``[lo, hi]`` (as likely 1/1.19 as 1.19). Draw order: ``rand(n)`` for the decision, then
    ``rand(n)`` for the factors; nothing is drawn when ``prob`` is 0."""
    import torch

    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"warp_factors: prob must lie within [0, 1], got {prob}")
    if not 0.0 < lo <= hi:
        raise ValueError(f"warp_factors: need 0 < lo <= hi, got [{lo}, {hi}]")
    if prob == 0.0 or n == 0:
        return torch.ones(n, dtype=torch.float64)
    dev = generator.device
    chosen = torch.rand(n, generator=generator, device=dev) < prob
    u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
    f = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return torch.where(chosen, f, torch.ones_like(f)).cpu()


def apply_frequency_warp(x: torch.Tensor, rows: torch.Tensor, maps: torch.Tensor,
                         offsets: torch.Tensor) -> torch.Tensor:
    """Warp windows ``rows`` of ``x`` (batch, frames, features): ``x[r] @ maps[k] + offsets[k]`` for the k-th
    row, the others untouched. ``maps`` ``(k, features, features)`` and ``offsets`` ``(k, features)`` are a
    linear map of one frame (:func:`wakeword.features.frequency_warp_maps`, carried into the normalised
    feature space by the train stage). Returns a new tensor."""
    if x.dim() != 3 or rows.dim() != 1 or maps.shape != (rows.shape[0], x.shape[2], x.shape[2]) \
            or offsets.shape != (rows.shape[0], x.shape[2]):
        raise ValueError(f"apply_frequency_warp: shapes do not fit: x {tuple(x.shape)}, rows {tuple(rows.shape)}, "
                         f"maps {tuple(maps.shape)}, offsets {tuple(offsets.shape)}")
    out = x.clone()
    if rows.numel():
        out[rows] = x[rows] @ maps.to(x.dtype) + offsets.to(x.dtype)[:, None, :]
    return out


def revoice(x: np.ndarray, semitones: float, formant: float) -> np.ndarray:
    """Another speaker from the same voice: the fundamental moves by ``semitones`` and the formants by the
    factor ``formant``, independently, duration and level kept.

    :func:`pitch_shift` moves both by ``p = 2 ** (semitones / 12)`` (like a faster tape); a :func:`vtlp` warp by
    ``formant / p`` then puts the formants where ``formant`` says. A man's voice made a woman's is about +7..+10
    semitones with formants x1.15-1.2 (vocal tracts differ less than vocal folds). ``semitones`` in [-12, 12];
    ``formant / p`` must lie within the VTLP limits [0.5, 2.0].
    """
    x = _as_audio(x)
    p = 2.0 ** (float(semitones) / 12.0)
    warp = float(formant) / p
    if not VTLP_LIMITS[0] <= warp <= VTLP_LIMITS[1]:
        raise ValueError(f"revoice: formant / pitch factor {warp:.3f} lies outside {list(VTLP_LIMITS)} "
                         f"(semitones {semitones}, formant {formant})")
    y = pitch_shift(x, semitones)
    return vtlp(y, warp) if abs(warp - 1.0) > 1e-6 else y


# ----------------------------------------------------------------------------------------------------------
# Random channel EQ (spectral tilt and bands), applied per batch in the feature domain
# ----------------------------------------------------------------------------------------------------------

#: Band widths of :func:`eq_curves`: Gaussian sigma as a share of the mel axis (about 1.6-8 bins of 40).
EQ_BAND_SIGMA = (0.04, 0.2)


#: Feature types the random EQ applies to: a gain per mel bin is a fixed offset of their features. Not micro:
#: its gain control (PCAN) adapts a static gain away (:func:`wakeword.features.db_gain_to_features`).
EQ_FEATURE_TYPES = ("log_mel", "mfcc")


def random_eq_applies(a: AugmentParams, features_type: str) -> bool:
    """Whether training applies the random channel EQ (:func:`eq_curves`): some windows are chosen
    (``eq_prob`` > 0), a chosen window gets some gain (a tilt, or bands of nonzero gain), and the features take
    a gain as an offset (:data:`EQ_FEATURE_TYPES`). The train stage and the model card both ask this."""
    gains = a.eq_tilt_db > 0 or (a.eq_bands > 0 and a.eq_band_db > 0)
    return a.eq_prob > 0 and gains and features_type in EQ_FEATURE_TYPES


def eq_curves(
    n: int, n_bins: int, generator: torch.Generator, prob: float, tilt_db: float, bands: int, band_db: float,
) -> torch.Tensor:
    """``(n, n_bins)`` random smooth EQ curves in dB per mel bin, one row per window (zeros where not chosen).

    A row is chosen with probability ``prob``. With ``u = i / (n_bins - 1)`` the position of bin ``i`` on the mel
    axis, a chosen row is ``t * (u - 0.5) + sum_k b_k * exp(-0.5 * ((u - c_k) / s_k) ** 2)``: a spectral tilt ``t``
    uniform in ``[-tilt_db, tilt_db]`` (the gain difference between the top and the bottom bin) plus ``bands``
    Gaussian bumps with gain ``b_k`` uniform in ``[-band_db, band_db]``, centre ``c_k`` uniform in [0, 1] and
    width ``s_k`` uniform in :data:`EQ_BAND_SIGMA`. It models what differs between microphones, rooms, codecs and
    speech engines: the long-term spectrum, not the content. Draw order (for reproducing it): ``rand(n)`` for the
    decision, ``rand(n)`` for the tilt, then ``rand(n, bands)`` for centres, widths and gains, in that order;
    nothing is drawn when ``prob`` is 0.
    """
    import torch

    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"eq_curves: prob must lie within [0, 1], got {prob}")
    if min(tilt_db, band_db) < 0 or bands < 0 or n_bins < 2:
        raise ValueError(f"eq_curves: need tilt_db, band_db, bands >= 0 and n_bins >= 2, got {tilt_db}, {band_db}, "
                         f"{bands}, {n_bins}")
    if prob == 0.0 or n == 0:
        return torch.zeros(n, n_bins)
    dev = generator.device
    chosen = torch.rand(n, generator=generator, device=dev) < prob
    u = torch.linspace(0.0, 1.0, n_bins, device=dev, dtype=torch.float64)
    tilt = (torch.rand(n, generator=generator, device=dev, dtype=torch.float64) * 2 - 1) * tilt_db
    g = tilt[:, None] * (u - 0.5)
    if bands > 0:
        centre = torch.rand(n, bands, generator=generator, device=dev, dtype=torch.float64)
        lo, hi = EQ_BAND_SIGMA
        sigma = lo + torch.rand(n, bands, generator=generator, device=dev, dtype=torch.float64) * (hi - lo)
        gain = (torch.rand(n, bands, generator=generator, device=dev, dtype=torch.float64) * 2 - 1) * band_db
        g = g + (gain[..., None] * torch.exp(-0.5 * ((u - centre[..., None]) / sigma[..., None]) ** 2)).sum(dim=1)
    return (g * chosen[:, None]).to(torch.float32).cpu()


def apply_eq(x: torch.Tensor, curves_db: torch.Tensor, db_to_features: torch.Tensor) -> torch.Tensor:
    """Add EQ ``curves_db`` ``(batch, n_bins)`` to features ``x`` ``(batch, frames, features)``.

    ``db_to_features`` ``(n_bins, features)`` maps a gain in dB per mel bin to the change of each (normalised)
    feature: a gain is a constant offset of a log spectrum in every frame (see
    :func:`wakeword.features.db_gain_to_features`, divided by the CMVN standard deviations when ``x`` is
    normalised). Returns a new tensor.
    """
    if x.dim() != 3 or curves_db.shape != (x.shape[0], db_to_features.shape[0]) \
            or db_to_features.shape[1] != x.shape[2]:
        raise ValueError(f"apply_eq: shapes do not fit: x {tuple(x.shape)}, curves {tuple(curves_db.shape)}, "
                         f"map {tuple(db_to_features.shape)}")
    return x + (curves_db.to(x.dtype) @ db_to_features.to(x.dtype))[:, None, :]
