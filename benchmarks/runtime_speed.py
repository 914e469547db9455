"""Benchmark: real-time factor of the deployed model directory on one core (numpy features + int8 TFLite +
detector), as `wakeword detect` runs it. Prints numbers; asserts nothing.

Run after `dvc repro`:  python -m benchmarks.runtime_speed [MODEL_DIR] [WAV]
(defaults: models/deploy and the first 10 minutes of data/synth/streams/test.wav)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import soundfile as sf

from wakeword.features import compute_features
from wakeword.runtime import DeployedModel
from wakeword.scoring import probabilities, stream_logits


def main() -> None:
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "models/deploy")
    wav = Path(sys.argv[2] if len(sys.argv) > 2 else "data/synth/streams/test.wav")
    audio, sr = sf.read(wav, dtype="float32", frames=600 * 16000)
    assert sr == 16000, "benchmark expects 16 kHz audio"
    seconds = audio.shape[0] / sr
    model = DeployedModel.load(model_dir)
    t0 = time.perf_counter()
    feats = compute_features(audio, model.features)
    t1 = time.perf_counter()
    logits = stream_logits(model.scorer.logits, feats, model.window_frames, model.step_frames)
    t2 = time.perf_counter()
    model.detections(probabilities(logits, model.temperature))
    t3 = time.perf_counter()
    n = logits.shape[0]
    print(f"audio: {seconds:.0f} s ({wav}); model: {model_dir} ({(model_dir / 'model.tflite').stat().st_size} bytes)")
    print(f"features (numpy {model.features.type}): {t1 - t0:.2f} s   RTF {(t1 - t0) / seconds:.5f}")
    print(f"int8 TFLite, {n} windows, 1 thread: {t2 - t1:.2f} s   RTF {(t2 - t1) / seconds:.5f}"
          f"   ({n / (t2 - t1):.0f} windows/s)")
    print(f"detector: {t3 - t2:.3f} s")
    print(f"total RTF (features + model + detector): {(t3 - t0) / seconds:.5f}")
    size = Path("metrics/size.json")
    if size.exists():
        s = json.loads(size.read_text())
        print(f"MACs per second of audio: {s['macs_per_second']:,}  (per window: {s['macs_per_window']:,})")


if __name__ == "__main__":
    main()
