"""Evaluation metrics (SPEC 4.4, 4.5): false alarms per hour with a Poisson interval, per-clip EER / ROC-AUC
/ pAUC, threshold metrics, calibration error, and the recall-vs-FAH operating curve.

No torch here: the evaluate stage and the runtime report use it on plain arrays.

Degenerate inputs are errors, not NaNs: empty arrays, NaN/inf scores, labels other than 0/1, and (for the
ranking metrics) a single class raise :class:`ValueError` naming the problem. Where a quantity has a natural
value in an edge case (a ratio with a zero denominator in :func:`binary_metrics`, zero false alarms), the
value is documented on the function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import chi2
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "area_under_recall_fah",
    "binary_metrics",
    "confusion_by_kind",
    "eer",
    "expected_calibration_error",
    "false_alarm_rate",
    "false_alarm_rates_by_group",
    "latency_summary",
    "operating_curve",
    "pauc_norm",
    "pauc_std",
    "poisson_interval",
    "recall_at_fah",
    "roc_auc",
    "select_operating_point",
]


# ------------------------------------------------------------------------------------------ validation


def _labels(labels: Any, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be 0/1 numbers or booleans, got dtype {arr.dtype}")
    if not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"{name} must be 0 or 1, found {bad.tolist()}")
    return arr.astype(np.int64)


def _scores(scores: Any, n: int, name: str = "scores") -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but labels has {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/inf value(s)")
    return arr


def _binary_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(labels)
    s = _scores(scores, y.shape[0])
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        only = "positive" if n_pos else "negative"
        raise ValueError(
            f"ranking metrics need both positive and negative clips; all {y.shape[0]} clips are {only}"
        )
    return y, s


def _max_fpr(max_fpr: float) -> float:
    p = float(max_fpr)
    if not (0.0 < p <= 1.0):
        raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
    return p


# -------------------------------------------------------------------------------------- false alarms


def poisson_interval(k: int, exposure: float = 1.0, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood 1936) two-sided confidence interval for a Poisson rate: ``k`` events in ``exposure``.

    ``lo = chi2.ppf(a/2, 2k) / 2``, ``hi = chi2.ppf(1 - a/2, 2k + 2) / 2`` with ``a = 1 - conf``, both divided
    by ``exposure``; ``lo = 0`` when ``k = 0``. At 95%: ``k=0 -> (0, 3.689)``, ``k=1 -> (0.0253, 5.572)``.
    Note the SPEC's "zero events only shows FAH < 3/H" is the *one-sided* 95% bound (-ln 0.05 = 2.996);
    this function reports the upper end of the *two-sided* interval (-ln 0.025 = 3.689), the more cautious of
    the two, so that the same interval is used for every k.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"event count must be a non-negative integer, got {k!r}")
    exposure = float(exposure)
    if not (math.isfinite(exposure) and exposure > 0.0):
        raise ValueError(f"exposure must be a positive finite number, got {exposure}")
    if not (0.0 < conf < 1.0):
        raise ValueError(f"conf must lie in (0, 1), got {conf}")
    k = int(k)
    a = 1.0 - conf
    lo = 0.0 if k == 0 else float(chi2.ppf(a / 2.0, 2 * k)) / 2.0
    hi = float(chi2.ppf(1.0 - a / 2.0, 2 * k + 2)) / 2.0
    return lo / exposure, hi / exposure


def false_alarm_rate(n_events: int, hours: float, conf: float = 0.95) -> dict[str, float]:
    """False alarms per hour on negative-only audio (SPEC 4.4) with its Garwood interval.

    Returns ``{fah, fah_ci_low, fah_ci_high, false_alarms, negative_hours}``. Zero events in H hours gives
    ``fah = 0`` and ``fah_ci_high = 3.689 / H`` (see :func:`poisson_interval`).
    """
    hours = float(hours)
    if not (math.isfinite(hours) and hours > 0.0):
        raise ValueError(f"negative audio duration must be > 0 hours, got {hours}")
    lo, hi = poisson_interval(n_events, hours, conf)
    return {
        "fah": int(n_events) / hours,
        "fah_ci_low": lo,
        "fah_ci_high": hi,
        "false_alarms": int(n_events),
        "negative_hours": hours,
    }


def false_alarm_rates_by_group(
    events: Mapping[str, int], hours: Mapping[str, float], conf: float = 0.95,
) -> dict[str, dict[str, float | int]]:
    """FAH per kind of negative audio: ``{group: {false_alarms, hours, fah, fah_ci_low, fah_ci_high}}``.

    ``hours[g]`` is how much audio of group ``g`` the stream holds, ``events[g]`` how many false alarms were
    attributed to it; ``fah = events / hours`` with the Garwood interval of :func:`poisson_interval`. Groups
    with no audio (0 hours) are left out; a false alarm in a group without audio is an error.
    """
    out: dict[str, dict[str, float | int]] = {}
    for group in sorted(set(events) | set(hours)):
        h = float(hours.get(group, 0.0))
        k = events.get(group, 0)
        if not (math.isfinite(h) and h >= 0.0):
            raise ValueError(f"hours of {group!r} must be finite and >= 0, got {h}")
        if h == 0.0:
            if k:
                raise ValueError(f"{k} false alarm(s) attributed to {group!r}, which has no audio")
            continue
        r = false_alarm_rate(k, h, conf)
        out[group] = {"false_alarms": r["false_alarms"], "hours": h, "fah": r["fah"],
                      "fah_ci_low": r["fah_ci_low"], "fah_ci_high": r["fah_ci_high"]}
    return out


def latency_summary(latency_s: Any, n_clips: int) -> dict[str, float | int | None]:
    """Detection latency over positive clips: ``latency_s`` holds one value per *detected* clip (seconds from
    the phrase's end to the detection; negative when the detector fired before the phrase ended), out of
    ``n_clips`` positive clips.

    Returns ``n_clips``, ``n_detected``, ``detected_share`` (n_detected / n_clips, 0.0 without clips),
    ``median_s``, ``p95_s`` (numpy's linear-interpolation percentile), ``mean_s``, ``min_s``, ``max_s`` and
    ``early_share`` (share of detected clips with latency < 0). The statistics are ``None`` when nothing
    was detected (no NaN in metrics files).
    """
    lat = np.asarray(latency_s, dtype=np.float64).ravel()
    if not np.isfinite(lat).all():
        raise ValueError("latencies must be finite")
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < lat.size:
        raise ValueError(f"n_clips must be an integer >= the {lat.size} detected clip(s), got {n_clips!r}")
    n = int(n_clips)
    out: dict[str, float | int | None] = {"n_clips": n, "n_detected": int(lat.size),
                                          "detected_share": lat.size / n if n else 0.0}
    if lat.size == 0:
        out.update(dict.fromkeys(("median_s", "p95_s", "mean_s", "min_s", "max_s", "early_share")))
        return out
    out.update({"median_s": float(np.median(lat)), "p95_s": float(np.percentile(lat, 95)),
                "mean_s": float(lat.mean()), "min_s": float(lat.min()), "max_s": float(lat.max()),
                "early_share": float((lat < 0).mean())})
    return out


def confusion_by_kind(kinds: Any, detected: Any, names: Any) -> dict[str, dict[str, int]]:
    """Clip counts per kind and decision: ``{name: {"detected": n, "not_detected": m}}`` for every name in
    ``names`` (zeros for a kind with no clips). ``kinds[i]`` is clip i's kind, ``detected[i]`` whether the
    detector fired on it; a clip whose kind is not in ``names`` is an error (it would silently vanish)."""
    k = np.asarray(kinds)
    d = np.asarray(detected)
    if k.ndim != 1 or d.shape != k.shape:
        raise ValueError(f"kinds and detected must be 1-D and equally long, got {k.shape} and {d.shape}")
    d = d.astype(bool)
    names = list(names)
    unknown = sorted({str(x) for x in k.tolist()} - {str(n) for n in names})
    if unknown:
        raise ValueError(f"clips of kind(s) {unknown} are not among {names}")
    return {str(n): {"detected": int(np.sum((k == n) & d)), "not_detected": int(np.sum((k == n) & ~d))}
            for n in names}


# ------------------------------------------------------------------------------------ per-clip ranking


def eer(labels: Any, scores: Any) -> tuple[float, float]:
    """Equal error rate and its threshold, per clip (clip score = max frame score; higher = positive).

    ROC points come from sklearn (every distinct score, no points dropped); FNR = 1 - TPR. ``FPR - FNR`` is
    non-decreasing along the ROC; the EER is where it crosses 0, found by linear interpolation between the
    two ROC points that bracket the crossing (so EER = FPR = FNR exactly at that point). The reported
    threshold is interpolated the same way between the two points' thresholds (a clip is positive when
    ``score >= threshold``); when the lower point is the ROC origin (threshold +inf), the threshold of the
    other point is reported.
    """
    y, s = _binary_inputs(labels, scores)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    d = fpr - (1.0 - tpr)
    i = int(np.argmax(d >= 0.0))  # d[-1] = 1 > 0, so a crossing exists; d[0] = -1
    if d[i] == 0.0:
        return float(fpr[i]), float(thr[i])
    w = -d[i - 1] / (d[i] - d[i - 1])
    value = float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))
    if not np.isfinite(thr[i - 1]):
        threshold = float(thr[i])
    else:
        threshold = float(thr[i - 1] + w * (thr[i] - thr[i - 1]))
    return value, threshold


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (sklearn ``roc_auc_score``); needs both classes."""
    y, s = _binary_inputs(labels, scores)
    return float(roc_auc_score(y, s))


def pauc_std(labels: Any, scores: Any, max_fpr: float) -> float:
    """Standardised partial AUC: sklearn ``roc_auc_score(max_fpr=p)`` (McClish: 0.5 = chance, 1 = perfect)."""
    y, s = _binary_inputs(labels, scores)
    return float(roc_auc_score(y, s, max_fpr=_max_fpr(max_fpr)))


def _partial_area(fpr: np.ndarray, tpr: np.ndarray, p: float) -> float:
    """Area under TPR over FPR in [0, p], the ROC linearly interpolated at FPR = p."""
    j = int(np.searchsorted(fpr, p, side="left"))  # first point with fpr >= p; fpr[0] = 0 < p so j >= 1
    x = np.append(fpr[:j], p)
    slope = (tpr[j] - tpr[j - 1]) / (fpr[j] - fpr[j - 1])
    yv = np.append(tpr[:j], tpr[j - 1] + (p - fpr[j - 1]) * slope)
    return float(np.sum(np.diff(x) * (yv[1:] + yv[:-1]) / 2.0))


def pauc_norm(labels: Any, scores: Any, max_fpr: float) -> float:
    """Normalised partial AUC: ``(1/p) *`` area under TPR over FPR in [0, p] (0 = worst, 1 = perfect).

    The ROC (sklearn points, straight lines between them) is cut at FPR = p by linear interpolation of the
    segment that crosses p. Unlike :func:`pauc_std` this is not rescaled so that chance is 0.5 (chance = p/2).
    """
    y, s = _binary_inputs(labels, scores)
    p = _max_fpr(max_fpr)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return _partial_area(fpr, tpr, p) / p


# ---------------------------------------------------------------------------------------- thresholded


def binary_metrics(labels: Any, predicted: Any) -> dict[str, float | int]:
    """Confusion counts and rates for hard decisions (at the operating threshold).

    Returns ``accuracy, precision, recall, f1, fpr, fnr`` (floats) and ``tp, fp, tn, fn`` (ints).
    Zero denominators: any ratio whose denominator is 0 is reported as 0.0 (sklearn's ``zero_division=0``):
    precision with no predicted positives, recall and FNR with no positive labels, FPR with no negative
    labels, F1 when precision + recall = 0. No NaN is ever returned. Empty input raises ValueError.
    """
    y = _labels(labels)
    pred = _labels(predicted, "predicted")
    if pred.shape[0] != y.shape[0]:
        raise ValueError(f"predicted has {pred.shape[0]} values but labels has {y.shape[0]}")
    tp = int(np.sum((y == 1) & (pred == 1)))
    fp = int(np.sum((y == 0) & (pred == 1)))
    tn = int(np.sum((y == 0) & (pred == 0)))
    fn = int(np.sum((y == 1) & (pred == 0)))

    def ratio(a: float, b: float) -> float:
        return float(a) / float(b) if b else 0.0

    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, y.shape[0]),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2.0 * precision * recall, precision + recall),
        "fpr": ratio(fp, fp + tn),
        "fnr": ratio(fn, fn + tp),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017), confidence of the predicted class, equal-width bins.

    ``probs``: either 1-D positive-class probabilities (binary; the prediction is positive when p >= 0.5)
    or 2-D ``(N, C)`` class probabilities (prediction = argmax, first class on ties). Confidence = the
    probability of the predicted class; bins are ``(b/n, (b+1)/n]`` (the first one also holds 0).
    ``ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|``; empty bins contribute nothing.
    """
    y = _labels(labels) if np.asarray(probs).ndim == 1 else np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
        pred = (p[:, 1] >= 0.5).astype(np.int64)
    elif p.ndim == 2:
        if y.ndim != 1 or y.size == 0:
            raise ValueError("labels must be a non-empty 1-D array of class indices")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(f"labels must be integers in [0, {p.shape[1]})")
        pred = np.argmax(p, axis=1)
    else:
        raise ValueError(f"probs must be 1-D or 2-D, got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but labels has {y.shape[0]}")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    conf = p[np.arange(p.shape[0]), pred]
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct, minlength=n_bins)
    used = counts > 0
    gaps = np.abs(sum_acc[used] / counts[used] - sum_conf[used] / counts[used])
    return float(np.sum(counts[used] / p.shape[0] * gaps))


# ---------------------------------------------------------------------------------- operating curve


def operating_curve(
    thresholds: Any, stream_detections: Any, negative_hours: float, positive_detected: Any
) -> dict[str, np.ndarray]:
    """Recall and FAH of the streaming detector at every grid threshold (SPEC 4.4).

    ``stream_detections[j]``: detections on the negative stream at ``thresholds[j]``;
    ``positive_detected[c, j]``: whether positive clip ``c`` gives a detection at ``thresholds[j]``.
    Returns arrays ``threshold``, ``fah`` (detections / negative hours), ``recall`` (fraction of positive
    clips detected) and ``false_alarms`` (the counts), all in the order of ``thresholds``.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    det = np.asarray(stream_detections)
    pos = np.asarray(positive_detected)
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D array, got shape {thr.shape}")
    if not np.isfinite(thr).all():
        raise ValueError("thresholds must be finite")
    if det.shape != thr.shape:
        raise ValueError(f"stream_detections has shape {det.shape}, expected {thr.shape} (one per threshold)")
    if det.size and (
        not np.issubdtype(det.dtype, np.number) or (det < 0).any() or (det != np.round(det)).any()
    ):
        raise ValueError("stream_detections must be non-negative integer counts")
    hours = float(negative_hours)
    if not (math.isfinite(hours) and hours > 0.0):
        raise ValueError(f"negative_hours must be > 0, got {negative_hours}")
    if pos.ndim != 2 or pos.shape[1] != thr.shape[0]:
        raise ValueError(f"positive_detected must have shape (n_clips, {thr.shape[0]}), got {pos.shape}")
    if pos.shape[0] == 0:
        raise ValueError("recall needs at least one positive clip; positive_detected has none")
    return {
        "threshold": thr.copy(),
        "fah": det.astype(np.float64) / hours,
        "recall": pos.astype(bool).mean(axis=0),
        "false_alarms": det.astype(np.int64),
    }


