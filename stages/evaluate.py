"""Stage evaluate: the float model on the test clips and the test stream, at the calibrated threshold; and
the same metrics on the held-out engine set (group ``heldout``) when the data has one, there also per voice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.calibration import threshold_grid
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.evaluation import (
    evaluate_split,
    evaluation_splits,
    heldout_voice_groups,
    load_calibration,
    plot_files,
)
from wakeword.train import torch_logit_fn


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("plots_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/split"),
              show_default=True, help="Split manifests: the held-out clips' voices (by_voice in the metrics).")
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, calibration: Path, out: Path, plots_dir: Path,
         split_dir: Path, params_path: Path) -> None:
    """Writes ``out`` and, in ``plots_dir`` (a directory of DVC plots), ``float[_heldout]_{curve,roc,det,hist}.json``."""
    p = load(params_path)
    model, _ = load_checkpoint(checkpoint)
    logit_fn = torch_logit_fn(model, load_cmvn(cmvn_path))
    cal = load_calibration(calibration)
    result: dict[str, Any] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for split in evaluation_splits(features_dir):
        metrics, curve, other = evaluate_split(logit_fn, features_dir, split, cal, p.detector, p.audio.step_ms,
                                               threshold_grid(p.calibrate.threshold_step),
                                               p.calibrate.max_stream_on_fraction, p.calibrate.tta_shifts,
                                               heldout_voice_groups(split_dir, split))
        if split == "test":
            result.update(metrics)
        else:
            result[split] = metrics
        rows.update(plot_files("float", split, curve, other))
    write_json(out, round_floats(result))
    for name, data in rows.items():
        write_json(plots_dir / name, round_floats(data))


if __name__ == "__main__":
    main()
