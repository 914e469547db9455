"""Stage cmvn: per-bin mean and standard deviation over the training split only."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, stage
from wakeword.cmvn import compute_cmvn, save_cmvn
from wakeword.featureset import load_split


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(features_dir: Path, out: Path, params_path: Path) -> None:
    p = load(params_path)
    save_cmvn(out, compute_cmvn(load_split(features_dir, "train").x, p.features.type))


if __name__ == "__main__":
    main()
