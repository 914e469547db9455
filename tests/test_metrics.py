"""Metrics (SPEC 4.4, 4.5) against values worked out by hand and published tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from wakeword.metrics import (
    area_under_recall_fah,
    binary_metrics,
    confusion_by_kind,
    eer,
    expected_calibration_error,
    false_alarm_rate,
    false_alarm_rates_by_group,
    latency_summary,
    operating_curve,
    pauc_norm,
    pauc_std,
    poisson_interval,
    recall_at_fah,
    roc_auc,
)

# ---------------------------------------------------------------------------------------- Poisson / FAH


@pytest.mark.parametrize(
    ("k", "lo", "hi"),
    [  # Garwood exact two-sided 95% limits (standard tables)
        (0, 0.0, 3.689),
        (1, 0.0253, 5.572),
        (2, 0.2422, 7.225),
        (5, 1.6235, 11.668),
        (10, 4.7954, 18.390),
    ],
)
def test_poisson_interval_table(k: int, lo: float, hi: float) -> None:
    got_lo, got_hi = poisson_interval(k, 1.0)
    assert got_lo == pytest.approx(lo, abs=5e-4)
    assert got_hi == pytest.approx(hi, abs=5e-3)


def test_poisson_interval_scales_with_exposure_and_zero_bound() -> None:
    lo, hi = poisson_interval(0, 2.0)
    assert lo == 0.0 and hi == pytest.approx(-math.log(0.025) / 2.0)
    lo, hi = poisson_interval(3, 4.0)
    lo1, hi1 = poisson_interval(3, 1.0)
    assert (lo, hi) == pytest.approx((lo1 / 4.0, hi1 / 4.0))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            poisson_interval(bad, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exposure"):
        poisson_interval(1, 0.0)


def test_false_alarm_rate() -> None:
    r = false_alarm_rate(0, 2.0)
    assert r["fah"] == 0.0 and r["fah_ci_low"] == 0.0
    assert r["fah_ci_high"] == pytest.approx(3.689 / 2.0, abs=1e-3)
    assert r["false_alarms"] == 0 and r["negative_hours"] == 2.0
    r = false_alarm_rate(3, 1.5)
    assert r["fah"] == pytest.approx(2.0)
    assert r["fah_ci_low"] < 2.0 < r["fah_ci_high"]
    assert r["false_alarms"] == 3 and isinstance(r["false_alarms"], int)
    with pytest.raises(ValueError, match="hours"):
        false_alarm_rate(1, 0.0)
    with pytest.raises(ValueError, match="hours"):
        false_alarm_rate(1, float("nan"))


# ------------------------------------------------------------------------------------------- EER / AUC


def test_eer_interpolated_by_hand() -> None:
    # Positives 0.8, 0.5; negatives 0.5, 0.2. ROC (FPR, TPR): (0,0) (0,.5) @0.8, (.5,1) @0.5, (1,1) @0.2.
    # FNR along it: 1, .5, 0, 0. Between (FPR 0, FNR .5) and (FPR .5, FNR 0) the lines cross halfway:
    # EER = 0.25, threshold halfway between 0.8 and 0.5 = 0.65.
    value, thr = eer([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2])
    assert value == pytest.approx(0.25)
    assert thr == pytest.approx(0.65)


def test_eer_exact_roc_point_and_perfect_separation() -> None:
    # P .8 .4, N .6 .1: ROC (0,.5)@.8, (.5,.5)@.6, (.5,1)@.4 -> FPR = FNR = .5 exactly at threshold .6.
    assert eer([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]) == pytest.approx((0.5, 0.6))
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx((0.0, 0.8))
    # Completely wrong ranking: EER 1.
    assert eer([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])[0] == pytest.approx(1.0)


def test_eer_against_dense_threshold_sweep() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = np.r_[np.ones(60), np.zeros(90)].astype(int)
        s = np.r_[rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 90)]
        value, thr = eer(y, s)
        # At the returned threshold, FPR and FNR straddle the EER (it is interpolated between points).
        fpr = np.mean(s[y == 0] >= thr)
        fnr = np.mean(s[y == 1] < thr)
        assert min(fpr, fnr) - 1 / 60 <= value <= max(fpr, fnr) + 1 / 60


def test_roc_auc_and_pauc_norm_by_hand() -> None:
    y, s = [1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]
    # ROC (0,0) (0,.5) (.5,1) (1,1): area = .5 * .75 + .5 * 1 = 0.875
    assert roc_auc(y, s) == pytest.approx(0.875)
    # [0, .25]: TPR rises from .5 to .75 linearly: area .25 * (.5 + .75)/2 = .15625; / .25 = .625
    assert pauc_norm(y, s, 0.25) == pytest.approx(0.625)
    assert pauc_norm(y, s, 0.5) == pytest.approx(0.75)
    assert pauc_norm(y, s, 1.0) == pytest.approx(0.875)
    # McClish standardisation of the same partial area, the sklearn convention:
    a, p = 0.15625, 0.25
    assert pauc_std(y, s, 0.25) == pytest.approx(0.5 * (1 + (a - p * p / 2) / (p - p * p / 2)))


def test_pauc_on_vertical_roc_segment_at_p() -> None:
    # P .9 .3, N .5 .1: ROC (0,.5) (.5,.5) (.5,1) (1,1). At p = .5 the cut is exactly at the vertical step:
    # area [0, .5] = .5 * .5 -> normalised .5.
    assert pauc_norm([1, 1, 0, 0], [0.9, 0.3, 0.5, 0.1], 0.5) == pytest.approx(0.5)


def test_pauc_std_equals_sklearn_and_relates_to_pauc_norm() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(4, 80))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.random(n) + 0.3 * y, 2)  # ties included
        for p in (0.05, 0.1, 0.5):
            assert pauc_std(y, s, p) == pytest.approx(roc_auc_score(y, s, max_fpr=p))
            area = pauc_norm(y, s, p) * p
            assert pauc_std(y, s, p) == pytest.approx(0.5 * (1 + (area - p * p / 2) / (p - p * p / 2)))
        assert pauc_norm(y, s, 1.0) == pytest.approx(roc_auc_score(y, s))


def test_ranking_metrics_reject_degenerate_input() -> None:
    for fn in (eer, roc_auc):
        with pytest.raises(ValueError, match="both positive and negative"):
            fn([1, 1, 1], [0.1, 0.2, 0.3])
        with pytest.raises(ValueError, match="NaN"):
            fn([0, 1], [0.1, float("nan")])
        with pytest.raises(ValueError, match="empty"):
            fn([], [])
        with pytest.raises(ValueError, match="0 or 1"):
            fn([0, 2], [0.1, 0.2])
        with pytest.raises(ValueError, match="has 3 values"):
            fn([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="max_fpr"):
        pauc_norm([0, 1], [0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="max_fpr"):
        pauc_std([0, 1], [0.1, 0.2], 1.5)


# --------------------------------------------------------------------------------------- thresholded


def test_binary_metrics_counts() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 1, 0, 1, 0, 0, 0, 0]
    m = binary_metrics(labels, pred)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 3, 2)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["fpr"] == pytest.approx(1 / 4)
    assert m["fnr"] == pytest.approx(2 / 4)


def test_binary_metrics_zero_denominators_are_zero_not_nan() -> None:
    m = binary_metrics([0, 0, 0], [0, 0, 0])  # no positives at all, nothing predicted
    assert m["accuracy"] == 1.0
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["fnr"] == 0.0
    m = binary_metrics([1, 1], [True, False])  # no negatives
    assert m["fpr"] == 0.0 and m["precision"] == 1.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())
    with pytest.raises(ValueError, match="empty"):
        binary_metrics([], [])


def test_ece_by_hand() -> None:
    # p(pos) .9 .8 .3 .6 with labels 1 0 0 1 -> confidence .9 .8 .7 .6, correct 1 0 1 1.
    # 5 bins of .2: (.4,.6]: {.6} acc 1 conf .6 -> |.4| * 1/4; (.6,.8]: {.8, .7} acc .5 conf .75 -> .25 * 2/4;
    # (.8, 1]: {.9} acc 1 conf .9 -> .1 * 1/4.  ECE = .1 + .125 + .025 = .25
    assert expected_calibration_error([0.9, 0.8, 0.3, 0.6], [1, 0, 0, 1], n_bins=5) == pytest.approx(0.25)
    # Same in 2-D class-probability form.
    p = np.array([0.9, 0.8, 0.3, 0.6])
    assert expected_calibration_error(np.c_[1 - p, p], np.array([1, 0, 0, 1]), n_bins=5) == pytest.approx(
        0.25
    )
    # A perfectly calibrated set: confidence .75 in one bin, 3 of 4 right -> 0.
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([0.5, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5, 0.5], [0, 1], n_bins=0)


# ----------------------------------------------------------------------------------- operating curve


def make_curve() -> dict[str, np.ndarray]:
    thresholds = [0.3, 0.5, 0.7, 0.9]
    detections = [6, 2, 1, 0]  # over 2 h -> FAH 3, 1, .5, 0
    pos = np.zeros((10, 4), dtype=bool)
    for j, n in enumerate([9, 8, 6, 2]):  # recall .9 .8 .6 .2
        pos[:n, j] = True
    return operating_curve(thresholds, detections, 2.0, pos)


def test_operating_curve_values() -> None:
    c = make_curve()
    assert c["threshold"].tolist() == [0.3, 0.5, 0.7, 0.9]
    assert c["fah"].tolist() == pytest.approx([3.0, 1.0, 0.5, 0.0])
    assert c["recall"].tolist() == pytest.approx([0.9, 0.8, 0.6, 0.2])
    assert c["false_alarms"].tolist() == [6, 2, 1, 0]
    with pytest.raises(ValueError, match="at least one positive clip"):
        operating_curve([0.5], [1], 1.0, np.zeros((0, 1), dtype=bool))
    with pytest.raises(ValueError, match="one per threshold"):
        operating_curve([0.5, 0.6], [1], 1.0, np.zeros((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="negative_hours"):
        operating_curve([0.5], [1], 0.0, np.zeros((3, 1), dtype=bool))


def test_recall_at_fah() -> None:
    c = make_curve()
    assert recall_at_fah(c, 1.0) == pytest.approx((0.8, 0.5))
    assert recall_at_fah(c, 0.7) == pytest.approx((0.6, 0.7))
    assert recall_at_fah(c, 0.0) == pytest.approx((0.2, 0.9))
    assert recall_at_fah(c, 100.0) == pytest.approx((0.9, 0.3))
    no_zero = {k: v[:3] for k, v in c.items()}
    assert recall_at_fah(no_zero, 0.1) == (0.0, None)
    # Ties: same recall at two thresholds -> the lower FAH, then the higher threshold.
    tie = {
        "threshold": np.array([0.4, 0.5, 0.6]),
        "fah": np.array([0.5, 0.2, 0.2]),
        "recall": np.full(3, 0.7),
    }
    assert recall_at_fah(tie, 1.0) == pytest.approx((0.7, 0.6))


def test_area_under_recall_fah_by_hand() -> None:
    c = make_curve()
    # Achievable recall: .2 on [0,.5), .6 on [.5,1), .8 on [1,2]; area .1 + .3 + .8 = 1.2; / 2 = .6
    assert area_under_recall_fah(c, 2.0) == pytest.approx(0.6)
    # Equals the mean of recall_at_fah over a dense uniform FAH grid.
    fs = (np.arange(20000) + 0.5) / 20000 * 2.0
    dense = np.mean([recall_at_fah(c, f)[0] for f in fs])
    assert area_under_recall_fah(c, 2.0) == pytest.approx(dense, abs=1e-3)
    # No point with FAH 0: recall 0 until the first FAH.
    no_zero = {k: v[:3] for k, v in c.items()}
    assert area_under_recall_fah(no_zero, 2.0) == pytest.approx((0.6 * 0.5 + 0.8 * 1.0) / 2.0)
    # Nothing at or under max_fah: 0.
    assert area_under_recall_fah({k: v[:1] for k, v in c.items()}, 2.0) == 0.0
    with pytest.raises(ValueError, match="max_fah"):
        area_under_recall_fah(c, 0.0)
    with pytest.raises(ValueError, match="lacks key"):
        area_under_recall_fah({"fah": c["fah"]}, 2.0)


# ------------------------------------------------------------------------- per kind, latency, confusion


def test_false_alarm_rates_by_group() -> None:
    out = false_alarm_rates_by_group({"speech": 2, "music": 0}, {"speech": 0.5, "music": 0.25, "hum": 0.0})
    assert list(out) == ["music", "speech"]  # no audio of "hum": left out
    assert out["speech"]["false_alarms"] == 2 and out["speech"]["hours"] == 0.5 and out["speech"]["fah"] == 4.0
    lo, hi = poisson_interval(2, 0.5)
    assert (out["speech"]["fah_ci_low"], out["speech"]["fah_ci_high"]) == (lo, hi)
    assert out["music"]["fah"] == 0.0 and out["music"]["fah_ci_high"] == pytest.approx(3.689 / 0.25, abs=1e-2)
    with pytest.raises(ValueError, match="no audio"):
        false_alarm_rates_by_group({"hum": 1}, {"hum": 0.0})
    with pytest.raises(ValueError, match="hours"):
        false_alarm_rates_by_group({}, {"hum": -1.0})


def test_latency_summary() -> None:
    out = latency_summary([0.4, -0.1, 0.2, 1.0], 5)
    assert (out["n_clips"], out["n_detected"], out["detected_share"]) == (5, 4, 0.8)
    assert out["median_s"] == pytest.approx(0.3)  # mean of 0.2 and 0.4
    assert out["p95_s"] == pytest.approx(0.4 + 0.85 * 0.6)  # sorted -0.1 0.2 0.4 1.0: rank 0.95 * 3 = 2.85
    assert out["mean_s"] == pytest.approx(0.375) and out["early_share"] == 0.25
    empty = latency_summary([], 3)
    assert empty["detected_share"] == 0.0 and empty["median_s"] is None and empty["p95_s"] is None
    assert latency_summary([], 0)["detected_share"] == 0.0
    with pytest.raises(ValueError, match="n_clips"):
        latency_summary([0.1, 0.2], 1)
    with pytest.raises(ValueError, match="finite"):
        latency_summary([float("nan")], 1)


def test_confusion_by_kind() -> None:
    kinds = np.array(["positive", "positive", "negative", "hard_negative", "positive"])
    out = confusion_by_kind(kinds, [True, False, True, False, True], ["positive", "negative", "hard_negative",
                                                                      "background"])
    assert out == {"positive": {"detected": 2, "not_detected": 1}, "negative": {"detected": 1, "not_detected": 0},
                   "hard_negative": {"detected": 0, "not_detected": 1},
                   "background": {"detected": 0, "not_detected": 0}}
    with pytest.raises(ValueError, match="partial"):
        confusion_by_kind(np.array(["partial"]), [True], ["positive"])
    with pytest.raises(ValueError, match="equally long"):
        confusion_by_kind(kinds, [True], ["positive"])
