"""Stage calibrate: temperature scaling on validation logits, then the threshold for the target FAH."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.evaluation import calibrate_scored, reliability_plot_rows, score_set
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.train import torch_logit_fn

log = logging.getLogger("calibrate")


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("reliability_out", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, out: Path, reliability_out: Path,
         params_path: Path) -> None:
    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    index = read_index(features_dir)
    val = load_split(features_dir, "val")
    stream, hours = load_stream(features_dir, "val")
    window, step = int(index["window_frames"]), int(index["step_frames"])
    scored = score_set(torch_logit_fn(model, load_cmvn(cmvn_path)), val, stream, hours, window, step)
    result = calibrate_scored(
        scored, val.x.shape[1], window, step, p.detector, p.audio.step_ms, p.calibrate.target_fah,
        p.calibrate.threshold_step, p.calibrate.temperature_iters, p.calibrate.temperature_lr,
        p.calibrate.max_stream_on_fraction,
    )
    if not result["target_met"]:
        log.warning("no threshold reaches %.3g FA/h on the validation stream; using the quietest (%.2f, %.3g FA/h)",
                    p.calibrate.target_fah, result["threshold"], result["val_fah"])
    write_json(out, round_floats(result))
    write_json(reliability_out, reliability_plot_rows(scored, val.x.shape[1], window, step, result["temperature"]))


if __name__ == "__main__":
    main()
