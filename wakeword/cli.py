"""``wakeword`` command line: run an exported model directory on audio files, and the helpers around the pipeline.

    wakeword score  MODEL_DIR WAV...   one line per window step: <wav>\\t<time_s>\\t<score>
    wakeword detect MODEL_DIR WAV...   one line per detection:   <wav>\\t<time_s>\\t<score>
    wakeword estimate [--params P] [--json]   ESTIMATE (before training) of parameters, MACs, flash, RAM and
                                              the per-platform fit of the model params.yaml describes
    wakeword augment-preview OUT_DIR   a few training windows as WAVs, rendered as the featurize stage does
    wakeword plots-template [PATH]     an HTML template with which `dvc plots show` renders offline
    wakeword tune [--study S] [--trials N]   Optuna search over DVC experiments (space in tune.yaml), resumable
    wakeword lr-find [--out DIR]       LR range test on the training windows: suggested peak lr, curve JSON + PNG
    wakeword compare CKPT... [--ensemble]   recall at 0.5 / 1 / 2 FA/h on the held-out split (with and without
                                            its stream's confusables) of checkpoints and their ensemble
    wakeword report --diff REV [--out F]   markdown for a pull request: metrics, params and plot files that
                                           changed since REV (headline metrics first)

Many files per call share one model load. A file that cannot be read is reported on stderr and skipped;
the others are still scored, and the exit code is 1 if any file failed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from wakeword.audio import AudioError
from wakeword.detector import PRESETS
from wakeword.prdiff import PLOTS_DIRS

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
    preview.json saying what was applied (stretch, pitch, pause, level, context, room impulse response, wet)."""
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


def _estimate_text(est: dict[str, Any], params_path: Path, names: dict[str, str]) -> str:
    m, f, buf = est["model"], est["features"], est["detector_buffers"]

    def kb(n: int) -> str:
        return f"{n / 1024:.1f} KB"

    buffers = f"  audio ring {buf['audio_ring_bytes']} B + feature window {buf['feature_window_bytes']} B"
    rows = [
        ("model", est.get("model_description") or m["arch"]),
        ("input", f"{f['window_frames']} frames x {f['n_features']} {f['type']} features ({f['window_s']:g} s)"),
        ("parameters", f"{est['parameters']:,}"),
        ("MACs per window", f"{est['macs_per_window']:,}"),
        ("MACs per second", f"{est['macs_per_second']:,} ({est['windows_per_second']:g} windows per second of audio)"),
        ("flash (formula)", f"{kb(est['flash_formula_bytes'])}  SPEC 4.7: parameters x 1 byte x 1.1, int8 weights only"),
        ("flash (rough fit)", f"{kb(est['flash_fit_bytes'])}  + biases, quantisation parameters, graph records"),
        ("arena (rough fit)", f"{kb(est['arena_fit_bytes'])}  the measured arena is unknown before conversion"),
        ("detector buffers", kb(buf["total_bytes"]) + buffers),
        ("RAM", f"{kb(est['ram_estimate_bytes'])}  arena (rough fit) + detector buffers"),
    ]
    lines = [f"{est['label']} from {params_path}: random weights, nothing trained, converted or measured", ""]
    lines += [f"{label:<19}{value}" for label, value in rows]
    lines += ["", f"{'platform':<22}{'flash est / max':>19}{'RAM est / max':>19}  fits"]

    def cap(v: int) -> str:
        return f"{v}" if v else "-"

    for key, row in est["platforms"].items():
        flash = f"{row['flash_kb']:.1f} / {cap(row['max_flash_kb'])} KB"
        ram = f"{row['ram_kb']:.1f} / {cap(row['max_ram_kb'])} KB"
        lines.append(f"{names.get(key, key):<22}{flash:>19}{ram:>19}  {'yes' if row['fits'] else 'NO'}")
    lines += ["", "These are estimates. The tflite stage measures the real flash and arena (metrics/size.json)."]
    return "\n".join(lines)


@main.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Parameters file.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(params_path: Path, as_json: bool) -> None:
    """ESTIMATE (before training): parameters, MACs, flash and RAM of the model the parameters describe, and
    whether it would fit each deploy.platforms target. Nothing is trained or converted; the tflite stage
    measures the real figures."""
    import json

    from wakeword.params import ParamsError, load_params

    try:
        p = load_params(params_path)
    except ParamsError as exc:
        raise click.ClickException(str(exc)) from None
    from wakeword.deploy import pre_training_estimate  # torch: only for this command

    est = pre_training_estimate(p)
    names = {key: prof.name for key, prof in p.deploy.platforms.items()}
    click.echo(json.dumps(est, indent=2) if as_json else _estimate_text(est, params_path, names))


