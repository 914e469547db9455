"""Training-time augmentation switches: SpecAugment changes what the model learns, on-the-fly mode feeds
fresh windows every epoch, and the on-the-fly windows are the featurize stage's windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import CMVN
from wakeword.featureset import KIND_CODES, FeatureSet
from wakeword.featurize import (
    OnTheFlyWindows,
    add_simulated_rirs,
    build_train,
    epoch_seed,
    features_of,
    load_pools,
)
from wakeword.manifest import Item, read_manifest, write_manifest
from wakeword.params import (
    AudioParams,
    AugmentParams,
    CalibrateParams,
    DetectorParams,
    FeatureParams,
    ModelParams,
    TrainParams,
)
from wakeword.train import TrainData, TrainSetup, train_model

WINDOW, EVAL, STEP, F = 148, 298, 10, 40


def _sets(rng: np.random.Generator) -> tuple[FeatureSet, FeatureSet, np.ndarray]:
    def fs(n: int, frames: int, spans: bool) -> FeatureSet:
        y = (np.arange(n) % 2).astype(np.int8)
        x = rng.standard_normal((n, frames, F)).astype(np.float32) + y[:, None, None]
        start = np.where(y == 1, 20, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        end = np.where(y == 1, 100, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        return FeatureSet(x, y, np.where(y == 1, 0, 1).astype(np.int8), start, end)

    return fs(64, WINDOW, False), fs(12, EVAL, True), rng.standard_normal((3000, F)).astype(np.float32)


def _train(tmp: Path, aug: AugmentParams | None, epoch_windows=None, **kw: Any) -> dict[str, torch.Tensor]:
    return _run(tmp, aug, epoch_windows, **kw)[0]


def _run(tmp: Path, aug: AugmentParams | None, epoch_windows=None, features: FeatureParams | None = None,
         **train_kw: Any):
    train_set, val_set, stream = _sets(np.random.default_rng(0))
    cmvn = CMVN(np.zeros(F, np.float32), np.ones(F, np.float32), "log_mel", 1)
    index = {"window_frames": WINDOW, "step_frames": STEP, "n_features": F}
    data = TrainData(train_set, val_set, stream, 0.01, cmvn, index, epoch_windows)
    setup = TrainSetup(ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 1}),
                       TrainParams(epochs=3, batch_size=16, warmup_epochs=0), DetectorParams(), CalibrateParams(),
                       AudioParams(), 5, aug, features or FeatureParams())
    result = train_model(data, setup, tmp / "model.pt", **train_kw)
    model, _ = load_checkpoint(tmp / "model.pt")
    return {k: v.clone() for k, v in model.state_dict().items()}, result


def test_spec_augment_switch_changes_training(tmp_path: Path) -> None:
    off = _train(tmp_path / "a", AugmentParams(spec_prob=0.0))
    again = _train(tmp_path / "b", AugmentParams(spec_prob=0.0))
    on = _train(tmp_path / "c", AugmentParams(spec_prob=1.0, spec_time_masks=2, spec_freq_masks=2))
    assert all(torch.equal(off[k], again[k]) for k in off)  # deterministic
    assert any(not torch.equal(off[k], on[k]) for k in off)  # the masks reached the model


def test_random_eq_switch_changes_training(tmp_path: Path) -> None:
    off = _train(tmp_path / "a", AugmentParams(spec_prob=0.0, eq_prob=0.0))
    on = _train(tmp_path / "b", AugmentParams(spec_prob=0.0, eq_prob=1.0))
    again = _train(tmp_path / "c", AugmentParams(spec_prob=0.0, eq_prob=1.0))
    assert all(torch.equal(on[k], again[k]) for k in on)  # deterministic
    assert any(not torch.equal(off[k], on[k]) for k in off)  # the EQ reached the model
    # gains of 0 dB are the same as off: nothing else (e.g. a generator draw) changes the run
    zero = _train(tmp_path / "d", AugmentParams(spec_prob=0.0, eq_prob=1.0, eq_tilt_db=0.0, eq_band_db=0.0))
    assert all(torch.equal(off[k], zero[k]) for k in off)


def test_eq_feature_map_divides_by_the_cmvn_std_and_is_off_for_micro() -> None:
    from wakeword.train import eq_feature_map

    std = np.linspace(0.5, 2.0, F).astype(np.float32)
    cmvn = CMVN(np.zeros(F, np.float32), std, "log_mel", 1)
    setup = TrainSetup(ModelParams(), TrainParams(), DetectorParams(), CalibrateParams(), AudioParams(), 1,
                       AugmentParams(eq_prob=0.5))
    m = eq_feature_map(setup, cmvn)
    assert m is not None
    np.testing.assert_allclose(np.diag(m.numpy()), np.log(10) / 10 / std, rtol=1e-6)
    setup.features = FeatureParams(type="micro", win_ms=30.0)
    assert eq_feature_map(setup, cmvn) is None
    setup.features, setup.augment = FeatureParams(), AugmentParams(eq_prob=0.0)
    assert eq_feature_map(setup, cmvn) is None


def test_frequency_warp_switch_changes_training_and_resumes(tmp_path: Path) -> None:
    base = {"spec_prob": 0.0, "eq_prob": 0.0}
    off = _train(tmp_path / "a", AugmentParams(**base, warp_prob=0.0))
    on = _train(tmp_path / "b", AugmentParams(**base, warp_prob=1.0))
    again = _train(tmp_path / "c", AugmentParams(**base, warp_prob=1.0))
    assert all(torch.equal(on[k], again[k]) for k in on)  # deterministic
    assert any(not torch.equal(off[k], on[k]) for k in off)  # the warp reached the model
    # a range of [1, 1] and micro features are the same as off: no draw, no change
    flat = _train(tmp_path / "d", AugmentParams(**base, warp_prob=1.0, warp_range=[1.0, 1.0]))
    assert all(torch.equal(off[k], flat[k]) for k in off)
    micro = FeatureParams(type="micro", win_ms=30.0)
    assert all(torch.equal(a, b) for a, b in zip(_train(tmp_path / "e", AugmentParams(**base, warp_prob=0.0),
                                                        features=micro).values(),
                                                 _train(tmp_path / "f", AugmentParams(**base, warp_prob=1.0),
                                                        features=micro).values(), strict=True))

    class Killed(Exception):
        pass

    def die(epoch: int, _row: dict[str, float]) -> None:
        if epoch == 1:
            raise Killed

    aug = AugmentParams(**base, warp_prob=0.5)
    full = _train(tmp_path / "g", aug, state_dir=tmp_path / "g" / "state")
    with pytest.raises(Killed):
        _run(tmp_path / "h", aug, state_dir=tmp_path / "h" / "state", on_epoch=die)
    weights, result = _run(tmp_path / "h", aug, state_dir=tmp_path / "h" / "state")
    assert result.resumed_from_epoch == 1  # the warp's generator state came back with the rest
    assert all(torch.equal(full[k], weights[k]) for k in full)


def test_normalised_warp_maps_warp_the_raw_features() -> None:
    from wakeword.features import frequency_warp_maps
    from wakeword.train import normalised_warp_maps

    rng = np.random.default_rng(2)
    mean, std = rng.normal(-5, 2, F).astype(np.float32), rng.uniform(0.5, 3, F).astype(np.float32)
    cmvn = CMVN(mean, std, "log_mel", 1)
    fp, factors = FeatureParams(), np.array([0.85, 1.18])
    raw = rng.normal(-5, 3, (2, 7, F))
    maps, offsets = normalised_warp_maps(fp, cmvn, factors)
    got = cmvn.apply(raw.astype(np.float32)) @ maps.numpy() + offsets.numpy()[:, None, :]
    want = np.stack([cmvn.apply((raw[k] @ frequency_warp_maps(fp, factors[k:k + 1])[0]).astype(np.float32))
                     for k in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="the CMVN has 16"):
        normalised_warp_maps(fp, CMVN(np.zeros(16, np.float32), np.ones(16, np.float32), "log_mel", 1), factors)


def test_on_the_fly_windows_are_requested_every_epoch(tmp_path: Path) -> None:
    calls: list[int] = []
    rng = np.random.default_rng(9)

    def fresh(epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        calls.append(epoch)
        y = (np.arange(48) % 2).astype(np.int8)
        return rng.standard_normal((48, WINDOW, F)).astype(np.float32) + y[:, None, None], y, 1 - y, np.full(48, -1)

    fixed = _run(tmp_path / "a", None)[1].history
    fly = _run(tmp_path / "b", None, fresh)[1].history
    assert calls == [1, 2]  # epoch 0 trains on the featurized set
    assert fly[0]["train_loss"] == fixed[0]["train_loss"]
    assert fly[1]["train_loss"] != fixed[1]["train_loss"] and fly[2]["train_loss"] != fixed[2]["train_loss"]


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    t = np.arange(int(0.7 * 16000)) / 16000
    items = []
    for k in range(3):
        for kind, hz in (("positive", 400 + 60 * k), ("negative", 250 + 30 * k)):
            path = f"clips/{kind}/{k}.wav"
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
            items.append(Item(f"{kind}{k}", path, kind, f"v{k}", 0.7))
    noise = np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.1
    (tmp_path / "clips/background").mkdir()
    sf.write(tmp_path / "clips/background/0.wav", noise, 16000)
    items.append(Item("bg", "clips/background/0.wav", "background", "noise", 2.0))
    write_manifest(tmp_path / "split" / "train.jsonl", items)
    return tmp_path / "split"


def test_on_the_fly_epoch_zero_is_the_featurized_set(split_dir: Path) -> None:
    audio, fp = AudioParams(), FeatureParams()
    aug = AugmentParams(mode="on_the_fly", n_rirs=2, background_windows=4)
    roots = {"synth": split_dir.parent}
    windows = OnTheFlyWindows(roots, split_dir, audio, fp, aug, seed=3)
    pools = load_pools(read_manifest(split_dir / "train.jsonl"), roots, 16000)
    add_simulated_rirs(pools, audio, aug, 3)
    wins, kinds = build_train(pools, audio, aug, 3)
    x0, y0, k0, c0 = windows(0)
    np.testing.assert_array_equal(x0, features_of(wins, fp, "ref"))
    assert y0.tolist() == [int(k == 0) for k in kinds] and k0.tolist() == list(kinds)
    # every window names its source clip's manifest row (background mixes none), of the window's kind
    items = read_manifest(split_dir / "train.jsonl")
    want_kind = {KIND_CODES["positive"]: "positive", KIND_CODES["partial"]: "positive",
                 KIND_CODES["negative"]: "negative"}
    for k, c in zip(k0.tolist(), c0.tolist(), strict=True):
        assert (c == -1) if k == KIND_CODES["background"] else items[c].kind == want_kind[k]
    assert sorted(set(c0[k0 == KIND_CODES["positive"]].tolist())) == [0, 2, 4]
    x1, _, _, _ = windows(1)
    x1b, _, _, _ = windows(1)
    np.testing.assert_array_equal(x1, x1b)  # deterministic per epoch
    assert x1.shape[1:] == x0.shape[1:] and not np.array_equal(x1[:4], x0[:4])
    assert len({epoch_seed(3, e) for e in range(50)}) == 50 and epoch_seed(3, 0) == 3
