"""The evaluation glue on hand-made score traces: every count below is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from wakeword.calibration import threshold_grid
from wakeword.evaluation import ScoredSet, evaluate_scored, operating_curve
from wakeword.featureset import KIND_CODES
from wakeword.params import DetectorParams


def logits_for(p: np.ndarray) -> np.ndarray:
    """Logits whose softmax[1] is p (temperature 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=-1)


def burst(n: int, at: int, width: int = 5, high: float = 0.9, low: float = 0.02) -> np.ndarray:
    x = np.full(n, low)
    x[at : at + width] = high
    return x


@pytest.fixture
def scored() -> ScoredSet:
    stream = np.full(36_000, 0.025)  # one hour at 100 ms steps
    stream[1000:1005] = 0.9
    stream[20_000:20_005] = 0.9  # two false alarms, far apart
    clips = [burst(16, 6), burst(16, 8), burst(16, 3), np.full(16, 0.02),  # positives: 3 of 4 detected
             burst(16, 6), np.full(16, 0.02),  # confusables: 1 of 2
             np.full(16, 0.02), np.full(16, 0.3)]  # negatives: none
    kinds = [KIND_CODES[k] for k in ["positive"] * 4 + ["hard_negative"] * 2 + ["negative"] * 2]
    return ScoredSet(
        clip_logits=logits_for(np.stack(clips)), stream_logits=logits_for(stream), kind=np.array(kinds),
        label=np.array([1, 1, 1, 1, 0, 0, 0, 0]), phrase_start_frame=np.full(8, -1),
        phrase_end_frame=np.full(8, -1), stream_hours=1.0,
    )


def test_metrics_at_threshold_by_hand(scored: ScoredSet) -> None:
    out, rows = evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert out["false_alarms"] == 2 and out["fah"] == pytest.approx(2.0)
    assert out["fah_ci_low"] < 2.0 < out["fah_ci_high"]
    assert out["recall_at_target"] == pytest.approx(0.75)
    assert out["confusable_false_accept_rate"] == pytest.approx(0.5)
    c = out["clip"]
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (3, 1, 1, 3)
    # clip score = max frame score: positives 0.9, 0.9, 0.9, 0.02; negatives 0.9, 0.02, 0.02, 0.3
    assert out["roc_auc"] == pytest.approx((3 * 3.5 + 1 * 1.0) / 16)
    # the curve: at every usable threshold below 0.9 the two bursts are the only events
    row = next(r for r in rows if r["threshold"] == pytest.approx(0.5))
    assert row["fah"] == pytest.approx(2.0) and row["recall"] == pytest.approx(0.75)
    assert out["recall_at_2p0_fah"] == pytest.approx(0.75) and out["recall_at_1p0_fah"] == pytest.approx(0.0)
    assert out["stream_on_fraction"] == pytest.approx(10 / 36_000)  # 3 of 5 votes: on at frames 1002-1006 etc.


def test_curve_leaves_out_thresholds_where_the_detector_stays_on(scored: ScoredSet) -> None:
    det = DetectorParams(hysteresis=0.1)
    curve = operating_curve(scored, 1.0, threshold_grid(0.01), det, 100, 0.02)
    # the stream background is 0.025: with threshold_off = on - 0.1 <= 0.025 (on <= 0.12) the detector turns on
    # at the first burst and never turns off: one "false alarm" per hour, but deaf. Those points are gone.
    assert curve["threshold"].min() == pytest.approx(0.13)
    assert curve["stream_on_fraction"].max() <= 0.02
    assert not np.any(curve["threshold"] <= 0.12)
    with pytest.raises(ValueError, match="too high"):
        operating_curve(scored, 1.0, np.array([0.05, 0.1]), det, 100, 0.02)
