"""Running an exported model directory on audio files, with numpy and ai-edge-litert only (no torch).

The model directory holds ``model.tflite`` (full int8, CMVN folded in) and ``wakeword.json`` (features,
window, step, temperature, threshold and detector settings). Scores are the calibrated per-step
probabilities ``softmax(logits / T)[1]``; detections come from the same streaming detector the pipeline
calibrated and evaluated with. Features are ``features.type`` from the manifest, computed by
:func:`wakeword.features.compute_features` (numpy, or pymicro-features for micro: a fresh front end at the
start of each file, running through it as on a device).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wakeword.audio import read_audio
from wakeword.detector import DetectorConfig, detect
from wakeword.features import compute_features, feature_dim, frames_for
from wakeword.params import FeatureParams
from wakeword.scoring import probabilities, step_times_s, stream_logits

MANIFEST_NAME = "wakeword.json"


class ModelDirError(ValueError):
    """A model directory is missing files or holds a malformed manifest."""


@dataclass
class DeployedModel:
    directory: Path
    manifest: dict[str, Any]
    features: FeatureParams
    window_frames: int
    step_frames: int
    temperature: float
    detector: DetectorConfig
    scorer: Any

    @classmethod
    def load(cls, directory: str | Path, threshold: float | None = None, preset: str | None = None) -> DeployedModel:
        """Load a model directory. ``preset`` swaps in a SPEC 4.3 detector preset (its votes, lockout and
        threshold: the calibrated false-alarm rate then no longer applies); ``threshold`` overrides
        ``threshold_on`` last, keeping the hysteresis gap."""
        from wakeword.tflite_runtime import TFLiteScorer

        directory = Path(directory)
        path = directory / MANIFEST_NAME
        try:
            manifest = json.loads(path.read_text())
            features = FeatureParams(**manifest["features"])
            window, step = int(manifest["window_frames"]), int(manifest["step_frames"])
            temperature = float(manifest["temperature"])
            detector = DetectorConfig.from_dict(manifest["detector"])
            model_file = directory / str(manifest["model"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelDirError(f"{path}: not a usable model manifest ({exc})") from None
        if preset is not None:
            detector = DetectorConfig.preset(preset, detector.step_ms)
        if threshold is not None:
            detector = detector.with_threshold_on(threshold)
        scorer = TFLiteScorer(model_file)
        dim = feature_dim(features)
        if scorer.input_shape[1:] != (window, dim):
            raise ModelDirError(f"{model_file}: input {scorer.input_shape} does not match the manifest window "
                                f"({window} frames x {dim} {features.type} features)")
        return cls(directory, manifest, features, window, step, temperature, detector, scorer)

    @property
    def window_samples(self) -> int:
        return (self.window_frames - 1) * self.features.hop_samples + self.features.win_samples

    def score_audio(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(times_s, probabilities), one per window step; audio shorter than one window is padded in front
        with a quiet noise floor (the model never saw digital silence)."""
        if audio.shape[0] < self.window_samples:
            rng = np.random.default_rng(0)
            pad = rng.standard_normal(self.window_samples - audio.shape[0]).astype(np.float32) * 10 ** (-65 / 20)
            audio = np.concatenate([pad, audio.astype(np.float32)])
        feats = compute_features(audio, self.features)
        assert feats.shape == (frames_for(audio.shape[0], self.features), feature_dim(self.features))
        probs = probabilities(stream_logits(self.scorer.logits, feats, self.window_frames, self.step_frames),
                              self.temperature)
        times = step_times_s(probs.shape[0], self.window_frames, self.step_frames,
                             self.features.hop_samples / 16000.0, self.features.win_samples / 16000.0)
        return times, probs

    def score_file(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        return self.score_audio(read_audio(path, 16000))

    def detections(self, probs: np.ndarray) -> np.ndarray:
        return detect(probs, self.detector)
