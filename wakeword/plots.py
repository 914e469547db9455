"""Plot data rows, offline rendering and the one-page report.

Three parts, all pure functions of arrays or files (the stages call them; nothing here reads params):

* **Rows** (JSON-serialisable lists of dicts, the shape DVC plots read) from numpy arrays:
  :func:`roc_rows`, :func:`det_rows`, :func:`score_histogram_rows`, :func:`reliability_rows`. The FAH/recall
  curve rows come from ``wakeword.evaluation`` (``metrics/plots/*_curve.json``).
* **Offline rendering**. ``dvc plots show`` writes HTML that loads Vega from a public CDN, so it is blank
  offline. Two routes that need no network at run time, both from ``vl-convert-python`` (a pip wheel that
  embeds Vega, Vega-Lite and vega-embed in a compiled binary):

  - PNG/SVG images: Vega-Lite specs built here (:func:`fah_recall_spec`, :func:`roc_spec`, :func:`det_spec`,
    :func:`histogram_spec`, :func:`reliability_spec`, :func:`training_spec`) rendered by :func:`render`;
    :func:`render_all` renders every plot file found under a metrics directory, and
    :func:`render_dvc_plots_json` renders the output of ``dvc plots show --json`` / ``dvc plots diff --json``.
  - An HTML template for ``dvc plots show --html-template FILE`` / ``dvc plots diff``:
    :func:`write_offline_template` inlines the JS bundle of ``vl_convert.javascript_bundle()`` and leaves out
    DVC's ``{scripts}`` placeholder, so DVC never inserts its CDN ``<script src=...>`` tags.
* **Report**: :func:`load_metrics` and :func:`write_report` write ``metrics/report.md``: headline detection
  table (float and int8, test and held-out), size, calibration, training, and the images by relative path.

Rounding: row values are rounded to 6 decimals (like the metrics files), so the files are small and stable.
Every output file is written atomically (temporary file, then rename): no partial outputs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_curve

from wakeword.featureset import KIND_CODES

__all__ = [
    "CURVE_GLOB",
    "DET_GLOB",
    "HIST_GLOB",
    "RELIABILITY_GLOB",
    "ROC_GLOB",
    "VL_VERSION",
    "det_rows",
    "det_spec",
    "fah_recall_spec",
    "histogram_spec",
    "load_metrics",
    "offline_template_html",
    "reliability_rows",
    "reliability_spec",
    "render",
    "render_all",
    "render_dvc_plots_json",
    "render_png",
    "report_images",
    "roc_rows",
    "roc_spec",
    "score_histogram_rows",
    "training_spec",
    "write_offline_template",
    "write_report",
    "write_rows",
]

MAX_POINTS = 500
DET_EPS = 1e-4  # FPR/FNR of 0 (or 1) are drawn at this rate on the probit axes (-3.72 sigma)
KIND_ORDER = ("positive", "negative", "hard_negative", "background")
# Vega-Lite 5: the version DVC's own plot templates declare ($schema .../vega-lite/v5.json)
VL_VERSION = "5.21"
VL_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an identifier only: nothing fetches it
DIGITS = 6

# file names render_all looks for under <metrics_dir>/plots (what the stages should write)
CURVE_GLOB = "*_curve.json"  # FAH/recall rows (evaluate, tflite): {threshold, fah, recall, miss_rate, ...}
ROC_GLOB = "*_roc.json"  # roc_rows
DET_GLOB = "*_det.json"  # det_rows
HIST_GLOB = "*_hist.json"  # score_histogram_rows
RELIABILITY_GLOB = "*_reliability.json"  # reliability_rows
TRAIN_TSV_DIR = Path("train") / "plots" / "metrics"  # DVCLive step series

Curves = Mapping[str, Sequence[Mapping[str, Any]]]  # {curve name: rows}
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}
_FAH_TICKS = (0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_PROBIT_TICKS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95,
                 0.99)


# ------------------------------------------------------------------------------------------- helpers


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def _binary(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"scores has {s.shape[0]} values but labels has {y.shape[0]}")
    if y.size == 0:
        raise ValueError("labels is empty")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number) or not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    n_pos = int(y.sum())
    if n_pos in (0, y.shape[0]):
        raise ValueError(f"ROC/DET rows need both positive and negative clips; all {y.shape[0]} are "
                         f"{'positive' if n_pos else 'negative'}")
    return y.astype(np.int64), s


def _decimate(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices of ``range(n)``, evenly spread, always the first and the last."""
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def _roc(labels: Any, scores: Any, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = _binary(labels, scores)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    # sklearn's first threshold is +inf (no clip passes): JSON has no inf, so use the legacy max(score) + 1
    thr = np.where(np.isfinite(thr), thr, s.max() + 1.0)
    idx = _decimate(fpr.shape[0], max_points)
    return fpr[idx], tpr[idx], thr[idx]


def _probit(p: Any) -> np.ndarray:
    return norm.ppf(np.clip(np.asarray(p, dtype=np.float64), DET_EPS, 1.0 - DET_EPS))


def _write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write plot rows as a JSON list (the format DVC plots read), atomically."""
    _write_atomic(Path(path), (json.dumps(list(rows), indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


# ---------------------------------------------------------------------------------------------- rows


def roc_rows(labels: Any, scores: Any, max_points: int = MAX_POINTS) -> list[dict[str, float]]:
    """ROC points ``[{fpr, tpr, threshold}]`` per clip (higher score = positive; positive when >= threshold).

    sklearn ``roc_curve`` (collinear points dropped), then at most ``max_points`` points evenly spread over
    the curve, always keeping both ends (0, 0) and (1, 1). The first point's threshold is ``max(score) + 1``
    (sklearn's +inf, which JSON cannot hold).
    """
    fpr, tpr, thr = _roc(labels, scores, max_points)
    return [{"fpr": _r(f), "tpr": _r(t), "threshold": _r(h)} for f, t, h in zip(fpr, tpr, thr)]


def det_rows(labels: Any, scores: Any, max_points: int = MAX_POINTS) -> list[dict[str, float]]:
    """DET points ``[{fpr, fnr, threshold, fpr_probit, fnr_probit}]`` (FNR = 1 - TPR, the ROC points).

    DVC's templates have no probit scale, so the rows also carry the probit (standard normal quantile)
    coordinates the DET chart plots on linear axes; rates of 0 or 1 are clipped to ``DET_EPS`` first.
    """
    fpr, tpr, thr = _roc(labels, scores, max_points)
    fnr = 1.0 - tpr
    fp, fn = _probit(fpr), _probit(fnr)
    return [
        {"fpr": _r(a), "fnr": _r(b), "threshold": _r(h), "fpr_probit": _r(c), "fnr_probit": _r(d)}
        for a, b, h, c, d in zip(fpr, fnr, thr, fp, fn)
    ]


def _kind_names(kinds: Any, n: int) -> np.ndarray:
    k = np.asarray(kinds)
    if k.ndim != 1 or k.shape[0] != n:
        raise ValueError(f"kinds must be 1-D with one entry per score ({n}), got shape {k.shape}")
    if k.size and np.issubdtype(k.dtype, np.integer):
        return np.array([_KIND_NAMES.get(int(c), str(int(c))) for c in k], dtype=object)
    return k.astype(str).astype(object)


def score_histogram_rows(
    scores: Any, kinds: Any, bins: int = 50, value_range: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Histogram of clip scores per clip kind: ``[{bin_start, bin_end, count, fraction, kind}]``.

    ``kinds``: one name per score (``positive``, ``negative``, ``hard_negative``, ``background``, ...) or the
    integer codes of ``wakeword.featureset.KIND_CODES``. All kinds share ``bins`` equal-width bins over
    ``value_range`` (default ``(0, 1)`` when every score is a probability, else the scores' min..max); as in
    ``np.histogram`` a bin is ``[start, end)``, the last one ``[start, end]``; scores outside the range count
    in the end bins. ``fraction`` = count / clips of that kind (kinds differ a lot in size). Every bin of
    every kind present is a row (zero counts included), kinds in the order positive, negative,
    hard_negative, background, then others by name.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    names = _kind_names(kinds, s.shape[0])
    if value_range is None:
        lo, hi = (0.0, 1.0) if s.min() >= 0.0 and s.max() <= 1.0 else (float(s.min()), float(s.max()))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"value_range must be two finite numbers with low < high, got {value_range}")
    edges = np.linspace(lo, hi, int(bins) + 1)
    present = set(names.tolist())
    order = [k for k in KIND_ORDER if k in present] + sorted(present - set(KIND_ORDER))
    rows: list[dict[str, Any]] = []
    for kind in order:
        x = np.clip(s[names == kind], lo, hi)
        counts, _ = np.histogram(x, bins=edges)
        total = int(counts.sum())
        rows.extend(
            {"bin_start": _r(edges[b]), "bin_end": _r(edges[b + 1]), "count": int(c),
             "fraction": _r(c / total), "kind": kind}
            for b, c in enumerate(counts)
        )
    return rows


def reliability_rows(
    probs: Any, labels: Any, n_bins: int = 15, series: str | None = None,
) -> list[dict[str, Any]]:
    """Calibration (reliability) diagram rows ``[{bin, bin_lower, bin_upper, confidence, accuracy, count}]``.

    Exactly the binning of ``wakeword.metrics.expected_calibration_error``: confidence = probability of the
    predicted class (1-D positive-class probabilities: predicted positive when p >= 0.5; 2-D ``(N, C)``:
    argmax), equal-width bins ``(b/n, (b+1)/n]`` (the first also holds 0); ``confidence`` and ``accuracy``
    are the bin means. Empty bins give no row, so ``sum(count / N * |accuracy - confidence|)`` over the rows
    is the ECE. ``series`` (e.g. "before"/"after" temperature scaling) is added to every row when given.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if p.shape[:1] != y.shape:
        raise ValueError(f"probs has {p.shape[0] if p.ndim else 0} rows but labels has {y.shape[0]}")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if p.ndim == 1:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0 or 1 for 1-D probs")
        p = np.stack([1.0 - p, p], axis=1)
        pred = (p[:, 1] >= 0.5).astype(np.int64)
    elif p.ndim == 2:
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(f"labels must be integers in [0, {p.shape[1]})")
        pred = np.argmax(p, axis=1)
    else:
        raise ValueError(f"probs must be 1-D or 2-D, got shape {p.shape}")
    n_bins = int(n_bins)
    conf = p[np.arange(p.shape[0]), pred]
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b_of = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(b_of, minlength=n_bins)
    sum_conf = np.bincount(b_of, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b_of, weights=correct, minlength=n_bins)
    rows: list[dict[str, Any]] = []
    for b in np.flatnonzero(counts):
        row: dict[str, Any] = {
            "bin": int(b), "bin_lower": _r(edges[b]), "bin_upper": _r(edges[b + 1]),
            "confidence": _r(sum_conf[b] / counts[b]), "accuracy": _r(sum_acc[b] / counts[b]),
            "count": int(counts[b]),
        }
        if series is not None:
            row["series"] = str(series)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------- Vega-Lite specs


def _base(title: str, width: int = 440, height: int = 320) -> dict[str, Any]:
    return {
        "$schema": VL_SCHEMA,
        "title": title,
        "width": width,
        "height": height,
        "background": "white",
        "config": {"legend": {"orient": "bottom-right", "labelLimit": 240}, "axis": {"gridOpacity": 0.6}},
    }


def _tagged(curves: Curves, key: str = "curve") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, rows in curves.items():
        out.extend({**row, key: name, "_i": i} for i, row in enumerate(rows))
    return out


def _color(field: str = "curve", domain: Sequence[str] | None = None) -> dict[str, Any]:
    """Colour by name; a fixed ``domain`` (every curve name) keeps a curve's colour the same on all charts."""
    enc: dict[str, Any] = {"field": field, "type": "nominal", "title": None, "sort": "ascending"}
    if domain is not None:
        enc["scale"] = {"domain": sorted(set(domain))}
    return enc


def fah_recall_spec(
    curves: Curves, target_fah: float | None = None, title: str = "Recall vs false alarms per hour",
    color_domain: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Recall (positive clips) over false alarms per hour (negative stream), one line per curve.

    The FAH axis is symmetric-log (log-like above 0.1 FA/h, linear through 0), so a threshold with no false
    alarm stays on the chart at 0 instead of vanishing from a log axis. Points are joined as steps in the
    order of falling threshold (between two grid thresholds no other operating point exists). A dashed rule
    marks ``target_fah``.
    """
    values = _tagged(curves)
    fah_max = max([float(v.get("fah", 0.0)) for v in values] + [float(target_fah or 0.0), 1.0])
    ticks = [t for t in _FAH_TICKS if t <= fah_max * 1.01]
    if ticks[-1] < fah_max:
        ticks.append(next((t for t in _FAH_TICKS if t >= fah_max), _FAH_TICKS[-1]))
    layers: list[dict[str, Any]] = [{
        "data": {"values": values},
        "mark": {"type": "line", "point": {"size": 16}, "strokeWidth": 1.8, "clip": True,
                 "interpolate": "step-after"},
        "encoding": {
            "x": {"field": "fah", "type": "quantitative", "title": "false alarms per hour (symlog)",
                  "scale": {"type": "symlog", "constant": 0.1, "domain": [0, ticks[-1]]},
                  "axis": {"values": ticks, "format": "~g"}},
            "y": {"field": "recall", "type": "quantitative", "title": "recall", "scale": {"domain": [0, 1]}},
            "color": _color("curve", color_domain),
            "order": {"field": "threshold", "type": "quantitative", "sort": "descending"},
        },
    }]
    if target_fah is not None:
        layers.append({
            "data": {"values": [{"fah": float(target_fah), "label": f"target {target_fah:g} FA/h"}]},
            "mark": {"type": "rule", "strokeDash": [6, 4], "color": "#666"},
            "encoding": {"x": {"field": "fah", "type": "quantitative"}},
        })
    return {**_base(title), "layer": layers}


def roc_spec(
    curves: Curves, title: str = "ROC (per clip)", color_domain: Sequence[str] | None = None,
) -> dict[str, Any]:
    """ROC curves (rows of :func:`roc_rows`, one entry per curve) with the chance diagonal."""
    return {**_base(title, 360, 360), "layer": [
        {
            "data": {"values": [{"fpr": 0, "tpr": 0}, {"fpr": 1, "tpr": 1}]},
            "mark": {"type": "line", "strokeDash": [4, 4], "color": "#999"},
            "encoding": {"x": {"field": "fpr", "type": "quantitative"},
                         "y": {"field": "tpr", "type": "quantitative"}},
        },
        {
            "data": {"values": _tagged(curves)},
            "mark": {"type": "line", "strokeWidth": 1.8},
            "encoding": {
                "x": {"field": "fpr", "type": "quantitative", "title": "false positive rate",
                      "scale": {"domain": [0, 1]}},
                "y": {"field": "tpr", "type": "quantitative", "title": "true positive rate",
                      "scale": {"domain": [0, 1]}},
                "color": _color("curve", color_domain),
                "order": {"field": "_i", "type": "quantitative"},
            },
        },
    ]}


def _probit_domain(values: Iterable[float]) -> tuple[float, float, list[float]]:
    """Axis range for DET: from below the smallest non-zero rate (at least 0.1%, at most DET_EPS) to 60%."""
    nz = [v for v in values if v > 0.0]
    low = min([1e-3, *nz]) if nz else 1e-3
    low_tick = max([t for t in _PROBIT_TICKS if t <= low] or [DET_EPS])
    high_tick = 0.6
    ticks = [t for t in _PROBIT_TICKS if low_tick <= t <= high_tick]
    return float(norm.ppf(low_tick)), float(norm.ppf(high_tick)), [float(norm.ppf(t)) for t in ticks]


def det_spec(
    curves: Curves, title: str = "DET (per clip)", color_domain: Sequence[str] | None = None,
) -> dict[str, Any]:
    """DET curves (rows of :func:`det_rows`) on normal-deviate (probit) axes, labelled in percent.

    Vega-Lite has no probit scale: the rows' ``fpr_probit``/``fnr_probit`` go on linear axes whose tick
    labels are turned back into rates with Vega's ``cumulativeNormal``. The dashed diagonal is FPR = FNR
    (where a curve crosses it is the EER).
    """
    values = _tagged(curves)
    lo, hi, ticks = _probit_domain([float(v["fpr"]) for v in values] + [float(v["fnr"]) for v in values])
    label = "format(cumulativeNormal(datum.value) * 100, '.2~g') + '%'"

    def axis(field: str, name: str) -> dict[str, Any]:
        return {"field": field, "type": "quantitative", "title": name, "scale": {"domain": [lo, hi]},
                "axis": {"values": ticks, "labelExpr": label}}

    return {**_base(title, 360, 360), "layer": [
        {
            "data": {"values": [{"fpr_probit": lo, "fnr_probit": lo}, {"fpr_probit": hi, "fnr_probit": hi}]},
            "mark": {"type": "line", "strokeDash": [4, 4], "color": "#999"},
            "encoding": {"x": {"field": "fpr_probit", "type": "quantitative"},
                         "y": {"field": "fnr_probit", "type": "quantitative"}},
        },
        {
            "data": {"values": values},
            "mark": {"type": "line", "strokeWidth": 1.8, "clip": True},
            "encoding": {
                "x": axis("fpr_probit", "false positive rate (probit)"),
                "y": axis("fnr_probit", "false negative rate (probit)"),
                "color": _color("curve", color_domain),
                "order": {"field": "_i", "type": "quantitative"},
            },
        },
    ]}


def histogram_spec(
    rows: Sequence[Mapping[str, Any]], threshold: float | None = None, title: str = "Clip scores by kind",
) -> dict[str, Any]:
    """Overlaid score histograms (rows of :func:`score_histogram_rows`), share of each kind's clips per bin,
    with the operating ``threshold`` as a dashed rule when given."""
    kinds = list(dict.fromkeys(str(r["kind"]) for r in rows))
    layers: list[dict[str, Any]] = [{
        "data": {"values": [dict(r) for r in rows]},
        "mark": {"type": "bar", "opacity": 0.55, "binSpacing": 0},
        "encoding": {
            "x": {"field": "bin_start", "type": "quantitative", "bin": {"binned": True},
                  "title": "clip score"},
            "x2": {"field": "bin_end"},
            "y": {"field": "fraction", "type": "quantitative", "stack": None,
                  "title": "share of the kind's clips"},
            "color": {"field": "kind", "type": "nominal", "title": None, "sort": kinds,
                      "legend": {"orient": "top"}},
        },
    }]
    if threshold is not None:
        layers.append({
            "data": {"values": [{"bin_start": float(threshold)}]},
            "mark": {"type": "rule", "strokeDash": [6, 4], "color": "#333"},
            "encoding": {"x": {"field": "bin_start", "type": "quantitative"}},
        })
    return {**_base(title, 460, 280), "layer": layers}


def reliability_spec(
    rows: Sequence[Mapping[str, Any]], title: str = "Reliability (calibration)",
) -> dict[str, Any]:
    """Reliability diagram: accuracy over mean confidence per bin (point size = clips in the bin), one line
    per ``series``, and the diagonal of perfect calibration over the range the bins cover."""
    lo = min([float(r.get("bin_lower", 0.0)) for r in rows] + [1.0]) if rows else 0.0
    values = [{"series": "model", **dict(r)} for r in rows]
    return {**_base(title, 360, 360), "layer": [
        {
            "data": {"values": [{"confidence": lo, "accuracy": lo}, {"confidence": 1, "accuracy": 1}]},
            "mark": {"type": "line", "strokeDash": [4, 4], "color": "#999"},
            "encoding": {"x": {"field": "confidence", "type": "quantitative"},
                         "y": {"field": "accuracy", "type": "quantitative"}},
        },
        {
            "data": {"values": values},
            "mark": {"type": "line", "point": True, "strokeWidth": 1.5},
            "encoding": {
                "x": {"field": "confidence", "type": "quantitative", "title": "mean confidence",
                      "scale": {"domain": [lo, 1]}},
                "y": {"field": "accuracy", "type": "quantitative", "title": "accuracy",
                      "scale": {"domain": [lo, 1]}},
                "color": _color("series"),
                "order": {"field": "bin", "type": "quantitative"},
            },
        },
    ]}


def training_spec(series: Curves, title: str = "Training") -> dict[str, Any]:
    """Training curves: one small panel per metric (independent y scales), ``{metric: [{step, value}]}``."""
    values = [{"metric": m, "step": float(r["step"]), "value": float(r["value"])}
              for m, rows in series.items() for r in rows]
    return {
        "$schema": VL_SCHEMA,
        "title": title,
        "background": "white",
        "data": {"values": values},
        "facet": {"field": "metric", "type": "nominal", "title": None, "sort": list(series)},
        "columns": 3,
        "spec": {
            "width": 200, "height": 130,
            "mark": {"type": "line", "point": {"size": 12}},
            "encoding": {
                "x": {"field": "step", "type": "quantitative", "title": "epoch"},
                "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False}},
            },
        },
        "resolve": {"scale": {"y": "independent"}},
    }


# ------------------------------------------------------------------------------------------ rendering


def _vlc() -> Any:
    try:
        import vl_convert
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise RuntimeError("offline rendering needs vl-convert-python (pip install vl-convert-python)") from e
    return vl_convert


def render(spec: Mapping[str, Any], path: str | Path, scale: float = 2.0) -> Path:
    """Render a Vega-Lite spec offline to ``path``: SVG when it ends in ``.svg``, else PNG (``scale`` x the
    spec's pixel size). No URL may be loaded (``allowed_base_urls=[]``): data must be inline."""
    vlc = _vlc()
    path = Path(path)
    spec = dict(spec)
    if path.suffix.lower() == ".svg":
        data = vlc.vegalite_to_svg(spec, vl_version=VL_VERSION, allowed_base_urls=[]).encode()
    else:
        data = bytes(vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=scale, allowed_base_urls=[]))
    _write_atomic(path, data)
    return path


render_png = render  # the name the stages may know it by


def _read_tsv_series(tsv: Path) -> list[dict[str, float]]:
    with tsv.open(newline="", encoding="utf8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        fields = [f for f in (reader.fieldnames or []) if f not in ("step", "timestamp")]
        if "step" not in (reader.fieldnames or []) or len(fields) != 1:
            raise ValueError(f"{tsv}: expected the DVCLive columns step and one metric, "
                             f"got {reader.fieldnames}")
        out = []
        for row in reader:
            try:
                out.append({"step": float(row["step"]), "value": float(row[fields[0]])})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{tsv}: bad row {row}") from e
        return out


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = _read_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a JSON list of objects (plot rows)")
    return rows


def _curve_name(path: Path, suffix: str) -> str:
    stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
    return stem.replace("_", " ")


def render_all(metrics_dir: str | Path, out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Render every plot file found under ``metrics_dir`` into ``out_dir``; returns the files written.

    ``plots/**/*_curve.json`` -> ``fah_recall``; ``plots/**/*_roc.json`` -> ``roc``; ``*_det.json`` -> ``det``
    (one chart each, a line per file); ``plots/*_reliability.json`` -> ``reliability``;
    ``plots/NAME_hist.json`` -> ``NAME_hist`` (one chart per file); ``train/plots/metrics/*.tsv`` (DVCLive)
    -> ``training``. What is absent is skipped. ``calibration.json`` (when present) gives the target FA/h
    rule and the threshold rule on the histograms.
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    metrics_dir, out_dir = Path(metrics_dir), Path(out_dir)
    plots = metrics_dir / "plots"
    cal_path = metrics_dir / "calibration.json"
    cal = _read_json(cal_path) if cal_path.is_file() else {}
    target = cal.get("target_fah") if isinstance(cal, dict) else None
    threshold = cal.get("threshold") if isinstance(cal, dict) else None
    written: list[Path] = []

    def files(pattern: str) -> list[Path]:
        return sorted(plots.rglob(pattern)) if plots.is_dir() else []

    def curves(pattern: str) -> dict[str, list[dict[str, Any]]]:
        """Non-empty row files only: an empty file is a plot the run had no data for (no held-out set)."""
        found = {_curve_name(f, pattern[1:]): _read_rows(f) for f in files(pattern)}
        return {name: rows for name, rows in found.items() if rows}

    fah, roc, det = curves(CURVE_GLOB), curves(ROC_GLOB), curves(DET_GLOB)
    domain = sorted({*fah, *roc, *det})  # one colour per curve name on every chart
    jobs: list[tuple[str, dict[str, Any]]] = []
    if fah:
        jobs.append(("fah_recall", fah_recall_spec(fah, target, color_domain=domain)))
    if roc:
        jobs.append(("roc", roc_spec(roc, color_domain=domain)))
    if det:
        jobs.append(("det", det_spec(det, color_domain=domain)))
    if c := curves(RELIABILITY_GLOB):
        rows = [{**r, "series": name if "series" not in r else (f"{name} {r['series']}" if len(c) > 1
                                                                 else str(r["series"]))}
                for name, rs in c.items() for r in rs]
        jobs.append(("reliability", reliability_spec(rows)))
    for f in files(HIST_GLOB):
        name = f.name[: -len(".json")]
        if not _read_rows(f):
            continue
        jobs.append((name, histogram_spec(_read_rows(f), threshold,
                                          f"Clip scores by kind ({_curve_name(f, HIST_GLOB[1:])})")))
    tsv_dir = metrics_dir / TRAIN_TSV_DIR
    if tsv_dir.is_dir() and (tsvs := sorted(tsv_dir.glob("*.tsv"))):
        jobs.append(("training", training_spec({t.stem: _read_tsv_series(t) for t in tsvs})))
    for name, spec in jobs:
        written.append(render(spec, out_dir / f"{name}.{fmt}"))
    return written


def render_dvc_plots_json(data: Mapping[str, Any], out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Render the output of ``dvc plots show --json`` or ``dvc plots diff --json`` (parsed) offline.

    Each vega plot's ``content`` is a complete Vega-Lite spec with its data inline (DVC's templates, every
    revision in one chart): it is rendered to ``out_dir/<plot id, extension dropped, / -> _>.<fmt>``. Image
    plots and plots whose content is not inline are skipped.
    """
    plots = data.get("data", data)
    out_dir = Path(out_dir)
    written: list[Path] = []
    for plot_id, entries in plots.items():
        for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            if not isinstance(entry, Mapping) or entry.get("type") != "vega":
                continue
            content = entry.get("content")
            if not isinstance(content, Mapping) or "<DVC_METRIC_DATA>" in json.dumps(content):
                continue
            stem = re.sub(r"\.(json|jsonl|tsv|csv|ya?ml)$", "", str(plot_id))
            name = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in stem).strip("_") or "plot"
            written.append(render(content, out_dir / f"{name}{'' if i == 0 else f'_{i}'}.{fmt}"))
    return written


# ------------------------------------------------------------------------------------- offline HTML

_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot (offline)</title>
    <!-- Vega __VEGA__, Vega-Lite __VL__ and vega-embed __EMBED__ inlined (vl-convert-python __VLC__):
         no network needed. DVC's "scripts" placeholder is left out on purpose, so it adds no CDN tags. -->
    <script type="text/javascript">
__BUNDLE__
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template_html(vl_version: str = VL_VERSION) -> str:
    """The HTML of :func:`write_offline_template` (about 0.9 MB; building the bundle takes ~3 s)."""
    vlc = _vlc()
    bundle = vlc.javascript_bundle(vl_version=vl_version)
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:  # DVC fills placeholders with str.replace over the whole page
            raise RuntimeError(f"the JS bundle contains DVC's placeholder {placeholder}; cannot inline it")
    bundle = bundle.replace("</script", "<\\/script")  # same string in JS, but cannot close the tag
    page = _TEMPLATE.replace("__BUNDLE__", bundle)
    return (page.replace("__VEGA__", str(vlc.get_vega_version()))
            .replace("__VL__", vl_version).replace("__EMBED__", str(vlc.get_vega_embed_version()))
            .replace("__VLC__", _vlc_version(vlc)))


def _vlc_version(vlc: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vl-convert-python")
    except PackageNotFoundError:  # pragma: no cover
        return str(getattr(vlc, "__version__", "?"))


def write_offline_template(path: str | Path, vl_version: str = VL_VERSION) -> Path:
    """Write an HTML template for ``dvc plots show/diff --html-template PATH`` that renders offline.

    It inlines the vega, vega-lite and vega-embed bundle that ``vl_convert.javascript_bundle()`` builds
    from the copies compiled into vl-convert-python (no download), keeps DVC's ``{plot_divs}`` (and
    ``{refresh_tag}``) placeholders, and has no ``{scripts}`` placeholder, so the page has no external
    ``<script src>``. Vega-Lite 5 by default: DVC's templates are written for v5.
    """
    path = Path(path)
    _write_atomic(path, offline_template_html(vl_version).encode("utf8"))
    return path


# --------------------------------------------------------------------------------------------- report

_METRIC_FILES = ("float", "int8", "size", "calibration", "train", "onnx", "data")


def load_metrics(metrics_dir: str | Path) -> dict[str, Any]:
    """``{float, int8, size, calibration, train, onnx, data}`` from ``metrics_dir/<name>.json``, the
    absent files left out (a file that is not valid JSON raises ValueError naming it)."""
    metrics_dir = Path(metrics_dir)
    return {name: _read_json(p) for name in _METRIC_FILES if (p := metrics_dir / f"{name}.json").is_file()}


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return float(x)


def _f(x: Any, fmt: str = ".3f") -> str:
    v = _num(x)
    return "–" if v is None else format(v, fmt)


def _pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "–" if v is None else f"{100.0 * v:.{digits}f}%"


def _fah_cell(m: Mapping[str, Any]) -> str:
    fah = _num(m.get("fah"))
    if fah is None:
        return "–"
    lo, hi = _num(m.get("fah_ci_low")), _num(m.get("fah_ci_high"))
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    n = m.get("false_alarms")
    events = f" ({n} FA)" if isinstance(n, int) and not isinstance(n, bool) else ""
    return f"{fah:.2f}{ci}{events}"


def _confusable_cell(m: Mapping[str, Any]) -> str:
    rate = _num(m.get("confusable_false_accept_rate"))
    if rate is None:
        return "–"
    n = _num((m.get("counts") or {}).get("confusable_clips"))
    return _pct(rate) + (f" ({round(rate * n)}/{int(n)})" if n else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _detection_rows(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for group in ("test", "heldout"):
        for model in ("float", "int8"):
            m = metrics.get(model)
            if not isinstance(m, Mapping):
                continue
            g = m if group == "test" else m.get("heldout")
            if isinstance(g, Mapping) and g:
                out.append((f"{model} / {group}", g))
    return out


def report_images(paths: Iterable[str | Path]) -> dict[str, Path]:
    """``{title: path}`` for the files :func:`render_all` writes, in a fixed order (for write_report)."""
    titles = {"fah_recall": "Recall vs false alarms per hour", "det": "DET", "roc": "ROC",
              "reliability": "Calibration (reliability)", "training": "Training curves"}
    order = list(titles)
    items = sorted((Path(p) for p in paths),
                   key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.stem))
    out: dict[str, Path] = {}
    for p in items:
        title = titles.get(p.stem) or (f"Scores by kind ({p.stem[:-5].replace('_', ' ')})"
                                       if p.stem.endswith("_hist") else p.stem.replace("_", " "))
        out[title] = p
    return out


def _detection_section(metrics: Mapping[str, Any], cal: Mapping[str, Any]) -> list[str]:
    det = _detection_rows(metrics)
    if not det:
        return []
    target = next((v for _, m in det if (v := _num(m.get("target_fah"))) is not None),
                  _num(cal.get("target_fah")))
    tgt = f"{target:g} FA/h" if target is not None else "target"
    thr = next((v for _, m in det if (v := _num(m.get("threshold"))) is not None), _num(cal.get("threshold")))
    lines = [
        "## Detection", "",
        (f"Operating point chosen on validation (threshold {_f(thr)}, target {tgt}), only measured here. "
         "FA/h: detections per hour of negative-only stream, with its 95% Poisson interval; recall: positive "
         "clips detected; EER, pAUC (at FPR 0.1) and confusable false accepts: per clip."), "",
    ]
    header = ["model / set", "FA/h [95% CI]", "neg. hours", "recall @ threshold", "recall @ 0.5 FA/h",
              "recall @ 1 FA/h", "EER", "pAUC std", "pAUC norm", "confusable FA"]
    rows = [[name, _fah_cell(m), _f(m.get("negative_hours"), ".2f"), _pct(m.get("recall_at_target")),
             _pct(m.get("recall_at_0p5_fah")), _pct(m.get("recall_at_1p0_fah")), _pct(m.get("eer")),
             _f(m.get("pauc_std_fpr10")), _f(m.get("pauc_norm_fpr10")), _confusable_cell(m)]
            for name, m in det]
    lines += [*_table(header, rows), ""]
    wo = [(name, m["without_confusables"]) for name, m in det if isinstance(m.get("without_confusables"), Mapping)]
    if wo:
        parts = [f"{name} {' / '.join(_pct(w.get(f'recall_at_{k}_fah')) for k in ('0p5', '1p0', '2p0'))} "
                 f"({_f(w.get('negative_hours'), '.2f')} h"
                 + (f"; at 0.5 FA/h {_pct(w['confusable_false_accept_rate_at_0p5_fah'])} confusable FA"
                    if "confusable_false_accept_rate_at_0p5_fah" in w else "") + ")" for name, w in wo]
        lines += [("Recall at 0.5 / 1 / 2 FA/h with the confusable phrases of the stream left out (they are "
                   "measured per clip, as confusable FA): " + "; ".join(parts) + "."), ""]
    int8 = metrics.get("int8")
    fid = int8.get("fidelity_vs_float") if isinstance(int8, Mapping) else None
    if isinstance(fid, Mapping) and fid:
        lines += [
            (f"int8 vs float: decision agreement {_pct(fid.get('decision_agreement'))}, "
             f"recall drop {_pct(fid.get('recall_drop'), 2).replace('%', ' points')}, "
             f"mean |Δp| {_f(fid.get('mean_abs_prob_diff'), '.4f')}, "
             f"max |Δp| {_f(fid.get('max_abs_prob_diff'), '.4f')}."), "",
        ]
    return lines


def _clock(seconds: Any) -> str:
    """``h:mm:ss.s`` of a time in seconds ("–" when not a number)."""
    t = _num(seconds)
    if t is None:
        return "–"
    m, sec = divmod(max(0.0, t), 60.0)
    return f"{int(m // 60)}:{int(m % 60):02d}:{sec:04.1f}"


def _md(text: Any) -> str:
    """A table cell from free text: one line, pipes escaped, "–" when empty."""
    s = " ".join(str(text or "").split()).replace("|", "\\|")
    return s or "–"


def _false_alarm_section(metrics: Mapping[str, Any]) -> list[str]:
    """The strongest stream false alarms of the deployed model (int8, else float), per set."""
    model = "int8" if isinstance(metrics.get("int8"), Mapping) else "float"
    m = metrics.get(model)
    if not isinstance(m, Mapping):
        return []
    lines: list[str] = []
    for group, g in (("test", m), ("heldout", m.get("heldout"))):
        fas = g.get("strongest_false_alarms") if isinstance(g, Mapping) else None
        if not isinstance(fas, list):
            continue
        thr = _num(g.get("threshold"))
        rows = [[_f(fa.get("score"), ".4f"), "yes" if thr is not None and (_num(fa.get("score")) or 0.0) >= thr else "no",
                 f"{_md(fa.get('recording'))} @ {_clock(fa.get('time_s'))}", _md(fa.get("type")),
                 _md(fa.get("text")), _md(fa.get("voice"))]
                for fa in fas if isinstance(fa, Mapping)]
        header = ["score", "fires at the threshold", "where", "audio", "what was said", "voice"]
        none = ("None: the detector fires nowhere on this stream from threshold 0.5 (or the calibrated threshold, "
                "where lower) up.")
        lines += [f"### {model} / {group}", "", *(_table(header, rows) if rows else [none]), ""]
    if not lines:
        return []
    return ["## Strongest false alarms", "",
            ("Events of the detector on the negative stream, strongest first. Score: the highest threshold at "
             "which the detector fires on the event; the events above the calibrated threshold are the false "
             "alarms counted above, and the next ones set the recall at a low FA/h. Where: the recording and the "
             "time of the strongest window's centre; audio, what was said, voice: the stream segment there."),
            "", *lines]


def _size_row(name: str, m: Mapping[str, Any], size: Mapping[str, Any]) -> list[str]:
    return [name, _f(m.get("flash_kb"), ".2f"), _f(m.get("arena_kb"), ".2f"), _f(m.get("ram_kb"), ".2f"),
            _f(m.get("macs_per_second", size.get("macs_per_second")), ",.0f"),
            _f(m.get("parameters", size.get("parameters")), ",.0f")]


def _size_section(size: Mapping[str, Any]) -> list[str]:
    if not size:
        return []
    rows = [_size_row("int8 (deployed)", size, size)]
    if isinstance(fl := size.get("float"), Mapping) and fl:
        rows.append(_size_row("float", fl, size))
    header = ["model", "flash KB", "arena KB", "RAM KB", "MACs / s", "parameters"]
    lines = ["## Size", "", *_table(header, rows), ""]
    buffers = _num(size.get("detector_buffers_kb"))
    lines += [("Flash: the model file; RAM: TFLite-Micro tensor arena + detector audio/feature buffers"
               + (f" ({buffers:.2f} KB)" if buffers is not None else "") + "."), ""]
    plats = size.get("platforms")
    if isinstance(plats, Mapping) and plats:
        table = {str(k): p for k, p in plats.items() if isinstance(p, Mapping)}
        keys = list(dict.fromkeys(k for p in table.values() for k, v in p.items()
                                  if not isinstance(v, (Mapping, list))))
        rows = [[n, *(_cell(p.get(k)) for k in keys)] for n, p in table.items()]
        lines += [*_table(["platform", *keys], rows), ""]
    return lines


def _calibration_section(cal: Mapping[str, Any]) -> list[str]:
    if not cal:
        return []
    met = cal.get("target_met")
    header = ["temperature", "threshold", "ECE before", "ECE after", "val FA/h", "target FA/h", "val recall",
              "target met"]
    row = [_f(cal.get("temperature"), ".4f"), _f(cal.get("threshold")), _f(cal.get("ece_before"), ".4f"),
           _f(cal.get("ece_after"), ".4f"), _f(cal.get("val_fah"), ".2f"), _f(cal.get("target_fah"), "g"),
           _pct(cal.get("val_recall")), "–" if met is None else _cell(bool(met))]
    return ["## Calibration", "", *_table(header, [row]), ""]


def _training_section(train: Mapping[str, Any]) -> list[str]:
    best = train.get("best") if isinstance(train.get("best"), Mapping) else {}
    parts = []
    if train.get("best_epoch") is not None:
        parts.append(f"best epoch {train.get('best_epoch')} of {train.get('epochs', '?')}")
    if best:
        parts += [f"val loss {_f(best.get('val_loss'), '.4f')}",
                  f"val ROC-AUC {_f(best.get('val_roc_auc'), '.4f')}",
                  f"val recall @ target {_pct(best.get('val_recall_at_target_fah'))}"]
    if (wall := _num(train.get("train_wall_s"))) is not None:
        parts.append(f"{wall:.0f} s of training")
    return ["## Training", "", "; ".join(parts) + ".", ""] if parts else []


def write_report(out_path: str | Path, metrics: Mapping[str, Any], images: Mapping[str, str | Path],
                 title: str = "Wake-word model report") -> None:
    """Write the one-page markdown report (``metrics/report.md``).

    ``metrics``: as :func:`load_metrics` returns (``float``, ``int8``, ``size``, ``calibration``, ``train``;
    every part and every key optional: a missing number shows as "–", a missing part leaves its section
    out). ``images``: ``{title: path}`` (e.g. :func:`report_images`), linked by path relative to the
    report's folder.
    """
    out_path = Path(out_path)

    def part(name: str) -> Mapping[str, Any]:
        v = metrics.get(name)
        return v if isinstance(v, Mapping) else {}

    cal = part("calibration")
    lines = [f"# {title}", ""]
    lines += _detection_section(metrics, cal)
    lines += _false_alarm_section(metrics)
    lines += _size_section(part("size"))
    lines += _calibration_section(cal)
    lines += _training_section(part("train"))
    if images:
        lines += ["## Plots", ""]
        for name, p in images.items():
            rel = Path(os.path.relpath(Path(p).resolve(), out_path.resolve().parent)).as_posix()
            lines += [f"![{name}]({rel})", ""]
    _write_atomic(out_path, ("\n".join(lines).rstrip() + "\n").encode("utf8"))


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _num(v) is not None:
        return f"{float(v):g}"
    return "–" if v is None else str(v)
