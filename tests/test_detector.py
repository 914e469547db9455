"""Streaming detector (SPEC 4.3): hand-made traces frame by frame, and the vectorised batch functions
against the frame-by-frame reference on many random traces."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from wakeword.detector import (
    PRESETS,
    DetectorConfig,
    StreamingDetector,
    clips_detected_over_thresholds,
    detect,
    detection_steps_over_thresholds,
    detections_over_thresholds,
    on_fraction_over_thresholds,
    vote_signal,
)
from wakeword.params import DetectorParams

BALANCED = PRESETS["balanced"]  # on 0.65, off 0.55, 3 of 5, lockout 1500 ms, step 100 ms


def run(cfg: DetectorConfig, trace: list[float]) -> tuple[list[bool], list[bool]]:
    """(fired, is_on) after every frame, through the reference frame-by-frame detector."""
    det = StreamingDetector(cfg)
    fired, on = [], []
    for s in trace:
        fired.append(det.push(s))
        on.append(det.is_on)
    return fired, on


def frames(fired: list[bool]) -> list[int]:
    return [i for i, f in enumerate(fired) if f]


# ------------------------------------------------------------------------------------------ hand traces


def test_one_utterance_gives_one_event_frame_by_frame() -> None:
    trace = [0.1, 0.2, 0.7, 0.8, 0.9, 0.8, 0.6, 0.3, 0.1, 0.1, 0.1]
    fired, on = run(BALANCED, trace)
    # f2..f4 are >= 0.65: the third vote (frame 4) switches on and fires.
    assert fired == [False] * 4 + [True] + [False] * 6
    # Off when fewer than 3 of the last 5 are >= 0.55: frame 8 window (.9 .8 .6 .3 .1) has 3 -> still on;
    # frame 9 window (.8 .6 .3 .1 .1) has 2 -> off.
    assert on == [False] * 4 + [True] * 5 + [False] * 2
    assert detect(trace, BALANCED).tolist() == [4]


def test_k_of_n_voting() -> None:
    # Three votes in a window of five, not consecutive: fires on the third.
    fired, _ = run(BALANCED, [0.7, 0.1, 0.7, 0.1, 0.7, 0.1])
    assert frames(fired) == [4]
    # Votes spread so no 5-frame window holds three of them: never fires.
    fired, on = run(BALANCED, [0.7, 0.1, 0.1, 0.7, 0.1, 0.1, 0.7, 0.1, 0.1, 0.7])
    assert frames(fired) == [] and not any(on)
    # Two votes only (K = 3): no detection; the same trace fires with the aggressive preset (K = 2, 0.55).
    trace = [0.1, 0.9, 0.9, 0.1, 0.1, 0.1]
    assert frames(run(BALANCED, trace)[0]) == []
    assert frames(run(PRESETS["aggressive"], trace)[0]) == [2]
    # Conservative needs 4 of 5 >= 0.75.
    assert frames(run(PRESETS["conservative"], [0.8, 0.8, 0.8, 0.5, 0.8, 0.8])[0]) == [4]
    assert frames(run(PRESETS["conservative"], [0.8, 0.8, 0.8, 0.5, 0.5, 0.8])[0]) == []


def test_score_equal_to_threshold_votes() -> None:
    fired, _ = run(BALANCED, [0.65, 0.65, 0.65])
    assert frames(fired) == [2]  # >= threshold_on, and the short window at the start counts
    fired, _ = run(BALANCED, [0.6499, 0.65, 0.65, 0.1])
    assert frames(fired) == []


def single_frame(lockout_ms: int = 1500) -> DetectorConfig:
    return DetectorConfig(0.5, 0.5, vote_window=1, vote_threshold=1, lockout_ms=lockout_ms, step_ms=100)


def test_lockout_boundary_exactly_at_lockout_does_not_fire() -> None:
    cfg = single_frame()
    trace = [0.0] * 30
    trace[0] = trace[15] = 0.9  # 15 frames * 100 ms = 1500 ms = lockout: not "> lockout"
    assert frames(run(cfg, trace)[0]) == [0]
    assert detect(trace, cfg).tolist() == [0]


def test_lockout_one_step_more_fires() -> None:
    cfg = single_frame()
    trace = [0.0] * 30
    trace[0] = trace[16] = 0.9  # 1600 ms > 1500 ms
    assert frames(run(cfg, trace)[0]) == [0, 16]
    assert detect(trace, cfg).tolist() == [0, 16]


def test_blocked_rising_edge_stays_on_and_does_not_fire_later() -> None:
    # The second utterance starts inside the lockout (frame 15) and is still going at frame 16, when the
    # lockout has expired: it must not produce a detection ("one utterance, at most one detection").
    cfg = single_frame()
    trace = [0.0] * 30
    trace[0] = 0.9
    for i in range(15, 20):
        trace[i] = 0.9
    fired, on = run(cfg, trace)
    assert frames(fired) == [0]
    assert on[15] and on[19] and not on[20]
    assert detect(trace, cfg).tolist() == [0]


def test_lockout_counts_from_last_detection_not_last_edge() -> None:
    cfg = single_frame(lockout_ms=1000)
    trace = [0.0] * 30
    trace[0] = trace[8] = trace[11] = 0.9  # 8 blocked (800 ms); 11 is 1100 ms after the detection at 0
    assert frames(run(cfg, trace)[0]) == [0, 11]


def test_hysteresis_holds_detector_on_between_off_and_on() -> None:
    trace = [0.9, 0.9, 0.9] + [0.6] * 20 + [0.9] * 3 + [0.1] * 5
    fired, on = run(BALANCED, trace)
    assert frames(fired) == [2]
    assert all(on[2:26])  # 0.6 lies in [0.55, 0.65): keeps it on for 2.3 s, past the lockout
    assert not on[-1]
    # Without hysteresis (off = on) the 0.6 stretch turns it off, and the second rise fires again.
    no_hyst = DetectorConfig(0.65, 0.65, 5, 3, 1500, 100)
    fired, on = run(no_hyst, trace)
    assert frames(fired) == [2, 25]
    assert not on[10]
    for cfg in (BALANCED, no_hyst):
        assert detect(trace, cfg).tolist() == frames(run(cfg, trace)[0])


def test_values_between_off_and_on_do_not_switch_on() -> None:
    fired, on = run(BALANCED, [0.6] * 20)
    assert frames(fired) == [] and not any(on)


def test_second_utterance_after_lockout_fires_again() -> None:
    utterance = [0.2, 0.7, 0.9, 0.9, 0.8, 0.4]
    silence = [0.05] * 20  # 2 s
    trace = silence[:5] + utterance + silence + utterance + silence[:5]
    got = detect(trace, BALANCED).tolist()
    first = 5 + 3  # third vote: 0.7, 0.9, 0.9
    second = first + len(utterance) + len(silence)
    assert got == [first, second]
    assert frames(run(BALANCED, trace)[0]) == got


def test_reset_forgets_lockout_and_state() -> None:
    cfg = single_frame(lockout_ms=60000)
    det = StreamingDetector(cfg)
    assert det.push(0.9) is True
    assert det.push(0.0) is False and det.push(0.9) is False  # locked out
    det.reset()
    assert det.frames_seen == 0 and det.last_detection_frame is None and not det.is_on
    assert det.push(0.9) is True
    assert det.push_many([0.0, 0.9]).tolist() == []
    det.reset()
    assert det.push_many([0.0, 0.9, 0.0]).tolist() == [1]


def test_nan_score_raises() -> None:
    with pytest.raises(ValueError, match="finite"):
        StreamingDetector(BALANCED).push(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        detect([0.1, float("nan")], BALANCED)
    with pytest.raises(ValueError, match="1-D"):
        detect(np.zeros((2, 2)), BALANCED)


def test_empty_inputs() -> None:
    assert detect([], BALANCED).tolist() == []
    assert detections_over_thresholds([], [0.5, 0.6], BALANCED).tolist() == [0, 0]
    assert detections_over_thresholds([0.9] * 5, [], BALANCED).shape == (0,)
    assert clips_detected_over_thresholds([], [0.5], BALANCED).shape == (0, 1)
    assert clips_detected_over_thresholds([[]], [0.5], BALANCED).tolist() == [[False]]


# ---------------------------------------------------------------------------------------------- config


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="threshold_off"):
        DetectorConfig(0.5, 0.6, 5, 3, 1500, 100)
    with pytest.raises(ValueError, match="threshold_on"):
        DetectorConfig(1.5, 0.6, 5, 3, 1500, 100)
    with pytest.raises(ValueError, match="vote_threshold"):
        DetectorConfig(0.6, 0.5, 3, 4, 1500, 100)
    with pytest.raises(ValueError, match="lockout_ms"):
        DetectorConfig(0.6, 0.5, 5, 3, -1, 100)
    with pytest.raises(ValueError, match="step_ms"):
        DetectorConfig(0.6, 0.5, 5, 3, 1500, 0)
    with pytest.raises(ValueError, match="integer"):
        DetectorConfig(0.6, 0.5, 5.5, 3, 1500, 100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        DetectorConfig(float("nan"), 0.5, 5, 3, 1500, 100)


def test_presets_match_spec() -> None:
    expected = {"aggressive": (2, 1000, 0.55), "balanced": (3, 1500, 0.65), "conservative": (4, 2000, 0.75)}
    assert set(PRESETS) == set(expected)
    for name, (k, lockout, on) in expected.items():
        cfg = DetectorConfig.preset(name, step_ms=80)
        assert (cfg.vote_threshold, cfg.vote_window, cfg.lockout_ms, cfg.threshold_on) == (k, 5, lockout, on)
        assert cfg.threshold_off == pytest.approx(on - 0.1) and cfg.step_ms == 80
    with pytest.raises(ValueError, match="unknown detector preset"):
        DetectorConfig.preset("nope", 100)


def test_from_params_and_json_roundtrip() -> None:
    cfg = DetectorConfig.from_params(DetectorParams(), threshold_on=0.65, step_ms=100)
    assert cfg == BALANCED  # spec defaults: 0.65/0.55 (exact, no float drift), 3 of 5, 1500 ms
    low = DetectorConfig.from_params(DetectorParams(hysteresis=0.2), threshold_on=0.1, step_ms=100)
    assert low.threshold_off == 0.0
    back = DetectorConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    with pytest.raises(ValueError, match="unknown keys: thresold_on"):
        DetectorConfig.from_dict({**cfg.to_dict(), "thresold_on": 0.5})
    with pytest.raises(ValueError, match="missing keys: step_ms"):
        DetectorConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "step_ms"})
    moved = cfg.with_threshold_on(0.8)
    assert moved.threshold_off == 0.7 and moved.vote_threshold == 3


def test_detector_module_does_not_import_torch() -> None:
    code = "import sys, wakeword.detector; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------- vectorised == reference


def random_config(rng: np.random.Generator) -> DetectorConfig:
    n = int(rng.integers(1, 8))
    k = int(rng.integers(1, n + 1))
    on = float(rng.choice([0.3, 0.45, 0.5, 0.65, 0.8]))
    off = round(max(0.0, on - float(rng.choice([0.0, 0.05, 0.1, 0.25, 0.6]))), 12)
    lockout = int(rng.choice([0, 100, 250, 300, 500, 1500]))
    return DetectorConfig(on, off, n, k, lockout, int(rng.choice([50, 100])))


def random_trace(rng: np.random.Generator, length: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # on a 0.05 grid: hits thresholds exactly, exercising >=
        return np.round(rng.integers(0, 21, length) * 0.05, 2)
    if kind == 1:  # bursts, like utterances over background
        base = rng.beta(0.6, 4.0, length)
        for start in rng.integers(0, max(1, length), rng.integers(0, 6)):
            base[start : start + rng.integers(1, 12)] = rng.uniform(0.4, 1.0)
        return base
    return rng.random(length)


def test_detect_equals_streaming_reference_on_random_traces() -> None:
    rng = np.random.default_rng(20240611)
    for _ in range(600):
        cfg = random_config(rng)
        trace = random_trace(rng, int(rng.integers(0, 120)))
        ref = StreamingDetector(cfg).push_many(trace)
        assert detect(trace, cfg).tolist() == ref.tolist(), (cfg, trace.tolist())


def test_detections_over_thresholds_equals_loop() -> None:
    rng = np.random.default_rng(7)
    grid = np.round(np.arange(0, 21) * 0.05, 2)
    for _ in range(120):
        cfg = random_config(rng)
        trace = random_trace(rng, int(rng.integers(0, 300)))
        thresholds = grid if rng.random() < 0.5 else rng.random(int(rng.integers(1, 15)))
        got = detections_over_thresholds(trace, thresholds, cfg)
        loop = [len(detect(trace, cfg.with_threshold_on(t))) for t in thresholds]
        assert got.tolist() == loop
        # ... and, for a few thresholds, against the frame-by-frame reference itself.
        for t in thresholds[:3]:
            assert got[list(thresholds).index(t)] == len(
                StreamingDetector(cfg.with_threshold_on(t)).push_many(trace)
            )


def test_clips_detected_over_thresholds_equals_loop() -> None:
    rng = np.random.default_rng(11)
    thresholds = np.round(np.arange(1, 20) * 0.05, 2)
    for _ in range(40):
        cfg = random_config(rng)
        clips = [random_trace(rng, int(rng.integers(0, 25))) for _ in range(int(rng.integers(0, 30)))]
        got = clips_detected_over_thresholds(clips, thresholds, cfg)
        assert got.shape == (len(clips), len(thresholds)) and got.dtype == bool
        expected = np.array(
            [
                [len(StreamingDetector(cfg.with_threshold_on(t)).push_many(c)) > 0 for t in thresholds]
                for c in clips
            ],
            dtype=bool,
        ).reshape(len(clips), len(thresholds))
        assert np.array_equal(got, expected)


def test_on_fraction_equals_the_reference_detector() -> None:
    rng = np.random.default_rng(11)
    thresholds = np.round(np.arange(1, 100) * 0.01, 6)
    for case in range(40):
        cfg = DetectorConfig(0.6, 0.6 - rng.choice([0.0, 0.1, 0.3]), vote_window=int(rng.integers(1, 7)),
                             vote_threshold=1, lockout_ms=int(rng.integers(0, 2000)), step_ms=100)
        cfg = DetectorConfig(cfg.threshold_on, cfg.threshold_off, cfg.vote_window,
                             int(rng.integers(1, cfg.vote_window + 1)), cfg.lockout_ms, 100)
        trace = rng.beta(0.5, 2.0, size=int(rng.integers(1, 300)))
        got = on_fraction_over_thresholds(trace, thresholds, cfg)
        for j, t in enumerate(thresholds):
            _, on = run(cfg.with_threshold_on(float(t)), trace.tolist())
            assert got[j] == pytest.approx(np.mean(on)), (case, t)


def test_on_fraction_shows_a_detector_that_never_turns_off() -> None:
    cfg = DetectorConfig(0.5, 0.4, vote_window=5, vote_threshold=3, lockout_ms=1500, step_ms=100)
    trace = np.full(1000, 0.05)
    trace[10:15] = 0.9
    # on = 0.12 -> off = 0.02 < 0.05: on from frame 12 to the end; on = 0.5 -> off = 0.4: on for 5 frames
    frac = on_fraction_over_thresholds(trace, np.array([0.12, 0.5]), cfg)
    assert frac[0] == pytest.approx(988 / 1000) and frac[1] == pytest.approx(5 / 1000)
    assert detections_over_thresholds(trace, np.array([0.12, 0.5]), cfg).tolist() == [1, 1]


def test_vote_signal_is_the_kth_largest_of_the_last_n_scores() -> None:
    rng = np.random.default_rng(3)
    x = rng.random(60)
    for n, k in ((5, 3), (1, 1), (4, 1), (7, 7)):
        cfg = DetectorConfig(threshold_on=0.5, threshold_off=0.4, vote_window=n, vote_threshold=k, lockout_ms=0,
                              step_ms=100)
        q = vote_signal(x, cfg)
        for i in range(x.size):  # brute force: sort the window by hand
            win = sorted(x[max(0, i - n + 1) : i + 1], reverse=True)
            assert q[i] == (win[k - 1] if len(win) >= k else -np.inf), (n, k, i)


def test_detection_steps_over_thresholds_are_detect_per_threshold() -> None:
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(0.3, 0.25, 400), 0, 1)
    thresholds = np.array([0.2, 0.45, 0.6, 0.8])
    cfg = DetectorConfig.from_params(DetectorParams(), 1.0, 100)
    cols, rows = detection_steps_over_thresholds(x, thresholds, cfg)
    for i, t in enumerate(thresholds):
        np.testing.assert_array_equal(rows[cols == i], detect(x, cfg.with_threshold_on(float(t))))
    np.testing.assert_array_equal(np.bincount(cols, minlength=4), detections_over_thresholds(x, thresholds, cfg))
