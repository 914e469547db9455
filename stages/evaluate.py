"""Stage evaluate: the float model on the test clips and the test stream, at the calibrated threshold."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.calibration import threshold_grid
from wakeword.cmvn import load_cmvn
from wakeword.evaluation import evaluate_scored, load_calibration, score_set
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.train import load_checkpoint, torch_logit_fn


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("curve_out", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, calibration: Path, out: Path, curve_out: Path,
         params_path: Path) -> None:
    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    cal = load_calibration(calibration)
    index = read_index(features_dir)
    stream, hours = load_stream(features_dir, "test")
    scored = score_set(torch_logit_fn(model, load_cmvn(cmvn_path)), load_split(features_dir, "test"), stream, hours,
                       int(index["window_frames"]), int(index["step_frames"]))
    result, rows = evaluate_scored(scored, cal["temperature"], cal["threshold"], cal["target_fah"], p.detector,
                                   p.audio.step_ms, threshold_grid(p.calibrate.threshold_step),
                                   p.calibrate.max_stream_on_fraction)
    write_json(out, round_floats(result))
    write_json(curve_out, round_floats(rows))


if __name__ == "__main__":
    main()
