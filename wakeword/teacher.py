"""Distillation teachers (SPEC 5, ``train.distill``): a bigger model whose logits the student learns from.

:func:`load_teacher` gives a :class:`Teacher`: a callable that takes a batch of windows normalised with the
STUDENT's CMVN, ``(B, window_frames, n_features)``, and returns ``(B, 2)`` logits (index 1 = the wake
phrase), in eval mode under ``torch.no_grad``. Two kinds:

- ``checkpoint``: a ``.pt`` file of this pipeline (:mod:`wakeword.checkpoint`). The teacher was trained
  on input normalised with its own CMVN (``meta["cmvn"]``), so the student's normalisation is undone and the
  teacher's applied: ``x_t = (x_s * (std_s + EPS) + mean_s - mean_t) / (std_t + EPS)``, folded into one
  per-bin affine map. A checkpoint without ``cmvn`` (written before it was stored) is assumed to share the
  student's statistics, with a warning.
- ``checkpoint`` with a directory: an ensemble of every ``*.pt`` checkpoint directly in it (e.g. the same
  model trained with several seeds), each re-normalised as above. Its logits are the log of the members'
  mean class probabilities, ``log(mean_m softmax(z_m))``, so that the student learns the ensemble's
  averaged belief; one directory with one checkpoint is that checkpoint alone.
- ``transformers``: a local directory written by ``save_pretrained`` of a Hugging Face audio-classification
  model on log-mel frames. Supported: ``ASTForAudioClassification`` (model_type
  ``audio-spectrogram-transformer``), whose ``input_values`` are ``(B, max_length, num_mel_bins)``
  normalised fbank frames; it gets the student-normalised windows as they are. Needs
  ``num_mel_bins == n_features``, ``num_labels == 2`` and ``max_length >= window_frames``: a longer
  ``max_length`` is reached by zero-padding the end of each window (0 = the student-CMVN mean frame), a
  shorter one is an error (cropping could cut the wake phrase). The wake-phrase logit is the one label of
  ``config.label2id`` named like ``wake``/``wake_word``/``positive``/``keyword``/``hotword``/``target``
  (case and punctuation ignored), else index 1; it is moved to index 1 of the output. Weights missing from
  the directory (e.g. a bare ``ASTModel`` without a classifier) are an error, not a random head.
  Loaded with ``local_files_only=True``: nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.checkpoint import CheckpointError, load_checkpoint
from wakeword.cmvn import CMVN, EPS

log = logging.getLogger(__name__)

PARAM = "train.distill.teacher"
#: transformers ``model_type`` -> model class name this module can drive.
SUPPORTED_TRANSFORMERS = {"audio-spectrogram-transformer": "ASTForAudioClassification"}
#: Label names (lower case, non-alphanumerics dropped) taken to mean the wake phrase in ``config.label2id``.
WAKE_LABELS = frozenset({"wake", "wakeword", "wakephrase", "positive", "keyword", "hotword", "target"})


class TeacherError(ValueError):
    """The distillation teacher cannot be loaded or does not fit the student's features."""


class Teacher:
    """A frozen teacher: ``teacher(x)`` maps student-normalised windows ``(B, frames, n_features)`` to
    ``(B, 2)`` logits, index 1 = the wake phrase. Not an ``nn.Module`` on purpose, so that assigning it to a
    student never registers its weights as trainable. It follows the input's device (moved on first use
    there) and can be moved explicitly with :meth:`to`.

    Attributes: ``description`` (what was loaded, for logs and metrics), ``parameters`` (its weight count),
    ``n_features``, ``window_frames``.
    """

    def __init__(self, module: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 description: str, n_features: int, window_frames: int) -> None:
        self.module = module.eval()
        for prm in self.module.parameters():
            prm.requires_grad_(False)
        self._forward = forward
        self.description = description
        self.parameters = sum(p.numel() for p in module.parameters())
        self.n_features = n_features
        self.window_frames = window_frames
        self.device = next(iter(module.parameters()), torch.empty(0)).device

    def to(self, device: torch.device | str) -> Teacher:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.window_frames, self.n_features):
            raise TeacherError(f"teacher input must be (B, {self.window_frames}, {self.n_features}), "
                               f"got {tuple(x.shape)}")
        if x.device != self.device:
            self.to(x.device)
        self.module.eval()  # in case a caller flipped it
        return self._forward(self.module, x.float()).float()