@main.command("plots-template")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default=Path(".dvc/plots/offline.html"))
def plots_template(path: Path) -> None:
    """Write an HTML template that makes `dvc plots show/diff` render with no network (Vega, Vega-Lite and
    vega-embed inlined from vl-convert-python). Use it with `dvc plots show --html-template PATH`, or once:
    `dvc config plots.html_template plots/offline.html` (relative to .dvc/) for the default PATH."""
    from wakeword.plots import write_offline_template

    try:
        written = write_offline_template(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the template ({exc.strerror})") from None
    click.echo(f"wrote {written} ({written.stat().st_size // 1024} KB, no external scripts)")


@main.command()
@click.option("--diff", "rev", default="HEAD", show_default=True, metavar="REV",
              help="Git revision to compare with (branch, tag, commit), e.g. origin/main.")
@click.option("--to", "new_rev", default=None, metavar="REV2",
              help="Compare with this revision instead of the workspace.")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the markdown here instead of stdout.")
@click.option("--plots-dir", "plots_dirs", multiple=True, metavar="DIR", show_default=True,
              default=PLOTS_DIRS, help="Where plot files live (repeatable).")
@click.option("--all", "show_all", is_flag=True, help="List unchanged non-headline metrics too.")
@click.option("--title", default=None, help="Heading of the report.")
def report(rev: str, new_rev: str | None, out_path: Path | None, plots_dirs: tuple[str, ...], show_all: bool,
           title: str | None) -> None:
    """Markdown of what changed since REV, for a pull request: the headline metrics (recall at the target FAH,
    FAH, EER, pAUC, confusable false accepts, held-out engine, flash/arena/RAM) with both values and the change,
    the other metrics that changed, the params that changed, and the plot files that changed. Run it inside the
    DVC repository, after `dvc repro`."""
    from wakeword.prdiff import ReportError, build_report

    try:
        text = build_report(Path.cwd(), rev, new_rev, plots_dirs=plots_dirs, show_all=show_all, title=title)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    if out_path is None:
        click.echo(text, nl=False)
        return
    try:
        out_path.write_text(text)
    except OSError as exc:
        raise click.ClickException(f"{out_path}: cannot write the report ({exc.strerror})") from None
    click.echo(f"wrote {out_path}", err=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--space", "space_path", default="tune.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Search space (YAML).")
@click.option("--study", default="default", show_default=True,
              help="Study name: experiments are named tune-<study>-<trial>; the same name resumes the study.")
@click.option("--trials", default=20, show_default=True, type=click.IntRange(0, 100000),
              help="Complete trials wanted in the study in total (0: only print the table).")
@click.option("--metric", default=None,
              help="Metric to optimise, FILE:KEY (dotted key)  [default: the space file's, else "
                   "metrics/int8.json:recall_at_target]")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]), default=None,
              help="[default: the space file's, else maximize]")
@click.option("--max-flash-kb", type=click.FloatRange(min=0), default=None,
              help="Flash limit, KB (0 = none)  [default: the space file's, else the smallest "
                   "deploy.platforms max_flash_kb of params.yaml]")
@click.option("--max-ram-kb", type=click.FloatRange(min=0), default=None,
              help="RAM limit, KB (0 = none)  [default: as --max-flash-kb, with max_ram_kb]")
@click.option("--storage", default=None,
              help="Optuna storage URL  [default: sqlite:///.dvc/tmp/tune/<study>.db]")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None,
              help="Sampler seed (TPE, seeded per trial with seed + trial number)  [default: the study's, 0 "
                   "for a new study]")
