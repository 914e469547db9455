"""Stage card: metrics/model_card.md, one human-readable page about this run's model, from its metrics files."""

from __future__ import annotations

import os
from pathlib import Path

import click

from stages._common import load, params_option, stage
from wakeword.modelcard import load_card_inputs, render_model_card


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@stage
def main(inputs: tuple[Path, ...], card: Path, params_path: Path) -> None:
    """INPUTS: split.json, data.json, data_report.json, train.json, size.json, float.json, int8.json,
    calibration.json, mining.json and finetune.json of one run, each recognised by its name; CARD: the
    Markdown file to write."""
    params = load(params_path)
    text = render_model_card(load_card_inputs(inputs), params)
    card.parent.mkdir(parents=True, exist_ok=True)
    tmp = card.with_name(card.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, card)


if __name__ == "__main__":
    main()
