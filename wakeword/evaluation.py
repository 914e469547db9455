"""Scoring a feature set with any logit function, and the metrics of SPEC 4.4-4.5 on the result.

The same code path evaluates the float torch model and the deployed int8 TFLite model, so their numbers
differ only by the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wakeword import metrics
from wakeword.detector import (
    DetectorConfig,
    clips_detected_over_thresholds,
    detect,
    detections_over_thresholds,
    on_fraction_over_thresholds,
)
from wakeword.featureset import KIND_CODES, FeatureSet, load_split, load_stream, read_index
from wakeword.params import DetectorParams
from wakeword.scoring import LogitFn, clip_logits, probabilities, stream_logits, window_labels

FAH_TARGETS = (0.1, 0.5, 1.0, 2.0)


@dataclass
class ScoredSet:
    clip_logits: np.ndarray  # (N, steps, 2)
    stream_logits: np.ndarray  # (n, 2)
    kind: np.ndarray  # (N,)
    label: np.ndarray  # (N,)
    phrase_start_frame: np.ndarray
    phrase_end_frame: np.ndarray
    stream_hours: float

    def clip_probs(self, temperature: float) -> np.ndarray:
        return probabilities(self.clip_logits, temperature)

    def stream_probs(self, temperature: float) -> np.ndarray:
        return probabilities(self.stream_logits, temperature)


def score_set(
    logit_fn: LogitFn, fs: FeatureSet, stream: np.ndarray, stream_hours: float, window: int, step: int,
) -> ScoredSet:
    return ScoredSet(
        clip_logits=clip_logits(logit_fn, fs.x, window, step),
        stream_logits=stream_logits(logit_fn, stream, window, step),
        kind=fs.kind, label=fs.y.astype(np.int64), phrase_start_frame=fs.phrase_start_frame,
        phrase_end_frame=fs.phrase_end_frame, stream_hours=stream_hours,
    )


def operating_curve(
    scored: ScoredSet, temperature: float, thresholds: np.ndarray, det: DetectorParams, step_ms: int,
    max_on_fraction: float,
) -> dict[str, np.ndarray]:
    """FAH on the stream and recall on positive clips for each threshold_on, through the detector.

    Operating points where the detector stays on for more than ``max_on_fraction`` of the negative stream
    are left out. There the off threshold sits below the ordinary background scores: the detector turns on
    once and stays on, so the stream counts very few false alarms while the detector is deaf to anything
    after them (it only fires on a rising edge). Keeping those points would make the lowest thresholds look
    like the best ones.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    # the grid keeps the configured hysteresis: build the base config at 1.0 so no clamping shrinks the gap
    cfg = DetectorConfig.from_params(det, 1.0, step_ms)
    stream_probs = scored.stream_probs(temperature)
    on_fraction = on_fraction_over_thresholds(stream_probs, thresholds, cfg)
    usable = on_fraction <= max_on_fraction
    if not usable.any():
        raise ValueError(
            f"at every threshold the detector is on for more than {max_on_fraction} of the negative stream "
            f"(least: {on_fraction.min():.3f}); the model scores the stream too high to pick a threshold"
        )
    thresholds, on_fraction = thresholds[usable], on_fraction[usable]
    stream_events = detections_over_thresholds(stream_probs, thresholds, cfg)
    probs = scored.clip_probs(temperature)
    pos = list(probs[scored.kind == KIND_CODES["positive"]])
    detected = clips_detected_over_thresholds(pos, thresholds, cfg)
    curve = metrics.operating_curve(thresholds, stream_events, scored.stream_hours, detected)
    curve["stream_on_fraction"] = on_fraction
    conf = list(probs[scored.kind == KIND_CODES["hard_negative"]])
    if conf:
        curve["confusable_false_accept_rate"] = clips_detected_over_thresholds(conf, thresholds, cfg).mean(axis=0)
    return curve


