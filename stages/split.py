"""Stage split: train/val/test (and held-out engine) manifests grouped by voice, so no voice crosses splits.

``data.source`` picks the data: the built-in demo set (data/synth), own audio (data/own, from the ingest
stage), or both. The held-out engine set (role ``heldout`` in the demo manifest) is used with every source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from stages._common import load, params_option, stage, write_json
from wakeword.manifest import Item, read_manifest, write_manifest
from wakeword.split import check_disjoint_groups, merge_sources, split_items, summarize


@click.command()
@click.argument("synth_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("own_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(synth_dir: Path, own_dir: Path, out_dir: Path, report: Path, params_path: Path) -> None:
    params = load(params_path)
    sources: dict[str, list[Item]] = {}
    demo = read_manifest(synth_dir / "manifest.jsonl")
    # own only: the demo set's held-out engine clips still measure generalisation to unseen engines
    sources["synth"] = demo if params.data.source in ("demo", "both") else [i for i in demo if i.role == "heldout"]
    if params.data.source in ("own", "both"):
        sources["own"] = read_manifest(own_dir / "manifest.jsonl")
        if not sources["own"]:
            raise click.ClickException(
                f"data.source = {params.data.source}: {own_dir / 'manifest.jsonl'} holds no usable own audio; put "
                "files in data/raw/<kind>/ (see metrics/data_report.json for rejected files)"
            )
    splits = split_items(merge_sources(sources), params.split, params.seed)
    check_disjoint_groups(splits)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, items in splits.items():
        write_manifest(tmp / f"{name}.jsonl", items)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    write_json(report, summarize(splits))


if __name__ == "__main__":
    main()
