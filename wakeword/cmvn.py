"""Per-bin cepstral mean and variance normalisation (SPEC 4.2), statistics from the training split only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EPS = 1e-8


class CMVNError(ValueError):
    """CMVN statistics are missing, malformed or do not match the features."""


@dataclass(frozen=True)
class CMVN:
    mean: np.ndarray
    std: np.ndarray
    feature_type: str
    num_frames_used: int

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.n_features:
            raise CMVNError(f"features have {x.shape[-1]} bins, CMVN has {self.n_features}")
        return ((x - self.mean) / (self.std + EPS)).astype(np.float32)

    def to_dict(self) -> dict[str, object]:
        return {
            "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
            "feature_type": self.feature_type, "n_features": self.n_features,
            "num_frames_used": self.num_frames_used,
        }


def compute_cmvn(x: np.ndarray, feature_type: str) -> CMVN:
    """Statistics over every frame of ``x`` (..., frames, n_features), accumulated in float64."""
    flat = np.asarray(x).reshape(-1, x.shape[-1]).astype(np.float64)
    if flat.shape[0] == 0:
        raise CMVNError("no frames to compute CMVN from")
    mean = flat.mean(axis=0)
    std = np.sqrt(((flat - mean) ** 2).mean(axis=0))
    return CMVN(mean.astype(np.float32), std.astype(np.float32), feature_type, int(flat.shape[0]))


def save_cmvn(path: Path, cmvn: CMVN) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cmvn.to_dict(), indent=2))
    tmp.replace(path)


def load_cmvn(path: Path) -> CMVN:
    try:
        d = json.loads(Path(path).read_text())
        mean = np.asarray(d["mean"], dtype=np.float32)
        std = np.asarray(d["std"], dtype=np.float32)
        cmvn = CMVN(mean, std, str(d["feature_type"]), int(d["num_frames_used"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CMVNError(f"{path}: not a valid CMVN file ({exc})") from None
    if mean.shape != std.shape or mean.ndim != 1 or int(d.get("n_features", mean.shape[0])) != mean.shape[0]:
        raise CMVNError(f"{path}: mean/std/n_features disagree")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
        raise CMVNError(f"{path}: mean/std must be finite and std >= 0")
    return cmvn
