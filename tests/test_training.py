"""Training switches (issue 4): each one is reachable from params and changes what is trained, checked
against hand-computed values where there is a formula, and resuming ends where an uninterrupted run ends."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import CMVN
from wakeword.ema import EMA, ema_decay
from wakeword.featureset import KIND_CODES, FeatureSet
from wakeword.lr_finder import lr_range_test, suggest_lr
from wakeword.models import build_model
from wakeword.params import (
    AudioParams,
    CalibrateParams,
    DetectorParams,
    EMAParams,
    ModelParams,
    TrainParams,
)
from wakeword.qat import enable_qat, is_qat, plain_state_dict
from wakeword.sampling import batch_counts, epoch_batches, group_of
from wakeword.train import (
    Progress,
    TrainData,
    TrainError,
    TrainSetup,
    scheduled_lr,
    selection_key,
    train_model,
)
from wakeword.words import window_word_targets

WINDOW, EVAL, STEP, F = 60, 120, 10, 16
MODEL = ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 1})


def _data(n: int = 64, every: int = 2) -> TrainData:
    """Windows i with i % every == 1 are positive; every fourth window is a hard negative."""
    rng = np.random.default_rng(0)

    def fs(n: int, frames: int, spans: bool, every: int) -> FeatureSet:
        y = (np.arange(n) % every == 1).astype(np.int8)
        x = rng.standard_normal((n, frames, F)).astype(np.float32) + y[:, None, None]
        kind = np.where(y == 1, KIND_CODES["positive"], KIND_CODES["negative"]).astype(np.int8)
        kind[(np.arange(n) % 4) == 0] = KIND_CODES["hard_negative"]
        start = np.where(y == 1, 10, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        end = np.where(y == 1, 45, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        return FeatureSet(x, y, kind, start, end)

    cmvn = CMVN(np.zeros(F, np.float32), np.ones(F, np.float32), "log_mel", 1)
    index = {"window_frames": WINDOW, "step_frames": STEP, "n_features": F}
    return TrainData(fs(n, WINDOW, False, every), fs(12, EVAL, True, 2),
                     rng.standard_normal((1500, F)).astype(np.float32), 0.01, cmvn, index)


_BASE: dict[str, tuple] = {}


def _base(tmp: Path):
    """The default run on the default data, trained once per session."""
    if "run" not in _BASE:
        _BASE["run"] = _train(tmp, "base")
    return _BASE["run"]


def _setup(**train: object) -> TrainSetup:
    base: dict[str, object] = {"epochs": 2, "batch_size": 16, "warmup_epochs": 0}
    base.update(train)
    return TrainSetup(MODEL, TrainParams(**base), DetectorParams(), CalibrateParams(), AudioParams(), 5)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(tmp: Path, name: str, data: TrainData | None = None, **train: object):
    result = train_model(data or _data(), _setup(**train), tmp / f"{name}.pt")
    return _weights(tmp / f"{name}.pt"), result


# ------------------------------------------------------------------------------------------------ EMA


def test_ema_update_is_the_moving_average() -> None:
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin)
    with torch.no_grad():
        lin.weight.fill_(3.0)
    ema.update(lin, 0.9)
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    ema.update(lin, 0.5)
    assert ema.state_dict()["weight"].item() == pytest.approx(0.5 * 1.2 + 0.5 * 3.0)


def test_ema_decay_schedule() -> None:
    p = EMAParams(decay=0.999, final_decay=0.9995, final_epochs=10)
    assert ema_decay(0, 0, 30, p) == pytest.approx(1 / 10)  # warm-up (1 + step) / (10 + step)
    assert ema_decay(100_000, 5, 30, p) == 0.999
    assert ema_decay(100_000, 19, 30, p) == 0.999 and ema_decay(100_000, 20, 30, p) == 0.9995


def test_ema_weights_are_what_is_checkpointed(tmp_path: Path) -> None:
    on, r_on = _base(tmp_path)
    off, r_off = _train(tmp_path, "off", ema={"enabled": False})
    assert r_on.ema_differs and not r_off.ema_differs
    assert not _same(on, off)


def test_seed_offset_draws_what_the_seed_it_adds_up_to_draws(tmp_path: Path) -> None:
    base, _ = _base(tmp_path)  # seed 5, offset 0
    offset, _ = _train(tmp_path, "offset2", seed_offset=2)
    setup = TrainSetup(MODEL, TrainParams(epochs=2, batch_size=16, warmup_epochs=0), DetectorParams(),
                       CalibrateParams(), AudioParams(), 7)
    train_model(_data(), setup, tmp_path / "seed7.pt")
    assert not _same(offset, base)  # another initialisation and batch order
    assert _same(offset, _weights(tmp_path / "seed7.pt"))  # every draw of training follows seed + offset


# ------------------------------------------------------------------------------------------------ QAT


def test_qat_inserts_fake_quant_on_an_int8_grid() -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, F, WINDOW).eval()
    x = torch.randn(4, WINDOW, F)
    float_out = model(x)
    plain_keys = set(model.state_dict())
    n = enable_qat(model, per_channel=True)
    assert n == sum(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) for m in model.modules()) and is_qat(model)
    assert enable_qat(model) == 0  # idempotent
    model.train()
    model(x)  # observers see data
    model.eval()
    assert not torch.allclose(model(x), float_out)
    w = model.head.weight  # the fake-quantized weight the forward uses
    scale = model.head.parametrizations.weight.original.detach().abs().amax(dim=1, keepdim=True) / 127
    steps = w.detach() / scale
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert set(plain_state_dict(model)) == plain_keys


def test_qat_switch_changes_training_and_checkpoint_loads_plain(tmp_path: Path) -> None:
    plain, r_plain = _base(tmp_path)
    qat, r_qat = _train(tmp_path, "qat", qat={"enabled": True, "start_epoch": 1})
    assert set(plain) == set(qat)  # the checkpoint is a plain model's state whatever the epoch
    assert r_plain.history[0] == r_qat.history[0]  # fake quantization starts at epoch 1 ...
    assert r_plain.history[1]["train_loss"] != r_qat.history[1]["train_loss"]  # ... and changes training


# ------------------------------------------------------------------------------------------------ batches


def test_balanced_batch_counts() -> None:
    assert batch_counts(128, (1.0, 1.0, 1.0), (10, 100, 5)) == [42, 42, 42]
    assert batch_counts(100, (1.0, 2.0, 1.0), (10, 100, 5)) == [25, 50, 25]
    assert batch_counts(128, (1.0, 1.0, 1.0), (10, 100, 0)) == [42, 84, 0]  # no hard negatives: share -> negative
    with pytest.raises(ValueError, match="no positive"):
        batch_counts(128, (1.0, 1.0, 1.0), (0, 100, 5))


def test_balanced_batches_hold_the_ratio() -> None:
    kind = np.array([0] * 5 + [1] * 40 + [3] * 10 + [2] * 3, dtype=np.int8)
    gen = torch.Generator().manual_seed(1)
    batches = epoch_batches(len(kind), 12, 7, gen, kind, (1.0, 1.0, 1.0))
    groups = group_of(kind)
    assert len(batches) == 7
    for b in batches:
        assert np.bincount(groups[b.numpy()], minlength=3).tolist() == [4, 4, 4]
    plain = epoch_batches(20, 8, 2, torch.Generator().manual_seed(3))
    ref = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(plain), ref[:16])


def test_balanced_batches_switch_changes_training(tmp_path: Path) -> None:
    off, _ = _base(tmp_path)
    on, _ = _train(tmp_path, "on", balanced_batches=True, batch_ratio=(1.0, 2.0, 1.0))
    assert not _same(off, on)


# ------------------------------------------------------------------------------------------------ schedules


def test_schedules() -> None:
    p = TrainParams(lr=1.0e-2, min_lr=1.0e-4, schedule="cosine")
    assert scheduled_lr(p, 0, 100, 10, 1e-2, 1.0) == pytest.approx(1e-3)  # warm-up 1/10
    assert scheduled_lr(p, 10, 100, 10, 1e-2, 1.0) == pytest.approx(1e-2)
    assert scheduled_lr(p, 55, 100, 10, 1e-2, 1.0) == pytest.approx(1e-4 + 0.5 * (1e-2 - 1e-4))  # half-way
    c = TrainParams(lr=1.0e-2, schedule="constant")
    assert scheduled_lr(c, 50, 100, 10, 1e-2, 0.25) == 1e-2
    pl = TrainParams(lr=1.0e-2, min_lr=1.0e-3, schedule="plateau")
    assert scheduled_lr(pl, 50, 100, 10, 1e-2, 0.25) == pytest.approx(2.5e-3)
    assert scheduled_lr(pl, 50, 100, 10, 1e-2, 0.01) == pytest.approx(1e-3)  # floored at min_lr


def test_plateau_and_early_stopping_counters() -> None:
    def row(recall: float) -> dict[str, float]:
        return {"val_fah": 0.5, "val_recall_at_target_fah": recall, "val_loss": 0.5}

    prog = Progress(1.0, plateau_patience=1, plateau_factor=0.5, early_stopping=3)
    seq = [prog.update(e, row(r), plateau=True) for e, r in enumerate([0.5, 0.6, 0.6, 0.5, 0.55])]
    assert seq == [True, True, False, False, False]
    assert prog.best_epoch == 1 and prog.plateau_scale == 0.5 and prog.since_best == 3 and prog.stopped
    again = Progress(1.0, 1, 0.5, 3)
    again.restore(prog.state())
    assert again == prog
    off = Progress(1.0, 0, 0.5, 0)
    for e in range(5):
        off.update(e, row(0.5), plateau=False)
    assert off.plateau_scale == 1.0 and not off.stopped  # constant/cosine schedule, early stopping off


def test_plateau_schedule_drops_the_lr_in_training(tmp_path: Path) -> None:
    # a learning rate far too high: validation gets worse after the first epoch, so the lr halves (plain loss
    # weights: the premise was checked with them)
    _, r = _train(tmp_path, "plateau", epochs=4, schedule="plateau", plateau_patience=0, plateau_factor=0.5,
                  lr=0.3, min_lr=0.0, ema={"enabled": False}, loss={"hard_negative_weight": 1.0})
    keys = [selection_key(h, 1.0) for h in r.history]
    scale, best, want = 1.0, None, []
    for k in keys:  # the lr of each epoch follows the improvements before it
        want.append(0.3 * scale)
        if best is not None and k <= best:
            scale *= 0.5
        best = k if best is None or k > best else best
    assert [h["lr"] for h in r.history] == pytest.approx(want) and r.history[-1]["lr"] < 0.3


def test_selection_prefers_meeting_the_fah_target_then_recall() -> None:
    def row(fah: float, recall: float, loss: float = 0.5) -> dict[str, float]:
        return {"val_fah": fah, "val_recall_at_target_fah": recall, "val_loss": loss}

    t = 1.0
    assert selection_key(row(0.5, 0.6), t) > selection_key(row(2.0, 0.0), t)  # meets the target
    assert selection_key(row(0.9, 0.7), t) > selection_key(row(0.1, 0.6), t)  # both meet: recall
    assert selection_key(row(3.0, 0.0), t) > selection_key(row(5.0, 0.0), t)  # neither: lower FAH
    assert selection_key(row(0.5, 0.6, 0.1), t) > selection_key(row(0.2, 0.6, 0.3), t)  # then loss


# ------------------------------------------------------------------------------------------------ optimizer, loss


@pytest.mark.parametrize("change", [
    {"optimizer": "sgd", "lr": 1.0e-2},
    {"grad_clip": 1.0e-3},
    {"loss": {"type": "focal"}},
    {"loss": {"class_weights": "balanced"}},
    {"loss": {"hard_negative_weight": 5.0}},
    {"loss": {"label_smoothing": 0.2}},
    {"triplet": {"epochs": 1, "margin": 0.5}},
], ids=["sgd", "grad_clip", "focal", "class_weights", "hard_negative_weight", "label_smoothing", "triplet"])
def test_switch_changes_the_trained_model(tmp_path: Path, change: dict) -> None:
    data = _data(every=4)  # a quarter positive: balanced class weights are not all 1
    if "base" not in _BASE:
        _BASE["base"] = _train(tmp_path, "base", data)
    base, _ = _BASE["base"]
    other, result = _train(tmp_path, "other", data, **change)
    assert not _same(base, other)
    if "triplet" in change:
        assert len(result.history) == 3  # 2 main + 1 triplet epoch


def test_distillation_uses_the_teacher(tmp_path: Path) -> None:
    calls: list[int] = []

    def teacher(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.stack([x.mean(dim=(1, 2)), -x.mean(dim=(1, 2))], dim=1) * 3

    data = _data()
    base, r_base = _base(tmp_path)
    res0 = train_model(data, _setup(distill={"alpha": 0.0}), tmp_path / "a0.pt", teacher=teacher, teacher_id="t")
    assert calls and res0.history[0]["train_loss"] == pytest.approx(r_base.history[0]["train_loss"])
    train_model(data, _setup(distill={"alpha": 0.7}), tmp_path / "a7.pt", teacher=teacher, teacher_id="t")
    assert not _same(base, _weights(tmp_path / "a7.pt"))


def test_lr_finder(tmp_path: Path) -> None:
    lrs = list(np.logspace(-6, -2, 50))
    smooth = [1.0 / (1.0 + math.exp(4 * (math.log10(lr) + 4))) for lr in lrs]  # steepest at 1e-4
    assert suggest_lr(lrs, smooth) == pytest.approx(1e-4, rel=0.25)

    model = build_model(MODEL, F, WINDOW)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(32, WINDOW, F), torch.randint(0, 2, (32,))
    res = lr_range_test(model, lambda ps: torch.optim.AdamW(ps, lr=1e-6),
                        lambda m, i: nn.functional.cross_entropy(m(x), y), steps=20)
    assert _same(before, model.state_dict())  # the caller's model is untouched
    assert res.lrs[0] == pytest.approx(1e-6) and len(res.rows()) == len(res.lrs)
    assert all(b > a for a, b in zip(res.lrs, res.lrs[1:]))

    off, _ = _base(tmp_path)
    plot, r_plot = _train(tmp_path, "plot", lr_finder="plot")
    assert _same(off, plot) and r_plot.lr_finder is not None and r_plot.peak_lr == 3.0e-3
    _, r_use = _train(tmp_path, "use", lr_finder="use")
    assert r_use.peak_lr == r_use.lr_finder.suggestion != 3.0e-3


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TrainError, match="train.device is 'cuda'"):
        _train(tmp_path, "gpu", device="cuda")


# ------------------------------------------------------------------------------------------------ resume


class Killed(Exception):
    pass


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    data = _data()
    # with the auxiliary word loss: its training-only head is part of the saved state
    data.train.clip = (np.arange(data.train.y.shape[0]) % 3).astype(np.int32)
    table = np.array([[1, 0], [0, 1], [0, 0]], dtype=np.int8)
    data.word_targets = lambda clip, kind: window_word_targets(table, clip, kind)
    setup = _setup(epochs=4, qat={"enabled": True, "start_epoch": 2}, balanced_batches=True, lr_finder="plot",
                   loss={"word_weight": 0.5})
    full = train_model(data, setup, tmp_path / "full.pt", state_dir=tmp_path / "s_full")

    def die_after_second(epoch: int, _row: dict[str, float]) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train_model(data, setup, tmp_path / "part.pt", state_dir=tmp_path / "s", on_epoch=die_after_second)
    assert not (tmp_path / "part.pt").exists()
    seen: list[int] = []
    resumed = train_model(data, setup, tmp_path / "part.pt", state_dir=tmp_path / "s",
                          on_epoch=lambda e, _r: seen.append(e))
    assert resumed.resumed_from_epoch == 2 and seen == [0, 1, 2, 3]  # finished epochs replayed to the logger
    assert resumed.history == full.history and resumed.best_epoch == full.best_epoch
    assert _same(_weights(tmp_path / "full.pt"), _weights(tmp_path / "part.pt"))

    other = train_model(data, _setup(epochs=4, lr=1.0e-3), tmp_path / "o.pt", state_dir=tmp_path / "s")
    assert other.resumed_from_epoch == 0  # other params: the saved state is not used


def test_fine_tuning_keeps_the_start_unless_an_epoch_beats_it(tmp_path: Path) -> None:
    data = _data()
    start, _ = _base(tmp_path)
    unbeatable = {"val_fah": 0.0, "val_recall_at_target_fah": 1.0, "val_loss": -1.0}
    r = train_model(data, _setup(), tmp_path / "ft.pt", init=start, baseline=unbeatable)
    assert r.best_epoch == -1 and _same(_weights(tmp_path / "ft.pt"), start)
    beatable = {"val_fah": 1.0e6, "val_recall_at_target_fah": 0.0, "val_loss": 1.0e9}
    r2 = train_model(data, _setup(), tmp_path / "ft2.pt", init=start, baseline=beatable)
    assert r2.best_epoch >= 0 and not _same(_weights(tmp_path / "ft2.pt"), start)
