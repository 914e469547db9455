"""Streaming wake-word detector (SPEC 4.3): per-frame scores -> detection events.

This module is numpy-only on purpose: the deployed runtime (``wakeword detect``) imports it without torch.

Semantics (SPEC 4.3), with the reading this implementation takes of the points the spec leaves open:

* Frames are numbered ``0, 1, 2, ...`` from the start of the stream (or from :meth:`StreamingDetector.reset`);
  frame ``i`` happens at ``i * step_ms``.
* "The last N frames" at frame ``i`` are frames ``max(0, i - N + 1) .. i`` (the current frame included).
  Before N frames have been seen, the window simply holds fewer frames; missing frames never vote.
* A frame votes when its score ``>= threshold_on``, or ``>= threshold_off`` while the detector is on.
  *Reading:* a frame's vote is judged against the detector's state at the moment the votes are counted
  (the state before the current frame), not frozen at the time the frame arrived. So while the detector is
  **off** it turns on when at least K of the last N frames have ``score >= threshold_on``; while it is **on**
  it turns off when fewer than K of the last N frames have ``score >= threshold_off`` (the spec's off rule,
  word for word). Because ``threshold_off <= threshold_on`` the two tests can never both hold on one frame, so
  the detector is a Schmitt trigger on one signal: ``q[i]`` = the K-th largest score among the last N frames
  (``-inf`` when fewer than K frames exist). It switches on when ``q >= threshold_on`` and off when
  ``q < threshold_off``. The vectorised functions below use exactly that identity.
* A detection fires on the frame where the detector switches from off to on (the rising edge), if no
  detection fired before, or if ``(i - i_last) * step_ms > lockout_ms`` (strictly greater: a rising edge
  exactly ``lockout_ms`` after the last detection does not fire; one step later does).
  *Reading:* a rising edge blocked by the lockout still turns the detector on; it then stays on, silently,
  until the off rule releases it. A long utterance therefore never produces a second detection when the
  lockout expires while it is still being spoken ("one utterance gives at most one detection").
* The lockout counts from the last *detection*, not from the last (possibly blocked) rising edge.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only; params imports pydantic, keep the runtime path lean
    from wakeword.params import DetectorParams

__all__ = [
    "PRESETS",
    "DetectorConfig",
    "StreamingDetector",
    "clips_detected_over_thresholds",
    "detect",
    "detection_steps_over_thresholds",
    "detections_over_thresholds",
    "on_fraction_over_thresholds",
    "vote_signal",
]

# Thresholds derived by subtraction (on - hysteresis) are rounded to this many decimals so that 0.65 - 0.1
# is 0.55 and not 0.5499999999999999 (a score of exactly 0.55 must count as ">= 0.55").
_THRESHOLD_DECIMALS = 12
# Work arrays of (frames x thresholds) are processed in chunks of about this many elements.
_CHUNK_ELEMENTS = 1 << 22


# Config values come from params.yaml / JSON manifests: a wrong type there is a bad value, reported as
# ValueError like every other config problem (hence the TRY004 waivers).


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")  # noqa: TRY004
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _derive_off(threshold_on: float, gap: float) -> float:
    # min(): rounding must never lift threshold_off above threshold_on (gap 0 with a long-decimal threshold).
    return min(threshold_on, round(max(0.0, threshold_on - gap), _THRESHOLD_DECIMALS))


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the streaming detector; travels with the exported model as JSON (:meth:`to_dict`).

    ``threshold_on``/``threshold_off`` are score thresholds in [0, 1] with ``threshold_off <= threshold_on``;
    ``vote_threshold`` (K) of the last ``vote_window`` (N) frames must vote; ``lockout_ms`` is the minimum
    time between detections (strictly more than it must pass); ``step_ms`` is the time between score frames.
    """

    threshold_on: float
    threshold_off: float
    vote_window: int
    vote_threshold: int
    lockout_ms: int
    step_ms: int

    def __post_init__(self) -> None:
        on = _as_float("threshold_on", self.threshold_on)
        off = _as_float("threshold_off", self.threshold_off)
        n = _as_int("vote_window", self.vote_window)
        k = _as_int("vote_threshold", self.vote_threshold)
        lockout = _as_int("lockout_ms", self.lockout_ms)
        step = _as_int("step_ms", self.step_ms)
        if not 0.0 <= on <= 1.0:
            raise ValueError(f"threshold_on must lie in [0, 1], got {on}")
        if not 0.0 <= off <= on:
            raise ValueError(f"threshold_off must lie in [0, threshold_on={on}], got {off}")
        if n < 1:
            raise ValueError(f"vote_window must be >= 1, got {n}")
        if not 1 <= k <= n:
            raise ValueError(f"vote_threshold must lie in [1, vote_window={n}], got {k}")
        if lockout < 0:
            raise ValueError(f"lockout_ms must be >= 0, got {lockout}")
        if step < 1:
            raise ValueError(f"step_ms must be >= 1, got {step}")
        for name, value in (
            ("threshold_on", on),
            ("threshold_off", off),
            ("vote_window", n),
            ("vote_threshold", k),
            ("lockout_ms", lockout),
            ("step_ms", step),
        ):
            object.__setattr__(self, name, value)

    @property
    def hysteresis(self) -> float:
        """``threshold_on - threshold_off``: the gap kept when the operating threshold moves."""
        return self.threshold_on - self.threshold_off

    @classmethod
    def from_params(cls, p: DetectorParams, threshold_on: float, step_ms: int) -> DetectorConfig:
        """Build from ``params.yaml``'s ``detector`` section plus the calibrated threshold and the frame step.

        ``threshold_off = max(0, threshold_on - p.hysteresis)`` (rounded to 12 decimals against float drift).
        """
        on = _as_float("threshold_on", threshold_on)
        return cls(
            threshold_on=on,
            threshold_off=_derive_off(on, float(p.hysteresis)),
            vote_window=p.vote_window,
            vote_threshold=p.vote_threshold,
            lockout_ms=p.lockout_ms,
            step_ms=step_ms,
        )

    @classmethod
    def preset(cls, name: str, step_ms: int) -> DetectorConfig:
        """One of :data:`PRESETS` (``aggressive``, ``balanced``, ``conservative``) at the given frame step."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown detector preset {name!r}; choose one of: {', '.join(PRESETS)}"
            ) from None
        return replace(base, step_ms=step_ms)

    def with_threshold_on(self, threshold_on: float) -> DetectorConfig:
        """Same settings at another ``threshold_on``; ``threshold_off`` moves with it, keeping the gap
        ``threshold_on - threshold_off`` (clamped at 0). This is the rule :func:`detections_over_thresholds`
        applies to every threshold of its grid."""
        on = _as_float("threshold_on", threshold_on)
        return replace(self, threshold_on=on, threshold_off=_derive_off(on, self.hysteresis))

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready dict (the deployment manifest stores it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorConfig:
        """Inverse of :meth:`to_dict`; rejects missing and unknown keys so a typo in a manifest is caught."""
        if not isinstance(data, Mapping):
            raise ValueError(f"detector config must be a mapping, got {type(data).__name__}")  # noqa: TRY004
        expected = set(cls.__dataclass_fields__)
        missing = sorted(expected - set(data))
        unknown = sorted(set(data) - expected)
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown keys: {', '.join(map(str, unknown))}")
            raise ValueError(f"invalid detector config ({'; '.join(parts)})")
        return cls(**{k: data[k] for k in expected})


#: SPEC 4.3 presets (K/N, lockout, threshold_on); threshold_off keeps the default 0.1 hysteresis.
#: They carry the spec's default 100 ms step; use :meth:`DetectorConfig.preset` for another step.
PRESETS: Mapping[str, DetectorConfig] = MappingProxyType(
    {
        "aggressive": DetectorConfig(
            0.55, 0.45, vote_window=5, vote_threshold=2, lockout_ms=1000, step_ms=100
        ),
        "balanced": DetectorConfig(0.65, 0.55, vote_window=5, vote_threshold=3, lockout_ms=1500, step_ms=100),
        "conservative": DetectorConfig(
            0.75, 0.65, vote_window=5, vote_threshold=4, lockout_ms=2000, step_ms=100
        ),
    }
)


class StreamingDetector:
    """Frame-by-frame detector for live audio (see the module docstring for the exact rules).

    This is the reference implementation: it follows SPEC 4.3 literally (count votes in the last N frames on
    every frame). The batch functions below compute the same thing with array operations; tests check that
    they agree frame for frame.
    """

    def __init__(self, cfg: DetectorConfig) -> None:
        if not isinstance(cfg, DetectorConfig):
            raise ValueError(f"StreamingDetector needs a DetectorConfig, got {type(cfg).__name__}")  # noqa: TRY004
        self.cfg = cfg
        self._window: deque[float] = deque(maxlen=cfg.vote_window)
        self._on = False
        self._index = -1
        self._last_detection: int | None = None

    def reset(self) -> None:
        """Forget all history (new stream): window, on/off state, frame counter and lockout."""
        self._window.clear()
        self._on = False
        self._index = -1
        self._last_detection = None

    @property
    def is_on(self) -> bool:
        """Whether the detector is currently in the "on" state (a phrase is being heard)."""
        return self._on

    @property
    def frames_seen(self) -> int:
        """Frames pushed since construction or the last :meth:`reset`."""
        return self._index + 1

    @property
    def last_detection_frame(self) -> int | None:
        """Frame index of the last detection, or None if none fired yet."""
        return self._last_detection

    def push(self, score: float) -> bool:
        """Feed the next frame's score; return True when a detection fires on this frame."""
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"detector score must be finite, got {score!r} at frame {self._index + 1}")
        cfg = self.cfg
        self._index += 1
        self._window.append(s)
        if not self._on:
            votes = sum(1 for x in self._window if x >= cfg.threshold_on)
            if votes >= cfg.vote_threshold:
                self._on = True
                if (
                    self._last_detection is None
                    or (self._index - self._last_detection) * cfg.step_ms > cfg.lockout_ms
                ):
                    self._last_detection = self._index
                    return True
        else:
            above_off = sum(1 for x in self._window if x >= cfg.threshold_off)
            if above_off < cfg.vote_threshold:
                self._on = False
        return False

    def push_many(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Feed several frames; return the (absolute, since reset) frame indices where detections fired."""
        start = self._index + 1
        fired = [
            start + i for i, s in enumerate(np.asarray(scores, dtype=np.float64).ravel()) if self.push(s)
        ]
        return np.asarray(fired, dtype=np.int64)


# ----------------------------------------------------------------------------------------------- batch


def _check_scores(scores: Any, what: str = "scores") -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of per-frame scores, got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{what} must be finite; frame {bad} is {arr[bad]}")
    return arr


def _check_thresholds(thresholds: Any) -> np.ndarray:
    arr = np.asarray(thresholds, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"thresholds must be a 1-D array, got shape {arr.shape}")
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError("thresholds must be finite and lie in [0, 1]")
    return arr


def _kth_largest_in_window(scores: np.ndarray, n: int, k: int) -> np.ndarray:
    """``q[i]`` = K-th largest of ``scores[max(0, i-n+1) : i+1]``, ``-inf`` when that window has < K frames.

    ``q[i] >= t`` exactly when at least K of the last N frames are ``>= t``, which turns both vote counts of
    the detector into comparisons of one signal against a threshold.
    """
    m = scores.shape[0]
    out = np.empty(m, dtype=np.float64)
    if m == 0:
        return out
    if k == 1 and n == 1:
        out[:] = scores
        return out
    padded = np.concatenate([np.full(n - 1, -np.inf), scores])
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        win = np.lib.stride_tricks.sliding_window_view(padded[start : stop + n - 1], n)
        if k == 1:
            out[start:stop] = win.max(axis=1)
        else:
            out[start:stop] = np.partition(win, n - k, axis=1)[:, n - k]
    return out


def _lockout_filter(rows: np.ndarray, groups: np.ndarray, step_ms: int, lockout_ms: int) -> np.ndarray:
    """Which rising edges fire. ``rows`` are edge frame indices sorted within each group (threshold).

    An edge fires if it is the first of its group, or if ``(row - row_of_last_detection) * step_ms >
    lockout_ms``. An edge whose gap to the *previous edge* already exceeds the lockout always fires (the last
    detection is at or before that edge), so only runs of closely spaced edges need the sequential walk.
    """
    fire = np.ones(rows.shape[0], dtype=bool)
    if rows.shape[0] < 2:
        return fire
    close = (np.diff(rows) * step_ms <= lockout_ms) & (groups[1:] == groups[:-1])
    idx = np.flatnonzero(close) + 1
    if idx.size == 0:
        return fire
    r = rows.tolist()
    last_row = 0
    prev = -2
    for k in idx.tolist():
        if k - 1 != prev:  # k-1 opens a run of close edges; it fired.
            last_row = r[k - 1]
        if (r[k] - last_row) * step_ms > lockout_ms:
            last_row = r[k]
        else:
            fire[k] = False
        prev = k
    return fire


def _on_state(q: np.ndarray, ons: np.ndarray, offs: np.ndarray, frame_idx: np.ndarray) -> np.ndarray:
    """(frames, thresholds) bool: whether the detector is on after each frame (the Schmitt trigger on q)."""
    set_on = q[:, None] >= ons[None, :]  # switches on (if off)
    set_off = q[:, None] < offs[None, :]  # switches off (if on); never both true
    last_event = np.where(set_on | set_off, frame_idx, -1)
    np.maximum.accumulate(last_event, axis=0, out=last_event)
    return np.take_along_axis(set_on, np.maximum(last_event, 0), axis=0) & (last_event >= 0)


def _fired_edges(
    q: np.ndarray, ons: np.ndarray, offs: np.ndarray, cfg: DetectorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(threshold index, frame index) of every detection, for each (on, off) pair, from the q signal."""
    m = q.shape[0]
    t = ons.shape[0]
    all_cols: list[np.ndarray] = []
    all_rows: list[np.ndarray] = []
    if m == 0 or t == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    frame_idx = np.arange(m, dtype=np.int64)[:, None]
    for c0 in range(0, t, chunk):
        c1 = min(t, c0 + chunk)
        state = _on_state(q, ons[c0:c1], offs[c0:c1], frame_idx)
        rising = state.copy()
        rising[1:] &= ~state[:-1]
        cols, rows = np.nonzero(rising.T)  # sorted by threshold, then frame
        all_cols.append(cols.astype(np.int64) + c0)
        all_rows.append(rows.astype(np.int64))
    cols = np.concatenate(all_cols)
    rows = np.concatenate(all_rows)
    fire = _lockout_filter(rows, cols, cfg.step_ms, cfg.lockout_ms)
    return cols[fire], rows[fire]


def _grid(thresholds: np.ndarray, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    # Per threshold through the same scalar rule as DetectorConfig.with_threshold_on, so that both give
    # bit-identical threshold_off values (numpy's and Python's rounding can differ in the last bit).
    gap = cfg.hysteresis
    offs = np.array([_derive_off(float(t), gap) for t in thresholds], dtype=np.float64)
    return thresholds, offs


def vote_signal(scores: Sequence[float] | np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """``q[i]``: the K-th largest of the last N scores up to frame ``i`` (``-inf`` while fewer than K frames exist).

    The detector's vote condition holds at frame ``i`` for a threshold ``t`` exactly when ``q[i] >= t``, so the
    largest ``q`` over a stretch is the highest threshold_on at which the detector could fire in it.
    """
    return _kth_largest_in_window(_check_scores(scores), cfg.vote_window, cfg.vote_threshold)


def detect(scores: Sequence[float] | np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Frame indices (int64, ascending) where detections fire on a whole score stream.

    Identical to pushing every score through a fresh :class:`StreamingDetector` (tested), but vectorised.
    """
    s = _check_scores(scores)
    q = _kth_largest_in_window(s, cfg.vote_window, cfg.vote_threshold)
    _, rows = _fired_edges(q, np.array([cfg.threshold_on]), np.array([cfg.threshold_off]), cfg)
    return rows


def detection_steps_over_thresholds(
    scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray, cfg: DetectorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Every detection for each ``threshold_on`` in ``thresholds``: ``(threshold index, frame index)`` arrays
    (int64, sorted by threshold, then frame), as :func:`detections_over_thresholds` counts them."""
    s = _check_scores(scores)
    ons, offs = _grid(_check_thresholds(thresholds), cfg)
    q = _kth_largest_in_window(s, cfg.vote_window, cfg.vote_threshold)
    return _fired_edges(q, ons, offs, cfg)


def detections_over_thresholds(
    scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray, cfg: DetectorConfig
) -> np.ndarray:
    """Number of detections on one stream for each ``threshold_on`` in ``thresholds`` (int64, same order).

    Every other setting comes from ``cfg``; ``threshold_off = max(0, on - (cfg.threshold_on -
    cfg.threshold_off))`` (what :meth:`DetectorConfig.with_threshold_on` gives). Equal to running
    :func:`detect` once per threshold (tested), in one pass of array operations over frames x thresholds.

    The gap is read from ``cfg`` as it stands: build ``cfg`` at a ``threshold_on`` of at least the
    hysteresis (e.g. ``DetectorConfig.from_params(p, 1.0, step_ms)``). A ``cfg`` built at a low threshold,
    whose ``threshold_off`` was clamped at 0 (e.g. on = 0.01, hysteresis 0.1 -> gap 0.01), carries the
    clamped gap to every threshold of the grid.
    """
    n = _check_thresholds(thresholds).shape[0]
    cols, _ = detection_steps_over_thresholds(scores, thresholds, cfg)
    return np.bincount(cols, minlength=n).astype(np.int64)


def clips_detected_over_thresholds(
    clips: Sequence[Sequence[float] | np.ndarray],
    thresholds: Sequence[float] | np.ndarray,
    cfg: DetectorConfig,
) -> np.ndarray:
    """Whether each clip gives at least one detection, per threshold: bool array (n_clips, n_thresholds).

    Each clip is scored by a fresh detector (reset at its first frame). A fresh detector's first rising edge
    always fires, and it rises exactly when some window holds K frames ``>= threshold_on``; so a clip is
    detected iff ``max_i q[i] >= threshold_on``, independent of ``threshold_off`` and the lockout. An empty
    clip is never detected.
    """
    ons = _check_thresholds(thresholds)
    n, k = cfg.vote_window, cfg.vote_threshold
    arrays = [_check_scores(c, f"clip {i} scores") for i, c in enumerate(clips)]
    best = np.full(len(arrays), -np.inf)
    if arrays:
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        nonempty = np.flatnonzero(lengths > 0)
        if nonempty.size:
            # One long signal: each clip is preceded by N-1 -inf frames, so no window spans two clips and
            # each clip's first frames see a short window, exactly like a reset detector.
            pieces: list[np.ndarray] = []
            pad = np.full(n - 1, -np.inf)
            for i in nonempty.tolist():
                pieces.append(pad)
                pieces.append(arrays[i])
            joined = np.concatenate(pieces)
            q = _kth_largest_in_window(joined, n, k)
            starts = np.cumsum(lengths[nonempty] + (n - 1)) - lengths[nonempty]
            best[nonempty] = np.maximum.reduceat(q, starts)[: nonempty.size]
            # reduceat's last segment runs to the end of q, i.e. exactly the last clip: correct.
    return best[:, None] >= ons[None, :]


def on_fraction_over_thresholds(
    scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray, cfg: DetectorConfig
) -> np.ndarray:
    """Share of frames after which the detector is on, for each ``threshold_on`` (same grid rule as
    :func:`detections_over_thresholds`).

    On negative-only audio a usable detector is off almost all the time. One whose ``threshold_off`` sits
    below the background scores turns on once and never turns off: it counts a single false alarm per
    stream while being deaf to everything after it. This number exposes that.
    """
    s = _check_scores(scores)
    ons, offs = _grid(_check_thresholds(thresholds), cfg)
    m = s.shape[0]
    if m == 0 or ons.shape[0] == 0:
        return np.zeros(ons.shape[0], dtype=np.float64)
    q = _kth_largest_in_window(s, cfg.vote_window, cfg.vote_threshold)
    frame_idx = np.arange(m, dtype=np.int64)[:, None]
    chunk = max(1, _CHUNK_ELEMENTS // m)
    out = [_on_state(q, ons[c0 : c0 + chunk], offs[c0 : c0 + chunk], frame_idx).mean(axis=0)
           for c0 in range(0, ons.shape[0], chunk)]
    return np.concatenate(out)
