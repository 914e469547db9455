"""The evaluation glue on hand-made score traces: every count below is worked out by hand."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from wakeword.calibration import threshold_grid
from wakeword.detector import DetectorConfig, detect
from wakeword.evaluation import (
    ScoredSet,
    clip_latencies,
    confusable_rate_at_fah,
    curve_without_kind,
    evaluate_scored,
    fah_by_kind,
    operating_curve,
    score_set,
    strongest_false_alarms,
)
from wakeword.featureset import KIND_CODES, FeatureSet
from wakeword.metrics import poisson_interval
from wakeword.params import DetectorParams, Params
from wakeword.scoring import clip_logits, probabilities


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


def test_by_voice_splits_the_clips_and_shares_the_stream(scored: ScoredSet) -> None:
    # positives 0, 1 (detected) are voice a, 2 (detected) and 3 (missed) voice b; confusable 4 (accepted) is a,
    # 5 (rejected) b; the negatives do not count, and a clip without a group is left out
    groups = np.array(["a", "a", "b", "b", "a", "b", "a", ""], dtype=object)
    out, _ = evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02, groups)
    a, b = out["by_voice"]["a"], out["by_voice"]["b"]
    assert set(out["by_voice"]) == {"a", "b"}
    assert (a["positive_clips"], a["confusable_clips"], b["positive_clips"], b["confusable_clips"]) == (2, 1, 2, 1)
    assert (a["recall_at_target"], b["recall_at_target"]) == (1.0, 0.5)  # overall 0.75
    assert (a["confusable_false_accept_rate"], b["confusable_false_accept_rate"]) == (1.0, 0.0)
    # the stream's two false alarms allow 2 FA/h (recall 0.75 overall), not 1 (recall 0): per voice the same
    assert (a["recall_at_2p0_fah"], b["recall_at_2p0_fah"]) == (1.0, 0.5)
    assert (a["recall_at_1p0_fah"], b["recall_at_1p0_fah"]) == (0.0, 0.0) == (out["recall_at_1p0_fah"],) * 2
    assert "by_voice" not in evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01),
                                             0.02)[0]


def test_by_engine_pools_the_voices_of_each_engine(scored: ScoredSet) -> None:
    # the same clips as above with "engine:voice" groups: x has voices a1, a2 (positives 0, 1, confusable 4), y
    # has b (positives 2, 3, confusable 5); per engine the rows equal the per-voice rows of the pooled groups
    groups = np.array(["x:a1", "x:a2", "y:b", "y:b", "x:a1", "y:b", "x:a2", ""], dtype=object)
    out, _ = evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02, groups)
    assert set(out["by_voice"]) == {"x:a1", "x:a2", "y:b"} and set(out["by_engine"]) == {"x", "y"}
    x, y = out["by_engine"]["x"], out["by_engine"]["y"]
    assert (x["positive_clips"], x["confusable_clips"], y["positive_clips"], y["confusable_clips"]) == (2, 1, 2, 1)
    assert (x["recall_at_target"], y["recall_at_target"]) == (1.0, 0.5)
    assert (x["confusable_false_accept_rate"], y["confusable_false_accept_rate"]) == (1.0, 0.0)
    assert (x["recall_at_2p0_fah"], y["recall_at_2p0_fah"]) == (1.0, 0.5)
    pooled = np.array([g.replace("x:a1", "x:a").replace("x:a2", "x:a") for g in groups], dtype=object)
    same, _ = evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02, pooled)
    assert out["by_engine"]["x"] == same["by_voice"]["x:a"] and out["by_engine"]["y"] == same["by_voice"]["y:b"]


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


# ------------------------------------------------------------------------------------ FAH per kind of audio


def stream_with_alarms(n_steps: int, detections: list[int]) -> np.ndarray:
    """A 100 ms-step score trace whose detector (3 of 5, lockout 1.5 s) fires exactly at ``detections``: each is
    the third step of a 5-step burst."""
    x = np.full(n_steps, 0.02)
    for j in detections:
        x[j - 2 : j + 3] = 0.9
    return x


def at(t_s: float) -> int:
    """The detection step whose window centre is t_s: window 100 frames, step 10 frames, hop 10 ms, so the
    centre of step j is (10 j + 50) * 0.01 s = 0.1 j + 0.5 s."""
    return round((t_s - 0.5) / 0.1)


SEGMENT_TABLE = {
    "hop_s": 0.01, "frames": 90_000,
    "recordings": [
        {"path": "streams/test.wav", "root": "synth", "frame_offset": 0, "frames": 60_000, "duration_s": 600.0,
         "segments_from": "test.json", "segments": [
             {"start_s": 10.0, "end_s": 20.0, "type": "speech"}, {"start_s": 100.0, "end_s": 160.0, "type": "music"},
             {"start_s": 200.0, "end_s": 230.0, "type": "hum"}, {"start_s": 300.0, "end_s": 310.0, "type": "babble"},
             {"start_s": 400.0, "end_s": 402.0, "type": "confusable"},
             {"start_s": 450.0, "end_s": 480.0, "type": "household"},
             {"start_s": 500.0, "end_s": 520.0, "type": "noise"}]},
        {"path": "streams/mine.wav", "root": "own", "frame_offset": 60_000, "frames": 30_000, "duration_s": 300.0,
         "segments_from": None, "segments": [{"start_s": 0.0, "end_s": 300.0, "type": "unknown"}]},
    ],
}


def test_fah_by_kind_on_a_hand_made_stream(scored: ScoredSet) -> None:
    # false alarms (window centres): speech at 15 s and 19.8 s (the window *ends* at 20.3 s, in the bed: the
    # centre rule keeps it with the speech that triggered it), babble at 305 s, music at 120 s and 150 s, hum
    # at 210 s, the bed at 50 s and 22.3 s, the own recording at 600 + 100 s.
    times = [15.0, 19.8, 20.3 + 2.0, 305.0, 120.0, 150.0, 210.0, 50.0, 700.0]
    steps = sorted(at(t) for t in times)
    n_steps = (90_000 - 100) // 10 + 1
    s = dataclasses.replace(scored, stream_logits=logits_for(stream_with_alarms(n_steps, steps)), stream_hours=0.25,
                            window_frames=100, step_frames=10, stream_segments=SEGMENT_TABLE)
    out, _ = evaluate_scored(s, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert out["false_alarms"] == len(times)
    by = out["fah_by_kind"]
    # hours: speech 10 + babble 10 s; noise = hum 30 + noise 20 s; bed = 600 - 162 s; own 300 s
    want = {"speech": (3, 20.0), "music": (2, 60.0), "noise": (1, 50.0), "household": (0, 30.0),
            "confusable": (0, 2.0), "background": (2, 438.0), "unknown": (1, 300.0)}
    assert set(by) == set(want)
    for kind, (k, secs) in want.items():
        assert by[kind]["false_alarms"] == k, kind
        assert by[kind]["hours"] == pytest.approx(secs / 3600), kind
        assert by[kind]["fah"] == pytest.approx(k / (secs / 3600)), kind
        lo, hi = poisson_interval(k, secs / 3600)
        assert (by[kind]["fah_ci_low"], by[kind]["fah_ci_high"]) == pytest.approx((lo, hi)), kind
    assert sum(v["hours"] for v in by.values()) == pytest.approx(s.stream_hours)


def test_fah_by_kind_attributes_by_window_centre(scored: ScoredSet) -> None:
    s = dataclasses.replace(scored, stream_segments=SEGMENT_TABLE, stream_hours=0.25, window_frames=100,
                            step_frames=10)
    # step 195: centre 20.0 s (speech ends at 20.0, the end is exclusive) -> bed; step 194: 19.9 s -> speech;
    # step 5995: centre frame 60_000 -> first frame of the own recording, t = 0 -> unknown
    by = fah_by_kind(np.array([194, 195, 5995]), s, 100, 10)
    assert (by["speech"]["false_alarms"], by["background"]["false_alarms"], by["unknown"]["false_alarms"]) == (1, 1, 1)
    # no segment table (features made before featurize wrote one): the whole stream is of unknown kind
    by = fah_by_kind(np.array([3, 40]), scored, 100, 10)
    assert list(by) == ["unknown"] and by["unknown"]["false_alarms"] == 2 and by["unknown"]["hours"] == 1.0


# ------------------------------------------------------------------------------- strongest false alarms


def test_strongest_false_alarms_by_hand(scored: ScoredSet) -> None:
    table = copy.deepcopy(SEGMENT_TABLE)
    segs = table["recordings"][0]["segments"]
    segs[0].update(text="turn the | lights on", voice="espeak:en-us+m3")  # speech 10-20 s
    segs[4].update(text="hey jarvi", voice="pico:en-GB")  # confusable 400-402 s
    n_steps = (90_000 - 100) // 10 + 1
    x = np.full(n_steps, 0.02)
    j = at(15.0)
    x[j - 2 : j + 3] = [0.9, 0.95, 0.7, 0.6, 0.99]  # 3rd largest of 5: 0.7 at j, 0.9 at j + 2 (all five)
    for t_s, h in ((401.0, 0.8), (120.0, 0.6), (50.0, 0.55), (700.0, 0.97), (210.0, 0.45)):
        x[at(t_s) - 2 : at(t_s) + 3] = h  # flat bursts: the vote signal is h from the middle step on
    s = dataclasses.replace(scored, stream_logits=logits_for(x), stream_hours=0.25, window_frames=100,
                            step_frames=10, stream_segments=table)
    rows = strongest_false_alarms(s, 1.0, DetectorParams(), 100)
    # 0.45 (hum) is under the 0.5 floor; the rest strongest first, each at its strongest step's window centre
    assert [r["score"] for r in rows] == pytest.approx([0.97, 0.9, 0.8, 0.6, 0.55], abs=1e-4)
    assert [r["step"] for r in rows] == [at(700.0), j + 2, at(401.0), at(120.0), at(50.0)]
    assert [r["type"] for r in rows] == ["unknown", "speech", "confusable", "music", "background"]
    assert [r["recording"] for r in rows] == ["streams/mine.wav"] + ["streams/test.wav"] * 4
    assert [r["time_s"] for r in rows] == pytest.approx([100.0, 15.2, 401.0, 120.0, 50.0])
    assert (rows[1]["text"], rows[1]["voice"]) == ("turn the | lights on", "espeak:en-us+m3")
    assert (rows[2]["text"], rows[2]["voice"]) == ("hey jarvi", "pico:en-GB")
    assert "text" not in rows[0] and "voice" not in rows[3]
    # a threshold above an event's score removes exactly that event (these events are far apart)
    probs = s.stream_probs(1.0)
    for t in (0.5, 0.58, 0.7, 0.85, 0.95, 0.98):
        fired = detect(probs, DetectorConfig.from_params(DetectorParams(), t, 100))
        assert fired.size == sum(r["score"] >= t for r in rows), t
    assert [r["score"] for r in strongest_false_alarms(s, 1.0, DetectorParams(), 100, n=2)] == pytest.approx(
        [0.97, 0.9], abs=1e-4)
    assert strongest_false_alarms(s, 1.0, DetectorParams(), 100, floor=0.99) == []
    # no segment table: score and step only; a lower floor reaches the 0.45 burst
    bare = strongest_false_alarms(dataclasses.replace(s, stream_segments=None), 1.0, DetectorParams(), 100,
                                  floor=0.4)
    assert [set(r) for r in bare] == [{"score", "step"}] * 6 and bare[-1]["score"] == pytest.approx(0.45, abs=1e-4)
    # the evaluation lists them from the lower of 0.5 and its threshold
    out, _ = evaluate_scored(s, 1.0, 0.92, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert out["strongest_false_alarms"] == rows and out["false_alarms"] == 1
    out, _ = evaluate_scored(s, 1.0, 0.42, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert len(out["strongest_false_alarms"]) == 6


def test_recall_without_the_confusable_phrases_of_the_stream(scored: ScoredSet) -> None:
    n_steps = (90_000 - 100) // 10 + 1
    x = np.full(n_steps, 0.02)
    x[at(401.0) - 2 : at(401.0) + 3] = 0.95  # a confusable phrase (400-402 s) sets off the strongest event
    x[at(15.0) - 2 : at(15.0) + 3] = 0.5  # and some speech a weak one
    s = dataclasses.replace(scored, stream_logits=logits_for(x), stream_hours=0.25, window_frames=100,
                            step_frames=10, stream_segments=SEGMENT_TABLE)
    args = (1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    out, _ = evaluate_scored(s, *args)
    # 0.25 h: even 2 FA/h allows no false alarm. With the confusable event only thresholds over 0.95 get there,
    # and there no positive clip (bursts of 0.9) fires; without it any threshold over 0.5 does: 3 of 4 clips.
    assert out["recall_at_0p5_fah"] == 0.0 and out["recall_at_2p0_fah"] == 0.0
    wo = out["without_confusables"]
    assert wo["negative_hours"] == pytest.approx(0.25 - 2.0 / 3600)
    assert [wo[f"recall_at_{k}_fah"] for k in ("0p1", "0p5", "1p0", "2p0")] == pytest.approx([0.75] * 4)
    # the kind of pair at 0.5 FA/h: its threshold is the highest with recall 0.75 and no false alarm,
    # the last grid step under the clips' 0.9 bursts; there the confusable clip with a burst fires (1 of 2).
    # With the confusable phrases in the stream no threshold reaches 0.5 FA/h: the never-firing detector, 0.
    assert wo["threshold_at_0p5_fah"] == pytest.approx(0.89)
    assert wo["confusable_false_accept_rate_at_0p5_fah"] == pytest.approx(0.5)
    assert out["confusable_false_accept_rate_at_0p5_fah"] == 0.0
    # per voice and per engine at that same threshold: voice a has positives 0, 1 (both fire), b 2, 3 (one fires)
    groups = np.array(["e:a", "e:a", "e:b", "e:b", "e:a", "e:b", "e:a", ""], dtype=object)
    by = evaluate_scored(s, *args, groups)[0]
    assert by["by_voice"]["e:a"]["recall_at_0p5_fah_without_confusables"] == 1.0
    assert by["by_voice"]["e:b"]["recall_at_0p5_fah_without_confusables"] == 0.5
    assert by["by_engine"]["e"]["recall_at_0p5_fah_without_confusables"] == 0.75
    assert by["by_engine"]["e"]["recall_at_0p5_fah"] == 0.0  # the stream's confusables left in: none reached
    assert by["by_engine"]["e"]["confusable_false_accept_rate_at_0p5_fah_without_confusables"] == pytest.approx(0.5)
    clips = scored.clip_probs(1.0).copy()
    clips[4, clips[4] > 0.5] = 0.7  # that confusable's burst under the 0.89 threshold: accepted by none
    low = dataclasses.replace(s, clip_logits=logits_for(clips))
    assert evaluate_scored(low, *args)[0]["without_confusables"]["confusable_false_accept_rate_at_0p5_fah"] == 0.0
    # a stream whose only events are the clips' kind of burst at 0.5: thresholds over 0.5 meet 0.5 FA/h there too
    quiet = x.copy()
    quiet[at(401.0) - 2 : at(401.0) + 3] = 0.02
    top, _ = evaluate_scored(dataclasses.replace(s, stream_logits=logits_for(quiet)), *args)
    assert top["recall_at_0p5_fah"] == pytest.approx(0.75)
    assert top["confusable_false_accept_rate_at_0p5_fah"] == pytest.approx(0.5)
    curve = operating_curve(s, 1.0, threshold_grid(0.01), DetectorParams(), 100, 0.02)
    alt = curve_without_kind(curve, s, 1.0, DetectorParams(), 100)
    at_t = {round(float(t), 2): int(k) for t, k in zip(alt["threshold"], alt["false_alarms"])}
    assert (at_t[0.3], at_t[0.5], at_t[0.51], at_t[0.95]) == (1, 1, 0, 0)
    np.testing.assert_array_equal(alt["recall"], curve["recall"])
    assert confusable_rate_at_fah(alt, curve, 0.5) == pytest.approx(0.5)  # 0.89 as above
    with pytest.raises(ValueError, match="one threshold grid"):
        confusable_rate_at_fah(alt, {**curve, "threshold": curve["threshold"] + 0.001}, 0.5)
    # an event whose window centre falls past the phrase (the bed at 403 s) still counts: conservative
    x[at(403.0) - 2 : at(403.0) + 3] = 0.92
    out, _ = evaluate_scored(dataclasses.replace(s, stream_logits=logits_for(x)), *args)
    assert out["without_confusables"]["recall_at_2p0_fah"] == 0.0
    # nothing to leave out: no segment table, or no confusable segment in it
    assert "without_confusables" not in evaluate_scored(dataclasses.replace(s, stream_segments=None), *args)[0]
    table = copy.deepcopy(SEGMENT_TABLE)
    table["recordings"][0]["segments"][4]["type"] = "speech"
    assert "without_confusables" not in evaluate_scored(dataclasses.replace(s, stream_segments=table), *args)[0]


# ----------------------------------------------------------------------------------- latency, confusion


def test_latency_by_hand(scored: ScoredSet) -> None:
    # positives: bursts at steps 6, 8, 3 -> first detections at steps 8, 10, 5 (3 of 5 votes); the 4th is missed.
    # detection frame = 10 j + 100; phrase ends at frames 150, 120, 170, 140:
    # latencies (180-150, 200-120, 150-170) * 10 ms = 0.30, 0.80, -0.20 s (the last one fired before the end)
    ends = np.array([150, 120, 170, 140, -1, -1, -1, -1])
    s = dataclasses.replace(scored, phrase_end_frame=ends, window_frames=100, step_frames=10)
    out, _ = evaluate_scored(s, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    lat = out["latency"]
    assert (lat["n_clips"], lat["n_detected"]) == (4, 3) and lat["detected_share"] == pytest.approx(0.75)
    assert lat["median_s"] == pytest.approx(0.30) and lat["mean_s"] == pytest.approx(0.30)
    assert lat["p95_s"] == pytest.approx(0.30 + 0.9 * 0.50)  # sorted -0.2, 0.3, 0.8: rank 0.95 * 2 = 1.9
    assert (lat["min_s"], lat["max_s"]) == pytest.approx((-0.20, 0.80))
    assert lat["early_share"] == pytest.approx(1 / 3)
    lat2, n = clip_latencies([8, None, 5], np.array([150, 140, 170]), 100, 10, 0.01)
    np.testing.assert_allclose(lat2, [0.30, -0.20])
    assert n == 3


def test_confusion_matrix_at_the_threshold(scored: ScoredSet) -> None:
    out, _ = evaluate_scored(scored, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert out["confusion_matrix"] == {
        "positive": {"detected": 3, "not_detected": 1}, "hard_negative": {"detected": 1, "not_detected": 1},
        "negative": {"detected": 0, "not_detected": 2}, "background": {"detected": 0, "not_detected": 0},
    }
    # at threshold 0.95 nothing fires
    out, _ = evaluate_scored(scored, 1.0, 0.95, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert out["confusion_matrix"]["positive"] == {"detected": 0, "not_detected": 4}


def test_old_keys_unchanged_and_new_keys_added(scored: ScoredSet) -> None:
    old = {"threshold", "target_fah", "fah", "fah_ci_low", "fah_ci_high", "false_alarms", "negative_hours",
           "recall_at_target", "eer", "eer_threshold", "roc_auc", "pauc_std_fpr10", "pauc_norm_fpr10",
           "pauc_std_fpr5", "pauc_norm_fpr5", "pauc", "clip", "confusable_false_accept_rate", "stream_on_fraction",
           "recall_at_0p1_fah", "recall_at_0p5_fah", "recall_at_1p0_fah", "recall_at_2p0_fah", "area_recall_fah_0_2",
           "counts"}
    s = dataclasses.replace(scored, window_frames=100, step_frames=10)
    out, _ = evaluate_scored(s, 1.0, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 0.02)
    assert set(out) == old | {"fah_by_kind", "latency", "confusion_matrix", "tta_shifts", "strongest_false_alarms",
                              "confusable_false_accept_rate_at_0p5_fah"}


# ------------------------------------------------------------------------------- test-time augmentation


def marker_logits(windows: np.ndarray) -> np.ndarray:
    """Logit of a window = 20 * (marker frames inside - 8.5): ~1 when it holds all 9 marker frames, ~0 with 8."""
    z = 20.0 * (windows[:, :, 0].sum(axis=1) - 8.5)
    return np.stack([np.zeros_like(z), z], axis=1).astype(np.float32)


def marker_set() -> FeatureSet:
    """One clip of 30 frames with the marker on frames 6..14. Window 10, step 4: the windows start at 0, 4, 8, ...
    and none holds frames 6..14 whole (start 4 ends at 13); shifted by 1 (start 5: 5..14) or 2 (start 6: 6..15)
    one does. A second clip without a marker."""
    x = np.zeros((2, 30, 3), np.float32)
    x[0, 6:15, 0] = 1.0
    return FeatureSet(x=x, y=np.array([1, 0], np.int8), kind=np.array([0, 1], np.int8),
                      phrase_start_frame=np.array([6, -1]), phrase_end_frame=np.array([14, -1]))


def test_tta_off_is_identical_to_plain_scoring() -> None:
    rng = np.random.default_rng(0)
    fs = FeatureSet(x=rng.standard_normal((6, 40, 4)).astype(np.float32), y=np.array([1, 1, 1, 0, 0, 0], np.int8),
                    kind=np.array([0, 0, 0, 1, 2, 1], np.int8), phrase_start_frame=np.full(6, -1),
                    phrase_end_frame=np.full(6, -1))
    w = rng.standard_normal(4).astype(np.float32)

    def fn(win: np.ndarray) -> np.ndarray:
        z = win.mean(axis=1) @ w * 5
        return np.stack([-z, z], axis=1).astype(np.float32)

    stream = rng.standard_normal((3000, 4)).astype(np.float32)
    new = score_set(fn, fs, stream, 1.0, 10, 4, 0)
    assert new.clip_logits_shifted == ()
    # the set as it was built before these options existed
    old = ScoredSet(clip_logits=clip_logits(fn, fs.x, 10, 4), stream_logits=new.stream_logits, kind=fs.kind,
                    label=fs.y.astype(np.int64), phrase_start_frame=fs.phrase_start_frame,
                    phrase_end_frame=fs.phrase_end_frame, stream_hours=1.0)
    np.testing.assert_array_equal(new.clip_probs(1.3), probabilities(old.clip_logits, 1.3))
    args = (1.3, 0.5, 1.0, DetectorParams(), 100, threshold_grid(0.01), 1.0)
    a, rows_a = evaluate_scored(new, *args)
    b, rows_b = evaluate_scored(old, *args)
    assert rows_a == rows_b
    assert {k: a[k] for k in b if k != "fah_by_kind"} == {k: v for k, v in b.items() if k != "fah_by_kind"}


def test_tta_shifts_score_a_phrase_between_steps() -> None:
    fs = marker_set()
    stream = np.zeros((200, 3), np.float32)
    plain = score_set(marker_logits, fs, stream, 1.0, 10, 4, 0).clip_probs(1.0)
    assert plain.shape == (2, 6) and plain[0].max() < 1e-4  # no step sees the whole marker
    one = score_set(marker_logits, fs, stream, 1.0, 10, 4, 1)
    two = score_set(marker_logits, fs, stream, 1.0, 10, 4, 2)
    assert [x.shape for x in two.clip_logits_shifted] == [(2, 5, 2), (2, 5, 2)]  # 29 and 28 frames: 5 steps
    p1, p2 = one.clip_probs(1.0), two.clip_probs(1.0)
    # step 1 (start 4) averages with shift 1's step 1 (start 5, whole marker): (s(-10) + s(10)) / 2 = 0.5
    assert p1[0, 1] == pytest.approx(0.5, abs=1e-6)
    # ... and with shift 2's step 1 (start 6, whole marker too): (s(-10) + 2 s(10)) / 3
    assert p2[0, 1] == pytest.approx(2 / 3, abs=1e-4)
    # the last step exists only unshifted: unchanged; the marker-free clip stays at ~0; the stream is not shifted
    assert p2[0, 5] == plain[0, 5] and p2[1].max() < 1e-4
    np.testing.assert_array_equal(two.stream_logits, score_set(marker_logits, fs, stream, 1.0, 10, 4).stream_logits)
    # the detector (1 vote of 1) now fires on the clip at 0.6 where it did not before
    det = DetectorParams(vote_window=1, vote_threshold=1, hysteresis=0.0)
    args = (1.0, 0.6, 1.0, det, 100, threshold_grid(0.05), 1.0)
    assert evaluate_scored(score_set(marker_logits, fs, stream, 1.0, 10, 4, 0), *args)[0]["recall_at_target"] == 0.0
    out = evaluate_scored(two, *args)[0]
    assert out["recall_at_target"] == 1.0 and out["tta_shifts"] == 2


def test_tta_shifts_must_stay_below_one_step() -> None:
    with pytest.raises(ValueError, match="tta_shifts"):
        score_set(marker_logits, marker_set(), np.zeros((200, 3), np.float32), 1.0, 10, 4, 4)
    with pytest.raises(ValueError, match="tta_shifts"):
        Params.model_validate({"calibrate": {"tta_shifts": 10}})  # step 100 ms / hop 10 ms = 10 frames
    assert Params.model_validate({"calibrate": {"tta_shifts": 9}}).calibrate.tta_shifts == 9
