"""``wakeword`` command line: run an exported model directory on audio files.

    wakeword score  MODEL_DIR WAV...   one line per window step: <wav>\\t<time_s>\\t<score>
    wakeword detect MODEL_DIR WAV...   one line per detection:   <wav>\\t<time_s>\\t<score>

Many files per call share one model load. A file that cannot be read is reported on stderr and skipped;
the others are still scored, and the exit code is 1 if any file failed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from wakeword.audio import AudioError
from wakeword.detector import PRESETS

if TYPE_CHECKING:
    from wakeword.runtime import DeployedModel


def _load(model_dir: Path, threshold: float | None, preset: str | None = None) -> DeployedModel:
    from wakeword.runtime import DeployedModel, ModelDirError

    try:
        return DeployedModel.load(model_dir, threshold, preset)
    except (ModelDirError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _scored(
    model: DeployedModel, wavs: tuple[Path, ...],
) -> Iterator[tuple[Path, np.ndarray | None, np.ndarray | None]]:
    """Yield (wav, times, probs) per file; (wav, None, None) after reporting a file that cannot be read."""
    for wav in wavs:
        try:
            times, probs = model.score_file(wav)
        except AudioError as exc:
            click.echo(f"wakeword: {exc}", err=True)
            yield wav, None, None
            continue
        yield wav, times, probs


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
    for wav, times, probs in _scored(model, wavs):
        if times is None:
            failed += 1
            continue
        click.echo("".join(f"{wav}\t{t:.3f}\t{p:.4f}\n" for t, p in zip(times, probs)), nl=False)
    sys.exit(1 if failed else 0)


@main.command()
@model_dir_arg
@wavs_arg
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Override the calibrated threshold_on (hysteresis kept).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Use a SPEC detector preset (votes, lockout, threshold) instead of the calibrated settings.")
def detect(model_dir: Path, wavs: tuple[Path, ...], threshold: float | None, preset: str | None) -> None:
    """Print each detection of the streaming detector: file, time (s) and score."""
    model = _load(model_dir, threshold, preset)
    failed = 0
    for wav, times, probs in _scored(model, wavs):
        if times is None:
            failed += 1
            continue
        for i in model.detections(probs):
            click.echo(f"{wav}\t{times[i]:.3f}\t{probs[i]:.4f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
