"""Stage evaluate: the float model on the test clips and the test stream, at the calibrated threshold; and
the same metrics on the held-out engine set (group ``heldout``) when the data has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.calibration import threshold_grid
from wakeword.cmvn import load_cmvn
from wakeword.evaluation import evaluate_split, evaluation_splits, load_calibration
from wakeword.train import load_checkpoint, torch_logit_fn


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("curve_out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("heldout_curve_out", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, calibration: Path, out: Path, curve_out: Path,
         heldout_curve_out: Path, params_path: Path) -> None:
    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    logit_fn = torch_logit_fn(model, load_cmvn(cmvn_path))
    cal = load_calibration(calibration)
    curves: dict[str, list[dict[str, float]]] = {"heldout": []}
    result: dict[str, Any] = {}
    for split in evaluation_splits(features_dir):
        metrics, curves[split] = evaluate_split(logit_fn, features_dir, split, cal, p.detector, p.audio.step_ms,
                                                threshold_grid(p.calibrate.threshold_step),
                                                p.calibrate.max_stream_on_fraction)
        if split == "test":
            result.update(metrics)
        else:
            result[split] = metrics
    write_json(out, round_floats(result))
    write_json(curve_out, round_floats(curves["test"]))
    write_json(heldout_curve_out, round_floats(curves["heldout"]))


if __name__ == "__main__":
    main()
