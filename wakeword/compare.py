"""Compare trained checkpoints on one split of a feature store: recall at fixed false-alarm rates, with and
without the stream's confusable phrases, for each checkpoint and optionally their ensemble.

This answers the questions a seed or checkpoint comparison asks (``wakeword compare``): is the best-epoch
checkpoint better than the fine-tuned one on the held-out engine, is one seed's model better than another's on
the same audio, would averaging models help? Every checkpoint is scored through its own CMVN (stored in it
by the train and finetune stages), so models trained on other data (another seed) can be compared on one
split. The ensemble is the members' mean class probability, as ``train.distill`` teachers are averaged.

Scores are raw probabilities (temperature 1): recall at a FAH is the best recall over a threshold grid, so
it does not need the calibration stage's temperature for a single model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wakeword.checkpoint import CheckpointError, load_checkpoint
from wakeword.cmvn import CMVN
from wakeword.evaluation import (
    by_voice,
    clip_groups_of,
    confusable_rate_at_fah,
    curve_without_kind,
    engine_groups,
    load_stream_segments,
    operating_curve,
    score_set,
)
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.metrics import eer, recall_at_fah
from wakeword.params import DetectorParams
from wakeword.scoring import LogitFn

FAH_POINTS = (0.5, 1.0, 2.0)


class CompareError(ValueError):
    """A checkpoint cannot be compared (unreadable, no CMVN, other window or features)."""


@dataclass(frozen=True)
class Comparison:
    """One model's figures on the split: recall at each FAH point (None where no threshold of the grid meets
    it), the same with the stream's confusable segments left out (None without a segment table that has
    some), the clip-level EER, and the share of the split's confusable clips accepted at each of those
    without-confusables operating points (the pair an evaluation that measures confusables per clip reports;
    None without such a curve or without confusable clips, and per point where the recall is None).
    ``by_engine``: with the split manifest's voice groups, per engine (the part of ``engine:voice`` before the
    colon) its positive clips and recall at 0.5 FA/h, with and without the stream's confusables, and the
    share of its confusable clips accepted at the latter; the thresholds are the whole stream's."""

    name: str
    recall: dict[float, float | None]
    recall_without_confusables: dict[float, float | None] | None
    eer: float
    confusable_false_accepts: dict[float, float | None] | None = None
    by_engine: dict[str, dict[str, float]] | None = None


def checkpoint_logit_fn(path: Path, n_features: int, window_frames: int, feature_type: str | None = None
                        ) -> LogitFn:
    """Raw features -> logits of the checkpoint at ``path``, through the CMVN it stores. ``feature_type``
    (the store's, from its CMVN file): a checkpoint trained on another feature type is an error, since
    log_mel and micro features both have 40 bins and would be scored without complaint."""
    from wakeword.train import torch_logit_fn

    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as exc:
        raise CompareError(str(exc)) from None
    shape = (int(meta["window_frames"]), int(meta["n_features"]))
    if shape != (window_frames, n_features):
        raise CompareError(f"{path}: takes windows of (frames, features) = {shape}, the feature store has "
                           f"{(window_frames, n_features)}")
    c = meta.get("cmvn")
    if not isinstance(c, dict) or "mean" not in c or "std" not in c:
        raise CompareError(f"{path}: stores no CMVN (a checkpoint from before CMVN was saved in checkpoints); "
                           f"retrain it")
    own_type = c.get("feature_type")
    if feature_type is not None and own_type is not None and own_type != feature_type:
        raise CompareError(f"{path}: trained on {own_type} features, the feature store holds {feature_type}")
    mean, std = np.asarray(c["mean"], dtype=np.float32), np.asarray(c["std"], dtype=np.float32)
    if mean.shape != (n_features,) or std.shape != (n_features,):
        raise CompareError(f"{path}: CMVN of {mean.shape[0]} bins, the features have {n_features}")
    return torch_logit_fn(model, CMVN(mean, std, str(c.get("feature_type", "")), int(c.get("num_frames_used", 0))))


