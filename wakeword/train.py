"""Training (SPEC 5): optimizer, schedule, losses, EMA, QAT, balanced batches, triplet fine-tuning,
distillation, per-epoch validation with the streaming detector, best-checkpoint selection and exact resume.

Per epoch the model is validated on the validation clips and stream through the detector. The weights that are
validated, checkpointed and exported are the EMA weights when ``train.ema.enabled`` (else the raw ones), with
fake quantization during QAT epochs. The best epoch is chosen by validation false alarms first, then recall
(:func:`selection_key`): an epoch whose detector meets ``calibrate.target_fah`` on the validation stream
beats one that does not; among those that do not, the lower FAH wins; then the higher recall at the target,
then the lower validation loss.

Phases: ``train.epochs`` main epochs, then ``train.triplet.epochs`` epochs that add the triplet loss on the
model's embedding at a constant ``triplet.lr``. Both compete for the best checkpoint.

With ``train.loss.word_weight`` > 0 a training-only linear head on the embedding predicts which words of the
phrase each window holds (:mod:`wakeword.words`); its loss is added with that weight. The head is not part of
the model: the checkpoint and every export are the wake-word model alone. It needs ``TrainData.word_targets``
(the train and finetune stages always give them); without them the run is one without the word loss, with a
warning.

Resume: with a ``state_dir``, the full training state (model, optimizer, EMA, schedule, early-stopping
counters, RNG states, history, best so far) is written there after every epoch under a fingerprint of
the inputs (params, features index, CMVN, training code). A run with the same fingerprint continues after
the last finished epoch and ends bit-for-bit where an uninterrupted run ends (CPU). Any other fingerprint
starts from scratch.

Per-epoch curves go through a logger callback (the stage passes DVCLive); the library does not import it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wakeword import metrics
from wakeword.augment import (
    EQ_FEATURE_TYPES,
    WARP_FEATURE_TYPES,
    apply_eq,
    apply_frequency_warp,
    eq_curves,
    frequency_warp_applies,
    random_eq_applies,
    spec_augment,
    warp_factors,
)
from wakeword.calibration import threshold_grid
from wakeword.checkpoint import save_checkpoint
from wakeword.cmvn import CMVN, EPS
from wakeword.ema import EMA, ema_decay
from wakeword.evaluation import labeled_windows, operating_curve, score_set
from wakeword.features import db_gain_to_features, frequency_warp_maps
from wakeword.featureset import FeatureSet
from wakeword.losses import (
    ClassificationLoss,
    balanced_class_weights,
    combine,
    distillation_loss,
    triplet_loss,
    word_loss,
)
from wakeword.lr_finder import LRFinderResult, lr_range_test
from wakeword.models import build_model, count_macs, count_parameters
from wakeword.params import (
    AudioParams,
    AugmentParams,
    CalibrateParams,
    DetectorParams,
    FeatureParams,
    ModelParams,
    TrainParams,
)
from wakeword.qat import enable_qat, freeze_observers, is_qat, observer_state, plain_state_dict
from wakeword.sampling import epoch_batches
from wakeword.scoring import LogitFn

log = logging.getLogger(__name__)

EpochLogger = Callable[[int, dict[str, float]], None]
#: on-the-fly augmentation: (epoch) -> (windows, labels, kinds, source clip rows) of that epoch
EpochWindows = Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
#: word targets of windows (:mod:`wakeword.words`): (source clip rows, kind codes) -> (N, n_words) int8 of 0, 1 and
#: -1 (unknown)
WordTargets = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: a distillation teacher: student-normalised windows (B, frames, features) -> logits (B, 2)
TeacherFn = Callable[[torch.Tensor], torch.Tensor]
#: 2: the state keeps the training wall time so far (``wall_s``), added to on resume
STATE_VERSION = 2
#: validation FAH reported when no threshold gives a usable detector (it is on for most of the stream)
NO_OPERATING_POINT_FAH = 1.0e6


class TrainError(RuntimeError):
    """Training cannot run as configured (no usable device, broken state, ...)."""


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def torch_logit_fn(model: nn.Module, cmvn: CMVN, batch: int = 256) -> LogitFn:
    """Raw log-mel windows -> logits through CMVN and the model (eval mode, no grad)."""
    mean = torch.from_numpy(cmvn.mean)
    scale = torch.from_numpy(1.0 / (cmvn.std + EPS))

    def fn(x: np.ndarray) -> np.ndarray:
        model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch):
                xb = (torch.from_numpy(np.ascontiguousarray(x[i : i + batch])) - mean) * scale
                outs.append(model(xb).float().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 2), dtype=np.float32)

    return fn


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Cosine schedule per step with linear warm-up."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scheduled_lr(p: TrainParams, step: int, total: int, warmup: int, peak: float, plateau_scale: float) -> float:
    """Learning rate of main-phase step ``step``: cosine, or warm-up then ``peak * plateau_scale`` (plateau,
    floored at ``min_lr``) or ``peak`` (constant)."""
    if p.schedule == "cosine":
        return lr_at(step, total, warmup, peak, min(p.min_lr, peak))
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if p.schedule == "plateau":
        return max(min(p.min_lr, peak), peak * plateau_scale)
    return peak


def validation_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    z = torch.from_numpy(logits.astype(np.float32))
    return float(nn.functional.cross_entropy(z, torch.from_numpy(labels)).item())


def selection_key(row: dict[str, float], target_fah: float) -> tuple[float, ...]:
    """Larger is better: meets the FAH target, then lower FAH (above the target), recall, lower loss."""
    fah = row["val_fah"]
    return (float(fah <= target_fah), -max(fah, target_fah), row["val_recall_at_target_fah"], -row["val_loss"])


def resolve_device(p: TrainParams) -> torch.device:
    if p.device == "cpu" or (p.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but torch sees no CUDA GPU on this machine; use auto or cpu")
    return torch.device("cuda")


@dataclass
class TrainData:
    """What one training run reads. ``extra`` (mined hard negatives) is appended to the training windows."""

    train: FeatureSet
    val: FeatureSet
    val_stream: np.ndarray
    val_hours: float
    cmvn: CMVN
    index: dict[str, Any]
    epoch_windows: EpochWindows | None = None
    extra: FeatureSet | None = None
    #: the training windows' word targets (:func:`wakeword.words.training_word_targets`); needed when
    #: ``train.loss.word_weight`` > 0
    word_targets: WordTargets | None = None


@dataclass
class TrainSetup:
    model: ModelParams
    train: TrainParams
    detector: DetectorParams
    calibrate: CalibrateParams
    audio: AudioParams
    seed: int
    augment: AugmentParams | None = None
    #: the features the data was made with: the random EQ (``augment.eq_prob``) maps dB to them
    features: FeatureParams = field(default_factory=FeatureParams)


@dataclass
class TrainResult:
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]
    parameters: int
    macs_per_window: int
    wall_s: float  # training time of all invocations: a resumed run adds its time to the saved state's
    peak_lr: float
    resumed_from_epoch: int = 0
    stopped_early: bool = False
    lr_finder: LRFinderResult | None = None
    ema_differs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def eq_feature_map(setup: TrainSetup, cmvn: CMVN) -> torch.Tensor | None:
    """``(n_mels, features)`` dB -> normalised-feature map for the random EQ, or None when it is off.

    Off where :func:`wakeword.augment.random_eq_applies` says so: ``augment.eq_prob`` 0, both gains 0, or
    ``features.type: micro`` (its gain control adapts static gains away, see
    :func:`wakeword.features.db_gain_to_features`; logged).
    """
    a = setup.augment
    if a is None or not random_eq_applies(a, setup.features.type):
        if a is not None and random_eq_applies(a, EQ_FEATURE_TYPES[0]):
            log.info("augment.eq_prob: no random EQ with features.type %s (its PCAN gain control adapts static "
                     "gains away)", setup.features.type)
        return None
    m = db_gain_to_features(setup.features)
    if m is None:
        raise ValueError(f"features.type {setup.features.type!r} takes the random EQ but has no dB-to-feature map")
    if m.shape[1] != cmvn.n_features:
        raise ValueError(f"features params give {m.shape[1]} features per frame, the CMVN has {cmvn.n_features}")
    return torch.from_numpy((m / (cmvn.std.astype(np.float64) + EPS)[None, :]).astype(np.float32))


def frequency_warp_on(setup: TrainSetup) -> bool:
    """Whether training warps windows in frequency (:func:`wakeword.augment.frequency_warp_applies`); with
    ``features.type: micro`` it does not, and says so in the log."""
    a = setup.augment
    if a is None:
        return False
    if frequency_warp_applies(a, setup.features.type):
        return True
    if frequency_warp_applies(a, WARP_FEATURE_TYPES[0]):
        log.info("augment.warp_prob: no frequency warp with features.type %s (its front end's state would not "
                 "follow a warped frame)", setup.features.type)
    return False


def normalised_warp_maps(fp: FeatureParams, cmvn: CMVN, factors: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency-warp maps for CMVN-normalised frames: ``(maps, offsets)`` with ``x @ maps[k] + offsets[k]``
    equal to ``normalise(denormalise(x) @ frequency_warp_maps(fp, factors)[k])``."""
    m = frequency_warp_maps(fp, factors).astype(np.float64)
    if m.shape[1] != cmvn.n_features:
        raise ValueError(f"features params give {m.shape[1]} features per frame, the CMVN has {cmvn.n_features}")
    s = cmvn.std.astype(np.float64) + EPS
    mu = cmvn.mean.astype(np.float64)
    maps = s[None, :, None] * m / s[None, None, :]
    offsets = (mu @ m - mu[None, :]) / s[None, :]
    return torch.from_numpy(maps.astype(np.float32)), torch.from_numpy(offsets.astype(np.float32))


