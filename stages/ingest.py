"""Stage ingest: validate and convert own audio in data/raw to 16 kHz mono, with a report of every file."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.ingest import ingest_raw


@click.command()
@click.argument("raw_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(raw_dir: Path, out_dir: Path, report: Path, params_path: Path) -> None:
    params = load(params_path)
    result = ingest_raw(raw_dir, out_dir, params.data, params.audio, params.seed)
    write_json(report, round_floats(result, 4))


if __name__ == "__main__":
    main()
