"""Stage finetune (SPEC 5, phase 3 of 3): continue training the trained model on its training windows plus
the hard negatives the mine stage found, then report false alarms before and after.

The trained model is the starting point *and* the baseline: an epoch replaces it only if it is better on
validation (FAH first, then recall), so fine-tuning can never make the kept model worse on validation. The
training stream is scored again with the kept model at ``mine.threshold`` for the after figure. With nothing
mined (``mine.enabled: false`` or no window over the threshold) the trained model is copied unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import click
import numpy as np

from stages._common import load, params_option, round_floats, stage, write_json
from wakeword.calibration import threshold_grid
from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import load_cmvn
from wakeword.detector import DetectorConfig
from wakeword.featureset import FeatureSet, load_split, load_stream, read_index
from wakeword.mining import fah_at_report_thresholds, mine_stream, report_configs
from wakeword.train import TrainData, TrainSetup, torch_logit_fn, train_model, validate

log = logging.getLogger("stages.finetune")
KEYS = ("val_fah", "val_recall_at_target_fah", "val_loss", "val_roc_auc")


def _mined(path: Path) -> FeatureSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            return FeatureSet(z["x"], z["y"], z["kind"], z["phrase_start_frame"], z["phrase_end_frame"])
    except (OSError, KeyError, ValueError) as exc:
        raise click.ClickException(f"{path}: unreadable mined windows ({exc})") from None


@click.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cmvn_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("base", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("mined_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("live_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("summary", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the per-epoch state is kept for resuming (none: no resume).")
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/split"),
              show_default=True, help="Split manifests (the clip texts of train.loss.word_weight).")
@params_option
@stage
def main(features_dir: Path, cmvn_path: Path, base: Path, mined_dir: Path, checkpoint: Path, live_dir: Path,
         summary: Path, state_dir: Path | None, split_dir: Path, params_path: Path) -> None:
    from dvclive import Live

    p = load(params_path)
    index = read_index(features_dir)
    cmvn = load_cmvn(cmvn_path)
    mined = _mined(mined_dir / "windows.npz")
    model, _ = load_checkpoint(base)
    stream, hours = load_stream(features_dir, "val")
    word_targets = None
    if p.train.loss.word_weight > 0:
        from wakeword.words import training_word_targets

        word_targets = training_word_targets(split_dir, p.synth.phrase, p.audio.clip_s)
    data = TrainData(load_split(features_dir, "train"), load_split(features_dir, "val"), stream, hours, cmvn, index,
                     extra=mined, word_targets=word_targets)
    tp = p.train.model_copy(update={
        "epochs": p.mine.epochs, "lr": p.mine.lr, "min_lr": min(p.train.min_lr, p.mine.lr), "warmup_epochs": 0,
        "lr_finder": "none", "early_stopping": 0, "triplet": p.train.triplet.model_copy(update={"epochs": 0}),
        "qat": p.train.qat.model_copy(update={"start_epoch": 0}),
    })
    setup = TrainSetup(p.model, tp, p.detector, p.calibrate, p.audio, p.seed, p.augment, p.features)
    before = validate(model, data, setup, threshold_grid(max(p.calibrate.threshold_step, 0.02)))
    out: dict[str, object] = {"mined_windows": int(mined.x.shape[0]), "before": {k: before[k] for k in KEYS}}
    live_dir.mkdir(parents=True, exist_ok=True)
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)  # a DVC output even when there is nothing to fine-tune
    if mined.x.shape[0] == 0:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base, checkpoint.with_suffix(".tmp"))
        os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
        out.update({"fine_tuned": False, "reason": "no mined windows", "after": out["before"], "best_epoch": 0})
        write_json(summary, round_floats(out))
        log.info("nothing mined: the trained model is kept as it is")
        return
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            for name, value in row.items():
                live.log_metric(name, value)
            live.next_step()

        result = train_model(data, setup, checkpoint, state_dir=state_dir, on_epoch=on_epoch, init=init,
                             baseline=before, checkpoint_meta={"fine_tuned_from": str(base)})
    final, _ = load_checkpoint(checkpoint)
    train_stream, train_hours = load_stream(features_dir, "train")
    cfg = DetectorConfig.from_params(p.detector, p.mine.threshold, p.audio.step_ms)
    gap = int(np.ceil(p.mine.min_gap_ms / p.audio.step_ms))
    again = mine_stream(torch_logit_fn(final, cmvn), train_stream, int(index["window_frames"]),
                        int(index["step_frames"]), p.mine.threshold, gap, p.mine.max_windows, cfg,
                        report_configs(p.detector, p.audio.step_ms))
    out.update({
        "fine_tuned": True, "epochs": len(result.history), "best_epoch": result.best_epoch + 1,
        "kept": "trained model (no epoch was better)" if result.best_epoch < 0 else f"epoch {result.best_epoch + 1}",
        "after": {k: result.best[k] for k in KEYS}, "train_stream_hours": train_hours,
        "train_stream_fah_after": again.detections / train_hours, "train_stream_over_threshold_after": again.candidates,
        "train_stream_fah_after_at": fah_at_report_thresholds(again, train_hours),
        "finetune_wall_s": round(result.wall_s, 1),
    })
    write_json(summary, round_floats(out))


if __name__ == "__main__":
    main()
