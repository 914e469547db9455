"""Stage synth: render the built-in demo data set (speech, confusables, noise, long streams) and the
held-out engine set. It does not depend on ``data.source``: switching the source never re-renders it, and
the held-out engine set is used with own data too."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.synth import synthesize_dataset


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(out_dir: Path, report: Path, params_path: Path) -> None:
    params = load(params_path)
    composition = synthesize_dataset(params.synth, params.seed, out_dir, params.audio.sample_rate_hz)
    write_json(report, round_floats(composition, 4))


if __name__ == "__main__":
    main()
