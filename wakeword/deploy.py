"""From a trained checkpoint to deployable artifacts: ONNX (float, int8) and the full-int8 TFLite model
directory that ``wakeword detect`` / ``wakeword score`` run.

CMVN is folded into the model's first convolution, so every exported model takes raw features of the
configured ``features.type`` (log-mel, MFCC or TFLite-Micro front-end output; :mod:`wakeword.features`).
Beside ``wakeword.json`` the directory carries an ESPHome micro_wake_word-style manifest (:func:`esphome_manifest`,
honest about not being drop-in), and :func:`pre_training_estimate` sizes a model before it exists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from wakeword.cmvn import CMVN
from wakeword.features import MICRO_SCALE, feature_dim, frames_for
from wakeword.featureset import FeatureSet
from wakeword.models import count_macs, count_parameters, fold_cmvn
from wakeword.params import FeatureParams, Params
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
        "esphome_manifest": esphome_manifest_name(phrase),
        "cmvn": cmvn.to_dict(),
    }


#: ESPHome micro_wake_word model manifest format this project writes (``version`` 2, ESPHome 2024.7.0+).
ESPHOME_MANIFEST_VERSION = 2
ESPHOME_MINIMUM_VERSION = "2024.7.0"


def esphome_manifest_name(phrase: str) -> str:
    """File name of the ESPHome-style manifest: the phrase as a slug (``hey jarvis`` -> ``hey_jarvis.json``),
    never the project's own manifest name (a phrase "wakeword" gives ``wakeword_esphome.json``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", phrase.lower().replace("'", "")).strip("_") or "wake_word"
    name = f"{slug}.json"
    return f"{slug}_esphome.json" if name == MANIFEST_NAME else name


def esphome_manifest(manifest: dict[str, Any], author: str = "wakeword", website: str = "",
                     trained_languages: list[str] | tuple[str, ...] = ("en",)) -> dict[str, Any]:
    """An ESPHome ``micro_wake_word`` v2-style manifest for a model directory, filled from our manifest.

    Field mapping: ``probability_cutoff`` = the calibrated threshold (``threshold_on``), ``sliding_window_size``
    = the detector's vote window N, ``feature_step_size`` = the feature hop in ms, ``tensor_arena_size`` = the
    arena measured with tflite-micro. ``website`` is left out when empty (optional in ESPHome's v2 schema).

    It is NOT a drop-in ESPHome model, and the ``wakeword`` block says so: ESPHome feeds a *streaming* model
    3 new micro-front-end frames per call and reads one uint8 probability, averaging the last N; this model
    reads a whole window (1.5 s by default) of ``features.type`` features per call every ``step_ms`` and
    outputs two int8 logits (p = softmax(logits / temperature)[1]), and our detector needs K of N steps above
    the threshold with hysteresis and lockout. Drop-in would need ``features.type: micro`` and a streaming
    export, which this project does not produce. ESPHome's manifest schema does not allow unknown keys, so
    the ``wakeword`` block also makes ESPHome refuse the file at configuration time rather than fail on the
    device.
    """
    fp = manifest["features"]
    det = manifest["detector"]
    window, hop_ms = int(manifest["window_frames"]), float(fp["hop_ms"])
    win_ms = 30.0 if fp["type"] == "micro" else float(fp["win_ms"])
    window_s = round(((window - 1) * hop_ms + win_ms) / 1000.0, 3)
    out: dict[str, Any] = {
        "type": "micro",
        "wake_word": manifest["wake_word"],
        "author": author,
        "website": website,
        "model": manifest["model"],
        "trained_languages": list(trained_languages),
        "version": ESPHOME_MANIFEST_VERSION,
        "micro": {
            "probability_cutoff": float(manifest["probability_cutoff"]),
            "sliding_window_size": int(det["vote_window"]),
            "feature_step_size": round(hop_ms),
            "tensor_arena_size": int(manifest["tensor_arena_size"]),
            "minimum_esphome_version": ESPHOME_MINIMUM_VERSION,
        },
        "wakeword": {
            "esphome_drop_in": False,
            "note": (
                f"Not a drop-in ESPHome micro_wake_word model. It scores a {window}-frame ({window_s:g} s) window "
                f"of {fp['type']} features per call, every {manifest['step_ms']} ms, and outputs two int8 logits "
                "(probability = softmax(logits / temperature)[1]); ESPHome feeds a streaming model 3 new "
                "micro-front-end frames per call and reads one uint8 probability. It would be drop-in only with "
                "features.type micro and a streaming export, which this project does not produce yet. "
                f"probability_cutoff is our calibrated threshold_on and sliding_window_size our vote window, but "
                f"ESPHome averages the last N probabilities while our detector needs {det['vote_threshold']} of "
                f"{det['vote_window']} steps above the threshold (hysteresis, {det['lockout_ms']} ms lockout). "
                "tensor_arena_size was measured with tflite-micro on a 64-bit host. Run the model with "
                f"'wakeword detect' and {MANIFEST_NAME}."
            ),
            "manifest": MANIFEST_NAME,
            "features_type": fp["type"],
            "window_frames": window,
            "window_s": window_s,
            "step_ms": int(manifest["step_ms"]),
            "output": "2 int8 logits; probability = softmax(logits / temperature)[1]",
            "temperature": float(manifest["temperature"]),
            "detector": dict(det),
        },
    }
    if not website:
        del out["website"]
    return out


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


