"""The pure helpers of benchmarks/peer_microwakeword.py against hand-computed values; the part that runs the
peer model needs pymicro-wakeword (the ``peers`` extra) and is skipped without it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks.peer_microwakeword import (
    PeerMissingError,
    curve_without_intervals,
    evaluate_scores,
    event_rule,
    excluded_intervals,
    fah_key,
    format_table,
    inside,
    operating_curve_from_scores,
    pad_clip,
    require_peer,
    summarize,
    threshold_grid,
    to_pcm16,
)
from wakeword import metrics
from wakeword.detector import detections_over_thresholds


def test_threshold_grid_spans_zero_to_one_in_exact_steps() -> None:
    g = threshold_grid(0.005)
    assert g.shape == (201,) and g[0] == 0.0 and g[-1] == 1.0
    assert 0.97 in g and 0.91 in g and 0.5 in g
    assert np.all(np.diff(g) > 0)
    assert threshold_grid(0.3).tolist() == [0.0, 0.3, 0.6, 0.9, 1.0]
    with pytest.raises(ValueError):
        threshold_grid(0.0)


def test_events_are_threshold_crossings_with_a_strict_1p5_s_lockout() -> None:
    rule = event_rule(30)  # microWakeWord's 30 ms step: the lockout is 50 steps
    s = np.zeros(300)
    s[10:13] = 0.9  # one crossing (frames 10-12 stay above): event 1
    s[60] = 0.9  # 50 steps = 1500 ms after the event: not more than the lockout, no event
    s[120] = 0.9  # 110 steps after the last event: event 2
    s[171] = 0.5  # 51 steps = 1530 ms after it: event 3 at thresholds <= 0.5 (>= counts)
    assert detections_over_thresholds(s, np.array([0.0, 0.5, 0.6, 0.95]), rule).tolist() == [1, 3, 2, 0]
    # at 100 ms steps the lockout is 15 steps: frames 10, 60, 120, 171 are all more than 15 apart
    assert detections_over_thresholds(s, np.array([0.5, 0.6]), event_rule(100)).tolist() == [4, 3]


def _example() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    stream = np.zeros(720)  # 100 ms steps; peaks 10 s apart
    for i, h in enumerate([0.9, 0.7, 0.5, 0.5, 0.3, 0.3, 0.3]):
        stream[50 + 100 * i] = h
    pos = [np.array([0.0, m, 0.0]) for m in (0.95, 0.85, 0.65, 0.45, 0.1)]
    conf = [np.array([0.7]), np.array([0.1, 0.3])]
    neg = [np.array([0.2]), np.array([0.05, 0.0])]
    return stream, pos, conf, neg


def test_operating_curve_counts_events_recall_and_confusables_per_threshold() -> None:
    stream, pos, conf, _ = _example()
    thr = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
    curve = operating_curve_from_scores(stream, 2.0, pos, conf, thr, event_rule(100))
    # threshold 0 keeps the detector on over the whole stream: dropped (max_stream_on_fraction)
    assert curve["threshold"].tolist() == [0.2, 0.4, 0.6, 0.8]
    assert curve["false_alarms"].tolist() == [7, 4, 2, 1]
    assert curve["fah"].tolist() == [3.5, 2.0, 1.0, 0.5]
    assert curve["recall"].tolist() == [0.8, 0.8, 0.6, 0.4]
    assert curve["confusable_false_accept_rate"].tolist() == [1.0, 0.5, 0.5, 0.0]
    kept = operating_curve_from_scores(stream, 2.0, pos, conf, thr, event_rule(100), max_on_fraction=None)
    assert kept["threshold"][0] == 0.0 and kept["false_alarms"][0] == 1 and kept["recall"][0] == 1.0


def test_summary_picks_the_best_recall_within_each_fah_bound() -> None:
    stream, pos, conf, neg = _example()
    rule = event_rule(100)
    curve = operating_curve_from_scores(stream, 2.0, pos, conf, np.array([0.2, 0.4, 0.6, 0.8]), rule)
    at = operating_curve_from_scores(stream, 2.0, pos, conf, np.array([0.6]), rule, None)
    labels = np.array([1] * 5 + [0] * 4)
    scores = np.array([0.95, 0.85, 0.65, 0.45, 0.1, 0.7, 0.3, 0.2, 0.05])
    row = summarize(curve, at, 0.6, labels, scores, bounds=(0.25, 0.5, 1.0, 2.0))
    assert row["recall_at_0p25_fah"] == 0.0 and row["threshold_at_0p25_fah"] is None  # no threshold qualifies
    assert row["confusable_false_accept_rate_at_0p25_fah"] is None
    assert (row["recall_at_0p5_fah"], row["threshold_at_0p5_fah"], row["fah_at_0p5_fah"]) == (0.4, 0.8, 0.5)
    assert row["confusable_false_accept_rate_at_0p5_fah"] == 0.0
    assert (row["recall_at_1p0_fah"], row["threshold_at_1p0_fah"]) == (0.6, 0.6)
    assert (row["recall_at_2p0_fah"], row["threshold_at_2p0_fah"]) == (0.8, 0.4)
    assert (row["fah_at_cutoff"], row["false_alarms_at_cutoff"], row["recall_at_cutoff"]) == (1.0, 2, 0.6)
    assert row["confusable_false_accept_rate_at_cutoff"] == 0.5
    assert (row["eer"], row["eer_threshold"]) == metrics.eer(labels, scores)
    # the same through evaluate_scores (clip max scores, positives vs negatives + confusables)
    full = evaluate_scores("x", stream, 2.0, {"positive": pos, "negative": neg, "hard_negative": conf}, rule, 0.6,
                           np.array([0.2, 0.4, 0.6, 0.8]), add_clip_levels=False)
    assert full["recall_at_0p5_fah"] == 0.4 and full["eer"] == row["eer"] and full["stream_steps"] == 720
    table = format_table([full], {"recall_at_0p5_fah": 0.2, "eer": 0.1, "negative_hours": 1.0})
    assert "| x | 2.00 | 0.400 / 0.600 / 0.800 | " in table and "| 0.0% at 0.800 | 0.600 |" in table
    assert "(reference)" in table


def test_positive_clip_maxima_join_the_grid_so_no_operating_point_falls_between_grid_values() -> None:
    stream = np.zeros(100)
    stream[50] = 0.9  # one false alarm in 1 h at any threshold <= 0.9
    clips = {"positive": [np.array([0.1, 0.95]), np.array([0.93]), np.array([0.5])],
             "negative": [np.array([0.2])], "hard_negative": [np.array([0.94])]}
    grid = np.array([0.5, 0.9, 1.0])
    coarse = evaluate_scores("g", stream, 1.0, clips, event_rule(100), 0.9, grid, add_clip_levels=False)
    assert coarse["recall_at_0p5_fah"] == 0.0 and coarse["recall_at_1p0_fah"] == 1.0  # at 0.5: 1 FA/h
    fine = evaluate_scores("f", stream, 1.0, clips, event_rule(100), 0.9, grid)
    assert fine["thresholds_evaluated"] == 5  # 0.5, 0.9, 0.93, 0.95, 1.0
    assert (fine["recall_at_0p5_fah"], fine["threshold_at_0p5_fah"], fine["fah_at_0p5_fah"]) == (2 / 3, 0.93, 0.0)
    assert fine["confusable_false_accept_rate_at_0p5_fah"] == 1.0


def test_confusable_intervals_merge_and_cover_a_tail_after_each_phrase() -> None:
    segs = [{"start_s": 30.0, "end_s": 31.0, "type": "confusable"}, {"start_s": 5.0, "end_s": 6.0, "type": "speech"},
            {"start_s": 10.0, "end_s": 11.0, "type": "confusable"}, {"start_s": 12.0, "end_s": 12.5, "type": "confusable"}]
    iv = excluded_intervals(segs, tail_s=1.5)
    assert iv.tolist() == [[10.0, 14.0], [30.0, 32.5]]  # 10-12.5 and 12-14 merge; speech is not excluded
    assert excluded_intervals(segs[1:2]).shape == (0, 2)
    t = np.array([9.99, 10.0, 14.0, 14.01, 20.0, 31.0, 33.0])
    assert inside(t, iv).tolist() == [False, True, True, False, False, True, False]
    assert not inside(t, excluded_intervals([])).any()


def test_events_inside_the_confusable_intervals_are_left_out_with_their_hours() -> None:
    stream, pos, conf, neg = _example()  # 100 ms steps; peaks 0.9, 0.7, 0.5, 0.5, 0.3, 0.3, 0.3 at steps 50, 150...
    rule, thr = event_rule(100), np.array([0.2, 0.4, 0.6, 0.8])
    curve = operating_curve_from_scores(stream, 3.0, pos, conf, thr, rule)
    end_s = (np.arange(720) + 1) * 0.1  # step i ends at (i + 1) * 100 ms: the 0.7 peak (step 150) at 15.1 s
    iv = np.array([[14.0, 16.0], [30.0, 36.0]])  # holds the 0.7 peak and the first 0.5 one (25.1 s: no; 35.1 s: yes)
    wo = curve_without_intervals(curve, stream, 3.0, rule, end_s, iv)
    # before: 7, 4, 2, 1 events; each threshold loses those of the 0.7 peak (step 150) and the 0.5 peak at step
    # 350 that it counted
    assert curve["false_alarms"].tolist() == [7, 4, 2, 1]
    assert wo["false_alarms"].tolist() == [5, 2, 1, 1]
    assert float(wo["negative_hours"]) == pytest.approx(3.0 - 8.0 / 3600)
    assert wo["fah"] == pytest.approx(np.array([5, 2, 1, 1]) / (3.0 - 8.0 / 3600))
    np.testing.assert_array_equal(wo["recall"], curve["recall"])
    np.testing.assert_array_equal(wo["confusable_false_accept_rate"], curve["confusable_false_accept_rate"])
    # the row: within 0.5 FA/h only 0.8 qualified before (recall 0.4); now 0.6 does too (1 event in ~3 h), and
    # within 1 FA/h 0.4 (2 events)
    row = evaluate_scores("x", stream, 3.0, {"positive": pos, "negative": neg, "hard_negative": conf}, rule, 0.6, thr,
                          add_clip_levels=False, without=(end_s, iv))
    w = row["without_confusables"]
    assert row["recall_at_0p5_fah"] == 0.4 and w["recall_at_0p5_fah"] == 0.6 and w["threshold_at_0p5_fah"] == 0.6
    assert w["confusable_false_accept_rate_at_0p5_fah"] == 0.5 and w["stream_hours"] == pytest.approx(3.0 - 8 / 3600)
    table = format_table([row], None)
    assert "| 3.00, 0.600 / 0.800 / 0.800, 50.0% at 0.600 |" in table
    clips = {"positive": pos, "negative": neg, "hard_negative": conf}
    assert "without_confusables" not in evaluate_scores("x", stream, 3.0, clips, rule, 0.6, thr, add_clip_levels=False)
    with pytest.raises(ValueError, match="whole stream"):
        curve_without_intervals(curve, stream, 3.0, rule, end_s, np.array([[0.0, 10900.0]]))


def test_our_stream_steps_end_with_their_window() -> None:
    from types import SimpleNamespace

    from benchmarks.peer_microwakeword import OurScorer

    ours = OurScorer.__new__(OurScorer)  # no model directory: only the timing fields are read
    ours.model = SimpleNamespace(step_frames=10, window_frames=150, features=SimpleNamespace(hop_ms=10.0, win_ms=25.0))
    # step i: frames 10 i .. 10 i + 149; frame 149 starts at 1.49 s and its 25 ms window ends at 1.515 s
    assert ours.step_end_s(3).tolist() == pytest.approx([1.515, 1.615, 1.715])


def test_fah_key_names_bounds_like_the_metrics_files() -> None:
    assert [fah_key(b) for b in (0.5, 1, 2.0, 0.1)] == ["0p5", "1p0", "2p0", "0p1"]


def test_clip_padding_is_a_seeded_noise_floor_never_silence() -> None:
    clip = np.full(1600, 0.1, dtype=np.float32)
    a, b = pad_clip(clip, 3), pad_clip(clip, 3)
    assert a.shape == (12000 + 1600 + 12000,) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, pad_clip(clip, 4))
    assert np.array_equal(a[12000:13600], clip)
    pad = np.concatenate([a[:12000], a[-12000:]])
    assert np.all(pad != 0.0)
    assert 20 * np.log10(np.sqrt(np.mean(pad.astype(np.float64) ** 2))) == pytest.approx(-65.0, abs=0.2)


def test_pcm16_conversion_clips_and_rounds() -> None:
    pcm = np.frombuffer(to_pcm16(np.array([0.0, 1.0, -1.0, 0.25, 2.0, -3.0])), dtype="<i2")
    assert pcm.tolist() == [0, 32767, -32767, 8192, 32767, -32767]


def test_a_missing_peer_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymicro_wakeword", None)  # makes the import fail
    with pytest.raises(PeerMissingError, match=r"pymicro-wakeword.*'peers'.*\.\[dev,peers\]"):
        require_peer()


def test_microwakeword_scorer_gives_one_step_per_30_ms() -> None:
    pytest.importorskip("pymicro_wakeword")
    from benchmarks.peer_microwakeword import MicroWakeWordScorer

    mww = MicroWakeWordScorer()
    assert (mww.step_ms, mww.window, mww.cutoff) == (30, 5, 0.97)
    mww.reset()
    mww.feed(pad_clip(np.zeros(0, dtype=np.float32), 0))  # 1.5 s of noise floor: 148 feature frames
    mean, raw = mww.scores()
    assert mean.shape == raw.shape == (148 // 3,)
    assert np.all((mean >= 0) & (mean <= 1)) and np.all((raw >= 0) & (raw <= 1))
    assert np.all(mean[:4] == 0.0)  # the sliding window of 5 is not full yet
    assert mean[4] == pytest.approx(raw[:5].mean())
    # step i runs on feature frame 3 (i + 1), which ends 30 ms after it starts at 10 ms x (frame - 1)
    assert mww.step_end_s(3).tolist() == pytest.approx([0.05, 0.08, 0.11])