def fingerprint(setup: TrainSetup, data: TrainData, init: dict[str, torch.Tensor] | None, teacher_id: str) -> str:
    """Identity of a training run's inputs: a saved state is resumed only under the same fingerprint."""
    h = hashlib.sha256()
    cfg = {"model": setup.model.model_dump(), "train": setup.train.model_dump(), "seed": setup.seed,
           "detector": setup.detector.model_dump(), "calibrate": setup.calibrate.model_dump(),
           "audio": setup.audio.model_dump(), "augment": setup.augment.model_dump() if setup.augment else None,
           "features": setup.features.model_dump(),
           "index": data.index, "cmvn": data.cmvn.to_dict(), "teacher": teacher_id, "version": STATE_VERSION,
           "on_the_fly": data.epoch_windows is not None}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for arr in (data.train.x, data.train.y, data.train.kind, data.val.x, data.val_stream):
        h.update(hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest())
    if data.extra is not None:
        h.update(hashlib.sha256(np.ascontiguousarray(data.extra.x).tobytes()).digest())
    if setup.train.loss.word_weight > 0 and data.word_targets is not None:
        words = data.word_targets(np.asarray(data.train.clip), data.train.kind)
        h.update(hashlib.sha256(np.ascontiguousarray(words).tobytes()).digest())
    if init is not None:
        for k in sorted(init):
            h.update(k.encode())
            h.update(init[k].cpu().numpy().tobytes())
    for mod in ("train", "models", "losses", "ema", "qat", "sampling", "lr_finder"):
        h.update(Path(__file__).with_name(f"{mod}.py").read_bytes())
    return h.hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(state_dir: Path | None, fp: str) -> dict[str, Any] | None:
    """The saved state under ``fp``, or None (none saved, another fingerprint, or unreadable: logged)."""
    if state_dir is None:
        return None
    path = Path(state_dir) / "last.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file means: start over
        log.warning("%s: unreadable training state (%s); training from scratch", path, exc)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fp:
        log.info("%s: saved training state is from other inputs; training from scratch", path)
        return None
    return state


