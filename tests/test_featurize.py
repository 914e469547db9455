"""Augmented windows: placement, level, SNR, noise floor and determinism, checked independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wakeword.audio import rms_dbfs
from wakeword.features import frames_for, log_mel
from wakeword.featureset import KIND_CODES
from wakeword.featurize import (
    SEGMENT_LABEL_CHARS,
    FeaturizeError,
    Pools,
    _rng,
    build_eval,
    build_train,
    features_of,
    featurize,
    render_window,
    stream_segments,
)
from wakeword.params import AudioParams, AugmentParams, DetectorParams, FeatureParams


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def pools() -> Pools:
    rng = np.random.default_rng(0)
    return Pools(positive=[tone(0.8, 440), tone(0.9, 550)], negative=[tone(1.2, 300), tone(0.5, 700)],
                 hard_negative=[tone(0.7, 480)], background=[rng.standard_normal(48000).astype(np.float32) * 0.1])


def test_placement_level_and_floor(pools: Pools) -> None:
    aug = AugmentParams(noise_prob=0.0, context_prob=0.0, stretch_prob=0.0, pitch_prob=0.0)
    utt = pools.positive[0]
    x, start, end = render_window(utt, 24000, pools, aug, np.random.default_rng(3))
    assert end - start == utt.shape[0] and 0 <= start and end <= 24000
    speech_db = rms_dbfs(x[start:end])
    assert aug.level_dbfs[0] - 0.5 <= speech_db <= aug.level_dbfs[1] + 0.5
    outside = np.concatenate([x[:start], x[end:]])
    if outside.size:
        floor_db = rms_dbfs(outside)
        assert aug.noise_floor_dbfs[0] - 1 <= floor_db <= aug.noise_floor_dbfs[1] + 1
    assert np.count_nonzero(x == 0.0) < 10  # never runs of digital silence


def test_training_augmentation_is_applied_and_eval_is_not(pools: Pools) -> None:
    """Time stretch (and pitch shift) change the utterance in training windows only; a room impulse
    response from pools.rir reverberates the speech."""
    aug = AugmentParams(noise_prob=0.0, context_prob=0.0, stretch_prob=1.0, stretch_range=(1.25, 1.25),
                        pitch_prob=0.0, rir_prob=0.0)
    utt = pools.positive[0]
    _, start, end = render_window(utt, 24000, pools, aug, np.random.default_rng(3))
    assert end - start == pytest.approx(utt.shape[0] / 1.25, abs=2)
    _, start, end = render_window(utt, 48000, pools, aug, np.random.default_rng(3), eval_mode=True)
    assert end - start == utt.shape[0]
    plain = AugmentParams(noise_prob=0.0, context_prob=0.0, stretch_prob=0.0, pitch_prob=0.0, rir_prob=1.0)
    dry = render_window(utt, 24000, pools, plain, np.random.default_rng(4))[0]
    echo = np.zeros(4000, dtype=np.float32)
    echo[0], echo[3000] = 1.0, 0.8
    wet = render_window(utt, 24000, Pools(**{**pools.__dict__, "rir": [echo]}), plain, np.random.default_rng(4))[0]
    assert wet.shape == dry.shape and np.abs(wet - dry).max() > 1e-3
    # the echo 3000 samples later is in the reverberated window: energy after the utterance rises
    e0 = render_window(utt, 24000, pools, plain, np.random.default_rng(4))[2]
    assert rms_dbfs(wet[e0 : e0 + 2500]) > rms_dbfs(dry[e0 : e0 + 2500]) + 20


def test_pauses_lengthen_training_utterances_of_every_kind_and_never_eval_clips(pools: Pools) -> None:
    """``augment.pause_prob``: a positive and a confusable get the same treatment (no label cue); the placed
    utterance is longer by the pause; evaluation clips are never touched."""
    aug = AugmentParams(noise_prob=0.0, context_prob=0.0, stretch_prob=0.0, pitch_prob=0.0, rir_prob=0.0,
                        pause_prob=1.0, pause_s=(0.2, 0.2))
    for utt in (pools.positive[0], pools.hard_negative[0]):
        trace: dict = {}
        _, start, end = render_window(utt, 24000, pools, aug, np.random.default_rng(3), trace=trace)
        assert trace["pause_s"] == 0.2 and end - start == utt.shape[0] + 3200
        _, start, end = render_window(utt, 48000, pools, aug, np.random.default_rng(3), eval_mode=True)
        assert end - start == utt.shape[0]


def test_noise_at_requested_snr(pools: Pools) -> None:
    aug = AugmentParams(noise_prob=1.0, context_prob=0.0, snr_db=(10.0, 10.0), level_dbfs=(-20.0, -20.0),
                        noise_floor_dbfs=(-120.0, -120.0))
    aug = aug.model_copy(update={"stretch_prob": 0.0, "pitch_prob": 0.0})
    utt = pools.positive[0]
    x, start, end = render_window(utt, 24000, pools, aug, np.random.default_rng(5))
    again = render_window(utt, 24000, pools, aug, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(x, again)  # same rng, same window
    placed = np.zeros_like(x)
    placed[start:end] = utt * 10 ** ((-20.0 - rms_dbfs(utt)) / 20)  # the speech at exactly -20 dBFS
    assert rms_dbfs(placed[start:end]) == pytest.approx(-20.0, abs=1e-3)
    # what remains is the background, 10 dB below the speech level (the -120 dBFS floor is negligible)
    assert rms_dbfs(x - placed) == pytest.approx(-30.0, abs=0.05)


def test_train_and_eval_sets_are_labelled_and_deterministic(pools: Pools) -> None:
    audio, aug = AudioParams(), AugmentParams(background_windows=3)
    wins, kinds = build_train(pools, audio, aug, seed=1)
    wins2, kinds2 = build_train(pools, audio, aug, seed=1)
    assert kinds == kinds2 and all(np.array_equal(a, b) for a, b in zip(wins, wins2))
    assert all(w.shape == (audio.clip_samples,) for w in wins)
    assert kinds.count(KIND_CODES["positive"]) == 2 * aug.train_variants
    assert kinds.count(KIND_CODES["negative"]) == 2 * aug.negative_windows_per_clip
    assert kinds.count(KIND_CODES["background"]) == 3
    clips, ekinds, spans = build_eval(pools, audio, aug, seed=1, split="test")
    assert all(c.shape == (audio.eval_clip_samples,) for c in clips)
    for k, (s, e) in zip(ekinds, spans):
        assert (s >= 0) == (k == KIND_CODES["positive"])
        if s >= 0:
            assert e > s >= 1600 and e <= audio.eval_clip_samples - 1600  # 0.1 s margins
    assert _rng(1, "train", "positive", 0).random() == _rng(1, "train", "positive", 0).random()


def test_batched_torch_features_match_numpy(pools: Pools) -> None:
    fp = FeatureParams()
    wins = [render_window(u, 24000, pools, AugmentParams(), np.random.default_rng(i))[0]
            for i, u in enumerate(pools.positive * 3)]
    got = features_of(wins, fp, "test", batch=4)
    want = np.stack([log_mel(w, fp) for w in wins])
    np.testing.assert_allclose(got, want, atol=2e-3)


# ------------------------------------------------------------------------------ stream segment table


def _wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.05
    sf.write(str(path), x, 16000, subtype="PCM_16")
    return path


def _row(path: str, kind: str, root: str, seconds: float) -> str:
    return json.dumps({"id": path, "path": path, "kind": kind, "group": path, "duration_s": seconds, "root": root})


def test_stream_segments_from_the_json_beside_the_wav(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "streams" / "test.wav", 20.0)
    segs = [{"start_s": 12.0, "end_s": 20.004, "type": "music", "text": ""},  # rounding past the end: clipped
            {"start_s": 2.0, "end_s": 4.5, "type": "speech", "voice": "x", "text": "hello"},
            {"start_s": 4.4995, "end_s": 6.0, "type": "hum"}]  # 0.5 ms overlap: rounding, start moved to 4.5
    wav.with_suffix(".json").write_text(json.dumps({"n_samples": 320000, "segments": segs}))
    got, source = stream_segments(wav, 20.0, 16000)
    assert source == "test.json"
    assert got == [{"start_s": 2.0, "end_s": 4.5, "type": "speech", "voice": "x", "text": "hello"},
                   {"start_s": 4.5, "end_s": 6.0, "type": "hum"},
                   {"start_s": 12.0, "end_s": 20.0, "type": "music", "text": ""}]
    # what was said is kept for naming false alarms, cut to SEGMENT_LABEL_CHARS
    long = [{"start_s": 1.0, "end_s": 2.0, "type": "speech", "text": "a" * 500}]
    wav.with_suffix(".json").write_text(json.dumps({"segments": long}))
    assert stream_segments(wav, 20.0, 16000)[0][0]["text"] == "a" * SEGMENT_LABEL_CHARS
    own = _wav(tmp_path / "own" / "streams" / "kitchen.wav", 3.0)
    assert stream_segments(own, 3.0, 16000) == ([{"start_s": 0.0, "end_s": 3.0, "type": "unknown"}], None)


@pytest.mark.parametrize(("meta", "match"), [
    ({"segments": [{"start_s": 1.0, "end_s": 2.0, "type": "tv"}]}, "type 'tv'"),
    ({"segments": [{"start_s": 1.0, "end_s": 3.0, "type": "speech"}, {"start_s": 2.0, "end_s": 4.0,
                                                                       "type": "music"}]}, "overlap"),
    ({"segments": [{"start_s": 3.0, "end_s": 2.0, "type": "speech"}]}, "start_s < end_s"),
    ({"segments": [{"start_s": 19.0, "end_s": 25.0, "type": "speech"}]}, "past the end"),
    ({"segments": [{"start_s": 1.0, "type": "speech"}]}, "needs numeric"),
    ({"n_samples": 160000, "segments": []}, "another recording"),
    ({"segments": "none"}, "not a usable"),
    ({"segments": [{"start_s": 1.0, "end_s": 2.0, "type": "speech", "text": 7}]}, "text=7; it must be a string"),
    ({"segments": [{"start_s": 1.0, "end_s": 2.0, "type": "speech", "voice": None}]}, "voice=None"),
])
def test_stream_segments_reject_bad_tables(tmp_path: Path, meta: dict, match: str) -> None:
    wav = _wav(tmp_path / "s.wav", 20.0)
    wav.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(FeaturizeError, match=match):
        stream_segments(wav, 20.0, 16000)


def test_featurize_writes_the_segment_table_of_concatenated_streams(tmp_path: Path) -> None:
    synth, own, split = tmp_path / "synth", tmp_path / "own", tmp_path / "split"
    _wav(synth / "clips" / "bg.wav", 3.0)
    sf.write(str(synth / "clips" / "pos.wav"), tone(0.8, 440), 16000)
    sf.write(str(synth / "clips" / "neg.wav"), tone(0.8, 300), 16000)
    _wav(synth / "streams" / "val.wav", 8.0, 1)
    _wav(synth / "streams" / "test.wav", 10.0, 2)
    (synth / "streams" / "test.json").write_text(json.dumps({"segments": [
        {"start_s": 1.0, "end_s": 3.0, "type": "speech"}, {"start_s": 5.0, "end_s": 9.0, "type": "music"}]}))
    _wav(own / "streams" / "mine.wav", 6.0, 3)
    split.mkdir()
    clips = [_row("clips/pos.wav", "positive", "synth", 0.8), _row("clips/neg.wav", "negative", "synth", 0.8)]
    (split / "train.jsonl").write_text("\n".join([*clips, _row("clips/bg.wav", "background", "synth", 3.0)]))
    (split / "val.jsonl").write_text("\n".join([*clips, _row("streams/val.wav", "stream", "synth", 8.0)]))
    (split / "test.jsonl").write_text("\n".join([*clips, _row("streams/test.wav", "stream", "synth", 10.0),
                                                 _row("streams/mine.wav", "stream", "own", 6.0)]))
    fp = FeatureParams()
    aug = AugmentParams(train_variants=1, negative_windows_per_clip=1, background_windows=1, rir_prob=0.0)
    out = tmp_path / "features"
    index = featurize({"synth": synth, "own": own}, split, out, AudioParams(), fp, aug, seed=1)
    meta = index["streams"]["test"]
    table = json.loads((out / meta["segments"]).read_text())
    n_test, n_own = frames_for(160000, fp), frames_for(96000, fp)
    assert meta["frames"] == table["frames"] == n_test + n_own and table["hop_s"] == meta["hop_s"] == 0.01
    demo, mine = table["recordings"]
    assert (demo["path"], demo["root"], demo["frame_offset"], demo["frames"]) == ("streams/test.wav", "synth", 0, n_test)
    assert demo["segments_from"] == "test.json" and demo["duration_s"] == pytest.approx(10.0)
    assert [s["type"] for s in demo["segments"]] == ["speech", "music"]
    assert (mine["path"], mine["root"], mine["frame_offset"], mine["frames"]) == ("streams/mine.wav", "own", n_test,
                                                                                  n_own)
    assert mine["segments"] == [{"start_s": 0.0, "end_s": pytest.approx(6.0), "type": "unknown"}]
    assert np.load(out / meta["path"]).shape[0] == table["frames"]
    # the evaluation reads it back, checked against the stream, and splits the 16 s into hours per kind
    from wakeword.evaluation import fah_by_kind, load_stream_segments, score_set
    from wakeword.featureset import load_split, load_stream

    assert load_stream_segments(out, "test", table["frames"]) == table
    with pytest.raises(ValueError, match="cover"):
        load_stream_segments(out, "test", table["frames"] + 1)
    stream, hours = load_stream(out, "test")
    scored = score_set(lambda w: np.zeros((w.shape[0], 2), np.float32), load_split(out, "test"), stream, hours,
                       index["window_frames"], index["step_frames"], stream_segments=table)
    by_kind = fah_by_kind(np.zeros(0, np.int64), scored, index["window_frames"], index["step_frames"])
    want_s = {"speech": 2.0, "music": 4.0, "background": 4.0, "unknown": 6.0}
    assert {k: v["hours"] * 3600 for k, v in by_kind.items()} == pytest.approx(want_s)
    assert sum(v["hours"] for v in by_kind.values()) == pytest.approx(hours)


def test_featurize_keeps_each_examples_source_row(tmp_path: Path) -> None:
    synth, split = tmp_path / "synth", tmp_path / "split"
    _wav(synth / "clips" / "bg.wav", 3.0)
    for name, hz in (("pos", 440), ("neg", 300), ("conf", 500)):
        sf.write(str(synth / "clips" / f"{name}.wav"), tone(0.8, hz), 16000)
    _wav(synth / "streams" / "s.wav", 8.0, 1)
    split.mkdir()
    rows = [_row("clips/neg.wav", "negative", "synth", 0.8), _row("clips/bg.wav", "background", "synth", 3.0),
            _row("clips/pos.wav", "positive", "synth", 0.8), _row("clips/conf.wav", "hard_negative", "synth", 0.8)]
    for name in ("train", "val", "test"):
        (split / f"{name}.jsonl").write_text("\n".join([*rows, _row("streams/s.wav", "stream", "synth", 8.0)]))
    aug = AugmentParams(train_variants=2, negative_windows_per_clip=1, background_windows=2, rir_prob=0.0)
    out = tmp_path / "features"
    featurize({"synth": synth}, split, out, AudioParams(), FeatureParams(), aug, seed=1)
    from wakeword.evaluation import evaluate_split, heldout_voice_groups
    from wakeword.featureset import load_split

    train = load_split(out, "train")
    by_kind = {}
    for k, c in zip(train.kind.tolist(), train.clip.tolist(), strict=True):
        by_kind.setdefault(k, set()).add(c)
    # windows of the positive (and its truncation, if drawn) point to row 2, the confusable's to 3, the
    # negative's to 0; background windows mix background clips: no one row
    assert by_kind[KIND_CODES["positive"]] == {2} and by_kind.get(KIND_CODES["partial"], {2}) == {2}
    assert by_kind[KIND_CODES["negative"]] == {0} and by_kind[KIND_CODES["hard_negative"]] == {3}
    assert by_kind[KIND_CODES["background"]] == {-1}
    test = load_split(out, "test")  # evaluation clips: one per clip, background crops keep their clip's row
    assert dict(zip(test.kind.tolist(), test.clip.tolist(), strict=False)) == {
        KIND_CODES["positive"]: 2, KIND_CODES["negative"]: 0, KIND_CODES["hard_negative"]: 3,
        KIND_CODES["background"]: 1}
    cal = {"temperature": 1.0, "threshold": 0.5, "target_fah": 1.0}
    args = (cal, DetectorParams(), 100, np.linspace(0.05, 0.95, 19), 1.0)
    zero = lambda w: np.zeros((w.shape[0], 2), np.float32)
    got, _, _ = evaluate_split(zero, out, "test", *args, manifest_groups=["n", "b", "p", "c", "s"])
    assert set(got["by_voice"]) == {"p", "c"} and got["by_voice"]["p"]["positive_clips"] == 1
    with pytest.raises(ValueError, match="manifest has 3 rows"):
        evaluate_split(zero, out, "test", *args, manifest_groups=["n", "b", "p"])
    # the stages read the held-out manifest's groups only
    (split / "heldout.jsonl").write_text("\n".join(rows))
    assert heldout_voice_groups(split, "heldout") == ["clips/neg.wav", "clips/bg.wav", "clips/pos.wav", "clips/conf.wav"]
    assert heldout_voice_groups(split, "test") is None and heldout_voice_groups(tmp_path, "heldout") is None
