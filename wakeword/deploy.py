"""From a trained checkpoint to deployable artifacts: ONNX (float, int8) and the full-int8 TFLite model
directory that ``wakeword detect`` / ``wakeword score`` run.

CMVN is folded into the model's first convolution, so every exported model takes raw features of the
configured ``features.type`` (log-mel, MFCC or TFLite-Micro front-end output; :mod:`wakeword.features`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from wakeword.cmvn import CMVN
from wakeword.features import MICRO_SCALE, feature_dim
from wakeword.featureset import FeatureSet
from wakeword.models import count_macs, count_parameters, fold_cmvn
from wakeword.params import FeatureParams
from wakeword.runtime import MANIFEST_NAME
from wakeword.scoring import LogitFn, probabilities, sliding_windows

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class FidelityError(ValueError):
    """The exported model disagrees with the float model by more than the allowed tolerance."""


def _temp_dir_beside(out_dir: Path) -> Path:
    """A fresh directory next to ``out_dir`` (same filesystem, so the final rename is atomic)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the published directory should not be
    return tmp


def sample_windows(fs: FeatureSet, window: int, step: int, n: int, seed: int) -> np.ndarray:
    """``n`` model windows drawn reproducibly from a feature set (fixed windows or sliding over clips)."""
    rng = np.random.default_rng(seed)
    if fs.x.shape[1] == window:
        pool = fs.x
        pick = rng.choice(pool.shape[0], size=min(n, pool.shape[0]), replace=False)
        return np.ascontiguousarray(pool[np.sort(pick)], dtype=np.float32)
    clips = rng.choice(fs.x.shape[0], size=min(n, fs.x.shape[0]), replace=False)
    out = []
    for c in np.sort(clips):
        wins = sliding_windows(fs.x[c], window, step)
        out.append(wins[int(rng.integers(wins.shape[0]))])
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def folded_model(model: nn.Module, cmvn: CMVN) -> nn.Module:
    return fold_cmvn(model, cmvn.mean, cmvn.std).eval()


def export_onnx_models(
    model: nn.Module, cmvn: CMVN, out_dir: Path, window: int, check_windows: np.ndarray,
    calibration: np.ndarray, atol: float,
) -> dict[str, Any]:
    """Float ONNX checked against torch, then static int8 QDQ ONNX; returns the fidelity report."""
    import onnxruntime as ort

    from wakeword.export import check_onnx, export_onnx, quantize_onnx_int8

    folded = folded_model(model, cmvn)
    tmp = _temp_dir_beside(out_dir)
    try:
        export_onnx(folded, window, cmvn.n_features, tmp / "model.onnx")
        max_diff = check_onnx(folded, tmp / "model.onnx", check_windows, atol)
        quantize_onnx_int8(tmp / "model.onnx", tmp / "model_int8.onnx", calibration)
        f_sess = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
        q_sess = ort.InferenceSession(str(tmp / "model_int8.onnx"), providers=["CPUExecutionProvider"])
        f_out = np.concatenate([f_sess.run(None, {"features": w[None]})[0] for w in check_windows])
        q_out = np.concatenate([q_sess.run(None, {"features": w[None]})[0] for w in check_windows])
        report = {
            "onnx_max_abs_diff_vs_torch": float(max_diff),
            "onnx_float_kb": round((tmp / "model.onnx").stat().st_size / 1024, 2),
            "onnx_int8_kb": round((tmp / "model_int8.onnx").stat().st_size / 1024, 2),
            "onnx_int8_argmax_agreement": float((f_out.argmax(1) == q_out.argmax(1)).mean()),
            "onnx_int8_mean_abs_prob_diff": float(np.abs(probabilities(f_out) - probabilities(q_out)).mean()),
            "check_windows": int(check_windows.shape[0]),
        }
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def decision_agreement(
    reference: LogitFn, candidate: LogitFn, windows: np.ndarray, temperature: float, threshold: float,
) -> dict[str, float]:
    p_ref = probabilities(reference(windows), temperature)
    p_new = probabilities(candidate(windows), temperature)
    return {
        "decision_agreement": float(((p_ref >= threshold) == (p_new >= threshold)).mean()),
        "mean_abs_prob_diff": float(np.abs(p_ref - p_new).mean()),
        "max_abs_prob_diff": float(np.abs(p_ref - p_new).max()),
    }


