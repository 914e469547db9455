"""Features (SPEC 4.1): ``features.type`` is ``log_mel``, ``mfcc`` or ``micro``.

log_mel
    16 kHz, Hann window of ``win_ms`` zero-padded to ``n_fft``, ``hop_ms`` hop, power spectrum, HTK-mel
    triangular filters, natural log with a floor. No centring or padding: frame ``i`` covers samples
    ``[i*hop, i*hop + win)``, so features of a slice of audio are the same rows of the features of the whole
    recording. That is what lets the pipeline slide the model window over precomputed stream features.
mfcc
    Orthonormal DCT-II of each log-mel frame along the mel axis (``scipy.fft.dct(norm="ortho")``), the first
    ``n_mfcc`` coefficients. Same framing as log_mel.
micro
    The TFLite-Micro audio front end (``pymicro-features``, the features an ESP32 running microWakeWord
    computes), with the settings that package compiles in: 30 ms window (480 samples), 10 ms step (160 samples),
    40 channels from 125 to 7500 Hz, noise reduction (smoothing bits 10, even/odd smoothing 0.025/0.06,
    minimum signal remaining 0.05), PCAN gain control (strength 0.95, offset 80, gain bits 21), log scale
    (shift 6). Input: float audio in [-1, 1] -> int16 as ``clip(x * 32768, -32768, 32767)`` truncated toward
    zero (as microWakeWord's training code does). Output: the front end's uint16 values times ``0.0390625``
    (= 1/25.6, applied inside pymicro-features), float32 in about 0..26: the scale microWakeWord trains on and
    a device reproduces from the same uint16 values. Frame ``i`` covers samples ``[i*160, i*160 + 480)``.
    Noise reduction and PCAN keep per-channel state, so features depend on everything since the front end
    started: a recording (a training window, an evaluation clip, a file given to the runtime) starts from a
    fresh front end at its first sample, and a long stream runs one front end continuously, as a device does;
    how the stream is cut into blocks does not change the result. A recording's front end is first settled on
    a lead-in (its own first second, time-reversed; see :func:`micro_features`), because on a device the
    front end has run long before the phrase comes. Unlike log_mel, a slice of audio does *not*
    give the same rows as the whole recording (the state at the slice's start differs). ``n_mels``,
    ``win_ms`` and ``hop_ms`` must equal 40, 30 and 10 (checked in :class:`FeatureParams`); ``n_fft``,
    ``f_min_hz``, ``f_max_hz``, ``log_floor`` and ``n_mfcc`` are not used.

One dispatch API serves every consumer: :func:`feature_dim`, :func:`frames_for`, :func:`compute_features`
(numpy only: what the torch-free runtime uses), :func:`compute_features_batch` (the pipeline: torch batched
for log_mel/mfcc, one fresh front end per clip for micro) and :func:`compute_features_stream` (long
recordings given in blocks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from wakeword.params import FeatureParams

if TYPE_CHECKING:
    import torch

SAMPLE_RATE_HZ = 16000

# The TFLite-Micro front end as compiled into pymicro-features (its src/micro_features.cpp).
MICRO_CHANNELS = 40
MICRO_WIN_MS = 30.0
MICRO_HOP_MS = 10.0
MICRO_WIN_SAMPLES = 480
MICRO_HOP_SAMPLES = 160
MICRO_SCALE = 0.0390625  # uint16 front-end output -> float, applied by pymicro-features (1/25.6)
MICRO_WARMUP_SAMPLES = 16000  # lead-in that settles the front end's noise estimate before a recording


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


@lru_cache(maxsize=8)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """``(n_mels, n_mfcc)`` orthonormal DCT-II basis: ``log_mel @ D == scipy.fft.dct(log_mel, norm="ortho")[:, :n_mfcc]``."""
    m = np.arange(n_mels, dtype=np.float64)[:, None]
    k = np.arange(n_mfcc, dtype=np.float64)[None, :]
    basis = np.cos(np.pi * k * (2.0 * m + 1.0) / (2.0 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[:, 0] *= np.sqrt(0.5)
    out = basis.astype(np.float32)
    out.flags.writeable = False
    return out


def num_frames(n_samples: int, fp: FeatureParams) -> int:
    """Frames of ``n_samples`` with ``fp``'s window and hop (for every valid type; see :func:`frames_for`)."""
    if n_samples < fp.win_samples:
        return 0
    return 1 + (n_samples - fp.win_samples) // fp.hop_samples


