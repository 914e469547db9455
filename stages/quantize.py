"""Stage quantize: float ONNX (checked against torch) and static int8 QDQ ONNX from calibration windows."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.deploy import export_onnx_models, sample_windows
from wakeword.featureset import load_split, read_index


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, out_dir: Path, report: Path, params_path: Path) -> None:
    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    index = read_index(features_dir)
    window, step = int(index["window_frames"]), int(index["step_frames"])
    calibration = sample_windows(load_split(features_dir, "train"), window, step, p.quantize.calibration_windows, p.seed)
    check = sample_windows(load_split(features_dir, "val"), window, step, 256, p.seed + 1)
    result = export_onnx_models(model, load_cmvn(cmvn_path), out_dir, window, check, calibration, p.quantize.onnx_atol)
    write_json(report, round_floats(result, 8))


if __name__ == "__main__":
    main()