def mean_probability_logits(members: list[np.ndarray]) -> np.ndarray:
    """Log of the members' mean softmax probabilities (over the last axis): valid logits whose softmax is the
    mean."""
    if not members:
        raise CompareError("an ensemble needs at least one member")
    probs = []
    for logits in members:
        z = np.asarray(logits, dtype=np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        probs.append(z / z.sum(axis=-1, keepdims=True))
    return np.log(np.maximum(np.mean(probs, axis=0), 1e-12)).astype(np.float32)


def compare_models(models: list[tuple[str, LogitFn]], features_dir: Path, split: str, det: DetectorParams,
                   step_ms: int, thresholds: np.ndarray, max_on_fraction: float,
                   fah_points: tuple[float, ...] = FAH_POINTS, ensemble: str | None = None,
                   manifest_groups: list[str] | None = None) -> list[Comparison]:
    """Score every model on ``split``'s clips and stream (loaded once) and read its figures off the operating
    curve through the streaming detector, as the evaluate stage does. ``ensemble``: also a row of that name
    for the models' mean probability, from the logits already scored (no model runs twice).
    ``manifest_groups``: the voice group of every row of the split's manifest, for ``by_engine``."""
    index = read_index(features_dir)
    window, step = int(index["window_frames"]), int(index["step_frames"])
    clips = load_split(features_dir, split)
    engines = None
    if manifest_groups is not None:
        engines = engine_groups(clip_groups_of(clips, manifest_groups, features_dir, split))
    stream, hours = load_stream(features_dir, split)
    segments = load_stream_segments(features_dir, split, int(stream.shape[0]))
    hop_s = float(segments["hop_s"]) if segments is not None else 0.01

    def at(c: dict[str, np.ndarray]) -> dict[float, float | None]:
        res: dict[float, float | None] = {}
        for target in fah_points:
            recall, thr = recall_at_fah(c, target)
            res[target] = recall if thr is not None else None
        return res

    scored_sets = [(name, score_set(fn, clips, stream, hours, window, step, hop_s=hop_s, stream_segments=segments))
                   for name, fn in models]
    if ensemble is not None:
        sets = [sc for _, sc in scored_sets]
        scored_sets.append((ensemble, replace(
            sets[0], clip_logits=mean_probability_logits([sc.clip_logits for sc in sets]),
            stream_logits=mean_probability_logits([sc.stream_logits for sc in sets]))))
    out = []
    for name, scored in scored_sets:
        curve = operating_curve(scored, 1.0, thresholds, det, step_ms, max_on_fraction)
        without = curve_without_kind(curve, scored, 1.0, det, step_ms)
        clip_scores = scored.clip_probs(1.0).max(axis=1)
        recall_without = at(without) if without is not None else None
        accepts = None
        if recall_without is not None and "confusable_false_accept_rate" in curve:
            accepts = {t: None if recall_without[t] is None else confusable_rate_at_fah(without, curve, t)
                       for t in fah_points}
        per_engine = None
        if engines is not None:
            wo_thr = recall_at_fah(without, 0.5)[1] if without is not None else None
            rows = by_voice(scored, 1.0, 0.5, curve, det, step_ms, engines, {"wo": wo_thr})
            per_engine = {e: {"positive_clips": float(r["positive_clips"]), "recall_at_0p5_fah": r["recall_at_0p5_fah"],
                              "recall_at_0p5_fah_without_confusables": r["recall_at_wo"],
                              "confusable_false_accepts_without_confusables": r["confusable_false_accept_rate_at_wo"]}
                          for e, r in rows.items()}
        out.append(Comparison(name, at(curve), recall_without, float(eer(scored.label, clip_scores)[0]), accepts,
                              per_engine))
    return out


def markdown_table(rows: list[Comparison], split: str, fah_points: tuple[float, ...] = FAH_POINTS) -> str:
    pts = " / ".join(f"{p:g}" for p in fah_points)
    lines = [(f"| model | {split}: recall at {pts} FA/h | without the stream's confusables | confusable clips "
              "accepted there | clip EER |"),
             "|---|---|---|---|---|"]

    def fmt(d: dict[float, float | None] | None, percent: bool = False) -> str:
        if d is None:
            return "-"
        return " / ".join("-" if d[p] is None else f"{100 * d[p]:.1f}%" if percent else f"{d[p]:.2f}"
                          for p in fah_points)

    for r in rows:
        lines.append(f"| {r.name} | {fmt(r.recall)} | {fmt(r.recall_without_confusables)} | "
                     f"{fmt(r.confusable_false_accepts, percent=True)} | {r.eer:.3f} |")
    if any(r.by_engine for r in rows):
        lines += ["", ("| model | engine | positive clips | recall at 0.5 FA/h | without the stream's confusables | "
                       "confusable clips accepted there |"), "|---|---|---|---|---|---|"]
        for r in rows:
            for engine, e in sorted((r.by_engine or {}).items()):
                lines.append(f"| {r.name} | {engine} | {int(e['positive_clips'])} | {e['recall_at_0p5_fah']:.2f} | "
                             f"{e['recall_at_0p5_fah_without_confusables']:.2f} | "
                             f"{100 * e['confusable_false_accepts_without_confusables']:.1f}% |")
    return "\n".join(lines)
