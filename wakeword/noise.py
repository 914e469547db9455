"""Synthetic background sounds and level helpers (numpy/scipy only, deterministic from a Generator).

A detector trained on clean speech fires on every real sound (FINDINGS), so training and the long
evaluation streams need varied non-speech audio. Nothing can be downloaded, so the sounds are modelled:
coloured noise, mains hum, babble from our own negative utterances, music-like note sequences with
chords and a beat, and household sounds (fan, running water).

All generators return float32 mono at ``sr`` with an RMS of ``DEFAULT_DBFS`` (-20 dBFS); callers set the
final level with :func:`set_level_dbfs` or :func:`mix_at_snr`. Levels are RMS relative to full scale 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from wakeword.audio import rms_dbfs

DEFAULT_DBFS = -20.0
BACKGROUND_KINDS: tuple[str, ...] = ("white", "pink", "brown", "hum", "babble", "music", "fan", "water")


# ----------------------------------------------------------------------------------------------------------
# Levels
# ----------------------------------------------------------------------------------------------------------


def set_level_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale ``x`` to an RMS of ``dbfs``. Raises on silence, which has no level to scale."""
    cur = rms_dbfs(x)
    if not np.isfinite(cur):
        raise ValueError("set_level_dbfs: signal is silent (RMS 0); cannot scale it to a level")
    return (np.asarray(x, dtype=np.float64) * 10.0 ** ((dbfs - cur) / 20.0)).astype(np.float32)


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop (at a random offset when ``rng`` is given) or tile ``x`` to exactly ``n`` samples."""
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError("fit_length: empty signal")
    if x.size >= n:
        off = int(rng.integers(0, x.size - n + 1)) if rng is not None else 0
        return x[off:off + n]
    reps = -(-n // x.size)
    return np.tile(x, reps)[:n]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """``speech + g * noise`` with g chosen so 10*log10(P_speech / P_noise) == ``snr_db``.

    Powers are means over the whole speech length (the noise is cropped/tiled to it first). The sum is
    not renormalised: the speech keeps its level, which is what level-controlled augmentation wants.
    """
    s = np.asarray(speech, dtype=np.float64)
    nz = fit_length(np.asarray(noise, dtype=np.float64), s.size, rng)
    ps, pn = float(np.mean(s * s)), float(np.mean(nz * nz))
    if ps <= 0:
        raise ValueError("mix_at_snr: speech is silent; SNR is undefined")
    if pn <= 0:
        raise ValueError("mix_at_snr: noise is silent; SNR is undefined")
    gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (s + gain * nz).astype(np.float32)


def _normalise(x: np.ndarray, dbfs: float = DEFAULT_DBFS) -> np.ndarray:
    if not np.isfinite(rms_dbfs(x)):
        return np.asarray(x, dtype=np.float32)
    return set_level_dbfs(x, dbfs)


# ----------------------------------------------------------------------------------------------------------
# Coloured noise and hum
# ----------------------------------------------------------------------------------------------------------


def _shaped_noise(n: int, rng: np.random.Generator, sr: int, exponent: float, f_corner: float) -> np.ndarray:
    """White noise shaped in the frequency domain to a 1/f**exponent power spectrum."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec *= 1.0 / np.maximum(f, f_corner) ** (exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def white_noise(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Flat-spectrum Gaussian noise."""
    return _normalise(rng.standard_normal(n))


