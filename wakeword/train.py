"""Training: AdamW + cross entropy (label smoothing), linear warm-up then cosine decay per step, per-epoch
validation on the validation clips and stream with the streaming detector, and the checkpoint of the
epoch with the best validation recall at the target false-alarm rate (ties: lower validation loss).

Per-epoch curves go through a logger callback (the stage passes DVCLive); the library does not import it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wakeword import metrics
from wakeword.augment import spec_augment
from wakeword.calibration import threshold_grid
from wakeword.cmvn import CMVN, EPS
from wakeword.evaluation import labeled_windows, operating_curve, score_set
from wakeword.featureset import FeatureSet
from wakeword.models import build_model, count_macs, count_parameters
from wakeword.params import (
    AudioParams,
    AugmentParams,
    CalibrateParams,
    DetectorParams,
    ModelParams,
    TrainParams,
)
from wakeword.scoring import LogitFn

log = logging.getLogger(__name__)

EpochLogger = Callable[[int, dict[str, float]], None]
EpochWindows = Callable[[int], tuple[np.ndarray, np.ndarray]]


class CheckpointError(ValueError):
    """A checkpoint file is missing or not one this code wrote."""


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def torch_logit_fn(model: nn.Module, cmvn: CMVN, batch: int = 4096) -> LogitFn:
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
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def validation_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    z = torch.from_numpy(logits.astype(np.float32))
    return float(nn.functional.cross_entropy(z, torch.from_numpy(labels)).item())


@dataclass
class TrainResult:
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]
    parameters: int
    macs_per_window: int
    wall_s: float


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint (``weights_only=True``: no pickle from data)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        model = build_model(ModelParams(**meta["model"]), int(meta["n_features"]))
        model.load_state_dict(ckpt["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a usable checkpoint ({exc})") from None
    return model.eval(), meta


def train_model(
    train_set: FeatureSet, val_set: FeatureSet, val_stream: np.ndarray, val_hours: float, cmvn: CMVN,
    index: dict[str, Any], model_p: ModelParams, train_p: TrainParams, det_p: DetectorParams,
    cal_p: CalibrateParams, audio_p: AudioParams, seed: int, checkpoint: Path,
    on_epoch: EpochLogger | None = None, aug_p: AugmentParams | None = None,
    epoch_windows: EpochWindows | None = None,
) -> TrainResult:
    """Train, validate every epoch on the validation clips and stream, keep the best epoch's checkpoint.

    ``aug_p`` switches on SpecAugment (time and frequency masks at the CMVN mean, i.e. 0) on each training
    batch, drawn from its own generator so the batch order does not depend on it. ``epoch_windows``
    (on-the-fly augmentation) gives fresh training features and labels for every epoch after the first;
    the number of steps per epoch stays that of ``train_set``.
    """
    t0 = time.time()
    torch.set_num_threads(train_p.num_threads)
    seed_everything(seed)
    window, step = int(index["window_frames"]), int(index["step_frames"])
    n_features = int(index["n_features"])
    model = build_model(model_p, n_features)
    n_params, macs = count_parameters(model), count_macs(model, window)
    log.info("model %s: %d parameters, %d MACs per window", model_p.arch, n_params, macs)

    x = torch.from_numpy(cmvn.apply(train_set.x))
    y = torch.from_numpy(train_set.y.astype(np.int64))
    n = x.shape[0]
    steps_per_epoch = max(1, n // train_p.batch_size)
    total = steps_per_epoch * train_p.epochs
    warmup = steps_per_epoch * train_p.warmup_epochs
    opt = torch.optim.AdamW(model.parameters(), lr=train_p.lr, weight_decay=train_p.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=train_p.label_smoothing)
    gen = torch.Generator().manual_seed(seed)
    spec_gen = torch.Generator().manual_seed(seed + 1)
    use_spec = aug_p is not None and aug_p.spec_prob > 0 and (aug_p.spec_time_masks + aug_p.spec_freq_masks) > 0
    thresholds = threshold_grid(max(cal_p.threshold_step, 0.02))
    logit_fn = torch_logit_fn(model, cmvn)

    best: dict[str, float] | None = None
    best_epoch = -1
    history: list[dict[str, float]] = []
    step_i = 0
    for epoch in range(train_p.epochs):
        if epoch_windows is not None and epoch > 0:
            xe, ye = epoch_windows(epoch)
            x, y = torch.from_numpy(cmvn.apply(xe)), torch.from_numpy(ye.astype(np.int64))
            n = x.shape[0]
        model.train()
        perm = torch.randperm(n, generator=gen)
        total_loss = correct = seen = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{train_p.epochs}", unit="batch", leave=False)
        for b in bar:
            idx = perm[b * train_p.batch_size : (b + 1) * train_p.batch_size]
            if idx.numel() == 0:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step_i, total, warmup, train_p.lr, train_p.min_lr)
            xb = x[idx]
            if use_spec:
                assert aug_p is not None
                xb = spec_augment(xb, spec_gen, aug_p.spec_prob, aug_p.spec_time_masks, aug_p.spec_time_mask_frames,
                                  aug_p.spec_freq_masks, aug_p.spec_freq_mask_bins)
            logits = model(xb)
            loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_i += 1
            total_loss += float(loss.item()) * idx.shape[0]
            correct += float((logits.argmax(1) == y[idx]).sum().item())
            seen += idx.shape[0]
        scored = score_set(logit_fn, val_set, val_stream, val_hours, window, step)
        vl_logits, vl_labels = labeled_windows(scored, window, step, val_set.x.shape[1])
        curve = operating_curve(scored, 1.0, thresholds, det_p, audio_p.step_ms, cal_p.max_stream_on_fraction)
        recall, _ = metrics.recall_at_fah(curve, cal_p.target_fah)
        clip_scores = scored.clip_probs(1.0).max(axis=1)
        row = {
            "train_loss": total_loss / seen, "train_accuracy": correct / seen,
            "val_loss": validation_loss(vl_logits, vl_labels),
            "val_recall_at_target_fah": float(recall),
            "val_roc_auc": float(metrics.roc_auc(scored.label, clip_scores)),
            "lr": opt.param_groups[0]["lr"],
        }
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
        if on_epoch is not None:
            on_epoch(epoch, row)
        key = (row["val_recall_at_target_fah"], -row["val_loss"])
        if best is None or key > (best["val_recall_at_target_fah"], -best["val_loss"]):
            best, best_epoch = dict(row), epoch
            meta = {
                "model": model_p.model_dump(), "n_features": n_features, "window_frames": window,
                "step_frames": step, "epoch": epoch, "val": row,
            }
            save_checkpoint(checkpoint, model, meta)
    assert best is not None
    return TrainResult(best_epoch, best, history, n_params, macs, time.time() - t0)
