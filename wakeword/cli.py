"""``wakeword`` command line: run an exported model directory on audio files.

    wakeword score  MODEL_DIR WAV...   one line per window step: <wav>\\t<time_s>\\t<score>
    wakeword detect MODEL_DIR WAV...   one line per detection:   <wav>\\t<time_s>\\t<score>

Many files per call share one model load. A file that cannot be read is reported on stderr and skipped;
the others are still scored, and the exit code is 1 if any file failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wakeword.audio import AudioError


def _load(model_dir: Path, threshold: float | None):  # type: ignore[no-untyped-def]
    from wakeword.runtime import DeployedModel, ModelDirError

    try:
        return DeployedModel.load(model_dir, threshold)
    except (ModelDirError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="wakeword")
def main() -> None:
    """Train and run small wake-word detectors (the pipeline itself runs with `dvc repro`)."""


model_dir_arg = click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
wavs_arg = click.argument("wavs", nargs=-1, required=True, type=click.Path(path_type=Path))


@main.command()
@model_dir_arg
@wavs_arg
def score(model_dir: Path, wavs: tuple[Path, ...]) -> None:
    """Print the calibrated probability of every window step (before voting)."""
    model = _load(model_dir, None)
    failed = 0
    for wav in wavs:
        try:
            times, probs = model.score_file(wav)
        except AudioError as exc:
            click.echo(f"wakeword: {exc}", err=True)
            failed += 1
            continue
        click.echo("".join(f"{wav}\t{t:.3f}\t{p:.4f}\n" for t, p in zip(times, probs)), nl=False)
    sys.exit(1 if failed else 0)


@main.command()
@model_dir_arg
@wavs_arg
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Override the calibrated threshold_on (hysteresis kept).")
def detect(model_dir: Path, wavs: tuple[Path, ...], threshold: float | None) -> None:
    """Print each detection of the streaming detector: file, time (s) and score."""
    model = _load(model_dir, threshold)
    failed = 0
    for wav in wavs:
        try:
            times, probs = model.score_file(wav)
        except AudioError as exc:
            click.echo(f"wakeword: {exc}", err=True)
            failed += 1
            continue
        for i in model.detections(probs):
            click.echo(f"{wav}\t{times[i]:.3f}\t{probs[i]:.4f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
