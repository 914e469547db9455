"""Hard-negative mining (SPEC 5, phase 2 of 3): score long negative-only audio with the sliding window and keep
the windows the model mistakes for the wake phrase.

Every detector step of the stream is scored; steps whose probability (uncalibrated, temperature 1) is at
least ``threshold`` are candidates. Non-maximum suppression keeps local peaks: candidates are taken in
decreasing score order and one is dropped when a kept window starts within ``min_gap`` steps of it, so one
false alarm yields one window, not ten shifted copies of it. At most ``max_windows`` are kept. The result is
the raw (un-normalised) feature windows, labelled 0 and of kind ``hard_negative`` so the fine-tuning loss
weights them with ``train.loss.hard_negative_weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wakeword.detector import DetectorConfig, detect
from wakeword.featureset import KIND_CODES, FeatureSet
from wakeword.params import DetectorParams
from wakeword.scoring import LogitFn, probabilities, stream_logits


@dataclass
class Mined:
    windows: FeatureSet  # the mined windows (raw features)
    scores: np.ndarray  # their probabilities
    starts: np.ndarray  # their first frame in the stream
    candidates: int  # steps at or above the threshold before suppression
    steps: int  # steps scored
    detections: int  # detector events on the stream at threshold_on = threshold (before fine-tuning)
    report_detections: tuple[int, ...] = ()  # detector events at each ``report`` config of :func:`mine_stream`


#: Fixed thresholds (threshold_on) at which the stages report FA/h on the training stream before and after
#: fine-tuning. The count at the mining threshold itself says little when that threshold is low: at or under
#: the detector's hysteresis its off threshold is 0, the detector turns on once and stays on, and the stream
#: shows almost no events.
REPORT_THRESHOLDS: tuple[float, ...] = (0.5, 0.9)


def report_configs(detector: DetectorParams, step_ms: int) -> list[DetectorConfig]:
    """The detector (``detector`` params) at each of :data:`REPORT_THRESHOLDS`."""
    return [DetectorConfig.from_params(detector, t, step_ms) for t in REPORT_THRESHOLDS]


def fah_at_report_thresholds(mined: Mined, hours: float) -> dict[str, float]:
    """FA/h of the mined stream at each of :data:`REPORT_THRESHOLDS`, keyed by the threshold ("0.5")."""
    if len(mined.report_detections) != len(REPORT_THRESHOLDS):
        raise ValueError("mine_stream was not given report_configs(): no events at the report thresholds")
    return {f"{t:g}": n / hours for t, n in zip(REPORT_THRESHOLDS, mined.report_detections, strict=True)}


def peak_steps(probs: np.ndarray, threshold: float, min_gap: int, max_windows: int) -> np.ndarray:
    """Indices of kept steps (sorted by position): greedy non-maximum suppression, highest score first."""
    p = np.asarray(probs, dtype=np.float64)
    cand = np.flatnonzero(p >= threshold)
    order = cand[np.lexsort((cand, -p[cand]))]  # score descending, earlier step first on ties
    taken = np.zeros(p.shape[0], dtype=bool)
    kept: list[int] = []
    for i in order:
        lo, hi = max(0, i - min_gap + 1), min(p.shape[0], i + min_gap)
        if min_gap > 0 and taken[lo:hi].any():
            continue
        taken[i] = True
        kept.append(int(i))
        if len(kept) >= max_windows:
            break
    return np.sort(np.asarray(kept, dtype=np.int64))


def mine_stream(logit_fn: LogitFn, stream: np.ndarray, window: int, step: int, threshold: float, min_gap_steps: int,
                max_windows: int, detector: DetectorConfig, report: Sequence[DetectorConfig] = ()) -> Mined:
    """Mine one stream of features ``(frames, n_features)``; ``detector`` counts events at ``threshold``, and
    each of ``report`` counts them at its own threshold (:data:`REPORT_THRESHOLDS`), from the same scores."""
    if stream.ndim != 2 or stream.shape[0] < window:
        raise ValueError(f"the mining stream must be (frames >= {window}, features), got shape {stream.shape}")
    probs = probabilities(stream_logits(logit_fn, stream, window, step))
    kept = peak_steps(probs, threshold, min_gap_steps, max_windows)
    starts = kept * step
    x = (np.stack([stream[s:s + window] for s in starts]).astype(np.float32) if kept.size
         else np.zeros((0, window, stream.shape[1]), dtype=np.float32))
    n = x.shape[0]
    fs = FeatureSet(x, np.zeros(n, np.int8), np.full(n, KIND_CODES["hard_negative"], np.int8),
                    np.full(n, -1, np.int32), np.full(n, -1, np.int32))
    return Mined(fs, probs[kept].astype(np.float32), starts, int((probs >= threshold).sum()), int(probs.shape[0]),
                 int(detect(probs, detector).shape[0]), tuple(int(detect(probs, c).shape[0]) for c in report))