def _eval_copy(setup: TrainSetup, n_features: int, window: int, weights: dict[str, torch.Tensor],
               qat_model: nn.Module | None) -> nn.Module:
    """A fresh CPU model with ``weights``; fake-quantized like ``qat_model`` (observers frozen) when given."""
    m = build_model(setup.model, n_features, window)
    m.load_state_dict({k: v.detach().cpu() for k, v in weights.items()})
    if qat_model is not None:
        enable_qat(m, setup.train.qat.per_channel)
        m.load_state_dict({k: v.cpu() for k, v in observer_state(qat_model).items()}, strict=False)
        freeze_observers(m)
    return m.eval()


def validate(model: nn.Module, data: TrainData, setup: TrainSetup, thresholds: np.ndarray) -> dict[str, float]:
    """Validation loss, FAH at the operating point, recall at the target FAH and clip ROC-AUC."""
    window, step = int(data.index["window_frames"]), int(data.index["step_frames"])
    scored = score_set(torch_logit_fn(model, data.cmvn), data.val, data.val_stream, data.val_hours, window, step)
    vl_logits, vl_labels = labeled_windows(scored, window, step, data.val.x.shape[1])
    cal = setup.calibrate
    try:
        curve = operating_curve(scored, 1.0, thresholds, setup.detector, setup.audio.step_ms,
                                cal.max_stream_on_fraction)
        idx, met = metrics.select_operating_point(curve, cal.target_fah)
        fah = float(np.asarray(curve["fah"])[idx])
        recall = float(np.asarray(curve["recall"])[idx]) if met else 0.0
    except ValueError:  # stuck on at every threshold: no usable operating point
        fah, recall = NO_OPERATING_POINT_FAH, 0.0
    clip_scores = scored.clip_probs(1.0).max(axis=1)
    return {"val_loss": validation_loss(vl_logits, vl_labels), "val_fah": fah,
            "val_recall_at_target_fah": recall, "val_roc_auc": float(metrics.roc_auc(scored.label, clip_scores))}


