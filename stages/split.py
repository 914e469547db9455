"""Stage split: train/val/test manifests grouped by voice, so no voice crosses splits."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import load, params_option, stage, write_json
from wakeword.manifest import read_manifest, write_manifest
from wakeword.split import check_disjoint_groups, split_items, summarize


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(data_dir: Path, out_dir: Path, report: Path, params_path: Path) -> None:
    params = load(params_path)
    splits = split_items(read_manifest(data_dir / "manifest.jsonl"), params.split, params.seed)
    check_disjoint_groups(splits)
    for name, items in splits.items():
        write_manifest(out_dir / f"{name}.jsonl", items)
    write_json(report, summarize(splits))


if __name__ == "__main__":
    main()
