"""Stage train: fit the model, log per-epoch curves with DVCLive, keep the best validation checkpoint.

With ``augment.mode: on_the_fly`` every epoch after the first trains on freshly rendered windows (the
featurize stage's code, a new seed per epoch) instead of the fixed featurized set."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.cmvn import load_cmvn
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.train import train_model


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("live_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("summary", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--synth-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/synth"),
              show_default=True, help="Demo audio (augment.mode on_the_fly re-renders training windows from it).")
@click.option("--own-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/own"),
              show_default=True, help="Own audio (on_the_fly).")
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/split"),
              show_default=True, help="Split manifests (on_the_fly).")
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, live_dir: Path, summary: Path, synth_dir: Path,
         own_dir: Path, split_dir: Path, params_path: Path) -> None:
    from dvclive import Live

    p = load(params_path)
    epoch_windows = None
    if p.augment.mode == "on_the_fly":
        from wakeword.featurize import OnTheFlyWindows

        epoch_windows = OnTheFlyWindows({"synth": synth_dir, "own": own_dir}, split_dir, p.audio, p.features,
                                        p.augment, p.seed)
    stream, hours = load_stream(features_dir, "val")
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            for name, value in row.items():
                live.log_metric(name, value)
            live.next_step()

        result = train_model(
            load_split(features_dir, "train"), load_split(features_dir, "val"), stream, hours,
            load_cmvn(cmvn_path), read_index(features_dir), p.model, p.train, p.detector, p.calibrate, p.audio,
            p.seed, checkpoint, on_epoch, p.augment, epoch_windows,
        )
    write_json(summary, round_floats({
        "best_epoch": result.best_epoch + 1, "epochs": len(result.history), "parameters": result.parameters,
        "macs_per_window": result.macs_per_window, "train_wall_s": round(result.wall_s, 1), "best": result.best,
    }))


if __name__ == "__main__":
    main()