@dataclass
class Progress:
    """Best epoch so far, plateau learning-rate scale and early-stopping counters (saved for resume)."""

    target_fah: float
    plateau_patience: int
    plateau_factor: float
    early_stopping: int
    best: dict[str, float] | None = None
    best_epoch: int = -1
    since_best: int = 0
    bad_epochs: int = 0
    plateau_scale: float = 1.0
    stopped: bool = False

    def update(self, epoch: int, row: dict[str, float], plateau: bool) -> bool:
        """Record an epoch's validation row; True when it is the new best. ``plateau``: the plateau schedule
        is active (the lr scale drops after more than ``plateau_patience`` epochs without improvement)."""
        improved = self.best is None or selection_key(row, self.target_fah) > selection_key(self.best,
                                                                                              self.target_fah)
        if improved:
            self.best, self.best_epoch, self.since_best, self.bad_epochs = dict(row), epoch, 0, 0
        else:
            self.since_best += 1
            self.bad_epochs += 1
            if plateau and self.bad_epochs > self.plateau_patience:
                self.plateau_scale *= self.plateau_factor
                self.bad_epochs = 0
                log.info("validation plateau: lr scale now %.4g", self.plateau_scale)
        if self.early_stopping and self.since_best >= self.early_stopping:
            self.stopped = True
            log.info("early stopping after epoch %d: %d epochs without a better checkpoint", epoch + 1,
                     self.since_best)
        return improved

    def state(self) -> dict[str, Any]:
        return {"best": self.best or {}, "best_epoch": self.best_epoch, "since_best": self.since_best,
                "bad_epochs": self.bad_epochs, "plateau_scale": self.plateau_scale, "stopped": self.stopped}

    def restore(self, st: dict[str, Any]) -> None:
        self.best = dict(st["best"]) or None
        self.best_epoch, self.since_best = int(st["best_epoch"]), int(st["since_best"])
        self.bad_epochs, self.plateau_scale = int(st["bad_epochs"]), float(st["plateau_scale"])
        self.stopped = bool(st["stopped"])