@click.option("--max-failures", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="Stop after this many failed trials in one run.")
def tune(space_path: Path, study: str, trials: int, metric: str | None, direction: str | None,
         max_flash_kb: float | None, max_ram_kb: float | None, storage: str | None, seed: int | None,
         max_failures: int) -> None:
    """Hyperparameter search: each trial is one `dvc exp run --temp -n tune-<study>-<n> -S key=value ...`,
    scored on METRIC from the experiment's metrics, with the flash/RAM of metrics/size.json as constraints
    (an infeasible trial is never the best). A failed experiment is a failed trial. Run at the root of the
    DVC repository, with the pipeline code committed (temp experiments are made from git). Re-running with
    the same --study continues until --trials trials are complete in total."""
    import json
    import signal

    from wakeword import tune as t
    from wakeword.params import ParamsError, load_params

    root = Path.cwd()
    if not (root / ".dvc").is_dir():
        raise click.ClickException("run `wakeword tune` at the root of a DVC repository (no .dvc/ here)")
    try:
        t.check_study_name(study)
        cfg = t.load_space(space_path, root / "params.yaml")
        limits: tuple[float | None, float | None] = (None, None)
        if (root / "params.yaml").exists():
            limits = t.platform_limits(load_params(root / "params.yaml"))
        metric = metric or cfg.metric or t.DEFAULT_METRIC
        t.check_metric(metric, "--metric")
        flash = next(v for v in (max_flash_kb, cfg.max_flash_kb, limits[0], 0.0) if v is not None)
        ram = next(v for v in (max_ram_kb, cfg.max_ram_kb, limits[1], 0.0) if v is not None)
        objective = t.Objective(metric, direction or cfg.direction or "maximize",  # type: ignore[arg-type]
                                flash or None, ram or None)
        baseline = root / objective.metric_file
        if baseline.exists() and t.lookup(json.loads(baseline.read_text()), objective.metric_key) is None:
            raise t.TuneError(f"--metric {metric}: no key {objective.metric_key!r} in the workspace's "
                              f"{objective.metric_file}")
        tune_dir = root / t.TUNE_DIR
        store = storage or t.default_storage(root, study)
        signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: the running experiment is stopped, not orphaned
        found = t.run_search(study, cfg.space, objective, trials, store, tune_dir / f"{study}.lock", tune_dir / study,
                             t.dvc_runner(root), t.dvc_metrics_reader(root), seed=seed, max_failures=max_failures,
                             echo=click.echo, stale_metrics=t.dvc_metrics_reader(root, all_commits=True))
    except (t.TuneError, ParamsError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted: the running trial is marked failed; run the same command again to resume",
                   err=True)
        sys.exit(130)
    click.echo("")
    click.echo(t.summary(found, cfg.space, objective))