def feature_dim(fp: FeatureParams) -> int:
    """Values per frame: ``n_mels`` (log_mel), ``n_mfcc`` (mfcc) or 40 (micro)."""
    if fp.type == "log_mel":
        return fp.n_mels
    if fp.type == "mfcc":
        return fp.n_mfcc
    if fp.type == "micro":
        return MICRO_CHANNELS
    raise ValueError(f"unknown features.type {fp.type!r}")


def db_gain_to_features(fp: FeatureParams) -> np.ndarray | None:
    """``(n_mels, features)``: how a gain of 1 dB in each mel bin changes each feature value, or None for micro.

    log_mel is the natural log of mel power, so +g dB in a bin adds ``g * ln(10) / 10`` to it in every frame
    (exact where the gain is constant across the bin); mfcc is the orthonormal DCT of the log-mel, a linear map,
    so the same offset goes through :func:`dct_matrix`. micro: None, because its per-channel automatic gain
    control (PCAN) adapts a static gain away (measured: +20 dB of pink noise moves its steady-state channels by
    0.1-0.2 of about 26), so a fixed offset would not model its features.
    """
    per_db = math.log(10.0) / 10.0
    if fp.type == "log_mel":
        return np.eye(fp.n_mels) * per_db
    if fp.type == "mfcc":
        return dct_matrix(fp.n_mels, fp.n_mfcc) * per_db
    if fp.type == "micro":
        return None
    raise ValueError(f"unknown features.type {fp.type!r}")


def frequency_warp_maps(fp: FeatureParams, factors: np.ndarray) -> np.ndarray:
    """``(len(factors), features, features)`` float32: ``frame @ maps[k]`` is ``frame`` with its spectrum
    scaled in frequency by ``factors[k]`` (content at ``f`` Hz moves to ``factors[k] * f``).

    A vocal-tract-length (and pitch) change made on features: mel bin ``i`` of the warped frame takes the
    log-mel at ``centre_hz[i] / factor``, linearly interpolated between the two mel bins around it on the mel
    axis; outside the bank's first and last centre it takes the edge bin (nothing is known beyond them).
    Factor 1 is the identity. log_mel: the map is that interpolation matrix, transposed. mfcc: the DCT is
    orthonormal, so ``mfcc @ D.T`` is the log-mel smoothed to ``n_mfcc`` coefficients; the map is
    ``D.T @ W.T @ D`` (warp that smoothed log-mel, then take its DCT). micro: refused, its per-channel noise
    reduction and gain control carry state that a warped frame would not have had.
    """
    f = np.asarray(factors, dtype=np.float64).reshape(-1)
    if fp.type not in ("log_mel", "mfcc"):
        raise ValueError(f"frequency_warp_maps: features.type {fp.type!r} takes no frequency warp "
                         "(only log_mel and mfcc)")
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"frequency_warp_maps: factors must be finite and > 0, got {f.tolist()}")
    n = fp.n_mels
    mel_edges = np.linspace(hz_to_mel(fp.f_min_hz), hz_to_mel(fp.f_max_hz), n + 2)
    centres_mel = mel_edges[1:-1]
    step = centres_mel[1] - centres_mel[0]
    src_mel = hz_to_mel(mel_to_hz(centres_mel)[None, :] / f[:, None])  # (k, n): where output bin i reads from
    pos = np.clip((src_mel - centres_mel[0]) / step, 0.0, n - 1.0)
    pos = np.where(np.abs(pos - np.round(pos)) < 1e-9, np.round(pos), pos)  # factor 1: exactly the identity
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    frac = pos - lo
    w = np.zeros((f.size, n, n))  # w[k, i, j]: weight of input bin j in output bin i
    rows = np.arange(n)[None, :].repeat(f.size, 0)
    ks = np.arange(f.size)[:, None].repeat(n, 1)
    w[ks, rows, lo] = 1.0 - frac
    w[ks, rows, lo + 1] += frac
    maps = np.transpose(w, (0, 2, 1))  # frame @ W.T
    if fp.type == "mfcc":
        d = dct_matrix(fp.n_mels, fp.n_mfcc).astype(np.float64)
        maps = d.T[None] @ maps @ d[None]
    return maps.astype(np.float32)


def frames_for(n_samples: int, fp: FeatureParams) -> int:
    """Frames the features of ``n_samples`` samples have, for ``fp``'s type."""
    if fp.type == "micro":
        win, hop = MICRO_WIN_SAMPLES, MICRO_HOP_SAMPLES
    else:
        win, hop = fp.win_samples, fp.hop_samples
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


# ---------------------------------------------------------------- log-mel and MFCC


_LOG_MEL_CHUNK = 1024


