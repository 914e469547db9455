"""Checkpoint files of trained models: ``{"state_dict": ..., "meta": {...}}`` written atomically and read with
``torch.load(weights_only=True)`` (no pickle from data).

``meta`` holds what rebuilding the model needs (``model``: the ModelParams dump, ``n_features``,
``window_frames``, ``step_frames``) and ``cmvn`` (:meth:`wakeword.cmvn.CMVN.to_dict`) so a checkpoint can
serve as a distillation teacher for a run with other feature statistics.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wakeword.models import build_model
from wakeword.params import ModelParams


class CheckpointError(ValueError):
    """A checkpoint file is missing or not one this code wrote."""


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model``'s weights and ``meta`` to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint (``weights_only=True``: no pickle from data); eval mode."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        model = build_model(ModelParams(**meta["model"]), int(meta["n_features"]), int(meta["window_frames"]))
        model.load_state_dict(ckpt["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: not a usable checkpoint ({exc})") from None
    return model.eval(), meta
