"""Benchmark: real-time factor of the deployed model directory on one core (numpy features + int8 TFLite +
detector), as `wakeword detect` runs it. Prints numbers; asserts nothing.

Run after `dvc repro`:  python -m benchmarks.runtime_speed [MODEL_DIR] [WAV] [--size metrics/size.json]
[--seconds 600] [--one-core] [--json OUT]
(defaults: models/deploy and the first 10 minutes of data/synth/streams/test.wav). ``--one-core`` pins the
process to one CPU (``sched_setaffinity``); the TFLite interpreter runs one thread either way. For numpy's
BLAS to use one thread as well, set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` in the environment
(:func:`one_core_env`); ``python -m benchmarks`` runs this module that way.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

#: environment variables that make the numeric libraries use one thread
ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def one_core_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every numeric library limited to one thread."""
    env = dict(os.environ if base is None else base)
    env.update({k: "1" for k in ONE_THREAD_VARS})
    return env


def pin_one_core() -> int | None:
    """Pin this process to the first CPU it may run on; returns that CPU (None where affinity is unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def measure(model_dir: Path, wav: Path, seconds: float = 600.0, size_json: Path | None = None) -> dict[str, Any]:
    """Time features, int8 model and detector over the first ``seconds`` of ``wav``; real-time factors are
    seconds of compute per second of audio."""
    import soundfile as sf

    from wakeword.features import compute_features
    from wakeword.runtime import DeployedModel
    from wakeword.scoring import probabilities, stream_logits

    audio, sr = sf.read(wav, dtype="float32", frames=int(seconds * 16000))
    if sr != 16000:
        raise ValueError(f"{wav}: benchmark expects 16 kHz audio, got {sr} Hz")
    audio_s = audio.shape[0] / sr
    model = DeployedModel.load(model_dir)
    t0 = time.perf_counter()
    feats = compute_features(audio, model.features)
    t1 = time.perf_counter()
    logits = stream_logits(model.scorer.logits, feats, model.window_frames, model.step_frames)
    t2 = time.perf_counter()
    model.detections(probabilities(logits, model.temperature))
    t3 = time.perf_counter()
    n = int(logits.shape[0])
    out: dict[str, Any] = {
        "audio_s": audio_s, "wav": str(wav), "model_dir": str(model_dir), "feature_type": model.features.type,
        "model_bytes": (Path(model_dir) / "model.tflite").stat().st_size, "windows": n,
        "features_s": t1 - t0, "model_s": t2 - t1, "detector_s": t3 - t2,
        "rtf_features": (t1 - t0) / audio_s, "rtf_model": (t2 - t1) / audio_s, "rtf_detector": (t3 - t2) / audio_s,
        "rtf_total": (t3 - t0) / audio_s, "windows_per_s": n / max(t2 - t1, 1e-12),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    if size_json is not None and Path(size_json).exists():
        s = json.loads(Path(size_json).read_text())
        out["macs_per_second"] = s.get("macs_per_second")
        out["macs_per_window"] = s.get("macs_per_window")
    return out


def format_result(r: dict[str, Any]) -> str:
    lines = [
        (f"audio: {r['audio_s']:.0f} s ({r['wav']}); model: {r['model_dir']} ({r['model_bytes']} bytes); "
         f"CPUs {r['cpus']}"),
        f"features (numpy {r['feature_type']}): {r['features_s']:.2f} s   RTF {r['rtf_features']:.5f}",
        (f"int8 TFLite, {r['windows']} windows, 1 thread: {r['model_s']:.2f} s   RTF {r['rtf_model']:.5f}"
         f"   ({r['windows_per_s']:.0f} windows/s)"),
        f"detector: {r['detector_s']:.3f} s",
        f"total RTF (features + model + detector): {r['rtf_total']:.5f}",
    ]
    if r.get("macs_per_second") is not None:
        lines.append(f"MACs per second of audio: {r['macs_per_second']:,}  (per window: {r['macs_per_window']:,})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", nargs="?", type=Path, default=Path("models/deploy"))
    ap.add_argument("wav", nargs="?", type=Path, default=Path("data/synth/streams/test.wav"))
    ap.add_argument("--size", type=Path, default=Path("metrics/size.json"), help="size metrics (MACs)")
    ap.add_argument("--seconds", type=float, default=600.0, help="audio measured, from the start of WAV")
    ap.add_argument("--one-core", action="store_true", help="pin this process to one CPU first")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.one_core:
        pin_one_core()
    r = measure(args.model_dir, args.wav, args.seconds, args.size)
    print(format_result(r))
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