def log_mel(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """``(frames, n_mels)`` float32 log-mel of a mono 16 kHz float signal (numpy, no torch)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel expects mono audio (1-D), got shape {audio.shape}")
    n = num_frames(audio.shape[0], fp)
    if n == 0:
        return np.zeros((0, fp.n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, fp.win_samples)[:: fp.hop_samples][:n]
    window, fb = hann_window(fp.win_samples), _filterbank_t(fp)
    out = np.empty((n, fp.n_mels), dtype=np.float32)
    for i in range(0, n, _LOG_MEL_CHUNK):  # chunks keep the FFT temporaries in cache: 2x faster on long audio
        spec = np.fft.rfft(frames[i : i + _LOG_MEL_CHUNK] * window, n=fp.n_fft, axis=1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        out[i : i + _LOG_MEL_CHUNK] = np.log(np.maximum(power @ fb, fp.log_floor))
    return out


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


def _log_mel_blocks(blocks: Iterable[np.ndarray], fp: FeatureParams) -> Iterator[np.ndarray]:
    """Log-mel rows of consecutive blocks, the tail of each block carried into the next."""
    carry = np.zeros(0, dtype=np.float32)
    for block in blocks:
        buf = np.concatenate([carry, np.asarray(block, dtype=np.float32).reshape(-1)])
        n = num_frames(buf.shape[0], fp)
        if n:
            yield log_mel(buf[: (n - 1) * fp.hop_samples + fp.win_samples], fp)
        carry = buf[n * fp.hop_samples :]


def log_mel_stream(blocks: Iterable[np.ndarray], fp: FeatureParams) -> np.ndarray:
    """Features of a long recording given as consecutive blocks, without holding the audio whole.

    Each block is processed with the tail of the previous one carried over, so the result equals
    ``log_mel(np.concatenate(blocks))``.
    """
    out = list(_log_mel_blocks(blocks, fp))
    return np.concatenate(out) if out else np.zeros((0, fp.n_mels), dtype=np.float32)


def mfcc(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """``(frames, n_mfcc)`` float32 MFCCs (orthonormal DCT-II of :func:`log_mel`), numpy only."""
    return log_mel(audio, fp) @ dct_matrix(fp.n_mels, fp.n_mfcc)


def mfcc_torch(audio: torch.Tensor, fp: FeatureParams) -> torch.Tensor:
    """Batched MFCCs in torch: ``(batch, samples)`` -> ``(batch, frames, n_mfcc)`` float32."""
    import torch

    return log_mel_torch(audio, fp) @ torch.from_numpy(dct_matrix(fp.n_mels, fp.n_mfcc).copy())


def mfcc_stream(blocks: Iterable[np.ndarray], fp: FeatureParams) -> np.ndarray:
    """MFCCs of a long recording given in blocks; equals ``mfcc(np.concatenate(blocks))``."""
    dct = dct_matrix(fp.n_mels, fp.n_mfcc)
    out = [rows @ dct for rows in _log_mel_blocks(blocks, fp)]
    return np.concatenate(out) if out else np.zeros((0, fp.n_mfcc), dtype=np.float32)


# ---------------------------------------------------------------- TFLite-Micro front end


def micro_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> the int16 samples the front end reads (``clip(x * 32768)``, truncated)."""
    return np.clip(np.asarray(audio, dtype=np.float32) * np.float32(32768.0), -32768, 32767).astype(np.int16)


class MicroStream:
    """One TFLite-Micro front end run continuously over audio pushed in blocks of any size.

    :meth:`push` returns the ``(frames, 40)`` float32 rows completed by the block; samples short of the next
    10 ms step are kept for the next push, so the concatenated output does not depend on how the audio was cut.
    With ``warmup`` (the default) the front end is first settled on a lead-in: the recording's first second
    (or all of it, if shorter), time-reversed, whose frames are dropped. The front end's noise reduction starts
    from zero and needs ~0.75 s to settle (channel means on steady noise fall from ~24 to ~2 over the first ~75
    frames); on a device it has run long before the phrase comes. Until a second of audio has arrived the rows
    are held back; :meth:`finish` releases them for recordings shorter than that.
    """

    def __init__(self, warmup: bool = True) -> None:
        from pymicro_features import MicroFrontend

        self._frontend = MicroFrontend()
        self._carry = np.zeros(0, dtype=np.int16)
        self._pending: list[np.ndarray] | None = [] if warmup else None

    def push(self, block: np.ndarray) -> np.ndarray:
        samples = micro_int16(np.asarray(block).reshape(-1))
        if self._pending is not None:
            self._pending.append(samples)
            if sum(p.shape[0] for p in self._pending) < MICRO_WARMUP_SAMPLES:
                return np.zeros((0, MICRO_CHANNELS), dtype=np.float32)
            return self._release()
        return self._run(samples)

    def finish(self) -> np.ndarray:
        """Rows still held back (a recording shorter than the warm-up lead-in); the last partial step is dropped."""
        if self._pending is not None:
            return self._release()
        return np.zeros((0, MICRO_CHANNELS), dtype=np.float32)

    def _release(self) -> np.ndarray:
        assert self._pending is not None
        audio = np.concatenate(self._pending) if self._pending else np.zeros(0, dtype=np.int16)
        self._pending = None
        lead = min(MICRO_WARMUP_SAMPLES, audio.shape[0] // MICRO_HOP_SAMPLES * MICRO_HOP_SAMPLES)
        # lead-in + audio as one signal, then drop the rows of every window that starts in the lead-in: row
        # lead/160 + i covers samples [i*160, i*160 + 480) of the audio, as without a lead-in
        rows = self._run(np.concatenate([audio[:lead][::-1], audio]))
        return rows[lead // MICRO_HOP_SAMPLES :]

    def _run(self, samples: np.ndarray) -> np.ndarray:
        if self._carry.size:
            samples = np.concatenate([self._carry, samples])
        n_chunks = samples.shape[0] // MICRO_HOP_SAMPLES
        used = n_chunks * MICRO_HOP_SAMPLES
        self._carry = samples[used:].copy()
        data = samples[:used].tobytes()
        step = 2 * MICRO_HOP_SAMPLES
        process = self._frontend.process_samples
        rows = []
        for i in range(0, len(data), step):
            out = process(data[i : i + step])  # reads exactly one 10 ms step; a row once 30 ms are buffered
            if out.features:
                rows.append(out.features)
        if not rows:
            return np.zeros((0, MICRO_CHANNELS), dtype=np.float32)
        return np.asarray(rows, dtype=np.float32)


def micro_features(audio: np.ndarray, warmup: bool = True) -> np.ndarray:
    """``(frames, 40)`` float32 TFLite-Micro features of one recording, from a fresh front end settled on a
    lead-in (:class:`MicroStream`)."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"micro features expect mono audio (1-D), got shape {audio.shape}")
    return micro_stream([audio], warmup)


def micro_stream(blocks: Iterable[np.ndarray], warmup: bool = True) -> np.ndarray:
    """Features of a long recording given in blocks, one front end running throughout."""
    stream = MicroStream(warmup)
    out = [stream.push(b) for b in blocks] + [stream.finish()]
    out = [o for o in out if o.shape[0]]
    return np.concatenate(out) if out else np.zeros((0, MICRO_CHANNELS), dtype=np.float32)


# ---------------------------------------------------------------- dispatch


def compute_features(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """``(frames_for(len(audio)), feature_dim(fp))`` float32 features of one mono 16 kHz recording.

    numpy (and pymicro-features for micro) only: this is what the torch-free runtime computes.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"compute_features expects mono audio (1-D), got shape {audio.shape}")
    if fp.type == "log_mel":
        return log_mel(audio, fp)
    if fp.type == "mfcc":
        return mfcc(audio, fp)
    if fp.type == "micro":
        return micro_features(audio)
    raise ValueError(f"unknown features.type {fp.type!r}")


def compute_features_batch(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """``(B, N)`` equal-length recordings -> ``(B, frames_for(N), feature_dim(fp))`` float32.

    log_mel/mfcc go through torch in one batch (equal to :func:`compute_features` per row to float32
    rounding); micro runs a fresh front end per row.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"compute_features_batch expects (batch, samples) audio, got shape {audio.shape}")
    n_frames, dim = frames_for(audio.shape[1], fp), feature_dim(fp)
    if audio.shape[0] == 0 or n_frames == 0:
        return np.zeros((audio.shape[0], n_frames, dim), dtype=np.float32)
    if fp.type == "micro":
        return np.stack([micro_features(row) for row in audio])
    import torch

    x = torch.from_numpy(np.ascontiguousarray(audio))
    with torch.no_grad():
        out = log_mel_torch(x, fp) if fp.type == "log_mel" else mfcc_torch(x, fp)
    return out.numpy().astype(np.float32, copy=False)


def compute_features_stream(blocks: Iterable[np.ndarray], fp: FeatureParams) -> np.ndarray:
    """Features of a long recording given as consecutive blocks (any sizes); equals
    ``compute_features(np.concatenate(blocks), fp)`` without holding the audio whole."""
    if fp.type == "log_mel":
        return log_mel_stream(blocks, fp)
    if fp.type == "mfcc":
        return mfcc_stream(blocks, fp)
    if fp.type == "micro":
        return micro_stream(blocks)
    raise ValueError(f"unknown features.type {fp.type!r}")
