"""Audio I/O shared by the pipeline and the torch-free runtime: read anything soundfile reads, downmix,
resample to 16 kHz, and refuse unusable files with a message naming the file and the problem."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly


class AudioError(ValueError):
    """An audio file cannot be used: unreadable, empty, or holding non-finite samples."""


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling by the exact rational ratio (22050 -> 16000 is up 320, down 441)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def read_audio(path: str | Path, sample_rate_hz: int = 16000) -> np.ndarray:
    """Read a file as float32 mono at ``sample_rate_hz``; raise :class:`AudioError` when it is unusable."""
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: holds NaN or infinite samples")
    return resample(to_mono(data), int(sr), sample_rate_hz)


def write_wav(path: str | Path, x: np.ndarray, sample_rate_hz: int = 16000) -> None:
    """Write 16-bit PCM atomically (temp file + rename), clipping to [-1, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(x, -1.0, 1.0), sample_rate_hz, subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS (full scale = 1.0); ``-inf`` for an all-zero or empty signal."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    ms = float(np.mean(x * x))
    return 10.0 * math.log10(ms) if ms > 0 else float("-inf")