def write_model_dir(out_dir: Path, tflite_file: Path, manifest: dict[str, Any],
                    esphome: dict[str, Any] | None = None, extra_files: dict[str, Path] | None = None) -> None:
    """Publish the model directory atomically: .tflite, manifest, the C array for firmware, when
    ``esphome`` is given (:func:`esphome_manifest`) the ESPHome-style manifest named by
    ``manifest["esphome_manifest"]``, and ``extra_files`` ({name in the directory: source file})."""
    reserved = {"model.tflite", MANIFEST_NAME, "model_data.h", "model_data.cc"}
    for name in extra_files or {}:
        if name in reserved or "/" in name or not name:
            raise ValueError(f"extra model-directory file name {name!r} is empty, a path or one of {sorted(reserved)}")
    tmp = _temp_dir_beside(out_dir)
    try:
        shutil.copyfile(tflite_file, tmp / "model.tflite")
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if esphome is not None:
            name = str(manifest.get("esphome_manifest") or esphome_manifest_name(str(manifest["wake_word"])))
            if name == MANIFEST_NAME or "/" in name:
                raise ValueError(f"esphome_manifest must be a plain file name other than {MANIFEST_NAME}, got {name!r}")
            (tmp / name).write_text(json.dumps(esphome, indent=2) + "\n")
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


def model_shape(model: nn.Module, window: int) -> dict[str, int]:
    """What :func:`wakeword.size.rough_size_estimate` needs, from one forward pass on a zero window:
    parameters, input elements, the largest input + output of one conv/linear call, conv calls (Conv1d and
    Conv2d, any architecture) and their summed output channels. A module called several times (the unrolled
    recurrent gates) counts once per call, as each call is one op in the converted graph."""
    import torch

    pairs: list[int] = []
    out_channels: list[int] = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        pairs.append(int(inp[0][0].numel() + out[0].numel()))
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            out_channels.append(int(mod.out_channels))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    n_features = int(model.n_features)  # type: ignore[arg-type]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, window, n_features))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {"parameters": count_parameters(model), "input_elements": window * n_features,
            "peak_pair_elements": max(pairs, default=0), "conv_layers": len(out_channels),
            "conv_out_channels": sum(out_channels)}


ESTIMATE_LABEL = "ESTIMATE (before training)"


def pre_training_estimate(p: Params) -> dict[str, Any]:
    """Size and compute of the model ``params.yaml`` describes, before any data, training or conversion
    (SPEC 4.7 allows a formula estimate only here, labelled as such; the tflite stage measures the real
    figures). The model is built with random weights; nothing is trained or converted.

    Flash: SPEC's ``parameters x 1 byte x 1.1`` and a rough fit that adds biases, quantisation parameters and
    graph records (:func:`wakeword.size.rough_size_estimate`); the platform check uses the larger. RAM: the
    rough arena fit (the measured arena is unknown before conversion) + :func:`wakeword.size.
    detector_buffer_bytes`.
    """
    from wakeword.models import build_model, describe
    from wakeword.size import detector_buffer_bytes, platform_fit, rough_size_estimate

    dim = feature_dim(p.features)
    window = frames_for(p.audio.clip_samples, p.features)
    model = build_model(p.model, dim, window)
    compute = model_compute(model, window, p.audio.step_ms)
    rough = rough_size_estimate(model_shape(model, window))
    buffers = detector_buffer_bytes(p.features.n_fft, window, dim)
    flash = max(rough["flash_formula_bytes"], rough["flash_fit_bytes"])
    ram = rough["arena_fit_bytes"] + buffers["total_bytes"]

    def kb(n: int) -> float:
        return round(n / 1024.0, 2)

    return {
        "label": ESTIMATE_LABEL,
        "model": p.model.model_dump(),
        "model_description": describe(p.model),
        "features": {"type": p.features.type, "n_features": dim, "window_frames": window,
                     "window_s": round(p.audio.clip_s, 3)},
        **compute,
        "windows_per_second": round(1000.0 / p.audio.step_ms, 3),
        "flash_formula_bytes": rough["flash_formula_bytes"],
        "flash_formula_kb": kb(rough["flash_formula_bytes"]),
        "flash_fit_bytes": rough["flash_fit_bytes"],
        "flash_fit_kb": kb(rough["flash_fit_bytes"]),
        "flash_estimate_kb": kb(flash),
        "arena_measured": "unknown before conversion",
        "arena_fit_bytes": rough["arena_fit_bytes"],
        "arena_fit_kb": kb(rough["arena_fit_bytes"]),
        "detector_buffers": buffers,
        "detector_buffers_kb": kb(buffers["total_bytes"]),
        "ram_estimate_bytes": ram,
        "ram_estimate_kb": kb(ram),
        "platforms": platform_fit(flash, ram, p.deploy.platforms),
        "notes": [
            ("flash_formula is SPEC 4.7's parameters x 1 byte x 1.1 (int8 weights only); the .tflite also holds "
             "int32 biases, per-channel quantisation parameters and graph records, so it is usually 1.5-4x larger"),
            ("flash_fit and arena_fit are rough least-squares fits to measured ds_tcn exports (litert-torch 0.10, "
             "tflite-micro on a 64-bit host; within ~3% and ~8% on the configurations fitted, 6% and 4% on the "
             "trained default model); for other architectures they are rougher still (see the measured table in "
             "wakeword/models.py)"),
            "platforms use the larger flash estimate and arena_fit + detector buffers for RAM",
            "the tflite stage measures the real flash and arena (metrics/size.json)",
        ],
    }
