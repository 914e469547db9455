"""Stage report: render every plot offline (PNG, no network) and write the one-page metrics/report.md."""

from __future__ import annotations

from pathlib import Path

import click

from stages._common import stage
from wakeword.plots import load_metrics, render_all, report_images, write_report


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("images_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@stage
def main(inputs: tuple[Path, ...], images_dir: Path, report: Path) -> None:
    """INPUTS: the metrics files and the plots/ and train/ directories of one metrics directory (named so
    DVC tracks each); the report reads that directory."""
    metrics_dir = report.parent
    strays = [p for p in inputs if p.resolve().parent != metrics_dir.resolve()]
    if strays:
        raise click.ClickException(f"inputs must live in {metrics_dir}, the report's directory: {strays}")
    images = render_all(metrics_dir, images_dir)
    write_report(report, load_metrics(metrics_dir), report_images(images))


if __name__ == "__main__":
    main()