@main.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--features-dir", default="data/features", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Feature store of the featurize stage.")
@click.option("--split", default="heldout", show_default=True, help="Split whose clips and stream are scored.")
@click.option("--cmvn", "cmvn_path", default="models/cmvn.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The feature store's CMVN, read for its feature type only (each checkpoint uses its own CMVN).")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Parameters file (detector, calibrate).")
@click.option("--ensemble", is_flag=True, help="Also score the mean probability of all CHECKPOINTS.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a markdown table.")
@click.option("--split-dir", default="data/split", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Split manifests: the held-out clips' voices, for the per-engine rows.")
def compare(checkpoints: tuple[Path, ...], features_dir: Path, split: str, cmvn_path: Path, params_path: Path,
            ensemble: bool, as_json: bool, split_dir: Path) -> None:
    """Recall at 0.5 / 1 / 2 FA/h on one split, with and without its stream's confusable phrases (there also the
    share of the split's confusable clips accepted), and the clip EER of each of CHECKPOINTS (.pt files of the
    train or finetune stage, e.g. models/base.pt models/model.pt, or another seed's), each through its own CMVN,
    with the streaming detector of the parameters; --ensemble adds their mean-probability ensemble. Raw
    probabilities (no calibration temperature). On the held-out split with its manifest in --split-dir, also
    per engine of the held-out set: recall at 0.5 FA/h with and without the stream's confusables."""
    import json

    from wakeword.calibration import threshold_grid
    from wakeword.cmvn import CMVNError, load_cmvn
    from wakeword.compare import (
        FAH_POINTS,
        CompareError,
        checkpoint_logit_fn,
        compare_models,
        markdown_table,
    )
    from wakeword.evaluation import heldout_voice_groups
    from wakeword.featureset import FeatureSetError, read_index
    from wakeword.params import ParamsError, load_params

    try:
        p = load_params(params_path)
        index = read_index(features_dir)
        ftype = load_cmvn(cmvn_path).feature_type
        fns = [checkpoint_logit_fn(c, int(index["n_features"]), int(index["window_frames"]), ftype)
               for c in checkpoints]
        models = [(str(c), f) for c, f in zip(checkpoints, fns)]
        rows = compare_models(models, features_dir, split, p.detector, p.audio.step_ms,
                              threshold_grid(p.calibrate.threshold_step), p.calibrate.max_stream_on_fraction,
                              ensemble=f"ensemble of {len(fns)}" if ensemble else None,
                              manifest_groups=heldout_voice_groups(split_dir, split))
    except (ParamsError, FeatureSetError, CMVNError, CompareError, ValueError) as exc:  # ValueError: a bad segment table
        raise click.ClickException(str(exc)) from None
    if as_json:

        def key(d: dict[float, float | None] | None) -> dict[str, float | None] | None:
            return None if d is None else {f"{t:g}": v for t, v in d.items()}

        click.echo(json.dumps([{"model": r.name, "split": split, "recall_at_fah": key(r.recall),
                                "recall_at_fah_without_confusables": key(r.recall_without_confusables),
                                "confusable_false_accepts_without_confusables": key(r.confusable_false_accepts),
                                "eer": r.eer, "by_engine": r.by_engine} for r in rows], indent=1))
    else:
        click.echo(markdown_table(rows, split, FAH_POINTS))


@main.command("lr-find")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Parameters file (model, train).")
@click.option("--features-dir", default="data/features", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Feature store of the featurize stage.")
@click.option("--cmvn", "cmvn_path", default="models/cmvn.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="CMVN of the cmvn stage.")
@click.option("--out", "out_dir", default="lr_finder", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where lr_finder.json and .png go.")
@click.option("--start", default=1e-6, show_default=True, type=click.FloatRange(min=0.0, min_open=True))
@click.option("--end", default=1e-2, show_default=True, type=click.FloatRange(min=0.0, min_open=True))
@click.option("--steps", default=100, show_default=True, type=click.IntRange(5, 10000))
def lr_find(params_path: Path, features_dir: Path, cmvn_path: Path, out_dir: Path, start: float, end: float,
            steps: int) -> None:
    """LR range test (SPEC 5): the learning rate grows exponentially from START to END over STEPS steps on
    training batches of the model params.yaml describes; prints the curve and the suggested peak lr (steepest
    descent of the smoothed loss) and writes OUT/lr_finder.json and OUT/lr_finder.png. Nothing is trained
    for real; use the suggestion with `dvc exp run -S train.lr=<lr>`, or set `train.lr_finder: use`."""
    import json

    import torch

    from wakeword.cmvn import CMVNError, load_cmvn
    from wakeword.featureset import FeatureSetError, load_split, read_index
    from wakeword.losses import ClassificationLoss, balanced_class_weights
    from wakeword.lr_finder import lr_range_test
    from wakeword.models import build_model
    from wakeword.params import ParamsError, load_params
    from wakeword.plots import render

    if start >= end:
        raise click.BadParameter(f"--start ({start}) must be below --end ({end})")
    try:
        p = load_params(params_path)
        index = read_index(features_dir)
        train = load_split(features_dir, "train")
        cmvn = load_cmvn(cmvn_path)
    except (ParamsError, FeatureSetError, CMVNError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    tp = p.train
    seed = p.seed + tp.seed_offset  # as the train stage's own range test draws
    torch.manual_seed(seed)
    torch.set_num_threads(tp.num_threads)
    model = build_model(p.model, int(index["n_features"]), int(index["window_frames"]))
    x = torch.from_numpy(cmvn.apply(train.x))
    y = torch.from_numpy(train.y.astype(np.int64))
    kind = torch.from_numpy(train.kind.astype(np.int64))
    weights = balanced_class_weights(train.y) if tp.loss.class_weights == "balanced" else None
    loss_fn = ClassificationLoss(tp.loss, weights)
    gen = torch.Generator().manual_seed(seed + 3)

    def step_loss(m: torch.nn.Module, _i: int) -> torch.Tensor:
        idx = torch.randint(0, x.shape[0], (min(tp.batch_size, x.shape[0]),), generator=gen)
        return loss_fn(m(x[idx]), y[idx], kind[idx])

    def make_opt(ps: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if tp.optimizer == "sgd":
            return torch.optim.SGD(ps, lr=start, momentum=tp.momentum, nesterov=tp.momentum > 0,
                                   weight_decay=tp.weight_decay)
        return torch.optim.AdamW(ps, lr=start, weight_decay=tp.weight_decay)

    res = lr_range_test(model, make_opt, step_loss, start=start, end=end, steps=steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = res.rows()
    (out_dir / "lr_finder.json").write_text(json.dumps(rows, indent=1) + "\n")
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": 440, "height": 300,
        "title": f"LR range test ({p.model.arch}, {tp.optimizer}): suggested {res.suggestion:.2g}",
        "data": {"values": rows}, "transform": [{"fold": ["loss", "smoothed_loss"], "as": ["curve", "value"]}],
        "layer": [
            {"mark": "line", "encoding": {"x": {"field": "lr", "type": "quantitative", "scale": {"type": "log"}},
                                          "y": {"field": "value", "type": "quantitative", "title": "training loss"},
                                          "color": {"field": "curve", "type": "nominal"}}},
            {"data": {"values": [{"lr": res.suggestion}]}, "mark": {"type": "rule", "strokeDash": [4, 4]},
             "encoding": {"x": {"field": "lr", "type": "quantitative"}}},
        ],
    }
    render(spec, out_dir / "lr_finder.png")
    for r in rows[:: max(1, len(rows) // 12)]:
        click.echo(f"lr {r['lr']:.3g}\tloss {r['loss']:.4f}\tsmoothed {r['smoothed_loss']:.4f}")
    click.echo(f"suggested peak lr: {res.suggestion:.3g} (steepest descent of the smoothed loss; "
               f"{len(rows)} steps); curve in {out_dir / 'lr_finder.json'} and {out_dir / 'lr_finder.png'}")


if __name__ == "__main__":
    main()
