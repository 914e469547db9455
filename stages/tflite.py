"""Stage tflite: full-int8 TFLite model directory, its fidelity against the float model, the int8 model's
test and held-out-engine metrics (same evaluation as the float model) and the measured flash/RAM size."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.calibration import threshold_grid
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.deploy import (
    FidelityError,
    build_manifest,
    check_recall_drop,
    decision_agreement,
    esphome_manifest,
    folded_model,
    model_compute,
    sample_windows,
    write_model_dir,
)
from wakeword.evaluation import (
    evaluate_split,
    evaluation_splits,
    heldout_voice_groups,
    load_calibration,
    plot_files,
)
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.models import StreamTCN
from wakeword.train import torch_logit_fn

log = logging.getLogger("tflite")


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("float_metrics", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("metrics_out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("size_out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("plots_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/split"),
              show_default=True, help="Split manifests: the held-out clips' voices (by_voice in the metrics).")
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, calibration: Path, float_metrics: Path, model_dir: Path,
         metrics_out: Path, size_out: Path, plots_dir: Path, split_dir: Path, params_path: Path) -> None:
    from wakeword.export import convert_tflite_float, convert_tflite_int8
    from wakeword.size import (
        detector_buffer_bytes,
        enforce_platform_limits,
        measure_arena_bytes,
        platform_fit,
        size_report,
    )
    from wakeword.tflite_runtime import TFLiteScorer

    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    cmvn = load_cmvn(cmvn_path)
    cal = load_calibration(calibration)
    index = read_index(features_dir)
    window, step = int(index["window_frames"]), int(index["step_frames"])
    folded = folded_model(model, cmvn)
    calib = sample_windows(load_split(features_dir, "train"), window, step, p.quantize.calibration_windows, p.seed)
    with tempfile.TemporaryDirectory() as tmp:
        int8_path, float_path = Path(tmp) / "model.tflite", Path(tmp) / "model_float.tflite"
        convert_tflite_int8(folded, calib, int8_path)
        convert_tflite_float(folded, window, cmvn.n_features, float_path)
        scorer = TFLiteScorer(int8_path)
        test = load_split(features_dir, "test")
        check = sample_windows(test, window, step, 1024, p.seed + 2)
        fidelity = decision_agreement(torch_logit_fn(model, cmvn), scorer.logits, check, cal["temperature"],
                                      cal["threshold"])
        if fidelity["decision_agreement"] < p.export.min_decision_agreement:
            raise FidelityError(
                f"int8 TFLite agrees with the float model on {fidelity['decision_agreement']:.3f} of windows, below "
                f"export.min_decision_agreement = {p.export.min_decision_agreement}"
            )
        grid = threshold_grid(p.calibrate.threshold_step)
        rows: dict[str, list[dict[str, Any]]] = {}
        result: dict[str, Any] = {}
        for split in evaluation_splits(features_dir):
            metrics, curve, other = evaluate_split(scorer.logits, features_dir, split, cal, p.detector,
                                                   p.audio.step_ms, grid, p.calibrate.max_stream_on_fraction,
                                                   p.calibrate.tta_shifts, heldout_voice_groups(split_dir, split))
            if split == "test":
                result.update(metrics)
            else:
                result[split] = metrics
            rows.update(plot_files("int8", split, curve, other))
        result["fidelity_vs_float"] = fidelity
        result["fidelity_vs_float"]["recall_drop"] = check_recall_drop(
            json.loads(float_metrics.read_text()), result, p.export.max_recall_drop)
        max_arena = p.export.max_arena_kb * 1024
        buffers = detector_buffer_bytes(p.features.n_fft, window, cmvn.n_features)
        arena = measure_arena_bytes(int8_path, max_arena)
        size = size_report(int8_path, arena, buffers)
        float_size = size_report(float_path, measure_arena_bytes(float_path, max_arena * 4), buffers)
        size["float"] = {k: float_size[k] for k in ("flash_kb", "arena_kb", "ram_kb")}
        size.update(model_compute(model, window, p.audio.step_ms))
        size["platforms"] = platform_fit(size["flash_bytes"], size["ram_bytes"], p.deploy.platforms)
        enforce_platform_limits(size["flash_bytes"], size["ram_bytes"], p.deploy.platforms, p.deploy.fail_on_exceed)
        manifest = build_manifest(p.synth.phrase, p.features, window, step, p.audio.step_ms, cal, arena, cmvn)
        extra: dict[str, Path] = {}
        if isinstance(folded, StreamTCN):  # stream_tcn: also the stateful streaming model (wakeword.stream_export)
            from wakeword.stream_export import stream_deployment

            # a long recording: up to 6 min of the test negative stream, then up to 300 test clips back to back
            clips = test.x[np.random.default_rng(p.seed + 3).permutation(test.x.shape[0])[:300]]
            negative = [load_stream(features_dir, "test")[0][:36000]] if "test" in index.get("streams", {}) else []
            recording = np.concatenate([*negative, *clips]).astype(np.float32)
            extra["stream_model.tflite"] = Path(tmp) / "stream_model.tflite"
            streaming = stream_deployment(folded, calib, recording, extra["stream_model.tflite"], int8_path, window,
                                          p.features.hop_ms, p.audio.step_ms, cal["threshold"], cal["temperature"],
                                          max_arena, p.export.min_decision_agreement)
            size["stream"] = streaming["size"]
            result["stream_vs_window"] = streaming["fidelity"]
            manifest["stream"] = streaming["manifest"]
        esphome = esphome_manifest(manifest, p.deploy.author, p.deploy.website, p.deploy.trained_languages)
        write_model_dir(model_dir, int8_path, manifest, esphome, extra)
    write_json(metrics_out, round_floats(result))
    for name, data in rows.items():
        write_json(plots_dir / name, round_floats(data))
    write_json(size_out, round_floats(size, 4))  # 4: the platforms' device shares are fractions


if __name__ == "__main__":
    main()
