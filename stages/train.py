"""Stage train: fit the model, log per-epoch curves with DVCLive, keep the best validation checkpoint.

With ``augment.mode: on_the_fly`` every epoch after the first trains on freshly rendered windows (the
featurize stage's code, a new seed per epoch) instead of the fixed featurized set.

The training state after every epoch goes to STATE_DIR (a persistent DVC output): if the stage is killed,
the next ``dvc repro`` continues from the last finished epoch and ends with the same model. With
``train.lr_finder`` on, the LR range test's curve is written to LIVE_DIR/lr_finder.json.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.cmvn import load_cmvn
from wakeword.featureset import load_split, load_stream, read_index
from wakeword.train import TrainData, TrainSetup, train_model


def _digest(path: Path) -> str:
    """Content hash of a file or of every file under a directory (the teacher's identity)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent).as_posix().encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("live_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("summary", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the per-epoch training state is kept for resuming (none: no resume).")
@click.option("--synth-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/synth"),
              show_default=True, help="Demo audio (augment.mode on_the_fly re-renders training windows from it).")
@click.option("--own-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/own"),
              show_default=True, help="Own audio from the ingest stage (on_the_fly).")
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/split"),
              show_default=True, help="Split manifests (on_the_fly; the clip texts of train.loss.word_weight).")
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, checkpoint: Path, live_dir: Path, summary: Path,
         state_dir: Path | None, synth_dir: Path, own_dir: Path, split_dir: Path, params_path: Path) -> None:
    from dvclive import Live

    p = load(params_path)
    epoch_windows = None
    if p.augment.mode == "on_the_fly":
        from wakeword.featurize import OnTheFlyWindows

        epoch_windows = OnTheFlyWindows({"synth": synth_dir, "own": own_dir}, split_dir, p.audio, p.features,
                                        p.augment, p.seed + p.train.seed_offset)
    index = read_index(features_dir)
    cmvn = load_cmvn(cmvn_path)
    teacher, teacher_id = None, ""
    if p.train.distill.teacher:
        from wakeword.teacher import load_teacher

        tpath = Path(p.train.distill.teacher)
        teacher = load_teacher(tpath, p.train.distill.kind, cmvn, int(index["n_features"]),
                               int(index["window_frames"]))
        teacher_id = f"{p.train.distill.kind}:{_digest(tpath)}"
    stream, hours = load_stream(features_dir, "val")
    word_targets = None
    if p.train.loss.word_weight > 0:
        from wakeword.words import training_word_targets

        word_targets = training_word_targets(split_dir, p.synth.phrase, p.audio.clip_s)
    data = TrainData(load_split(features_dir, "train"), load_split(features_dir, "val"), stream, hours, cmvn, index,
                     epoch_windows, word_targets=word_targets)
    setup = TrainSetup(p.model, p.train, p.detector, p.calibrate, p.audio, p.seed, p.augment, p.features)
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            for name, value in row.items():
                live.log_metric(name, value)
            live.next_step()

        result = train_model(data, setup, checkpoint, state_dir=state_dir, on_epoch=on_epoch, teacher=teacher,
                             teacher_id=teacher_id)
    if result.lr_finder is not None:
        write_json(live_dir / "lr_finder.json", round_floats(result.lr_finder.rows()))
    out = {
        "arch": p.model.arch, "best_epoch": result.best_epoch + 1, "epochs": len(result.history),
        "parameters": result.parameters, "macs_per_window": result.macs_per_window,
        "train_wall_s": round(result.wall_s, 1), "peak_lr": result.peak_lr, "best": result.best,
        "stopped_early": result.stopped_early,
    }
    if result.lr_finder is not None:
        out["lr_finder_suggestion"] = result.lr_finder.suggestion
    write_json(summary, round_floats(out))


if __name__ == "__main__":
    main()
