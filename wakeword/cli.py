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


@main.command("augment-preview")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Parameters file.")
@click.option("--split-dir", default="data/split", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="Split manifests (stage split).")
@click.option("--synth-dir", default="data/synth", show_default=True, type=click.Path(path_type=Path),
              help="Demo data root (stage synth).")
@click.option("--own-dir", default="data/own", show_default=True, type=click.Path(path_type=Path),
              help="Own data root (stage ingest).")
@click.option("-n", "count", default=8, show_default=True, type=click.IntRange(1, 1000), help="Windows to write.")
@click.option("--kind", default="positive", show_default=True,
              type=click.Choice(["positive", "negative", "hard_negative"]), help="Kind of utterance to augment.")
def augment_preview(out_dir: Path, params_path: Path, split_dir: Path, synth_dir: Path, own_dir: Path, count: int,
                    kind: str) -> None:
    """Write COUNT augmented training windows (and each dry utterance) to OUT_DIR to listen to, with
    preview.json saying what was applied (stretch, pitch, level, context, room impulse response, wet)."""
    from wakeword.featurize import FeaturizeError, augment_preview
    from wakeword.manifest import ManifestError
    from wakeword.params import ParamsError, load_params

    try:
        p = load_params(params_path)
        rows = augment_preview({"synth": synth_dir, "own": own_dir}, split_dir, out_dir, p.audio, p.augment, p.seed,
                               count, kind)
    except (ParamsError, FeaturizeError, ManifestError, AudioError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(rows)} windows of {kind} to {out_dir} (see {out_dir / 'preview.json'})")


if __name__ == "__main__":
    main()