def _curve_arrays(curve: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        thr = np.asarray(curve["threshold"], dtype=np.float64)
        fah = np.asarray(curve["fah"], dtype=np.float64)
        rec = np.asarray(curve["recall"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(
            f"operating curve lacks key {exc.args[0]!r} (needs threshold, fah, recall)"
        ) from None
    if thr.ndim != 1 or thr.size == 0 or fah.shape != thr.shape or rec.shape != thr.shape:
        raise ValueError(
            f"operating curve arrays must be non-empty, 1-D and equally long; got threshold {thr.shape}, "
            f"fah {fah.shape}, recall {rec.shape}"
        )
    if not (np.isfinite(thr).all() and np.isfinite(fah).all() and np.isfinite(rec).all()):
        raise ValueError("operating curve contains NaN/inf")
    if (fah < 0).any() or (rec < 0).any() or (rec > 1).any():
        raise ValueError("operating curve needs fah >= 0 and recall in [0, 1]")
    return thr, fah, rec


def select_operating_point(curve: Mapping[str, Any], target_fah: float) -> tuple[int, bool]:
    """Index of the operating point for ``target_fah`` and whether the target is met (SPEC 4.4).

    Among points with ``fah <= target_fah``: highest recall, then lowest FAH, then highest threshold.
    If none qualifies: the lowest FAH, then highest threshold, with ``met = False``.
    Shared by :func:`recall_at_fah` and ``wakeword.calibration.choose_threshold`` so both pick the same point.
    """
    thr, fah, rec = _curve_arrays(curve)
    target = float(target_fah)
    if not (math.isfinite(target) and target >= 0.0):
        raise ValueError(f"target_fah must be a finite number >= 0, got {target_fah}")
    ok = np.flatnonzero(fah <= target)
    if ok.size:
        # lexsort: last key is primary. Want max recall, min fah, max threshold.
        order = np.lexsort((-thr[ok], fah[ok], -rec[ok]))
        return int(ok[order[0]]), True
    order = np.lexsort((-thr, fah))
    return int(order[0]), False


def recall_at_fah(curve: Mapping[str, Any], target: float) -> tuple[float, float | None]:
    """Highest recall whose FAH <= ``target`` and its threshold (ties as :func:`select_operating_point`).

    If no grid threshold reaches the target, returns ``(0.0, None)``: only a detector that never fires
    (recall 0) is known to meet it.
    """
    idx, met = select_operating_point(curve, target)
    if not met:
        return 0.0, None
    return float(np.asarray(curve["recall"], dtype=np.float64)[idx]), float(
        np.asarray(curve["threshold"], dtype=np.float64)[idx]
    )


def area_under_recall_fah(curve: Mapping[str, Any], max_fah: float = 2.0) -> float:
    """Area under recall over FAH in [0, max_fah], divided by max_fah (0 = useless, 1 = perfect).

    The curve integrated is the *achievable* recall ``R(f) = recall_at_fah(curve, f)``: the best recall of
    any grid threshold whose FAH <= f. It is a non-decreasing step function (no interpolation between grid
    points, which FAH does not allow: it need not be monotone in the threshold). Closing the ends: below the
    smallest FAH on the grid R = 0 (the never-firing detector; if some threshold has FAH 0, R(0) is its
    recall); above the largest grid FAH that is <= max_fah, R stays at its last value up to max_fah. The
    result equals the mean of ``recall_at_fah(curve, f)`` for f uniform on [0, max_fah].
    """
    _, fah, rec = _curve_arrays(curve)
    m = float(max_fah)
    if not (math.isfinite(m) and m > 0.0):
        raise ValueError(f"max_fah must be > 0, got {max_fah}")
    keep = fah <= m
    if not keep.any():
        return 0.0
    order = np.argsort(fah[keep], kind="stable")
    f = fah[keep][order]
    r = np.maximum.accumulate(rec[keep][order])
    # R(x) = r[i] for f[i] <= x < f[i+1]; the last step runs to m.
    widths = np.diff(np.append(f, m))
    return float(np.sum(widths * r) / m)
