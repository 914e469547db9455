"""Peer comparison: microWakeWord's pretrained "hey_jarvis" (the model ESPHome devices ship, from the
optional pip package ``pymicro-wakeword``) against this project's deployed int8 model, on this project's
held-out engine set (an engine neither model's training saw from us), with the same event-based metrics.

Run:  python -m benchmarks.peer_microwakeword [--repo DIR] [--json OUT]
(needs the ``peers`` extra: ``pip install -c constraints.txt -e ".[dev,peers]"``).

What is scored, from ``--repo`` (default: this checkout):

* the clips of ``data/split/heldout.jsonl`` (kinds positive / negative / hard_negative; ``path`` relative to
  ``data/<root>``, root ``synth`` for the demo set), each padded with 0.75 s of a -65 dBFS Gaussian noise floor
  before and after (a seeded generator per clip, never digital silence), the same padded audio for both models;
* the long negative-only held-out stream ``data/synth/streams/heldout.wav``, read in 10 s blocks.

Scores:

* microWakeWord: its streaming model runs on its own TFLite-Micro front end (``MicroWakeWordFeatures``) and
  makes one inference per ``stride`` = 3 feature frames, i.e. one step per 30 ms. ``process_streaming_prob``
  returns, for every feature frame, 0.0 on the frames without an inference and, on the inference frames, the
  **mean of the last ``sliding_window_size`` (5) per-step probabilities** (0.0 until 5 exist). That sliding
  mean is what ESPHome compares with ``probability_cutoff`` (its ``determine_detected``: detection when the
  mean is > the cutoff), so it is the detection score used here (row "sliding mean"); only the inference
  frames are kept. The per-step probability (the newest value of the package's window) is reported too, as a
  second row, for information. The shipped cutoff (0.97) and window size are read from the package's
  ``hey_jarvis.json`` (``ww.probability_cutoff``, ``ww.sliding_window_size``). The package dequantises the
  uint8 output with the model's scale (1/256); ESPHome divides by 255 (< 0.4% apart).
* ours: the deployed directory ``models/deploy`` (``model.tflite`` + ``wakeword.json``) through the torch-free
  runtime (:class:`wakeword.runtime.DeployedModel`: numpy log-mel, int8 TFLite, calibrated probabilities,
  one step per ``step_ms`` = 100 ms); clips with ``DeployedModel.score_audio``, the stream with the same parts
  fed block by block (:func:`wakeword.features.compute_features_stream`, equal to the whole-file features).

Metrics (SPEC 4.4-4.5), identical for every row, from the project's detector and metric functions:

* an event is the score reaching the threshold (``>=``) on a rising edge, followed by a lockout of 1.5 s
  (a crossing less than or exactly 1.5 s after the last event does not count): the project's detector with
  one vote of one frame and no hysteresis (:func:`event_rule`); FAH = events on the stream / stream hours;
* clip recall = share of positive clips whose max score reaches the threshold; confusable false-accept rate =
  share of hard_negative clips reaching it; clip EER on max scores, positives vs negatives + hard negatives;
* thresholds on a 0.005 grid over [0, 1] plus every positive clip's max score (where recall changes; see
  :func:`evaluate_scores`: microWakeWord's quantised, saturating scores fall between grid points); points where the detector is "on" for more than 2% of the stream
  are left out (the pipeline's ``calibrate.max_stream_on_fraction``: a threshold below the background turns
  the detector on once and it never fires again, which would read as few false alarms);
* recall at <= 0.5 / 1 / 2 FA/h = the best recall among thresholds whose FAH is within the bound
  (:func:`wakeword.metrics.recall_at_fah`; 0 when none is), the confusable false-accept rate at the
  threshold chosen for 0.5 FA/h, and FAH / recall / confusable false accepts at each model's shipped cutoff
  (microWakeWord: 0.97; ours: ``threshold_on`` of ``wakeword.json``).

A last computed row runs our model with its own shipped detector (K of N votes, hysteresis, lockout; what
``wakeword detect`` runs) on the same audio, and the pipeline's own held-out figures are printed from
``metrics/int8.json`` -> ``heldout`` for reference (they use the feature-level clips of the featurize stage
and the calibrated threshold, so they differ a little from the rows above).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wakeword import metrics
from wakeword.audio import read_audio
from wakeword.detector import (
    DetectorConfig,
    clips_detected_over_thresholds,
    detection_steps_over_thresholds,
    detections_over_thresholds,
    on_fraction_over_thresholds,
)

SAMPLE_RATE_HZ = 16000
PAD_S = 0.75
NOISE_DBFS = -65.0
NOISE_SEED = 20240611
LOCKOUT_MS = 1500
GRID_STEP = 0.005
FAH_BOUNDS = (0.5, 1.0, 2.0)
MAX_ON_FRACTION = 0.02
STREAM_BLOCK_S = 10.0
PEERS_EXTRA = "peers"
INSTALL_HINT = f'pip install -c constraints.txt -e ".[dev,{PEERS_EXTRA}]"'
CLIP_KINDS = ("positive", "negative", "hard_negative")
EXCLUDED_TAIL_S = 1.5  # a phrase can set off a detector until this long after it ends (our 1.5 s window)


class PeerMissingError(RuntimeError):
    """The optional peer package is not installed."""


# ------------------------------------------------------------------------------------------ pure helpers


def threshold_grid(step: float = GRID_STEP) -> np.ndarray:
    """``0, step, 2*step, ..., 1`` (both ends included), rounded to 10 decimals so that grid values read back
    from JSON equal the ones evaluated. (``wakeword.calibration.threshold_grid`` excludes 0 and 1 and imports
    torch; this script stays torch-free.)"""
    s = float(step)
    if not (math.isfinite(s) and 0.0 < s <= 0.5):
        raise ValueError(f"threshold step must lie in (0, 0.5], got {step}")
    n = math.floor(1.0 / s + 1e-9)
    grid = np.round(np.arange(n + 1, dtype=np.float64) * s, 10)
    return grid if grid[-1] >= 1.0 - 1e-9 else np.append(grid, 1.0)


def event_rule(step_ms: int, lockout_ms: int = LOCKOUT_MS) -> DetectorConfig:
    """The event rule as a project detector: a frame votes when its score >= the threshold (1 of 1 frames),
    no hysteresis (it switches off as soon as the score drops below the threshold), and a rising edge counts
    only when more than ``lockout_ms`` passed since the last counted one. ``threshold_on`` here is only the
    base of a grid (every grid threshold keeps the 0 gap)."""
    return DetectorConfig(1.0, 1.0, vote_window=1, vote_threshold=1, lockout_ms=int(lockout_ms), step_ms=int(step_ms))


def noise_floor(n: int, rng: np.random.Generator, dbfs: float = NOISE_DBFS) -> np.ndarray:
    """``n`` samples of Gaussian noise with an RMS of ``dbfs`` (float32)."""
    return (rng.standard_normal(int(n)) * 10.0 ** (dbfs / 20.0)).astype(np.float32)


def pad_clip(audio: np.ndarray, index: int, pad_s: float = PAD_S, dbfs: float = NOISE_DBFS,
             seed: int = NOISE_SEED) -> np.ndarray:
    """``audio`` with ``pad_s`` of noise floor before and after; the noise depends only on (seed, index)."""
    rng = np.random.default_rng([int(seed), int(index)])
    n = round(pad_s * SAMPLE_RATE_HZ)
    return np.concatenate([noise_floor(n, rng, dbfs), np.asarray(audio, dtype=np.float32), noise_floor(n, rng, dbfs)])


def to_pcm16(audio: np.ndarray) -> bytes:
    """float audio in [-1, 1] -> little-endian int16 bytes (clipped, rounded)."""
    x = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.round(x).astype("<i2").tobytes()


def operating_curve_from_scores(
    stream: np.ndarray, hours: float, positives: Sequence[np.ndarray], confusables: Sequence[np.ndarray],
    thresholds: np.ndarray, rule: DetectorConfig, max_on_fraction: float | None = MAX_ON_FRACTION,
) -> dict[str, np.ndarray]:
    """FAH, recall and confusable false-accept rate per threshold, from per-step scores (stream and clips).

    The counting is the project's detector (:func:`detections_over_thresholds`, one fresh detector per clip
    via :func:`clips_detected_over_thresholds`) and :func:`wakeword.metrics.operating_curve`, as in
    ``wakeword.evaluation.operating_curve`` (which works on logits of featurized clips, not on given scores).
    With ``max_on_fraction`` set, thresholds at which the detector is on for more of the stream are dropped.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    s = np.asarray(stream, dtype=np.float64)
    on = on_fraction_over_thresholds(s, thr, rule)
    if max_on_fraction is not None:
        keep = on <= max_on_fraction
        if not keep.any():
            raise ValueError(f"at every threshold the detector is on for more than {max_on_fraction} of the stream")
        thr, on = thr[keep], on[keep]
    events = detections_over_thresholds(s, thr, rule)
    curve = metrics.operating_curve(thr, events, hours, clips_detected_over_thresholds(list(positives), thr, rule))
    curve["stream_on_fraction"] = on
    curve["confusable_false_accept_rate"] = (
        clips_detected_over_thresholds(list(confusables), thr, rule).mean(axis=0) if len(confusables)
        else np.zeros_like(thr))
    return curve


