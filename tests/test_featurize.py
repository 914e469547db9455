"""Augmented windows: placement, level, SNR, noise floor and determinism, checked independently."""

from __future__ import annotations

import numpy as np
import pytest

from wakeword.audio import rms_dbfs
from wakeword.features import log_mel
from wakeword.featureset import KIND_CODES
from wakeword.featurize import Pools, _rng, build_eval, build_train, features_of, render_window
from wakeword.params import AudioParams, AugmentParams, FeatureParams


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
