"""Stage featurize: augmented training windows, evaluation clips and stream features (log-mel)."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, stage
from wakeword.featurize import featurize


@click.command()
@click.argument("synth_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("own_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("split_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@params_option
@stage
def main(synth_dir: Path, own_dir: Path, split_dir: Path, out_dir: Path, params_path: Path) -> None:
    p = load(params_path)
    featurize({"synth": synth_dir, "own": own_dir}, split_dir, out_dir, p.audio, p.features, p.augment, p.seed)


if __name__ == "__main__":
    main()
