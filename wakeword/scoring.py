"""Sliding-window scoring shared by training, calibration, evaluation and the runtime (torch-free).

A *logit function* maps raw log-mel windows ``(N, window_frames, n_mels)`` to logits ``(N, 2)``: the torch
model with CMVN in front, or a TFLite interpreter with CMVN folded in. Windows start every
``step_frames`` frames; the score of a step is the calibrated probability of the phrase,
``softmax(logits / T)[1]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LogitFn = Callable[[np.ndarray], np.ndarray]


def window_starts(n_frames: int, window: int, step: int) -> np.ndarray:
    if n_frames < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_frames - window + 1, step, dtype=np.int64)


def sliding_windows(feats: np.ndarray, window: int, step: int) -> np.ndarray:
    """A read-only view ``(n_steps, window, n_mels)`` of ``feats`` ``(frames, n_mels)``."""
    if feats.shape[0] < window:
        return np.zeros((0, window, feats.shape[1]), dtype=feats.dtype)
    view = np.lib.stride_tricks.sliding_window_view(feats, window, axis=0)  # (frames-window+1, F, window)
    return view[::step].transpose(0, 2, 1)


def stream_logits(logit_fn: LogitFn, feats: np.ndarray, window: int, step: int, batch: int = 2048) -> np.ndarray:
    wins = sliding_windows(feats, window, step)
    out = [logit_fn(np.ascontiguousarray(wins[i : i + batch])) for i in range(0, wins.shape[0], batch)]
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def clip_logits(logit_fn: LogitFn, clips: np.ndarray, window: int, step: int, batch: int = 2048) -> np.ndarray:
    """Logits of every window of every clip: ``(n_clips, n_steps, 2)``."""
    n_clips, n_frames, n_feat = clips.shape
    n_steps = window_starts(n_frames, window, step).shape[0]
    wins = np.lib.stride_tricks.sliding_window_view(clips, window, axis=1)[:, ::step]  # (N, S, F, W)
    wins = wins.reshape(n_clips * n_steps, n_feat, window).transpose(0, 2, 1)
    out = [logit_fn(np.ascontiguousarray(wins[i : i + batch])) for i in range(0, wins.shape[0], batch)]
    logits = np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)
    return logits.reshape(n_clips, n_steps, 2)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)[..., 1]`` computed stably."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return (1.0 / (1.0 + np.exp(z[..., 0] - z[..., 1]))).astype(np.float32)


def window_labels(start_frame: np.ndarray, end_frame: np.ndarray, n_frames: int, window: int, step: int) -> np.ndarray:
    """Per clip and window step: 1 when the window holds the whole phrase, 0 when the clip has no phrase or
    the window misses it entirely, -1 when the window cuts it (ambiguous; left out of calibration)."""
    starts = window_starts(n_frames, window, step)[None, :]
    ends = starts + window - 1
    s = np.asarray(start_frame)[:, None]
    e = np.asarray(end_frame)[:, None]
    has = s >= 0
    full = has & (starts <= s) & (ends >= e)
    none = ~has | (ends < s) | (starts > e)
    return np.where(full, 1, np.where(none, 0, -1)).astype(np.int8)


def step_times_s(n_steps: int, window: int, step: int, hop_s: float, win_s: float) -> np.ndarray:
    """Time (seconds from the start of the audio) at which each window's last sample arrives."""
    return (np.arange(n_steps) * step + window - 1) * hop_s + win_s