def check_recall_drop(float_metrics: dict[str, Any], int8_metrics: dict[str, Any], max_drop: float) -> float:
    """The deployed model must keep the float model's recall at the calibrated threshold; returns the drop."""
    drop = float(float_metrics["recall_at_target"]) - float(int8_metrics["recall_at_target"])
    if drop > max_drop:
        raise FidelityError(
            f"int8 TFLite recall at the calibrated threshold is {int8_metrics['recall_at_target']:.3f}, "
            f"{drop:.3f} below the float model's {float_metrics['recall_at_target']:.3f}; "
            f"export.max_recall_drop allows {max_drop}"
        )
    return drop


def input_description(fp: FeatureParams) -> str:
    """What the deployed model's input is, in words (the manifest's ``input``)."""
    dim = feature_dim(fp)
    if fp.type == "log_mel":
        what = f"raw log-mel, {dim} mel bins per {fp.hop_ms:g} ms frame ({fp.win_ms:g} ms window)"
    elif fp.type == "mfcc":
        what = (f"raw MFCC, {dim} coefficients (orthonormal DCT-II of a {fp.n_mels}-bin log-mel) per {fp.hop_ms:g} ms "
                f"frame ({fp.win_ms:g} ms window)")
    else:
        what = (f"TFLite-Micro audio front end (pymicro-features), {dim} channels per {fp.hop_ms:g} ms frame "
                f"({fp.win_ms:g} ms window), uint16 output x {MICRO_SCALE} (= 1/25.6)")
    return f"{what}; CMVN folded into the model"


def build_manifest(
    phrase: str, fp: FeatureParams, window: int, step: int, step_ms: int, calibration: dict[str, Any],
    arena_bytes: int, cmvn: CMVN,
) -> dict[str, Any]:
    if cmvn.n_features != feature_dim(fp) or cmvn.feature_type != fp.type:
        raise ValueError(f"CMVN is for {cmvn.n_features} {cmvn.feature_type} features, but features.type {fp.type} "
                         f"gives {feature_dim(fp)}")
    return {
        "version": MANIFEST_VERSION,
        "wake_word": phrase,
        "model": "model.tflite",
        "model_type": "full_int8_tflite",
        "input": input_description(fp),
        "features": fp.model_dump(),
        "sample_rate_hz": 16000,
        "window_frames": window,
        "step_frames": step,
        "step_ms": step_ms,
        "temperature": calibration["temperature"],
        "probability_cutoff": calibration["threshold"],
        "detector": calibration["detector"],
        "tensor_arena_size": arena_bytes,
        "cmvn": cmvn.to_dict(),
    }


def c_array_sources(model_bytes: bytes, arena_bytes: int, symbol: str = "g_wakeword_model") -> tuple[str, str]:
    """``model_data.h`` and ``model_data.cc`` embedding the .tflite for TFLite-Micro firmware.

    The array is 16-byte aligned (TFLite-Micro reads the flatbuffer in place) and the measured tensor arena
    size travels with it, so firmware allocates exactly what was measured.
    """
    guard = "WAKEWORD_MODEL_DATA_H_"
    header = (
        "// Generated by wakeword (stage tflite): the full-int8 wake-word model for TFLite-Micro.\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <cstddef>\n#include <cstdint>\n\n"
        f"extern const uint8_t {symbol}_data[];\n"
        f"extern const size_t {symbol}_data_len;\n\n"
        f"// Smallest tensor arena that allocated and invoked the model on the host (tflite-micro).\n"
        f"constexpr size_t {symbol.upper()}_TENSOR_ARENA_SIZE = {arena_bytes};\n\n"
        f"#endif  // {guard}\n"
    )
    rows = [", ".join(f"0x{b:02x}" for b in model_bytes[i : i + 12]) for i in range(0, len(model_bytes), 12)]
    source = (
        '#include "model_data.h"\n\n'
        f"alignas(16) const uint8_t {symbol}_data[] = {{\n    " + ",\n    ".join(rows) + "\n};\n"
        f"const size_t {symbol}_data_len = {len(model_bytes)};\n"
    )
    return header, source


def write_model_dir(out_dir: Path, tflite_file: Path, manifest: dict[str, Any]) -> None:
    """Publish the model directory atomically: .tflite, manifest, and the C array for firmware."""
    tmp = _temp_dir_beside(out_dir)
    try:
        shutil.copyfile(tflite_file, tmp / "model.tflite")
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        header, source = c_array_sources(tflite_file.read_bytes(), int(manifest["tensor_arena_size"]))
        (tmp / "model_data.h").write_text(header)
        (tmp / "model_data.cc").write_text(source)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def model_compute(model: nn.Module, window: int, step_ms: int) -> dict[str, int]:
    macs = count_macs(model, window)
    return {"parameters": count_parameters(model), "macs_per_window": macs,
            "macs_per_second": round(macs * 1000.0 / step_ms)}