def fah_key(bound: float) -> str:
    """0.5 -> '0p5', 1.0 -> '1p0' (the metric-name convention of metrics/*.json)."""
    return str(float(bound)).replace(".", "p")


def excluded_intervals(segments: Sequence[Mapping[str, Any]], kind: str = "confusable",
                       tail_s: float = EXCLUDED_TAIL_S) -> np.ndarray:
    """Merged ``[start_s, end_s + tail_s]`` intervals (seconds, shape (k, 2), sorted) of the stream's segments
    of type ``kind`` (the held-out stream's JSON ``segments``): the stretches in which a detection may have
    been set off by such a phrase, for either model (``tail_s`` covers a window that still holds its end)."""
    spans = sorted((float(x["start_s"]), float(x["end_s"]) + float(tail_s)) for x in segments
                   if x.get("type") == kind)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.asarray(merged, dtype=np.float64).reshape(-1, 2)


def inside(times_s: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Whether each time lies in one of the sorted, disjoint ``[a, b]`` ``intervals``."""
    t = np.asarray(times_s, dtype=np.float64)
    if intervals.shape[0] == 0:
        return np.zeros(t.shape, dtype=bool)
    i = np.searchsorted(intervals[:, 0], t, side="right") - 1
    ok = i >= 0
    out = np.zeros(t.shape, dtype=bool)
    out[ok] = t[ok] <= intervals[i[ok], 1]
    return out


def curve_without_intervals(curve: Mapping[str, np.ndarray], stream: np.ndarray, hours: float,
                            rule: DetectorConfig, step_end_s: np.ndarray, intervals: np.ndarray) -> dict[str, np.ndarray]:
    """``curve`` (:func:`operating_curve_from_scores` of ``stream``) recounted with the events whose step ends
    (``step_end_s``: the time of the last audio each stream step has heard) inside ``intervals`` dropped, and
    those intervals' hours (clipped to the stream) taken off ``hours``; recall and confusable false accepts
    are the clips', unchanged."""
    thr = np.asarray(curve["threshold"], dtype=np.float64)
    cols, rows = detection_steps_over_thresholds(np.asarray(stream, dtype=np.float64), thr, rule)
    keep = ~inside(np.asarray(step_end_s, dtype=np.float64)[rows], intervals)
    total_s = float(hours) * 3600.0
    clipped = np.clip(intervals, 0.0, total_s)
    cut_s = float((clipped[:, 1] - clipped[:, 0]).sum())
    left_h = (total_s - cut_s) / 3600.0
    if left_h <= 0.0:
        raise ValueError("the excluded intervals cover the whole stream")
    counts = np.bincount(cols[keep], minlength=thr.shape[0]).astype(np.int64)
    out = {k: np.asarray(v) for k, v in curve.items()}
    out.update(fah=counts / left_h, false_alarms=counts, negative_hours=np.float64(left_h))
    return out


def at_fah_bounds(curve: Mapping[str, np.ndarray], bounds: Iterable[float] = FAH_BOUNDS) -> dict[str, Any]:
    """Recall at each FAH bound, with the threshold that reaches it and the FAH and confusable false-accept
    rate there (None where no threshold reaches the bound)."""
    out: dict[str, Any] = {}
    thr = np.asarray(curve["threshold"], dtype=np.float64)
    for bound in bounds:
        k = fah_key(bound)
        recall, t = metrics.recall_at_fah(curve, bound)
        out[f"recall_at_{k}_fah"] = float(recall)
        out[f"threshold_at_{k}_fah"] = t
        if t is None:
            out[f"fah_at_{k}_fah"] = out[f"confusable_false_accept_rate_at_{k}_fah"] = None
        else:
            i = int(np.flatnonzero(thr == t)[0])
            out[f"fah_at_{k}_fah"] = float(curve["fah"][i])
            out[f"confusable_false_accept_rate_at_{k}_fah"] = float(curve["confusable_false_accept_rate"][i])
    return out


def summarize(curve: Mapping[str, np.ndarray], at_cutoff: Mapping[str, np.ndarray], cutoff: float,
              labels: np.ndarray, clip_scores: np.ndarray, bounds: Iterable[float] = FAH_BOUNDS) -> dict[str, Any]:
    """One row: recall (and its threshold, FAH, confusable false-accept rate) at each FAH bound, the clip EER,
    and FAH / recall / confusable false accepts at ``cutoff`` (``at_cutoff``: a one-threshold curve)."""
    out = at_fah_bounds(curve, bounds)
    e, e_thr = metrics.eer(labels, clip_scores)
    out["eer"], out["eer_threshold"] = float(e), float(e_thr)
    out["cutoff"] = float(cutoff)
    out["fah_at_cutoff"] = float(at_cutoff["fah"][0])
    out["false_alarms_at_cutoff"] = int(at_cutoff["false_alarms"][0])
    out["recall_at_cutoff"] = float(at_cutoff["recall"][0])
    out["confusable_false_accept_rate_at_cutoff"] = float(at_cutoff["confusable_false_accept_rate"][0])
    out["stream_on_fraction_at_cutoff"] = float(at_cutoff["stream_on_fraction"][0])
    return out


def evaluate_scores(name: str, stream: np.ndarray, hours: float, clips: Mapping[str, list[np.ndarray]],
                    rule: DetectorConfig, cutoff: float, thresholds: np.ndarray,
                    max_on_fraction: float = MAX_ON_FRACTION, add_clip_levels: bool = True,
                    without: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Every figure of one row from its per-step scores: ``clips`` maps kind -> list of per-clip arrays.

    With ``without`` = ``(step_end_s, intervals)`` the row also has ``without_confusables``: the FAH bounds
    recounted with the stream's events in those intervals left out (:func:`curve_without_intervals`), as an
    evaluation whose negative audio holds no confusable phrases (they are measured per clip) counts them.

    With ``add_clip_levels`` the thresholds are ``thresholds`` plus every positive clip's max score: with the
    event rule, recall changes exactly there, and the highest threshold of a recall level has (lockout aside)
    the fewest false alarms, so the recall at a FAH bound is not limited by the grid. (microWakeWord's
    scores are quantised, means of five k/256 values, and saturate at 255/256 = 0.9961: on a 0.005 grid
    0.995 and 1.0 are the only thresholds above 0.99, and its best points lie between them.)"""
    pos, neg, conf = clips["positive"], clips["negative"], clips["hard_negative"]
    if add_clip_levels:
        levels = np.clip([float(np.max(c)) for c in pos if len(c)], 0.0, 1.0)
        thresholds = np.union1d(np.asarray(thresholds, dtype=np.float64), levels)
    curve = operating_curve_from_scores(stream, hours, pos, conf, thresholds, rule, max_on_fraction)
    at_cut = operating_curve_from_scores(stream, hours, pos, conf, np.array([cutoff]), rule, None)
    clip_max = np.array([float(np.max(c)) for c in (*pos, *neg, *conf)])
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg) + len(conf), np.int64)])
    row = {"name": name, "step_ms": int(rule.step_ms), "stream_hours": float(hours),
           "stream_steps": int(np.asarray(stream).shape[0]), "rule": rule.to_dict(),
           "thresholds_evaluated": int(np.asarray(thresholds).shape[0])}
    row.update(summarize(curve, at_cut, cutoff, labels, clip_max))
    if without is not None:
        wo = curve_without_intervals(curve, stream, hours, rule, *without)
        row["without_confusables"] = {"stream_hours": float(wo["negative_hours"])} | at_fah_bounds(wo)
    return row


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100.0 * x:.1f}%" if pct else f"{x:.3f}"


def _without_cell(wo: Any, hours_key: str) -> str:
    """The without-the-stream's-confusables cell: hours, recall at each FAH bound, confusable false accepts and
    threshold at 0.5 FA/h ("-" when the row has none)."""
    if not isinstance(wo, Mapping):
        return "-"
    hours = wo.get(hours_key)
    rec = " / ".join(_fmt(wo.get(f"recall_at_{fah_key(b)}_fah")) for b in FAH_BOUNDS)
    return (f"{'-' if hours is None else f'{hours:.2f}'}, {rec}, {_fmt(wo.get('confusable_false_accept_rate_at_0p5_fah'), True)} at "
            f"{_fmt(wo.get('threshold_at_0p5_fah'))}")


def format_table(rows: Sequence[Mapping[str, Any]], pipeline: Mapping[str, Any] | None) -> str:
    """The comparison as a Markdown table (+ the pipeline's own figures as a last row when given)."""
    head = ("| model / score | stream h | recall @ 0.5 / 1 / 2 FA/h | clip EER | confusable FA @ 0.5 FA/h (threshold) "
            "| cutoff | FAH / recall / confusable FA @ cutoff | without the stream's confusables: stream h, recall "
            "@ 0.5 / 1 / 2 FA/h, confusable FA @ 0.5 FA/h (threshold) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        rec = " / ".join(_fmt(r[f"recall_at_{fah_key(b)}_fah"]) for b in FAH_BOUNDS)
        at = (f"{r['fah_at_cutoff']:.2f} / {r['recall_at_cutoff']:.3f} / "
              f"{_fmt(r['confusable_false_accept_rate_at_cutoff'], True)}")
        wo_cell = _without_cell(r.get("without_confusables"), "stream_hours")
        lines.append(f"| {r['name']} | {r['stream_hours']:.2f} | {rec} | {r['eer']:.3f} | "
                     f"{_fmt(r['confusable_false_accept_rate_at_0p5_fah'], True)} at "
                     f"{_fmt(r['threshold_at_0p5_fah'])} | {r['cutoff']:.3f} | {at} | {wo_cell} |")
    if pipeline:
        rec = " / ".join(_fmt(pipeline.get(f"recall_at_{fah_key(b)}_fah")) for b in FAH_BOUNDS)
        at = (f"{_fmt(pipeline.get('fah'))} / {_fmt(pipeline.get('recall_at_target'))} / "
              f"{_fmt(pipeline.get('confusable_false_accept_rate'), True)}")
        wo_cell = _without_cell(pipeline.get("without_confusables"), "negative_hours")
        lines.append(f"| pipeline metrics/int8.json heldout (reference) | {_fmt(pipeline.get('negative_hours'))} | "
                     f"{rec} | {_fmt(pipeline.get('eer'))} | - | {_fmt(pipeline.get('threshold'))} | {at} | {wo_cell} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- I/O


def require_peer() -> Any:
    """The ``pymicro_wakeword`` module, or :class:`PeerMissingError` naming the extra that installs it."""
    try:
        import pymicro_wakeword
    except ImportError as exc:
        raise PeerMissingError(
            f"benchmarks.peer_microwakeword needs the optional package pymicro-wakeword (extra "
            f"'{PEERS_EXTRA}'): {INSTALL_HINT}  ({exc})") from None
    return pymicro_wakeword


def load_heldout_clips(repo: Path) -> list[dict[str, Any]]:
    """Rows of ``data/split/heldout.jsonl`` of the clip kinds, with ``file`` resolved under ``data/<root>``."""
    manifest = repo / "data" / "split" / "heldout.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no held-out split (run the pipeline with synth.heldout_engines)")
    rows = []
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("kind") not in CLIP_KINDS:
            continue
        base = (repo / "data" / str(row.get("root", "synth"))).resolve()
        path = (base / str(row["path"])).resolve()
        if not path.is_relative_to(base):
            raise ValueError(f"{manifest}: clip path {row['path']!r} leaves {base}")
        row["file"] = path
        rows.append(row)
    if not any(r["kind"] == "positive" for r in rows):
        raise ValueError(f"{manifest}: no positive clips")
    return rows


def stream_blocks(path: Path, block_s: float = STREAM_BLOCK_S, max_s: float | None = None,
                  desc: str = "stream") -> Iterable[np.ndarray]:
    """Float32 blocks of a 16 kHz mono recording (first ``max_s`` seconds when given), with a progress bar."""
    import soundfile as sf
    from tqdm import tqdm

    info = sf.info(str(path))
    if info.samplerate != SAMPLE_RATE_HZ or info.channels != 1:
        raise ValueError(f"{path}: expected {SAMPLE_RATE_HZ} Hz mono, got {info.samplerate} Hz x {info.channels}")
    frames = info.frames if max_s is None else min(info.frames, int(max_s * SAMPLE_RATE_HZ))
    block = int(block_s * SAMPLE_RATE_HZ)
    total = math.ceil(frames / block)
    blocks = sf.blocks(str(path), blocksize=block, dtype="float32", frames=frames)
    yield from tqdm(blocks, total=total, desc=desc, unit="block", leave=False)


class MicroWakeWordScorer:
    """pymicro-wakeword's hey_jarvis: per-step (30 ms) sliding-window means and per-step probabilities."""

    def __init__(self) -> None:
        pmw = require_peer()
        self.ww = pmw.MicroWakeWord.from_builtin(pmw.Model.HEY_JARVIS)
        self.features = pmw.MicroWakeWordFeatures()
        self.stride = int(self.ww.stride)
        self.window = int(self.ww.sliding_window_size)
        self.cutoff = float(self.ww.probability_cutoff)
        self.step_ms = 10 * self.stride  # one feature frame per 10 ms
        self.version = _package_version("pymicro-wakeword")
        self._frames = 0
        self.means: list[float] = []
        self.raw: list[float] = []

    def reset(self) -> None:
        """A fresh stream: the model is reloaded (its streaming state cleared) and the front end reset."""
        self.ww.reset()
        self.features.reset()
        self._frames = 0
        self.means, self.raw = [], []

    def feed(self, audio: np.ndarray) -> None:
        for f in self.features.process_streaming(to_pcm16(audio)):
            p = self.ww.process_streaming_prob(f)
            self._frames += 1
            if self._frames % self.stride:
                continue  # no inference on this frame: the package returns 0.0
            if p is None:
                raise RuntimeError("pymicro-wakeword returned no probability (interpreter closed?)")
            self.means.append(float(p))
            # the newest per-step probability: the last entry of the package's sliding window (private)
            self.raw.append(float(self.ww._probabilities[-1]))

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.means, dtype=np.float64), np.asarray(self.raw, dtype=np.float64)

    def step_end_s(self, n: int) -> np.ndarray:
        """When the audio heard by each of ``n`` steps ends: step i runs on feature frame (i + 1) * stride,
        and frame j (from 1) ends at j * 10 ms + 20 ms (30 ms windows, 10 ms hop)."""
        return ((np.arange(n) + 1) * self.stride * 10 + 20) / 1000.0


class OurScorer:
    """The deployed model directory through the torch-free runtime."""

    def __init__(self, model_dir: Path) -> None:
        from wakeword.runtime import DeployedModel

        self.model = DeployedModel.load(model_dir)
        self.step_ms = int(self.model.detector.step_ms)
        self.cutoff = float(self.model.detector.threshold_on)

    def clip(self, audio: np.ndarray) -> np.ndarray:
        return self.model.score_audio(audio)[1].astype(np.float64)

    def stream(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        from wakeword.features import compute_features_stream
        from wakeword.scoring import probabilities, stream_logits

        m = self.model
        feats = compute_features_stream(blocks, m.features)
        logits = stream_logits(m.scorer.logits, feats, m.window_frames, m.step_frames)
        return probabilities(logits, m.temperature).astype(np.float64)

    def step_end_s(self, n: int) -> np.ndarray:
        """When the audio of each of ``n`` stream steps ends: step i's window is feature frames
        i * step_frames .. + window_frames - 1, and frame f ends at f * hop + win."""
        m, f = self.model, self.model.features
        last = np.arange(n) * m.step_frames + m.window_frames - 1
        return (last * f.hop_ms + f.win_ms) / 1000.0


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run(repo: Path, max_stream_s: float | None = None, max_clips: int | None = None,
        grid_step: float = GRID_STEP) -> dict[str, Any]:
    """Score both models on ``repo``'s held-out set; returns the rows, the pipeline's figures, wall times."""
    import soundfile as sf
    from tqdm import tqdm

    repo = repo.resolve()
    mww = MicroWakeWordScorer()  # first: fail fast when the extra is missing
    model_dir = repo / "models" / "deploy"
    ours = OurScorer(model_dir)
    stream_path = repo / "data" / "synth" / "streams" / "heldout.wav"
    if not stream_path.is_file():
        raise FileNotFoundError(f"{stream_path}: no held-out stream")
    clips = load_heldout_clips(repo)
    if max_clips is not None:
        clips = [c for k in CLIP_KINDS for c in [r for r in clips if r["kind"] == k][:max_clips]]
    wall: dict[str, float] = {}

    t0 = time.perf_counter()
    mww_mean: dict[str, list[np.ndarray]] = {k: [] for k in CLIP_KINDS}
    mww_raw: dict[str, list[np.ndarray]] = {k: [] for k in CLIP_KINDS}
    our: dict[str, list[np.ndarray]] = {k: [] for k in CLIP_KINDS}
    for i, row in enumerate(tqdm(clips, desc="held-out clips", unit="clip")):
        audio = pad_clip(read_audio(row["file"], SAMPLE_RATE_HZ), i)
        mww.reset()
        mww.feed(audio)
        mean, raw = mww.scores()
        mww_mean[row["kind"]].append(mean)
        mww_raw[row["kind"]].append(raw)
        our[row["kind"]].append(ours.clip(audio))
    wall["clips_s"] = time.perf_counter() - t0

    info = sf.info(str(stream_path))
    n_samples = info.frames if max_stream_s is None else min(info.frames, int(max_stream_s * SAMPLE_RATE_HZ))
    hours = n_samples / SAMPLE_RATE_HZ / 3600.0
    t0 = time.perf_counter()
    mww.reset()
    for block in stream_blocks(stream_path, max_s=max_stream_s, desc="stream: microWakeWord"):
        mww.feed(block)
    mww_stream_mean, mww_stream_raw = mww.scores()
    wall["stream_microwakeword_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    our_stream = ours.stream(stream_blocks(stream_path, max_s=max_stream_s, desc="stream: ours"))
    wall["stream_ours_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    grid = threshold_grid(grid_step)
    mww_rule = event_rule(mww.step_ms)
    our_rule = event_rule(ours.step_ms)
    stream_meta = stream_path.with_suffix(".json")
    meta = json.loads(stream_meta.read_text()) if stream_meta.is_file() else {}
    intervals = excluded_intervals(meta.get("segments", []))
    mww_wo = (mww.step_end_s(mww_stream_mean.shape[0]), intervals) if intervals.size else None
    our_wo = (ours.step_end_s(our_stream.shape[0]), intervals) if intervals.size else None
    rows = [
        evaluate_scores(f"microWakeWord hey_jarvis, sliding mean of {mww.window} (ESPHome score)", mww_stream_mean,
                        hours, mww_mean, mww_rule, mww.cutoff, grid, without=mww_wo),
        evaluate_scores("microWakeWord hey_jarvis, per-step probability", mww_stream_raw, hours, mww_raw, mww_rule,
                        mww.cutoff, grid, without=mww_wo),
        evaluate_scores("ours, deployed int8 (models/deploy), same event rule", our_stream, hours, our, our_rule,
                        ours.cutoff, grid, without=our_wo),
    ]
    # our model with its own shipped detector (K/N votes + hysteresis + lockout), the grid keeping its gap
    own = ours.model.detector.with_threshold_on(1.0)
    rows.append(evaluate_scores(
        f"ours, deployed int8, own detector ({own.vote_threshold}/{own.vote_window} votes, "
        f"hysteresis {own.hysteresis:.2f})", our_stream, hours, our, own, ours.cutoff, grid, without=our_wo))
    wall["metrics_s"] = time.perf_counter() - t0

    pipeline = None
    int8_json = repo / "metrics" / "int8.json"
    if int8_json.is_file():
        pipeline = json.loads(int8_json.read_text()).get("heldout")
    meta_duration = meta.get("duration_s")
    return {
        "repo": str(repo),
        "stream": {"path": str(stream_path), "hours": hours, "samples": n_samples, "json_duration_s": meta_duration,
                   "truncated_to_s": max_stream_s, "confusable_intervals": int(intervals.shape[0]),
                   "confusable_tail_s": EXCLUDED_TAIL_S},
        "clips": {k: len(our[k]) for k in CLIP_KINDS},
        "settings": {"pad_s": PAD_S, "noise_dbfs": NOISE_DBFS, "noise_seed": NOISE_SEED, "lockout_ms": LOCKOUT_MS,
                     "grid_step": grid_step, "fah_bounds": list(FAH_BOUNDS), "max_stream_on_fraction": MAX_ON_FRACTION,
                     "threshold_test": ">= (ESPHome: >)"},
        "peer": {"package": "pymicro-wakeword", "version": mww.version, "model": "hey_jarvis",
                 "probability_cutoff": mww.cutoff, "sliding_window_size": mww.window, "step_ms": mww.step_ms},
        "ours": {"model_dir": str(model_dir), "step_ms": ours.step_ms, "threshold_on": ours.cutoff,
                 "detector": ours.model.detector.to_dict()},
        "rows": rows,
        "pipeline_heldout": None if pipeline is None else {
            k: pipeline.get(k) for k in ("recall_at_0p1_fah", "recall_at_0p5_fah", "recall_at_1p0_fah",
                                         "recall_at_2p0_fah", "eer", "confusable_false_accept_rate", "threshold",
                                         "fah", "false_alarms", "negative_hours", "recall_at_target",
                                         "without_confusables")},
        "wall_s": wall,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peer_microwakeword", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                    help="pipeline checkout to read (default: this one)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    ap.add_argument("--grid-step", type=float, default=GRID_STEP, help="threshold grid step (default 0.005)")
    ap.add_argument("--max-stream-s", type=float, default=None,
                    help="smoke runs only: score only the first seconds of the stream")
    ap.add_argument("--max-clips", type=int, default=None, help="smoke runs only: at most this many clips per kind")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = run(args.repo, args.max_stream_s, args.max_clips, args.grid_step)
    except PeerMissingError as exc:
        raise SystemExit(str(exc)) from None
    result["wall_s"]["total_s"] = time.perf_counter() - t0
    s = result["stream"]
    print(f"held-out set of {result['repo']}: {result['clips']} clips, stream {s['hours']:.3f} h "
          f"({s['path']}); events: score >= threshold, lockout {LOCKOUT_MS} ms; pymicro-wakeword "
          f"{result['peer']['version']}, cutoff {result['peer']['probability_cutoff']}")
    print()
    print(format_table(result["rows"], result["pipeline_heldout"]))
    print()
    print("wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in result["wall_s"].items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