def evaluate_scored(
    scored: ScoredSet, temperature: float, threshold: float, target_fah: float, det: DetectorParams,
    step_ms: int, thresholds: np.ndarray, max_on_fraction: float,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Every headline metric at the calibrated operating point, plus the FAH/recall curve rows."""
    cfg = DetectorConfig.from_params(det, threshold, step_ms)
    probs = scored.clip_probs(temperature)
    clip_scores = probs.max(axis=1)
    detected = np.array([detect(p, cfg).shape[0] > 0 for p in probs])
    labels = scored.label
    stream_probs = scored.stream_probs(temperature)
    stream_events = int(detect(stream_probs, cfg).shape[0])

    out: dict[str, Any] = {"threshold": float(threshold), "target_fah": float(target_fah)}
    fa = metrics.false_alarm_rate(stream_events, scored.stream_hours)
    out.update({k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in fa.items()})
    out["recall_at_target"] = float(detected[labels == 1].mean())
    eer, eer_thr = metrics.eer(labels, clip_scores)
    out["eer"], out["eer_threshold"] = float(eer), float(eer_thr)
    out["roc_auc"] = float(metrics.roc_auc(labels, clip_scores))
    for p, name in ((0.1, "fpr10"), (0.05, "fpr5")):
        out[f"pauc_std_{name}"] = float(metrics.pauc_std(labels, clip_scores, p))
        out[f"pauc_norm_{name}"] = float(metrics.pauc_norm(labels, clip_scores, p))
    out["pauc"] = out["pauc_norm_fpr10"]
    out["clip"] = {k: (float(v) if isinstance(v, (float, np.floating)) else int(v))
                   for k, v in metrics.binary_metrics(labels, detected.astype(np.int64)).items()}
    conf = scored.kind == KIND_CODES["hard_negative"]
    out["confusable_false_accept_rate"] = float(detected[conf].mean()) if conf.any() else 0.0
    out["stream_on_fraction"] = float(on_fraction_over_thresholds(stream_probs, np.array([threshold]), cfg)[0])
    curve = operating_curve(scored, temperature, thresholds, det, step_ms, max_on_fraction)
    for target in FAH_TARGETS:
        recall, _ = metrics.recall_at_fah(curve, target)
        out[f"recall_at_{str(target).replace('.', 'p')}_fah"] = float(recall)
    out["area_recall_fah_0_2"] = float(metrics.area_under_recall_fah(curve, 2.0))
    out["counts"] = {
        "positive_clips": int((labels == 1).sum()), "negative_clips": int((labels == 0).sum()),
        "confusable_clips": int(conf.sum()), "stream_windows": int(scored.stream_logits.shape[0]),
    }
    conf_curve = curve.get("confusable_false_accept_rate", np.zeros_like(curve["threshold"]))
    rows = [
        {"threshold": float(t), "fah": float(f), "recall": float(r), "miss_rate": float(1.0 - r),
         "confusable_false_accept_rate": float(c), "stream_on_fraction": float(o)}
        for t, f, r, c, o in zip(curve["threshold"], curve["fah"], curve["recall"], conf_curve,
                                 curve["stream_on_fraction"])
    ]
    return out, rows


def evaluation_splits(features_dir: Path) -> list[str]:
    """The splits a model is evaluated on: test, and heldout (unseen engines) when the features have it."""
    splits = read_index(features_dir).get("splits", {})
    return ["test"] + (["heldout"] if "heldout" in splits else [])


def evaluate_split(
    logit_fn: LogitFn, features_dir: Path, split: str, calibration: dict[str, Any], det: DetectorParams,
    step_ms: int, thresholds: np.ndarray, max_on_fraction: float,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Score one split's clips and stream with ``logit_fn`` and compute every metric at the calibrated
    operating point (:func:`evaluate_scored`)."""
    index = read_index(features_dir)
    stream, hours = load_stream(features_dir, split)
    scored = score_set(logit_fn, load_split(features_dir, split), stream, hours, int(index["window_frames"]),
                       int(index["step_frames"]))
    return evaluate_scored(scored, calibration["temperature"], calibration["threshold"], calibration["target_fah"],
                           det, step_ms, thresholds, max_on_fraction)


def labeled_windows(scored: ScoredSet, window: int, step: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Window logits and labels of the clips, ambiguous (phrase cut) windows left out."""
    lab = window_labels(scored.phrase_start_frame, scored.phrase_end_frame, n_frames, window, step)
    keep = lab >= 0
    return scored.clip_logits[keep], lab[keep].astype(np.int64)


def calibrate_scored(
    scored: ScoredSet, n_frames: int, window: int, step: int, det: DetectorParams, step_ms: int,
    target_fah: float, threshold_step: float, iters: int, lr: float, max_on_fraction: float,
) -> dict[str, Any]:
    """Temperature on labelled validation windows (SPEC 4.6), then the threshold meeting ``target_fah`` on
    the validation stream through the detector (SPEC 4.4). Returns the calibration artifact."""
    from wakeword.calibration import choose_threshold, fit_temperature, threshold_grid

    logits, labels = labeled_windows(scored, window, step, n_frames)
    temperature = fit_temperature(logits, labels, iters=iters, lr=lr)
    ece_before = metrics.expected_calibration_error(probabilities(logits, 1.0), labels)
    ece_after = metrics.expected_calibration_error(probabilities(logits, temperature), labels)
    thresholds = threshold_grid(threshold_step)
    curve = operating_curve(scored, temperature, thresholds, det, step_ms, max_on_fraction)
    choice = choose_threshold(curve, target_fah)
    cfg = DetectorConfig.from_params(det, float(choice["threshold"]), step_ms)
    return {
        "temperature": float(temperature),
        "threshold": float(choice["threshold"]),
        "target_fah": float(target_fah),
        "target_met": bool(choice["met"]),
        "val_fah": float(choice["fah"]),
        "val_recall": float(choice["recall"]),
        "val_negative_hours": float(scored.stream_hours),
        "ece_before": float(ece_before),
        "ece_after": float(ece_after),
        "detector": cfg.to_dict(),
        "window_frames": int(window),
        "step_frames": int(step),
    }


class CalibrationError(ValueError):
    """A calibration artifact is missing or malformed."""


def load_calibration(path: str | Path) -> dict[str, Any]:
    import json

    path = Path(path)
    try:
        cal = json.loads(path.read_text())
        for key in ("temperature", "threshold", "target_fah", "detector"):
            cal[key]
        if not (float(cal["temperature"]) > 0 and 0.0 <= float(cal["threshold"]) <= 1.0):
            raise ValueError("temperature must be > 0 and threshold in [0, 1]")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: not a usable calibration file ({exc})") from None
    return cal
