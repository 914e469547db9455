"""Scoring a feature set with any logit function, and the metrics of SPEC 4.4-4.5 on the result.

The same code path evaluates the float torch model and the deployed int8 TFLite model, so their numbers
differ only by the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wakeword import metrics, plots
from wakeword.detector import (
    DetectorConfig,
    clips_detected_over_thresholds,
    detect,
    detection_steps_over_thresholds,
    detections_over_thresholds,
    on_fraction_over_thresholds,
    vote_signal,
)
from wakeword.featureset import KIND_CODES, FeatureSet, FeatureSetError, load_split, load_stream, read_index
from wakeword.manifest import read_manifest
from wakeword.params import DetectorParams
from wakeword.scoring import LogitFn, clip_logits, probabilities, stream_logits, window_labels

FAH_TARGETS = (0.1, 0.5, 1.0, 2.0)
#: How many of the strongest stream false alarms the evaluation lists, and the lowest threshold_on it looks at
#: (the report's text names 0.5).
STRONGEST_FALSE_ALARMS = 10
STRONGEST_FLOOR = 0.5

#: The kind of negative audio each stream segment type counts as in ``fah_by_kind`` (SPEC 4.4 per kind):
#: hum is a noise, babble is speech; "background" is the noise bed between segments, "unknown" audio whose
#: content is not described (own recordings). A type not listed here counts as "unknown".
FAH_KIND_OF_SEGMENT = {
    "speech": "speech", "babble": "speech", "confusable": "confusable", "music": "music", "noise": "noise",
    "hum": "noise", "household": "household", "background": "background", "unknown": "unknown",
}
#: Rows of the confusion matrix (clip kinds of the evaluation splits; "partial" is added when present).
CONFUSION_KINDS = ("positive", "negative", "hard_negative", "background")


@dataclass
class ScoredSet:
    clip_logits: np.ndarray  # (N, steps, 2)
    stream_logits: np.ndarray  # (n, 2)
    kind: np.ndarray  # (N,)
    label: np.ndarray  # (N,)
    phrase_start_frame: np.ndarray
    phrase_end_frame: np.ndarray
    stream_hours: float
    # test-time augmentation: logits of the clips shifted by 1..k frames, (N, steps_j, 2) each (empty: off)
    clip_logits_shifted: tuple[np.ndarray, ...] = ()
    window_frames: int | None = None  # model window and step in frames (latency needs both)
    step_frames: int | None = None
    hop_s: float = 0.01  # feature hop in seconds
    stream_segments: dict[str, Any] | None = None  # streams/<split>.segments.json (None: content unknown)

    def clip_probs(self, temperature: float) -> np.ndarray:
        """Per-step probabilities of the clips ``(N, steps)``. With test-time augmentation each step is the
        mean of the probabilities of the original window and the windows of the shifted clips aligned with
        it (shift j drops the first j frames, so its step s starts j frames after the original step s); the
        last steps, which a shifted clip may not have, average over the versions that have them."""
        probs = probabilities(self.clip_logits, temperature)
        if not self.clip_logits_shifted:
            return probs
        total = probs.astype(np.float64)
        count = np.ones(probs.shape[1])
        for logits in self.clip_logits_shifted:
            n = min(logits.shape[1], probs.shape[1])
            total[:, :n] += probabilities(logits[:, :n], temperature)
            count[:n] += 1
        return (total / count).astype(np.float32)

    def stream_probs(self, temperature: float) -> np.ndarray:
        return probabilities(self.stream_logits, temperature)


def check_tta_shifts(tta_shifts: int, step: int) -> int:
    """``calibrate.tta_shifts`` must be a whole number in [0, step_frames): a shift of a whole step is the next
    step of the unshifted clip, not a new view of it."""
    if isinstance(tta_shifts, bool) or not isinstance(tta_shifts, (int, np.integer)) or not 0 <= tta_shifts < step:
        raise ValueError(f"calibrate.tta_shifts = {tta_shifts!r}: must be an integer in [0, {step - 1}] "
                         f"(less than the detector step, {step} frames)")
    return int(tta_shifts)


def score_set(
    logit_fn: LogitFn, fs: FeatureSet, stream: np.ndarray, stream_hours: float, window: int, step: int,
    tta_shifts: int = 0, *, hop_s: float = 0.01, stream_segments: dict[str, Any] | None = None,
) -> ScoredSet:
    """Logits of every clip window and stream window. ``tta_shifts`` k > 0 also scores the clips shifted by
    1..k frames (test-time augmentation for the clip metrics; the stream is scored once, unshifted)."""
    k = check_tta_shifts(tta_shifts, step)
    return ScoredSet(
        clip_logits=clip_logits(logit_fn, fs.x, window, step),
        stream_logits=stream_logits(logit_fn, stream, window, step),
        kind=fs.kind, label=fs.y.astype(np.int64), phrase_start_frame=fs.phrase_start_frame,
        phrase_end_frame=fs.phrase_end_frame, stream_hours=stream_hours,
        clip_logits_shifted=tuple(clip_logits(logit_fn, fs.x[:, j:], window, step) for j in range(1, k + 1)),
        window_frames=int(window), step_frames=int(step), hop_s=float(hop_s), stream_segments=stream_segments,
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


def _locate(steps: np.ndarray, table: dict[str, Any], window: int, step: int) -> list[tuple[int, float, Any]]:
    """Where each stream step's audio lies: ``(recording index, seconds into it, the segment playing then)``.

    The step ``j`` stands for the *centre* of its window, ``(j * step + window / 2) * hop`` seconds into the
    concatenated stream (the window holds the audio that triggered it; its end lags that audio by up to a
    window), mapped to a recording by the frame offsets of the segment ``table`` and to the segment containing
    that time (None: the noise bed between segments).
    """
    recs = table["recordings"]
    hop = float(table["hop_s"])
    centre = np.asarray(steps, dtype=np.float64) * step + window / 2.0
    offsets = np.array([r["frame_offset"] for r in recs], dtype=np.float64)
    which = np.clip(np.searchsorted(offsets, centre, side="right") - 1, 0, len(recs) - 1)
    segs = [sorted(r["segments"], key=lambda x: float(x["start_s"])) for r in recs]
    starts = [np.array([float(x["start_s"]) for x in rs]) for rs in segs]
    out: list[tuple[int, float, Any]] = []
    for c, i in zip(centre.tolist(), which.tolist()):
        t = min(max((c - offsets[i]) * hop, 0.0), float(recs[i]["duration_s"]))
        j = int(np.searchsorted(starts[i], t, side="right")) - 1
        seg = segs[i][j] if j >= 0 and t < float(segs[i][j]["end_s"]) else None
        out.append((int(i), t, seg))
    return out


def fah_by_kind(detection_steps: np.ndarray, scored: ScoredSet, window: int, step: int) -> dict[str, dict[str, Any]]:
    """False alarms per hour per kind of negative audio (SPEC 4.4 per kind).

    A detection at stream step ``j`` is attributed to the segment type playing at the centre of its window
    (:func:`_locate`; none: the noise bed, "background"). The hours of a kind are the summed durations of its
    segments (background: recording length minus all segments), so they add up to the stream's hours and the
    false alarms to the stream's false alarms. Segment types are grouped by :data:`FAH_KIND_OF_SEGMENT`.
    Without a segment table the whole stream is "unknown". Returns
    :func:`wakeword.metrics.false_alarm_rates_by_group` (kinds with no audio left out).
    """
    steps = np.asarray(detection_steps, dtype=np.int64)
    table = scored.stream_segments
    if table is None:
        return metrics.false_alarm_rates_by_group({"unknown": int(steps.size)}, {"unknown": scored.stream_hours})
    events: dict[str, int] = {}
    hours: dict[str, float] = {}
    for rec in table["recordings"]:
        covered = 0.0
        for x in rec["segments"]:
            kind = FAH_KIND_OF_SEGMENT.get(str(x["type"]), "unknown")
            length = float(x["end_s"]) - float(x["start_s"])
            hours[kind] = hours.get(kind, 0.0) + length / 3600.0
            covered += length
        hours["background"] = hours.get("background", 0.0) + max(0.0, float(rec["duration_s"]) - covered) / 3600.0
    for _, _, seg in _locate(steps, table, window, step):
        kind = FAH_KIND_OF_SEGMENT.get(str(seg["type"]), "unknown") if seg is not None else "background"
        events[kind] = events.get(kind, 0) + 1
    return metrics.false_alarm_rates_by_group(events, hours)


def curve_without_kind(
    curve: dict[str, np.ndarray], scored: ScoredSet, temperature: float, det: DetectorParams, step_ms: int,
    kind: str = "confusable",
) -> dict[str, np.ndarray] | None:
    """``curve`` (:func:`operating_curve` of ``scored``) recounted on the stream without its ``kind`` segments.

    A false alarm whose window centre lies in a segment of that kind (:func:`_locate`, kinds as in
    :data:`FAH_KIND_OF_SEGMENT`) is dropped, and the segments' hours come off the stream's hours; recall is
    unchanged. For the comparison with evaluations whose negative audio holds no confusable phrases (those are
    measured per clip, ``confusable_false_accept_rate``). An event a confusable phrase set off whose window
    centre falls just past the phrase still counts. None without a segment table or without such segments.
    """
    table, window, step = scored.stream_segments, scored.window_frames, scored.step_frames
    if table is None or window is None or step is None:
        return None
    seconds = sum(float(x["end_s"]) - float(x["start_s"]) for r in table["recordings"] for x in r["segments"]
                  if FAH_KIND_OF_SEGMENT.get(str(x["type"]), "unknown") == kind)
    hours = scored.stream_hours - seconds / 3600.0
    if seconds <= 0.0 or hours <= 0.0:
        return None
    thresholds = np.asarray(curve["threshold"], dtype=np.float64)
    cols, rows = detection_steps_over_thresholds(scored.stream_probs(temperature), thresholds,
                                                 DetectorConfig.from_params(det, 1.0, step_ms))
    steps, back = np.unique(rows, return_inverse=True)
    outside = np.array([seg is None or FAH_KIND_OF_SEGMENT.get(str(seg["type"]), "unknown") != kind
                        for _, _, seg in _locate(steps, table, window, step)], dtype=bool)
    counts = np.bincount(cols[outside[back]], minlength=thresholds.shape[0]).astype(np.int64)
    return {"threshold": thresholds, "fah": counts / hours, "recall": np.asarray(curve["recall"], dtype=np.float64),
            "false_alarms": counts, "negative_hours": np.float64(hours)}


def confusable_rate_at_fah(curve: dict[str, np.ndarray], full: dict[str, np.ndarray], target: float) -> float:
    """Share of the confusable clips the detector accepts at the threshold where ``curve`` reaches ``target``
    FA/h (:func:`wakeword.metrics.recall_at_fah`): the pair (recall, confusable false accepts) at one operating
    point, as an evaluation that measures confusables per clip reports it. ``full`` is the
    :func:`operating_curve` on the same threshold grid, which holds the per-threshold rates (``curve`` may be
    :func:`curve_without_kind` of it). 0.0 where no threshold reaches the target (the never-firing detector,
    as recall) or the set has no confusable clips."""
    if not np.array_equal(np.asarray(curve["threshold"]), np.asarray(full["threshold"])):
        raise ValueError("confusable_rate_at_fah: the two curves must share one threshold grid")
    rates = full.get("confusable_false_accept_rate")
    idx, met = metrics.select_operating_point(curve, target)
    return float(np.asarray(rates, dtype=np.float64)[idx]) if rates is not None and met else 0.0


def strongest_false_alarms(
    scored: ScoredSet, temperature: float, det: DetectorParams, step_ms: int, n: int = STRONGEST_FALSE_ALARMS,
    floor: float = STRONGEST_FLOOR,
) -> list[dict[str, Any]]:
    """The ``n`` strongest false alarms on the negative stream, strongest first: the audio that sets the FAH
    at high thresholds, so the recall at a low FAH.

    The detector (``det``'s votes, hysteresis and lockout) runs at threshold_on ``floor``; each event it fires
    is one false alarm. Its ``score`` is the highest threshold_on at which the vote condition holds during the
    event: the largest :func:`wakeword.detector.vote_signal` from the firing step while the signal stays at or
    above threshold_off (while the detector stays on). A threshold above an event's score removes it. Each event
    is placed at its strongest step (``step``) and, with the stream's segment table, located by :func:`_locate`:
    ``recording``, ``time_s`` into it, the segment ``type`` ("background" between segments) and the segment's
    ``text`` and ``voice`` when the table has them.
    """
    probs = scored.stream_probs(temperature)
    cfg = DetectorConfig.from_params(det, floor, step_ms)
    q = vote_signal(probs, cfg)
    fired = detect(probs, cfg).tolist()
    peaks: list[tuple[float, int]] = []
    for a, b in zip(fired, [*fired[1:], q.shape[0]]):
        stretch = q[a:b]
        below = np.flatnonzero(stretch < cfg.threshold_off)  # q[a] >= floor >= off: never at index 0
        j = a + int(np.argmax(stretch[: below[0]] if below.size else stretch))
        peaks.append((float(q[j]), j))
    top = sorted(peaks, key=lambda p: (-p[0], p[1]))[:n]
    rows: list[dict[str, Any]] = [{"score": round(score, 4), "step": j} for score, j in top]
    table, window, step = scored.stream_segments, scored.window_frames, scored.step_frames
    if table is None or window is None or step is None or not rows:
        return rows
    for row, (i, t, seg) in zip(rows, _locate(np.array([j for _, j in top]), table, window, step)):
        row.update(recording=str(table["recordings"][i]["path"]), time_s=round(float(t), 2),
                   type=str(seg["type"]) if seg is not None else "background")
        row.update({key: str(seg[key]) for key in ("text", "voice") if seg is not None and key in seg})
    return rows


def clip_latencies(
    first_steps: list[int | None], phrase_end_frame: np.ndarray, window: int, step: int, hop_s: float,
) -> tuple[np.ndarray, int]:
    """Latency (s) of each detected clip that has a phrase end, and how many clips have one.

    A detection at step ``j`` is made when the window of frames ``[j*step, j*step + window)`` is complete,
    i.e. at frame ``j*step + window``; latency = ``(j*step + window - phrase_end_frame) * hop_s``, where
    ``j`` is the clip's *first* detection (``first_steps[i]``, None when it has none). ``phrase_end_frame``
    is the first frame whose analysis window reaches past the phrase's last sample, so this is the time from
    the phrase end to the last sample of the detecting window, rounded up to the next hop (at most one hop,
    10 ms, long). It is negative when the detector fires before the phrase has ended, reported as is.
    """
    ends = np.asarray(phrase_end_frame, dtype=np.int64)
    has_end = ends >= 0
    lat = [(j * step + window - int(e)) * hop_s for j, e in zip(first_steps, ends.tolist())
           if e >= 0 and j is not None]
    return np.asarray(lat, dtype=np.float64), int(has_end.sum())


def by_voice(
    scored: ScoredSet, temperature: float, threshold: float, curve: dict[str, Any], det: DetectorParams,
    step_ms: int, clip_groups: np.ndarray, extra_points: Mapping[str, float | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Recall and confusable false accepts per voice group (``clip_groups``: each clip's manifest group,
    "" when unknown), at the calibrated threshold and at the thresholds that reach each of
    :data:`FAH_TARGETS` on the whole stream (:func:`wakeword.metrics.recall_at_fah`; recall 0 where none
    does), plus ``recall_at_<name>`` and ``confusable_false_accept_rate_at_<name>`` at each of ``extra_points``
    (name -> threshold, None = unreachable). The false alarms are the stream's, shared by all voices; only the
    clips are split by voice."""
    return by_groupings(scored, temperature, threshold, curve, det, step_ms, {"": clip_groups}, extra_points)[""]


def by_groupings(
    scored: ScoredSet, temperature: float, threshold: float, curve: dict[str, Any], det: DetectorParams,
    step_ms: int, groupings: Mapping[str, np.ndarray], extra_points: Mapping[str, float | None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`by_voice` for several groupings of the same clips (e.g. voices and engines): the detector runs
    over the clips once, the rows are counted per grouping."""
    probs = scored.clip_probs(temperature)
    points: dict[str, float | None] = {"target": float(threshold)}
    for target in FAH_TARGETS:
        points[f"{str(target).replace('.', 'p')}_fah"] = metrics.recall_at_fah(curve, target)[1]
    points.update(extra_points or {})
    detected: dict[str, np.ndarray] = {}
    for name, thr in points.items():
        cfg = DetectorConfig.from_params(det, thr, step_ms) if thr is not None else None
        detected[name] = np.array([cfg is not None and detect(p, cfg).shape[0] > 0 for p in probs], dtype=bool)
    pos, conf = scored.label == 1, scored.kind == KIND_CODES["hard_negative"]
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for key, clip_groups in groupings.items():
        out: dict[str, dict[str, Any]] = {}
        for group in sorted({str(g) for g in clip_groups[pos | conf] if g}):
            gp, gc = pos & (clip_groups == group), conf & (clip_groups == group)
            row: dict[str, Any] = {"positive_clips": int(gp.sum()), "confusable_clips": int(gc.sum())}
            for name, hit in detected.items():
                row[f"recall_at_{name}"] = float(hit[gp].mean()) if gp.any() else 0.0
            row["confusable_false_accept_rate"] = float(detected["target"][gc].mean()) if gc.any() else 0.0
            row["confusable_false_accept_rate_at_0p5_fah"] = (float(detected["0p5_fah"][gc].mean()) if gc.any()
                                                              else 0.0)
            for name in extra_points or {}:
                row[f"confusable_false_accept_rate_at_{name}"] = float(detected[name][gc].mean()) if gc.any() else 0.0
            out[group] = row
        result[key] = out
    return result


def engine_groups(clip_groups: np.ndarray) -> np.ndarray:
    """The engine of each ``engine:voice`` group (the part before the colon; "" stays "")."""
    return np.array([str(g).partition(":")[0] for g in clip_groups], dtype=object)


def evaluate_scored(
    scored: ScoredSet, temperature: float, threshold: float, target_fah: float, det: DetectorParams,
    step_ms: int, thresholds: np.ndarray, max_on_fraction: float, clip_groups: np.ndarray | None = None,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Every headline metric at the calibrated operating point, plus the FAH/recall curve rows.

    Beyond SPEC 4.4/4.5: ``fah_by_kind`` (:func:`fah_by_kind`), ``latency`` on positive clips
    (:func:`clip_latencies`, :func:`wakeword.metrics.latency_summary`; only when the scored set knows its
    window and step), ``confusion_matrix`` (clips per kind detected / not detected at the threshold),
    ``confusable_false_accept_rate_at_0p5_fah`` (:func:`confusable_rate_at_fah`), ``without_confusables``
    (recall at the FAH targets with the stream's confusable phrases left out, :func:`curve_without_kind`, and
    at 0.5 FA/h its threshold and confusable false accepts; only with a segment table that has some),
    ``strongest_false_alarms`` (:func:`strongest_false_alarms` from threshold_on ``min(threshold,``
    :data:`STRONGEST_FLOOR` ``)`` up), ``tta_shifts`` (test-time augmentation used for the clip metrics,
    0 = off) and, with ``clip_groups`` (each clip's voice group), ``by_voice`` (:func:`by_voice`) and
    ``by_engine`` (the same per engine, the part of an ``engine:voice`` group before the colon).
    """
    cfg = DetectorConfig.from_params(det, threshold, step_ms)
    probs = scored.clip_probs(temperature)
    clip_scores = probs.max(axis=1)
    fired = [detect(p, cfg) for p in probs]
    detected = np.array([f.shape[0] > 0 for f in fired], dtype=bool)
    labels = scored.label
    stream_probs = scored.stream_probs(temperature)
    stream_fired = detect(stream_probs, cfg)
    stream_events = int(stream_fired.shape[0])

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
    out["confusable_false_accept_rate_at_0p5_fah"] = confusable_rate_at_fah(curve, curve, 0.5)
    alt = curve_without_kind(curve, scored, temperature, det, step_ms, "confusable")
    if alt is not None:
        out["without_confusables"] = {"negative_hours": float(alt["negative_hours"])} | {
            f"recall_at_{str(t).replace('.', 'p')}_fah": float(metrics.recall_at_fah(alt, t)[0]) for t in FAH_TARGETS}
        out["without_confusables"]["threshold_at_0p5_fah"] = metrics.recall_at_fah(alt, 0.5)[1]
        out["without_confusables"]["confusable_false_accept_rate_at_0p5_fah"] = confusable_rate_at_fah(alt, curve, 0.5)
    out["counts"] = {
        "positive_clips": int((labels == 1).sum()), "negative_clips": int((labels == 0).sum()),
        "confusable_clips": int(conf.sum()), "stream_windows": int(scored.stream_logits.shape[0]),
    }
    window, step = scored.window_frames, scored.step_frames
    if scored.stream_segments is None or (window is not None and step is not None):
        out["fah_by_kind"] = fah_by_kind(stream_fired, scored, window or 0, step or 0)
    out["strongest_false_alarms"] = strongest_false_alarms(scored, temperature, det, step_ms,
                                                           floor=min(float(threshold), STRONGEST_FLOOR))
    if window is not None and step is not None:
        pos = np.flatnonzero(labels == 1)
        lat, n_with_end = clip_latencies([int(fired[i][0]) if fired[i].size else None for i in pos],
                                         scored.phrase_end_frame[pos], window, step, scored.hop_s)
        out["latency"] = metrics.latency_summary(lat, n_with_end)
    names = {code: name for name, code in KIND_CODES.items()}
    kinds = np.array([names.get(int(c), str(int(c))) for c in scored.kind])
    rows_of = list(CONFUSION_KINDS) + [k for k in KIND_CODES if k not in CONFUSION_KINDS and (kinds == k).any()]
    out["confusion_matrix"] = metrics.confusion_by_kind(kinds, detected, rows_of)
    out["tta_shifts"] = len(scored.clip_logits_shifted)
    if clip_groups is not None:
        groups = np.asarray(clip_groups, dtype=object)
        extra = ({"0p5_fah_without_confusables": out["without_confusables"]["threshold_at_0p5_fah"]}
                 if "without_confusables" in out else None)
        # per voice, and per speech engine of a mixed (held-out) set: one detector pass over the clips
        out.update(by_groupings(scored, temperature, threshold, curve, det, step_ms,
                                {"by_voice": groups, "by_engine": engine_groups(groups)}, extra))
    conf_curve = curve.get("confusable_false_accept_rate", np.zeros_like(curve["threshold"]))
    rows = [
        {"threshold": float(t), "fah": float(f), "recall": float(r), "miss_rate": float(1.0 - r),
         "confusable_false_accept_rate": float(c), "stream_on_fraction": float(o)}
        for t, f, r, c, o in zip(curve["threshold"], curve["fah"], curve["recall"], conf_curve,
                                 curve["stream_on_fraction"])
    ]
    return out, rows


def heldout_voice_groups(split_dir: Path, split: str) -> list[str] | None:
    """The voice group of every row of ``split_dir/heldout.jsonl`` when ``split`` is the held-out split (for
    :func:`evaluate_split`'s per-voice figures); None for other splits or without that manifest."""
    path = Path(split_dir) / f"{split}.jsonl"
    return [item.group for item in read_manifest(path)] if split == "heldout" and path.exists() else None


def evaluation_splits(features_dir: Path) -> list[str]:
    """The splits a model is evaluated on: test, and heldout (unseen engines) when the features have it."""
    splits = read_index(features_dir).get("splits", {})
    return ["test"] + (["heldout"] if "heldout" in splits else [])


def load_stream_segments(features_dir: Path, split: str, n_frames: int) -> dict[str, Any] | None:
    """The split stream's segment table (``streams/<split>.segments.json``, written by featurize), checked
    against the stream's ``n_frames``; None for a feature store made before featurize wrote one."""
    import json

    meta = read_index(features_dir).get("streams", {}).get(split, {})
    if "segments" not in meta:
        return None
    path = features_dir / str(meta["segments"])
    try:
        table = json.loads(path.read_text())
        recs = table["recordings"]
        float(table["hop_s"])
        covered = 0
        for r in recs:
            if int(r["frame_offset"]) != covered:
                raise ValueError(f"recording {r['path']} starts at frame {r['frame_offset']}, expected {covered}")
            covered += int(r["frames"])
            float(r["duration_s"])
            for seg in r["segments"]:
                float(seg["start_s"]), float(seg["end_s"]), str(seg["type"])
        if not recs or covered != n_frames:
            raise ValueError(f"the recordings cover {covered} frames, the stream has {n_frames}")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FeatureSetError(f"{path}: unusable stream segment table ({exc})") from None
    return table


def clip_groups_of(fs: FeatureSet, manifest_groups: list[str], features_dir: Path, split: str) -> np.ndarray:
    """The voice group of every clip of ``fs`` (``""`` for a clip without a manifest row), found through the
    feature store's ``clip`` (the clip's row in the split manifest)."""
    rows_of = np.asarray(fs.clip)
    if rows_of.size and rows_of.max() >= len(manifest_groups):
        raise FeatureSetError(f"{features_dir}: split '{split}' has clips from manifest row {int(rows_of.max())}, "
                              f"the manifest has {len(manifest_groups)} rows (re-run featurize)")
    return np.array([manifest_groups[r] if r >= 0 else "" for r in rows_of.tolist()], dtype=object)


def evaluate_split(
    logit_fn: LogitFn, features_dir: Path, split: str, calibration: dict[str, Any], det: DetectorParams,
    step_ms: int, thresholds: np.ndarray, max_on_fraction: float, tta_shifts: int = 0,
    manifest_groups: list[str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, list[dict[str, Any]]]]:
    """Score one split's clips and stream with ``logit_fn`` and compute every metric at the calibrated
    operating point (:func:`evaluate_scored`). ``tta_shifts`` (``calibrate.tta_shifts``): test-time
    augmentation of the clip scores, 0 = off (:meth:`ScoredSet.clip_probs`). ``manifest_groups``: the voice
    group of every row of the split's manifest; with it the metrics have ``by_voice`` (the clips find their
    rows through the feature store's ``clip``). Returns the metrics, the FAH/recall curve rows and the other
    plot rows (:func:`plot_rows`)."""
    index = read_index(features_dir)
    step = int(index["step_frames"])
    check_tta_shifts(tta_shifts, step)  # before the scoring work
    stream, hours = load_stream(features_dir, split)
    segments = load_stream_segments(features_dir, split, int(stream.shape[0]))
    hop_s = float(segments["hop_s"]) if segments is not None else 0.01
    fs = load_split(features_dir, split)
    clip_groups = clip_groups_of(fs, manifest_groups, features_dir, split) if manifest_groups is not None else None
    scored = score_set(logit_fn, fs, stream, hours, int(index["window_frames"]), step,
                       tta_shifts, hop_s=hop_s, stream_segments=segments)
    result, rows = evaluate_scored(scored, calibration["temperature"], calibration["threshold"],
                                   calibration["target_fah"], det, step_ms, thresholds, max_on_fraction, clip_groups)
    return result, rows, plot_rows(scored, calibration["temperature"])


PLOT_KINDS = ("curve", "roc", "det", "hist")


def plot_files(model: str, split: str, curve: list[dict[str, float]],
               other: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """File name -> rows for one model ("float", "int8") and split: ``<model>[_heldout]_<kind>.json``; the
    held-out files exist (empty) even without a held-out split, so the outputs DVC expects are always there."""
    prefix = model if split == "test" else f"{model}_{split}"
    files: dict[str, list[dict[str, Any]]] = {f"{prefix}_curve.json": list(curve)}
    files.update({f"{prefix}_{kind}.json": rows for kind, rows in other.items()})
    if split == "test":
        files.update({f"{model}_heldout_{kind}.json": [] for kind in PLOT_KINDS})
    return files


def plot_rows(scored: ScoredSet, temperature: float) -> dict[str, list[dict[str, Any]]]:
    """Per-clip ROC, DET and score-histogram rows (clip score = max calibrated window probability)."""
    scores = scored.clip_probs(temperature).max(axis=1)
    return {"roc": plots.roc_rows(scored.label, scores), "det": plots.det_rows(scored.label, scores),
            "hist": plots.score_histogram_rows(scores, scored.kind)}


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


def reliability_plot_rows(scored: ScoredSet, n_frames: int, window: int, step: int,
                          temperature: float) -> list[dict[str, Any]]:
    """Reliability-diagram rows of the labelled validation windows before and after temperature scaling
    (the same windows and binning as the ECE in :func:`calibrate_scored`)."""
    logits, labels = labeled_windows(scored, window, step, n_frames)
    return (plots.reliability_rows(probabilities(logits, 1.0), labels, series="before")
            + plots.reliability_rows(probabilities(logits, temperature), labels, series="after"))


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