class _Renormalise(nn.Module):
    """``model(x * scale + shift)``: student CMVN undone, teacher CMVN applied, per feature bin."""

    def __init__(self, model: nn.Module, scale: np.ndarray, shift: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)


def load_teacher(path: Path, kind: str, student_cmvn: CMVN, n_features: int, window_frames: int) -> Teacher:
    """Load the teacher named by ``train.distill.teacher`` / ``train.distill.kind`` for a student with
    ``n_features`` bins per frame, ``window_frames`` frames per window and CMVN ``student_cmvn``.
    Every failure is a :class:`TeacherError` naming ``train.distill.teacher`` and the path."""
    path = Path(path)
    if student_cmvn.n_features != n_features:
        raise TeacherError(f"student CMVN has {student_cmvn.n_features} bins but the features have {n_features}")
    if not path.exists():
        raise TeacherError(f"{PARAM}: {path} does not exist")
    if kind == "checkpoint":
        return _load_checkpoint_teacher(path, student_cmvn, n_features, window_frames)
    if kind == "transformers":
        return _load_transformers_teacher(path, n_features, window_frames)
    raise TeacherError(f"train.distill.kind: unknown teacher kind {kind!r} (checkpoint | transformers)")


class _Ensemble(nn.Module):
    """Members' mean class probabilities, as log-probabilities (valid logits: their softmax is the mean)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=-1) for m in self.members]).mean(dim=0)
        return probs.clamp_min(1e-12).log()


def _load_checkpoint_teacher(path: Path, student_cmvn: CMVN, n_features: int, window_frames: int) -> Teacher:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.pt") if p.is_file())
        if not files:
            raise TeacherError(f"{PARAM}: directory {path} holds no .pt checkpoint; kind checkpoint needs a .pt "
                               f"checkpoint of this pipeline, or a directory of them (an ensemble)")
        members = [_load_checkpoint_teacher(f, student_cmvn, n_features, window_frames) for f in files]
        if len(members) == 1:
            return members[0]
        description = f"ensemble of {len(members)} checkpoints in {path}: " + "; ".join(
            m.description for m in members)
        return Teacher(_Ensemble([m.module for m in members]), lambda m, x: m(x), description, n_features,
                       window_frames)
    if not path.is_file():
        raise TeacherError(f"{PARAM}: {path} is not a file; kind checkpoint needs a .pt checkpoint of this pipeline")
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as exc:
        raise TeacherError(f"{PARAM}: {exc}") from None
    except (pickle.UnpicklingError, EOFError) as exc:  # load_checkpoint lets these through (not a torch file)
        raise TeacherError(f"{PARAM}: {path}: not a usable checkpoint ({exc})") from None
    shape_t = (int(meta["window_frames"]), int(meta["n_features"]))
    if shape_t != (window_frames, n_features):
        raise TeacherError(
            f"{PARAM}: {path} takes windows of (frames, features) = {shape_t}, but the student's are "
            f"{(window_frames, n_features)}; distill from a teacher trained on the same features and window")
    cmvn_t = meta.get("cmvn")
    if cmvn_t is None:
        log.warning("%s: %s stores no CMVN (an older checkpoint); assuming it used the student's", PARAM, path)
        mean_t, std_t = student_cmvn.mean, student_cmvn.std
    else:
        feature_type = cmvn_t.get("feature_type")
        if feature_type is not None and feature_type != student_cmvn.feature_type:
            raise TeacherError(f"{PARAM}: {path} was trained on {feature_type} features, the student on "
                               f"{student_cmvn.feature_type}")
        mean_t = np.asarray(cmvn_t["mean"], dtype=np.float64)
        std_t = np.asarray(cmvn_t["std"], dtype=np.float64)
        if mean_t.shape != (n_features,) or std_t.shape != (n_features,):
            raise TeacherError(f"{PARAM}: {path} has CMVN of {mean_t.shape}/{std_t.shape} bins, "
                               f"its model takes {n_features}")
    mean_s = student_cmvn.mean.astype(np.float64)
    std_s = student_cmvn.std.astype(np.float64)
    scale = (std_s + EPS) / (np.asarray(std_t, dtype=np.float64) + EPS)
    shift = (mean_s - np.asarray(mean_t, dtype=np.float64)) / (np.asarray(std_t, dtype=np.float64) + EPS)
    arch = meta.get("model", {}).get("arch", "?")
    n_params = sum(p.numel() for p in model.parameters())
    description = f"checkpoint {path} ({arch}, {n_params} parameters, own CMVN: {cmvn_t is not None})"
    return Teacher(_Renormalise(model, scale, shift), lambda m, x: m(x), description, n_features, window_frames)


def _wake_index(label2id: dict[str, int]) -> tuple[int, str]:
    """Index of the wake-phrase logit: the one label of ``label2id`` named like the wake phrase (see
    :data:`WAKE_LABELS`), else 1 (this pipeline's convention). Returns (index, why)."""
    hits = {int(i) for name, i in label2id.items() if re.sub(r"[^a-z0-9]", "", str(name).lower()) in WAKE_LABELS}
    if len(hits) > 1:
        raise TeacherError(f"{PARAM}: config.label2id {label2id} names more than one label like the wake phrase")
    if hits:
        index = hits.pop()
        return index, f"label {next(n for n, i in label2id.items() if int(i) == index)!r}"
    return 1, "index 1 (no wake-like label in label2id)"


def _load_transformers_teacher(path: Path, n_features: int, window_frames: int) -> Teacher:
    config_file = path / "config.json"
    if not path.is_dir() or not config_file.is_file():
        raise TeacherError(f"{PARAM}: {path} must be a directory written by save_pretrained, with config.json "
                           f"(kind transformers)")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise TeacherError(f"{PARAM}: {config_file} is not a valid config ({exc})") from None
    if model_type not in SUPPORTED_TRANSFORMERS:
        supported = ", ".join(f"{t} ({c})" for t, c in SUPPORTED_TRANSFORMERS.items())
        raise TeacherError(f"{PARAM}: {path} holds a {model_type!r} model; supported transformers teachers: "
                           f"{supported}")

    import transformers  # heavy: only when a transformers teacher is used

    try:
        config = transformers.ASTConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TeacherError(f"{PARAM}: {config_file}: cannot read the config ({exc})") from None
    if config.num_mel_bins != n_features:
        raise TeacherError(f"{PARAM}: {path} takes num_mel_bins {config.num_mel_bins} features per frame, "
                           f"the student's windows have {n_features}")
    if config.max_length < window_frames:
        raise TeacherError(f"{PARAM}: {path} takes max_length {config.max_length} frames, shorter than the "
                           f"student's {window_frames}-frame windows (cropping could cut the wake phrase)")
    if config.num_labels != 2:
        raise TeacherError(f"{PARAM}: {path} has {config.num_labels} labels; a teacher needs 2 "
                           f"(wake phrase / other)")
    wake, why = _wake_index(dict(config.label2id))
    try:
        model, info = transformers.ASTForAudioClassification.from_pretrained(
            path, config=config, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TeacherError(f"{PARAM}: {path}: cannot load the model weights ({exc})") from None
    # e.g. a bare ASTModel saved without a classifier: its head would be random
    missing = sorted(str(k) for k in [*info.get("missing_keys", []), *info.get("mismatched_keys", [])])
    if missing:
        raise TeacherError(f"{PARAM}: {path}: weights missing from the checkpoint or of another shape (they "
                           f"would be random): {missing[:5]}")
    pad = config.max_length - window_frames
    order = [1 - wake, wake]  # put the wake logit at index 1

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # shorter windows are padded at the end with zeros, the student-CMVN mean frame
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        return m(input_values=x).logits[:, order]

    n_params = sum(p.numel() for p in model.parameters())
    description = (f"transformers {type(model).__name__} {path} ({n_params} parameters, wake = {why}"
                   + (f", windows padded {window_frames} -> {config.max_length} frames)" if pad else ")"))
    return Teacher(model, forward, description, n_features, window_frames)
