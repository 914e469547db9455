"""Hard-negative mining: peak picking against a brute-force loop and hand-made streams, and the fine-tuning
baseline rule (the trained model is kept unless an epoch beats it on validation)."""

from __future__ import annotations

import numpy as np
import pytest

from wakeword.detector import DetectorConfig
from wakeword.featureset import KIND_CODES
from wakeword.mining import (
    REPORT_THRESHOLDS,
    fah_at_report_thresholds,
    mine_stream,
    peak_steps,
    report_configs,
)
from wakeword.params import DetectorParams


def _brute(p: np.ndarray, thr: float, gap: int, cap: int) -> list[int]:
    kept: list[int] = []
    for i in sorted(range(len(p)), key=lambda i: (-p[i], i)):
        if p[i] < thr:
            break
        if all(abs(i - k) >= gap for k in kept) or gap == 0:
            kept.append(i)
        if len(kept) == cap:
            break
    return sorted(kept)


def test_peak_steps_hand_made() -> None:
    p = np.array([0.1, 0.6, 0.9, 0.7, 0.2, 0.55, 0.95, 0.3])
    assert peak_steps(p, 0.5, 2, 10).tolist() == [2, 6]  # 1, 3 and 5 are within 2 steps of a higher peak
    assert peak_steps(p, 0.5, 0, 10).tolist() == [1, 2, 3, 5, 6]
    assert peak_steps(p, 0.5, 2, 1).tolist() == [6]
    assert peak_steps(p, 0.99, 2, 10).tolist() == []


@pytest.mark.parametrize("seed", range(5))
def test_peak_steps_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(300)
    for thr, gap, cap in ((0.5, 3, 1000), (0.8, 10, 7), (0.2, 1, 50), (0.9, 0, 1000)):
        assert peak_steps(p, thr, gap, cap).tolist() == _brute(p, thr, gap, cap)


def test_mine_stream_takes_the_windows_the_model_fires_on() -> None:
    window, step, feats = 20, 5, 3
    stream = np.zeros((400, feats), np.float32)
    stream[100:120] = 1.0  # the "model" fires on windows full of ones
    stream[300:320] = 1.0

    def logit_fn(x: np.ndarray) -> np.ndarray:
        m = x.mean(axis=(1, 2))
        return np.stack([np.zeros_like(m), 8 * m - 4], axis=1)

    cfg = DetectorConfig(threshold_on=0.5, threshold_off=0.4, vote_window=1, vote_threshold=1, lockout_ms=0,
                         step_ms=50)
    mined = mine_stream(logit_fn, stream, window, step, 0.5, 3, 100, cfg)
    assert mined.starts.tolist() == [100, 300]
    np.testing.assert_array_equal(mined.windows.x[0], stream[100:120])
    assert (mined.windows.y == 0).all() and (mined.windows.kind == KIND_CODES["hard_negative"]).all()
    assert mined.detections == 2 and mined.steps == (400 - window) // step + 1
    with pytest.raises(ValueError, match="mining stream"):
        mine_stream(logit_fn, stream[:10], window, step, 0.5, 3, 100, cfg)


def test_report_thresholds_count_events_a_low_mining_threshold_hides() -> None:
    """At a mining threshold at or under the hysteresis (0.1, as the default mine.threshold) the detector's off
    threshold is 0: it turns on at the first step over the threshold and never turns off, so it counts one
    event where there are two false alarms. The report thresholds (0.5, 0.9) count each separately, as a
    deployed detector would."""
    assert REPORT_THRESHOLDS == (0.5, 0.9)
    window, step, feats = 20, 5, 3
    stream = np.zeros((400, feats), np.float32)
    stream[100:120] = 1.0  # probability sigmoid(4) = 0.982: over both report thresholds
    stream[300:320] = 0.7  # sigmoid(1.6) = 0.832: over 0.5 only

    def logit_fn(x: np.ndarray) -> np.ndarray:
        m = x.mean(axis=(1, 2))
        return np.stack([np.zeros_like(m), 8 * m - 4], axis=1)  # background: sigmoid(-4) = 0.018 > 0

    det = DetectorParams(hysteresis=0.1, vote_window=1, vote_threshold=1, lockout_ms=0)
    cfg = DetectorConfig.from_params(det, 0.01, 50)  # mining threshold under the background: on from step 0
    mined = mine_stream(logit_fn, stream, window, step, 0.01, 3, 100, cfg, report_configs(det, 50))
    assert cfg.threshold_off == 0.0 and mined.detections == 1  # stuck on: one event for the whole stream
    assert mined.report_detections == (2, 1)
    assert fah_at_report_thresholds(mined, 0.5) == {"0.5": 4.0, "0.9": 2.0}  # events / 0.5 h
    bare = mine_stream(logit_fn, stream, window, step, 0.01, 3, 100, cfg)
    assert bare.report_detections == ()
    with pytest.raises(ValueError, match="report_configs"):
        fah_at_report_thresholds(bare, 1.0)
