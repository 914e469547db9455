"""Reading the feature store written by the featurize stage: shards of windows/clips per split, stream
features, and ``index.json``. numpy only, so training, evaluation and export do not depend on how the
features were made."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KIND_CODES = {"positive": 0, "negative": 1, "hard_negative": 2, "background": 3, "partial": 4}


class FeatureSetError(ValueError):
    """The feature store is missing or malformed."""



@dataclass
class FeatureSet:
    x: np.ndarray  # (N, frames, n_mels) float32
    y: np.ndarray  # (N,) int8
    kind: np.ndarray  # (N,) int8
    phrase_start_frame: np.ndarray
    phrase_end_frame: np.ndarray
    #: (N,) int32: the row of each example's source clip in the split's manifest (``<split>.jsonl``); -1 where
    #: no one clip is the source (background mixes, mined stream windows, stores written before it existed)
    clip: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.clip is None:
            self.clip = np.full(self.y.shape[0], -1, dtype=np.int32)


def read_index(features_dir: Path) -> dict[str, Any]:
    path = features_dir / "index.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FeatureSetError(f"{path}: cannot read feature index ({exc})") from None


def load_split(features_dir: Path, split: str) -> FeatureSet:
    """All shards of one split, concatenated (``allow_pickle=False``: no pickle from data)."""
    index = read_index(features_dir)
    try:
        shards = index["splits"][split]["shards"]
    except (KeyError, TypeError):
        raise FeatureSetError(f"{features_dir / 'index.json'}: no split '{split}'") from None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "kind", "phrase_start_frame", "phrase_end_frame")}
    clips: list[np.ndarray] = []
    for shard in shards:
        try:
            with np.load(features_dir / shard, allow_pickle=False) as z:
                for k, chunks in parts.items():
                    chunks.append(z[k])
                clips.append(z["clip"] if "clip" in z.files else np.full(z["y"].shape[0], -1, dtype=np.int32))
        except (OSError, KeyError, ValueError) as exc:
            raise FeatureSetError(f"{features_dir / shard}: unreadable feature shard ({exc})") from None
    if not parts["x"]:
        raise FeatureSetError(f"{features_dir / 'index.json'}: split '{split}' has no shards")
    return FeatureSet(**{k: np.concatenate(v) for k, v in parts.items()}, clip=np.concatenate(clips))


def load_stream(features_dir: Path, split: str) -> tuple[np.ndarray, float]:
    """Features of the split's long negative stream and its length in hours."""
    try:
        meta = read_index(features_dir)["streams"][split]
        path = features_dir / meta["path"]
        hours = float(meta["hours"])
    except (KeyError, TypeError, ValueError):
        raise FeatureSetError(f"{features_dir / 'index.json'}: no stream for split '{split}'") from None
    try:
        return np.load(path, allow_pickle=False), hours
    except (OSError, ValueError) as exc:
        raise FeatureSetError(f"{path}: unreadable stream features ({exc})") from None