def pink_noise(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """1/f noise (equal power per octave): closest simple model of many ambiences."""
    return _normalise(_shaped_noise(n, rng, sr, 1.0, 10.0))


def brown_noise(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """1/f^2 noise (rumble, traffic, wind); flattened below 20 Hz so it has no DC drift."""
    return _normalise(_shaped_noise(n, rng, sr, 2.0, 20.0))


def mains_hum(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """50 or 60 Hz hum with odd-heavy harmonics and a little hiss (ground loops, transformers)."""
    t = np.arange(n) / sr
    f0 = float(rng.choice([50.0, 60.0])) + float(rng.uniform(-0.2, 0.2))
    x = np.zeros(n)
    for k in range(1, 10):
        amp = float(rng.uniform(0.2, 1.0)) / k ** (0.6 if k % 2 else 1.2)
        x += amp * np.sin(2 * np.pi * f0 * k * t + float(rng.uniform(0, 2 * np.pi)))
    x = x / (np.sqrt(np.mean(x * x)) + 1e-12)
    x += 10 ** (float(rng.uniform(-40, -25)) / 20) * rng.standard_normal(n)
    return _normalise(x)


# ----------------------------------------------------------------------------------------------------------
# Babble
# ----------------------------------------------------------------------------------------------------------


def babble(utterances: Sequence[np.ndarray], n: int, rng: np.random.Generator, sr: int = 16000,
           n_talkers: int | None = None) -> np.ndarray:
    """Several overlapping talkers: each talker chains random utterances with short gaps.

    Built from the caller's own speech (negative utterances), so babble carries no wake phrase.
    """
    pool = [np.asarray(u, dtype=np.float64) for u in utterances if np.asarray(u).size > 0]
    if not pool:
        raise ValueError("babble: needs at least one non-empty utterance")
    talkers = int(n_talkers if n_talkers is not None else rng.integers(3, 9))
    out = np.zeros(n)
    for _ in range(talkers):
        track = np.zeros(n)
        pos = int(rng.integers(0, max(1, int(0.5 * sr))))
        while pos < n:
            u = pool[int(rng.integers(len(pool)))]
            rms = np.sqrt(np.mean(u * u))
            if rms <= 0:
                break
            seg = u[: n - pos] / rms
            track[pos:pos + seg.size] += seg
            pos += u.size + int(rng.uniform(0.05, 0.6) * sr)
        out += track * 10 ** (float(rng.uniform(-8, 0)) / 20)
    return _normalise(out)


# ----------------------------------------------------------------------------------------------------------
# Music-like
# ----------------------------------------------------------------------------------------------------------

_SCALES: tuple[tuple[int, ...], ...] = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9), (0, 3, 5, 7, 10))


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _tone(freq: float, dur: int, sr: int, rng: np.random.Generator, n_harm: int, bright: float) -> np.ndarray:
    """A harmonic tone with an attack/decay/sustain/release envelope and slight vibrato."""
    t = np.arange(dur) / sr
    vib = 1.0 + 0.003 * np.sin(2 * np.pi * float(rng.uniform(4, 6)) * t)
    phase = 2 * np.pi * freq * np.cumsum(vib) / sr
    x = np.zeros(dur)
    for k in range(1, n_harm + 1):
        if freq * k >= sr / 2 * 0.95:
            break
        x += np.sin(k * phase) / k ** bright
    a = max(1, int(float(rng.uniform(0.005, 0.04)) * sr))
    r = max(1, min(dur // 2, int(float(rng.uniform(0.03, 0.2)) * sr)))
    env = np.full(dur, float(rng.uniform(0.4, 0.8)))
    env[:a] = np.linspace(0.0, 1.0, a)[: min(a, dur)]
    decay = np.exp(-t * float(rng.uniform(0.5, 4.0)))
    env = np.maximum(env * decay, 0.0)
    env[-r:] *= np.linspace(1.0, 0.0, r)
    return x * env


def _add(out: np.ndarray, sig: np.ndarray, start: int) -> None:
    if start >= out.size:
        return
    m = min(sig.size, out.size - start)
    out[start:start + m] += sig[:m]


def _drums(n: int, sr: int, rng: np.random.Generator, beat: int) -> np.ndarray:
    """Kick on beats 1/3, snare on 2/4, hi-hat on eighths (each part randomly present)."""
    out = np.zeros(n)
    kick_len, snare_len, hat_len = int(0.25 * sr), int(0.18 * sr), int(0.04 * sr)
    tk = np.arange(kick_len) / sr
    kick = np.sin(2 * np.pi * (50 * tk + 70 * (1 - np.exp(-tk * 30)) / 30)) * np.exp(-tk * 14)
    ts = np.arange(snare_len) / sr
    snare = (0.6 * rng.standard_normal(snare_len) + 0.5 * np.sin(2 * np.pi * 185 * ts)) * np.exp(-ts * 25)
    hp = butter(2, 6000, "highpass", fs=sr, output="sos")
    hat = sosfilt(hp, rng.standard_normal(hat_len)) * np.exp(-np.arange(hat_len) / sr * 90)
    use_kick, use_snare, use_hat = rng.random() < 0.85, rng.random() < 0.7, rng.random() < 0.6
    for i, start in enumerate(range(0, n, beat)):
        if use_kick and i % 2 == 0:
            _add(out, kick, start)
        if use_snare and i % 2 == 1:
            _add(out, 0.5 * snare, start)
        if use_hat:
            _add(out, 0.25 * hat, start)
            _add(out, 0.15 * hat, start + beat // 2)
    return out


def music_like(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Music-like audio: a chord progression (pads), a melody on the scale, and optionally a beat.

    Harmonic, rhythmic, pitched but not speech: the non-speech sound that most often fools a detector.
    """
    bpm = float(rng.uniform(70, 150))
    beat = int(sr * 60.0 / bpm)
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    root = int(rng.integers(45, 60))
    bright = float(rng.uniform(0.8, 2.0))
    n_harm = int(rng.integers(3, 9))
    out = np.zeros(n)
    bar = 4 * beat
    if rng.random() < 0.85:  # chords, one per bar
        for start in range(0, n, bar):
            degree = int(rng.integers(len(scale)))
            for step in (0, 2, 4):
                idx = degree + step
                note = root + scale[idx % len(scale)] + 12 * (idx // len(scale))
                _add(out, 0.35 * _tone(_midi_hz(note), min(bar, n - start), sr, rng, n_harm, bright), start)
    if rng.random() < 0.9:  # melody
        pos = 0
        while pos < n:
            dur = beat * int(rng.choice([1, 1, 2])) // int(rng.choice([1, 2, 2]))
            if rng.random() < 0.85:
                idx = int(rng.integers(len(scale) * 2))
                note = root + 12 + scale[idx % len(scale)] + 12 * (idx // len(scale))
                _add(out, 0.5 * _tone(_midi_hz(note), max(dur, 1), sr, rng, n_harm, bright), pos)
            pos += max(dur, 1)
    if rng.random() < 0.7:
        out += float(rng.uniform(0.3, 1.0)) * _drums(n, sr, rng, beat)
    if not np.any(out):
        out += _tone(_midi_hz(root), n, sr, rng, n_harm, bright)
    return _normalise(out)


# ----------------------------------------------------------------------------------------------------------
# Household
# ----------------------------------------------------------------------------------------------------------


def fan_noise(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Fan / air conditioner: low-passed noise, a motor/blade tone with harmonics, slow wobble."""
    cutoff = float(rng.uniform(300, 1500))
    sos = butter(2, cutoff, "lowpass", fs=sr, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    x /= np.sqrt(np.mean(x * x)) + 1e-12
    t = np.arange(n) / sr
    f0 = float(rng.uniform(30, 150))
    tone = sum(np.sin(2 * np.pi * f0 * k * t + float(rng.uniform(0, 6.3))) / k for k in (1, 2, 3))
    x += float(rng.uniform(0.1, 0.6)) * tone
    x *= 1.0 + float(rng.uniform(0.0, 0.15)) * np.sin(2 * np.pi * float(rng.uniform(0.3, 2.0)) * t)
    return _normalise(x)


def running_water(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Tap / shower: band-passed noise under a fast random amplitude envelope, plus bubble chirps."""
    lo = float(rng.uniform(300, 1200))
    hi = min(float(rng.uniform(3000, 7000)), sr / 2 * 0.9)
    sos = butter(2, [lo, hi], "bandpass", fs=sr, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    env_rate = float(rng.uniform(8, 40))
    b, a = butter(1, env_rate, "lowpass", fs=sr)
    env = np.abs(lfilter(b, a, rng.standard_normal(n)))
    env = 0.4 + env / (np.mean(env) + 1e-12)
    x = x * env
    x /= np.sqrt(np.mean(x * x)) + 1e-12
    n_drops = int(rng.poisson(float(rng.uniform(5, 40)) * n / sr))
    drop_len = int(0.03 * sr)
    td = np.arange(drop_len) / sr
    for _ in range(n_drops):
        f = float(rng.uniform(500, 3000))
        chirp = np.sin(2 * np.pi * (f * td + 0.5 * f * 8 * td * td)) * np.exp(-td * float(rng.uniform(80, 200)))
        _add(x, float(rng.uniform(0.5, 2.0)) * chirp, int(rng.integers(0, max(1, n - drop_len))))
    return _normalise(x)


# ----------------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------------

_GENERATORS: dict[str, Callable[[int, np.random.Generator, int], np.ndarray]] = {
    "white": white_noise,
    "pink": pink_noise,
    "brown": brown_noise,
    "hum": mains_hum,
    "music": music_like,
    "fan": fan_noise,
    "water": running_water,
}


def background(kind: str, n: int, rng: np.random.Generator, sr: int = 16000,
               utterances: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Generate ``n`` samples of background ``kind`` (one of :data:`BACKGROUND_KINDS`) at -20 dBFS."""
    if kind == "babble":
        if not utterances:
            raise ValueError("background kind 'babble' needs speech utterances")
        return babble(utterances, n, rng, sr)
    try:
        gen = _GENERATORS[kind]
    except KeyError:
        raise ValueError(f"unknown background kind {kind!r}; allowed: {', '.join(BACKGROUND_KINDS)}") from None
    return gen(n, rng, sr)