def train_model(
    data: TrainData, setup: TrainSetup, checkpoint: Path, *, state_dir: Path | None = None,
    on_epoch: EpochLogger | None = None, teacher: TeacherFn | None = None, teacher_id: str = "",
    init: dict[str, torch.Tensor] | None = None, baseline: dict[str, float] | None = None,
    epochs: int | None = None, checkpoint_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, validate every epoch, keep the best epoch's (EMA) weights in ``checkpoint``.

    ``init``: start from these weights (fine-tuning) instead of a random initialisation; with ``baseline`` (the
    validation row of ``init``, see :func:`validate`) they are the best so far, so the checkpoint keeps them
    unless an epoch beats them (best epoch then -1). ``epochs`` overrides ``train.epochs`` for the main phase. ``teacher``: distillation teacher
    (``train.distill``); ``teacher_id`` names it in the fingerprint.
    """
    t0 = time.time()
    tp, mp = setup.train, setup.model
    torch.set_num_threads(tp.num_threads)
    device = resolve_device(tp)
    seed = setup.seed + tp.seed_offset
    seed_everything(seed)
    window, step = int(data.index["window_frames"]), int(data.index["step_frames"])
    n_features = int(data.index["n_features"])
    model = build_model(mp, n_features, window)
    if init is not None:
        model.load_state_dict(init)
    n_params, macs = count_parameters(model), count_macs(model, window)
    log.info("model %s: %d parameters, %d MACs per window, device %s", mp.arch, n_params, macs, device)
    model.to(device)
    params_in_order = list(model.parameters())  # fixed before QAT renames them: optimizer state stays aligned

    word_head: nn.Linear | None = None
    if tp.loss.word_weight > 0 and data.word_targets is None:
        log.warning("train.loss.word_weight is %g but the training data carries no word targets (clip texts): "
                    "training without the word loss", tp.loss.word_weight)
    elif tp.loss.word_weight > 0:
        assert data.word_targets is not None
        n_words = int(data.word_targets(np.zeros(0, np.int32), np.zeros(0, np.int8)).shape[1])
        word_head = nn.Linear(int(model.embed_dim), n_words).to(device)
        params_in_order += list(word_head.parameters())
        log.info("auxiliary word loss (weight %g): %d word heads", tp.loss.word_weight, n_words)

    train_x, train_y, train_kind = data.train.x, data.train.y, data.train.kind
    train_clip = np.asarray(data.train.clip)
    if data.extra is not None:
        train_x = np.concatenate([train_x, data.extra.x])
        train_y = np.concatenate([train_y, data.extra.y])
        train_kind = np.concatenate([train_kind, data.extra.kind])
        train_clip = np.concatenate([train_clip, np.asarray(data.extra.clip)])

    def tensors(xe: np.ndarray, ye: np.ndarray, ke: np.ndarray, ce: np.ndarray) -> tuple[torch.Tensor, ...]:
        words = torch.zeros((ye.shape[0], 0), dtype=torch.int8)
        if word_head is not None:
            assert data.word_targets is not None
            words = torch.from_numpy(data.word_targets(ce, ke))
        return (torch.from_numpy(data.cmvn.apply(xe)), torch.from_numpy(ye.astype(np.int64)),
                torch.from_numpy(ke.astype(np.int64)), words)

    x, y, kind, words = tensors(train_x, train_y, train_kind, train_clip)
    n = x.shape[0]
    steps_per_epoch = max(1, n // tp.batch_size)
    main_epochs = tp.epochs if epochs is None else epochs
    total_epochs = main_epochs + tp.triplet.epochs
    total = steps_per_epoch * main_epochs
    warmup = steps_per_epoch * min(tp.warmup_epochs, main_epochs)

    weights = balanced_class_weights(train_y) if tp.loss.class_weights == "balanced" else None
    loss_fn = ClassificationLoss(tp.loss, weights).to(device)
    ratio = tuple(tp.batch_ratio) if tp.balanced_batches else None
    use_spec = (setup.augment is not None and setup.augment.spec_prob > 0
                and (setup.augment.spec_time_masks + setup.augment.spec_freq_masks) > 0)
    eq_map = eq_feature_map(setup, data.cmvn)
    warp_on = frequency_warp_on(setup)
    amp = device.type == "cuda" and tp.mixed_precision
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def make_optimizer(ps: list[nn.Parameter], lr: float = tp.lr) -> torch.optim.Optimizer:
        if tp.optimizer == "sgd":
            return torch.optim.SGD(ps, lr=lr, momentum=tp.momentum, nesterov=tp.momentum > 0,
                                   weight_decay=tp.weight_decay)
        return torch.optim.AdamW(ps, lr=lr, weight_decay=tp.weight_decay)

    gen = torch.Generator().manual_seed(seed)
    spec_gen = torch.Generator().manual_seed(seed + 1)
    trip_gen = torch.Generator().manual_seed(seed + 2)
    eq_gen = torch.Generator().manual_seed(seed + 3)
    warp_gen = torch.Generator().manual_seed(seed + 4)

    def batch_loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, kb: torch.Tensor,
                   triplet: bool, wb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb, kb = xb.to(device), yb.to(device), kb.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            if word_head is not None and wb is not None:  # forward == head(drop(embed)) (the zoo's contract)
                emb = m.embed(xb)  # type: ignore[operator]
                logits = m.head(m.drop(emb))  # type: ignore[operator]
                loss = loss_fn(logits.float(), yb, kb)
                loss = loss + tp.loss.word_weight * word_loss(word_head(emb).float(), wb.to(device))
            else:
                logits = m(xb)
                loss = loss_fn(logits.float(), yb, kb)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(xb.cpu()).to(device).float()
                loss = combine(loss, distillation_loss(logits.float(), t_logits, tp.distill.temperature),
                               tp.distill.alpha)
            if triplet:
                emb = m.embed(xb)  # type: ignore[operator]
                loss = loss + tp.triplet.weight * triplet_loss(emb.float(), yb, tp.triplet.margin, trip_gen)
        return loss, logits

    # --- learning-rate range test (before any training draw: "plot" leaves the run itself unchanged)
    finder: LRFinderResult | None = None
    peak = tp.lr
    if tp.lr_finder != "none":
        rng_state = torch.get_rng_state()
        lf_gen = torch.Generator().manual_seed(seed + 3)

        def lf_step(m: nn.Module, _i: int) -> torch.Tensor:
            idx = torch.randint(0, n, (min(tp.batch_size, n),), generator=lf_gen)
            return batch_loss(m, x[idx], y[idx], kind[idx], False)[0]

        finder = lr_range_test(model, lambda ps: make_optimizer(ps, 1e-6), lf_step)
        torch.set_rng_state(rng_state)
        log.info("LR range test: suggested peak lr %.3g", finder.suggestion)
        if tp.lr_finder == "use":
            peak = finder.suggestion

    opt = make_optimizer(params_in_order, peak)
    ema = EMA(model) if tp.ema.enabled else None
    thresholds = threshold_grid(max(setup.calibrate.threshold_step, 0.02))

    fp = fingerprint(setup, data, init, teacher_id)
    best_path = Path(state_dir) / "best.pt" if state_dir is not None else None
    history: list[dict[str, float]] = []
    prog = Progress(setup.calibrate.target_fah, tp.plateau_patience, tp.plateau_factor, tp.early_stopping)
    start_epoch, step_i = 0, 0
    wall_before = 0.0  # training time of earlier, interrupted invocations (saved in the state)
    best_plain: dict[str, torch.Tensor] | None = None
    if baseline is not None:
        if init is None:
            raise ValueError("a baseline validation row needs the init weights it belongs to")
        prog.best = dict(baseline)
        best_plain = {k: v.detach().cpu().clone() for k, v in init.items()}
    state = load_state(state_dir, fp)
    if state is None and best_path is not None and best_path.exists():
        best_path.unlink()  # another run's best weights: never to be mistaken for this run's
    if state is not None:
        start_epoch = int(state["epoch"]) + 1
        if state["qat"]:
            enable_qat(model, tp.qat.per_channel)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if word_head is not None:
            word_head.load_state_dict(state["word_head"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        gen.set_state(state["gen"])
        spec_gen.set_state(state["spec_gen"])
        eq_gen.set_state(state["eq_gen"])
        warp_gen.set_state(state["warp_gen"])
        trip_gen.set_state(state["trip_gen"])
        history = [dict(r) for r in state["history"]]
        prog.restore(state["progress"])
        step_i, peak = int(state["step"]), float(state["peak_lr"])
        wall_before = float(state["wall_s"])
        if best_path is not None and best_path.exists():
            best_plain = torch.load(best_path, map_location="cpu", weights_only=True)
        log.info("resuming after epoch %d of %d (%s)", start_epoch, total_epochs, state_dir)
        for i, row in enumerate(history):  # replay the finished epochs into the logger
            if on_epoch is not None:
                on_epoch(i, row)

    for epoch in range(start_epoch, total_epochs):
        if prog.stopped:
            break
        triplet_phase = epoch >= main_epochs
        if tp.qat.enabled and epoch >= tp.qat.start_epoch and not is_qat(model):
            layers = enable_qat(model, tp.qat.per_channel)
            log.info("epoch %d: quantization-aware training on (%d layers fake-quantized)", epoch + 1, layers)
        if data.epoch_windows is not None and epoch > 0:
            xe, ye, ke, ce = data.epoch_windows(epoch)
            if data.extra is not None:
                xe, ye = np.concatenate([xe, data.extra.x]), np.concatenate([ye, data.extra.y])
                ke, ce = np.concatenate([ke, data.extra.kind]), np.concatenate([ce, np.asarray(data.extra.clip)])
            x, y, kind, words = tensors(xe, ye, ke, ce)
            n = x.shape[0]
        model.train()
        batches = epoch_batches(n, tp.batch_size, steps_per_epoch, gen,
                                kind.numpy() if ratio is not None else None, ratio)
        total_loss = correct = seen = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{total_epochs}", unit="batch", leave=False)
        for idx in bar:
            lr = tp.triplet.lr if triplet_phase else scheduled_lr(tp, step_i, total, warmup, peak, prog.plateau_scale)
            for group in opt.param_groups:
                group["lr"] = lr
            xb = x[idx]
            if warp_on:  # first: the warp makes another speaker; masks and EQ are the channel after it
                assert setup.augment is not None
                factors = warp_factors(xb.shape[0], warp_gen, setup.augment.warp_prob, *setup.augment.warp_range)
                rows = torch.nonzero(factors != 1.0).flatten()
                maps, offsets = normalised_warp_maps(setup.features, data.cmvn, factors[rows].numpy())
                xb = apply_frequency_warp(xb, rows, maps, offsets)
            if use_spec:
                assert setup.augment is not None
                a = setup.augment
                xb = spec_augment(xb, spec_gen, a.spec_prob, a.spec_time_masks, a.spec_time_mask_frames,
                                  a.spec_freq_masks, a.spec_freq_mask_bins)
            if eq_map is not None:  # after the masks: a masked band then holds the channel's gain, still no speech
                assert setup.augment is not None
                a = setup.augment
                curves = eq_curves(xb.shape[0], eq_map.shape[0], eq_gen, a.eq_prob, a.eq_tilt_db, a.eq_bands,
                                   a.eq_band_db)
                xb = apply_eq(xb, curves, eq_map)
            loss, logits = batch_loss(model, xb, y[idx], kind[idx], triplet_phase, words[idx])
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if tp.grad_clip > 0:
                nn.utils.clip_grad_norm_(params_in_order, tp.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if ema is not None:
                ema.update(model, ema_decay(step_i, epoch, total_epochs, tp.ema))
            step_i += 1
            total_loss += float(loss.detach()) * idx.shape[0]
            correct += float((logits.detach().argmax(1).cpu() == y[idx]).sum())
            seen += idx.shape[0]

        weights_now = ema.state_dict() if ema is not None else {k: v.detach().clone()
                                                                 for k, v in plain_state_dict(model).items()}
        eval_model = _eval_copy(setup, n_features, window, weights_now, model if is_qat(model) else None)
        row = {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
               **validate(eval_model, data, setup, thresholds), "lr": opt.param_groups[0]["lr"]}
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
        if on_epoch is not None:
            on_epoch(epoch, row)
        if prog.update(epoch, row, tp.schedule == "plateau" and not triplet_phase):
            best_plain = {k: v.detach().cpu().clone() for k, v in weights_now.items()}
            if best_path is not None:
                _atomic_torch_save(best_plain, best_path)
        if state_dir is not None:
            _atomic_torch_save({
                "fingerprint": fp, "version": STATE_VERSION, "epoch": epoch, "qat": is_qat(model),
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "ema": ema.state_dict() if ema is not None else {},
                "word_head": word_head.state_dict() if word_head is not None else {},
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": torch.get_rng_state(), "gen": gen.get_state(), "spec_gen": spec_gen.get_state(),
                "eq_gen": eq_gen.get_state(), "warp_gen": warp_gen.get_state(),
                "trip_gen": trip_gen.get_state(), "history": history, "progress": prog.state(),
                "step": step_i, "peak_lr": peak, "wall_s": wall_before + time.time() - t0,
            }, Path(state_dir) / "last.pt")

    best, best_epoch = prog.best, prog.best_epoch
    if best is None or best_plain is None:
        raise TrainError("training finished without a validated epoch (train.epochs must be >= 1)")
    meta = {"model": mp.model_dump(), "n_features": n_features, "window_frames": window, "step_frames": step,
            "epoch": best_epoch, "val": best, "cmvn": data.cmvn.to_dict(),
            **(checkpoint_meta or {})}
    final = build_model(mp, n_features, window)
    final.load_state_dict(best_plain)
    save_checkpoint(checkpoint, final, meta)
    raw = plain_state_dict(model)
    ema_differs = ema is not None and any(
        not torch.equal(raw[k].detach().cpu(), ema.shadow[k].cpu()) for k in raw if raw[k].is_floating_point())
    return TrainResult(best_epoch, best, history, n_params, macs, wall_before + time.time() - t0, peak,
                       resumed_from_epoch=start_epoch, stopped_early=prog.stopped, lr_finder=finder,
                       ema_differs=ema_differs)
